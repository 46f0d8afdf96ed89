//! Linearizability checking by Wing & Gong's search with Lowe's memoization,
//! the algorithm Porcupine and Knossos use: repeatedly pick an operation that
//! may take effect next (it was called before every pending operation
//! returned), apply it to a sequential model, and backtrack when the model
//! rejects the observed output. States already explored — the same set of
//! linearized operations with the same model state — are never searched twice.
//!
//! Operations whose outcome is unknown (`info`) are optional: they may take
//! effect at any point after their call, or never.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Op;
    fn init(&self) -> Self::State;
    /// The state after `op`, or `None` if the sequential object could not
    /// have produced `op`'s observed output from `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
}

pub struct Timed<O> {
    pub op: O,
    pub call: u64,
    /// `u64::MAX` when the operation never returned (optional).
    pub ret: u64,
}

impl<O> Timed<O> {
    fn required(&self) -> bool {
        self.ret != u64::MAX
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order exists. `stuck_at` are the indexes (into the input) of the
    /// operations that could have come next at the deepest point the search
    /// reached, none of which the model accepted.
    NotLinearizable {
        linearized: usize,
        stuck_at: Vec<usize>,
    },
    /// The time budget ran out first.
    Unknown,
}

/// `(first word that matters, the words from there on)`.
type DoneKey = (usize, Vec<u64>);

struct Done {
    words: Vec<u64>,
}

impl Done {
    fn new(n: usize) -> Done {
        Done {
            words: vec![0; n.div_ceil(64)],
        }
    }
    fn get(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }
    fn flip(&mut self, i: usize) {
        self.words[i / 64] ^= 1 << (i % 64);
    }
    /// A compact cache key: words before `first_undone` are all ones, so only
    /// the rest (without trailing zero words) distinguishes two sets.
    fn key(&self, first_undone: usize) -> DoneKey {
        let from = first_undone / 64;
        let mut tail = self.words[from..].to_vec();
        while tail.last() == Some(&0) {
            tail.pop();
        }
        (from, tail)
    }
}

/// Checks `ops` (sorted by call time) against `model` within `budget`.
pub fn check<M: Model>(model: &M, ops: &[Timed<M::Op>], budget: Duration) -> Verdict {
    debug_assert!(ops.windows(2).all(|w| w[0].call <= w[1].call));
    let deadline = Instant::now() + budget;
    let n = ops.len();
    let mut required_left = ops.iter().filter(|o| o.required()).count();
    let mut done = Done::new(n);
    let mut first_undone = 0usize;
    let mut state = model.init();
    let mut seen: HashSet<(DoneKey, M::State)> = HashSet::new();
    // One frame per linearized operation: the candidates at that depth, the
    // cursor into them, and what to restore on backtrack.
    struct Frame<S> {
        candidates: Vec<usize>,
        next: usize,
        applied: Option<(usize, S, usize)>,
    }
    let mut frames = vec![Frame {
        candidates: candidates(ops, &done, first_undone),
        next: 0,
        applied: None,
    }];
    let mut deepest = (0usize, Vec::new());
    let mut steps = 0u64;
    loop {
        if required_left == 0 {
            return Verdict::Linearizable;
        }
        steps += 1;
        if steps.is_multiple_of(4096) && Instant::now() > deadline {
            return Verdict::Unknown;
        }
        let depth = frames.len() - 1;
        let top = frames.last_mut().expect("the root frame is never popped");
        if top.next >= top.candidates.len() {
            if depth > deepest.0 || deepest.1.is_empty() {
                deepest = (depth, top.candidates.clone());
            }
            let frame = frames.pop().expect("non-empty");
            let Some((i, prev_state, prev_first)) = frame.applied else {
                return Verdict::NotLinearizable {
                    linearized: deepest.0,
                    stuck_at: deepest.1,
                };
            };
            done.flip(i);
            if ops[i].required() {
                required_left += 1;
            }
            state = prev_state;
            first_undone = prev_first;
            continue;
        }
        let i = top.candidates[top.next];
        top.next += 1;
        let Some(next_state) = model.step(&state, &ops[i].op) else {
            continue;
        };
        done.flip(i);
        let mut next_first = first_undone;
        while next_first < n && done.get(next_first) {
            next_first += 1;
        }
        if !seen.insert((done.key(next_first), next_state.clone())) {
            done.flip(i);
            continue;
        }
        if ops[i].required() {
            required_left -= 1;
        }
        let prev_state = std::mem::replace(&mut state, next_state);
        let prev_first = std::mem::replace(&mut first_undone, next_first);
        frames.push(Frame {
            candidates: candidates(ops, &done, first_undone),
            next: 0,
            applied: Some((i, prev_state, prev_first)),
        });
    }
}

/// Operations that may be linearized next: not yet linearized and called
/// before the earliest return among the pending ones.
fn candidates<O>(ops: &[Timed<O>], done: &Done, first_undone: usize) -> Vec<usize> {
    let mut min_ret = u64::MAX;
    let mut end = first_undone;
    while end < ops.len() && ops[end].call < min_ret {
        if !done.get(end) {
            min_ret = min_ret.min(ops[end].ret);
        }
        end += 1;
    }
    (first_undone..end)
        .filter(|&i| !done.get(i) && ops[i].call < min_ret)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read/write register: the textbook example.
    struct Register;
    #[derive(Clone, Copy)]
    enum RegOp {
        Write(u32),
        Read(u32),
    }
    impl Model for Register {
        type State = u32;
        type Op = RegOp;
        fn init(&self) -> u32 {
            0
        }
        fn step(&self, s: &u32, op: &RegOp) -> Option<u32> {
            match *op {
                RegOp::Write(v) => Some(v),
                RegOp::Read(v) => (v == *s).then_some(*s),
            }
        }
    }

    fn t(op: RegOp, call: u64, ret: u64) -> Timed<RegOp> {
        Timed { op, call, ret }
    }
    const INF: u64 = u64::MAX;
    const B: Duration = Duration::from_secs(5);

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [
            t(RegOp::Write(1), 0, 1),
            t(RegOp::Read(1), 2, 3),
            t(RegOp::Write(2), 4, 5),
            t(RegOp::Read(2), 6, 7),
        ];
        assert_eq!(check(&Register, &h, B), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_caught() {
        let h = [
            t(RegOp::Write(1), 0, 1),
            t(RegOp::Write(2), 2, 3),
            t(RegOp::Read(1), 4, 5),
        ];
        match check(&Register, &h, B) {
            Verdict::NotLinearizable { stuck_at, .. } => assert!(stuck_at.contains(&2)),
            v => panic!("expected a violation, got {v:?}"),
        }
    }

    #[test]
    fn concurrent_reads_may_see_either_value() {
        let h = [
            t(RegOp::Write(1), 0, 10),
            t(RegOp::Read(0), 1, 2),
            t(RegOp::Read(1), 3, 4),
            t(RegOp::Read(1), 5, 6),
        ];
        assert_eq!(check(&Register, &h, B), Verdict::Linearizable);
    }

    #[test]
    fn reads_must_not_go_back_in_time() {
        // Both reads overlap the write, but once one read saw 1, a later
        // read cannot see 0 again.
        let h = [
            t(RegOp::Write(1), 0, 10),
            t(RegOp::Read(1), 1, 2),
            t(RegOp::Read(0), 3, 4),
        ];
        assert!(matches!(
            check(&Register, &h, B),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn info_writes_may_or_may_not_take_effect() {
        let applied = [t(RegOp::Write(7), 0, INF), t(RegOp::Read(7), 5, 6)];
        assert_eq!(check(&Register, &applied, B), Verdict::Linearizable);
        let lost = [t(RegOp::Write(7), 0, INF), t(RegOp::Read(0), 5, 6)];
        assert_eq!(check(&Register, &lost, B), Verdict::Linearizable);
        // ...but not both: once seen, it stays.
        let flicker = [
            t(RegOp::Write(7), 0, INF),
            t(RegOp::Read(7), 5, 6),
            t(RegOp::Read(0), 7, 8),
        ];
        assert!(matches!(
            check(&Register, &flicker, B),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn many_overlapping_operations_finish_quickly() {
        // 12 concurrent writes then a read of one of them: exponential
        // without memoization, instant with it.
        let mut h: Vec<_> = (1..=12).map(|v| t(RegOp::Write(v), 0, 100)).collect();
        h.push(t(RegOp::Read(5), 200, 201));
        assert_eq!(check(&Register, &h, B), Verdict::Linearizable);
        h.push(t(RegOp::Read(99), 300, 301));
        assert!(matches!(
            check(&Register, &h, B),
            Verdict::NotLinearizable { .. }
        ));
    }
}
