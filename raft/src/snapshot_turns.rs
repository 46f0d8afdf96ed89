//! When each member builds its snapshot.
//!
//! openraft's own policy (`LogsSinceLast`) has every member build at the
//! same log index, so a cluster's members all dump their state machines at
//! once. A build is seconds of CPU and a file the size of the data: with
//! both followers building, the leader had no quorum that was not busy, and
//! writes slowed for the length of a build (on one machine, every replica
//! on the same disk, AppendEntries timed out and writes stopped for
//! 120 ms at a snapshot).
//! Instead the log is cut into turns of a third of `every` entries, and a
//! member builds only in the turn its id gives it: no two members of a
//! three-member cluster build at once, and at most two of five.

use openraft::LogId;
use tokio::sync::watch;

use crate::types::{NodeId, Raft};

/// Turns per period; see the module comment.
const TURNS: u64 = 3;

/// One member's snapshot turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTurns {
    every: u64,
    turn: u64,
}

impl SnapshotTurns {
    /// A snapshot about every `every` applied entries, in `node_id`'s turn.
    pub fn new(node_id: NodeId, every: u64) -> SnapshotTurns {
        SnapshotTurns {
            every: every.max(1),
            turn: node_id % TURNS,
        }
    }

    fn turn_len(&self) -> u64 {
        (self.every / TURNS).max(1)
    }

    /// Whether a member that has applied up to `applied`, its last snapshot
    /// at `snapshot` (0: none), should build one now.
    pub fn due(&self, applied: u64, snapshot: u64) -> bool {
        let since = applied.saturating_sub(snapshot);
        let turn_len = self.turn_len();
        // Applies that jumped over a whole turn (a member catching up in
        // big steps) must not postpone the snapshot, and with it the purge
        // of the log, without bound.
        if since >= 2 * self.every {
            return true;
        }
        // A turn comes round once per `every` entries; a member that built
        // late in its last turn is due again early in the next.
        since + turn_len >= self.every && (applied / turn_len) % TURNS == self.turn
    }
}

/// Asks raft for a snapshot whenever this member's turn says so, until
/// `stop` turns true or raft stops.
pub async fn run(raft: Raft, turns: SnapshotTurns, mut stop: watch::Receiver<bool>) {
    let mut metrics = raft.metrics();
    // The applied index at which a build was asked for and not yet seen
    // finished. Asked again if the log moves a whole turn on without one
    // (raft ignores a request while another build runs).
    let mut asked: Option<u64> = None;
    loop {
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let (applied, snapshot) = {
            let m = metrics.borrow_and_update();
            (index(m.last_applied), index(m.snapshot))
        };
        asked = asked.filter(|&at| snapshot < at && applied < at + turns.turn_len());
        if asked.is_none() && turns.due(applied, snapshot) {
            if let Err(e) = raft.trigger().snapshot().await {
                tracing::warn!(error = %e, "could not ask for a snapshot");
                return;
            }
            asked = Some(applied);
        }
    }
}

fn index(log_id: Option<LogId<NodeId>>) -> u64 {
    log_id.map_or(0, |l| l.index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The applied indexes at which `turns` builds as entries are applied
    /// `steps` at a time, each build finishing at once.
    fn builds(turns: SnapshotTurns, steps: &[u64]) -> Vec<u64> {
        let (mut applied, mut snapshot, mut out) = (0, 0, Vec::new());
        for step in steps {
            applied += step;
            if turns.due(applied, snapshot) {
                snapshot = applied;
                out.push(applied);
            }
        }
        out
    }

    #[test]
    fn members_take_turns() {
        let steps = vec![1; 100_000];
        let one = builds(SnapshotTurns::new(1, 20_000), &steps);
        let two = builds(SnapshotTurns::new(2, 20_000), &steps);
        let three = builds(SnapshotTurns::new(3, 20_000), &steps);
        // Turns of 6 666 entries: member 3 has turn 0 (0.., 19 998..),
        // member 1 turn 1 (6 666.., 26 664..), member 2 turn 2 (13 332..);
        // the first build waits for two turns' worth of entries.
        assert_eq!(one, [26_664, 46_662, 66_660, 86_658]);
        assert_eq!(two, [13_334, 33_330, 53_328, 73_326, 93_324]);
        assert_eq!(three, [19_998, 39_996, 59_994, 79_992, 99_990]);
    }

    #[test]
    fn a_member_that_skipped_its_turn_builds_anyway() {
        let turns = SnapshotTurns::new(1, 30);
        // Turn 1 is applied 10..20, 40..50, ...; jumping over them all:
        assert!(!turns.due(39, 0));
        assert!(turns.due(60, 0));
        assert!(turns.due(61, 1));
    }

    #[test]
    fn tiny_periods_still_build() {
        let turns = SnapshotTurns::new(2, 1);
        let built = builds(turns, &[1; 12]);
        assert!(built.len() >= 4, "{built:?}");
    }

    proptest! {
        /// Builds are never closer than two turns, never further apart than
        /// a period and a turn (plus the step that crossed it), and two
        /// members with different turns never build in the same turn.
        #[test]
        fn builds_are_spaced_and_apart(
            every in 3u64..5_000,
            a in 0u64..64,
            b in 0u64..64,
            steps in proptest::collection::vec(1u64..4, 1..4_000),
        ) {
            let (ta, tb) = (SnapshotTurns::new(a, every), SnapshotTurns::new(b, every));
            let turn_len = ta.turn_len();
            prop_assume!(turn_len > 4);
            let built_a = builds(ta, &steps);
            let mut last = 0;
            for &at in &built_a {
                prop_assert!(at - last + turn_len >= every, "{at} after {last}");
                prop_assert!(at - last <= every + turn_len + 3, "{at} after {last}");
                last = at;
            }
            if ta.turn != tb.turn {
                for at in builds(tb, &steps) {
                    prop_assert!(built_a.iter().all(|x| x / turn_len != at / turn_len));
                }
            }
        }
    }
}
