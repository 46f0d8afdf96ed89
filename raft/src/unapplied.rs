//! What this node's log holds beyond what it has applied: per entry, how
//! many commands it carries and which keys they may touch, and the index
//! raft has committed up to. The log store tells it of every append,
//! truncation and commit (`oneid_storage::log_store::LogObserver`), so it
//! mirrors the log without reading it back.
//!
//! Two users. The apply brake counts committed commands still waiting to
//! apply (see [`crate::apply_backlog`]). And a read of a few keys waits
//! only for the unapplied entries that may change them: a linearizable
//! read must reflect every write committed before it began (up to its read
//! index), but writes to other keys do not change what it returns. During
//! a bulk import the entries ahead of a count are 4 096-row batches that
//! take tens of milliseconds each to apply, and almost never hold the one
//! identity the count asks about.
//!
//! Which keys a command may touch is the application's to say (a
//! [`Footprint`]); a command it cannot bound touches everything, and so
//! does anything this tracker did not see appended.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use oneid_storage::log_store::LogObserver;
use openraft::{BasicNode, Entry, EntryPayload, RaftMetrics};
use tokio::sync::watch;

use crate::types::{applied_index, commands_in, NodeId, Proposal, TypeConfig};

/// Adds to `tokens` a token for every key the encoded command may touch
/// (any value per key, the same for the same key; two keys sharing a
/// token only make reads wait longer) and returns true, or returns false
/// when it cannot bound what the command touches.
pub type Footprint = fn(&[u8], &mut Vec<u64>) -> bool;

pub struct Unapplied {
    footprint: Footprint,
    state: Mutex<State>,
    committed: watch::Sender<u64>,
    /// Raft's metrics, once it runs: appends drop what it has applied, so
    /// a node nobody reads from still keeps only its unapplied entries.
    metrics: OnceLock<watch::Receiver<RaftMetrics<NodeId, BasicNode>>>,
}

#[derive(Default)]
struct State {
    /// Entries not known to be applied, by index.
    entries: VecDeque<Arc<Tracked>>,
    /// The log reached this far before this tracker watched it: what those
    /// entries touch is unknown.
    restored: u64,
    /// The newest term it saw appended, and the first index of it seen:
    /// a leader's read index from its lease is at least that one (its
    /// blank entry), so whatever earlier leaders committed lies before.
    term_start: Option<(u64, u64)>,
    /// The index of the newest membership entry seen appended (0: none
    /// since it watched, or it was truncated).
    membership_at: u64,
}

struct Tracked {
    index: u64,
    term: u64,
    commands: u64,
    /// The entry's commands; `None` for a blank or membership entry, which
    /// changes no application state.
    proposal: Option<Proposal>,
    /// Sorted tokens of what the entry may touch (`None`: anything),
    /// worked out by the first read that needs them: appends only store
    /// the entry, so a node nobody reads from pays nothing (decoding a
    /// 4 096-row import entry takes about a millisecond).
    touches: OnceLock<Option<Box<[u64]>>>,
}

impl Tracked {
    fn new(entry: Entry<TypeConfig>) -> Tracked {
        let index = entry.log_id.index;
        let term = entry.log_id.leader_id.term;
        let commands = commands_in(&entry) as u64;
        let proposal = match entry.payload {
            EntryPayload::Normal(p) => Some(p),
            _ => None,
        };
        Tracked {
            index,
            term,
            commands,
            proposal,
            touches: OnceLock::new(),
        }
    }

    fn may_touch(&self, footprint: Footprint, tokens: &[u64]) -> bool {
        let touches = self.touches.get_or_init(|| {
            let Some(proposal) = &self.proposal else {
                return Some(Box::default());
            };
            let mut found = Vec::new();
            for command in &proposal.commands {
                if !footprint(command, &mut found) {
                    return None;
                }
            }
            found.sort_unstable();
            found.dedup();
            Some(found.into_boxed_slice())
        });
        match touches {
            None => true,
            Some(t) => tokens.iter().any(|x| t.binary_search(x).is_ok()),
        }
    }
}

impl State {
    fn prune(&mut self, applied: u64) {
        while self.entries.front().is_some_and(|t| t.index <= applied) {
            self.entries.pop_front();
        }
    }

    fn drop_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|t| t.index >= index) {
            self.entries.pop_back();
        }
        if self.term_start.is_some_and(|(_, first)| first >= index) {
            self.term_start = None;
        }
        if self.membership_at >= index {
            self.membership_at = 0;
        }
    }

    fn saw(&mut self, entry: &Entry<TypeConfig>) {
        let (term, index) = (entry.log_id.leader_id.term, entry.log_id.index);
        if self.term_start.is_none_or(|(t, _)| term > t) {
            self.term_start = Some((term, index));
        }
        if matches!(entry.payload, EntryPayload::Membership(_)) {
            self.membership_at = index;
        }
    }
}

impl std::fmt::Debug for Unapplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unapplied")
            .field("committed", &self.committed_index())
            .field("tracked", &self.state().entries.len())
            .finish()
    }
}

impl Unapplied {
    pub fn new(footprint: Footprint) -> Unapplied {
        Unapplied {
            footprint,
            state: Mutex::default(),
            committed: watch::Sender::new(0),
            metrics: OnceLock::new(),
        }
    }

    /// Follows raft's applied index from `metrics` on.
    pub fn follow(&self, metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>) {
        let _ = self.metrics.set(metrics);
    }

    fn applied(&self) -> Option<u64> {
        Some(applied_index(&self.metrics.get()?.borrow()))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of the first entry of `term` this tracker saw appended,
    /// if `term` is the newest it saw.
    pub fn term_start(&self, term: u64) -> Option<u64> {
        match self.state().term_start {
            Some((t, index)) if t == term => Some(index),
            _ => None,
        }
    }

    /// The index of the newest membership entry appended since this
    /// tracker watched (0: none, or it was truncated since).
    pub fn membership_at(&self) -> u64 {
        self.state().membership_at
    }

    /// Whether the log holds, unapplied, the entry at `index` written in
    /// `term` (0: not known, never held).
    pub fn holds(&self, index: u64, term: u64) -> bool {
        let st = self.state();
        term != 0
            && st
                .entries
                .binary_search_by_key(&index, |t| t.index)
                .is_ok_and(|at| st.entries[at].term == term)
    }

    /// The commit index raft last reported.
    pub fn committed_index(&self) -> u64 {
        *self.committed.borrow()
    }

    /// Waits until raft has committed `index`; on a follower that also
    /// means its log up to `index` is the leader's. Having applied it
    /// counts too: raft reports a commit only when the index moves, and
    /// a node restarted on an idle cluster applies what it had committed
    /// before without one. Callers bound the wait.
    pub async fn wait_committed(&self, index: u64) {
        let mut committed = self.committed.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let commit = committed.wait_for(|c| *c >= index);
        match self.metrics.get() {
            Some(metrics) => {
                let mut metrics = metrics.clone();
                let applied = metrics.wait_for(|m| applied_index(m) >= index);
                // Raft gone ends the wait too; the caller's next step fails.
                tokio::select! {
                    _ = commit => {}
                    _ = applied => {}
                }
            }
            None => {
                let _ = commit.await;
            }
        }
    }

    /// Commands committed and not yet applied once `applied` is.
    pub fn committed_commands(&self, applied: u64) -> u64 {
        let committed = self.committed_index();
        let mut st = self.state();
        st.prune(applied);
        st.entries
            .iter()
            .take_while(|t| t.index <= committed)
            .map(|t| t.commands)
            .sum()
    }

    /// The index a read of the keys `tokens` stand for must wait to be
    /// applied, when its read index is `read` (committed) and `applied`
    /// is: the last entry in between that may touch one of them, or
    /// `applied` when none may. Whatever this tracker cannot vouch for
    /// (entries from before it watched, a gap) makes it answer `read`.
    pub fn must_apply(&self, applied: u64, read: u64, tokens: &[u64]) -> u64 {
        if applied >= read {
            return applied;
        }
        let window: Vec<Arc<Tracked>> = {
            let mut st = self.state();
            st.prune(applied);
            if st.restored > applied {
                return read;
            }
            st.entries
                .iter()
                .take_while(|t| t.index <= read)
                .cloned()
                .collect()
        };
        // Indexes only ever grow along the queue, so the window holds every
        // entry in between exactly when its ends and its length agree.
        let whole = window.first().is_some_and(|t| t.index == applied + 1)
            && window.last().is_some_and(|t| t.index == read)
            && window.len() as u64 == read - applied;
        if !whole {
            return read;
        }
        window
            .iter()
            .rev()
            .find(|t| t.may_touch(self.footprint, tokens))
            .map_or(applied, |t| t.index)
    }
}

impl LogObserver<TypeConfig> for Unapplied {
    fn restored(&self, last_index: u64, committed: u64) {
        {
            let mut st = self.state();
            st.restored = st.restored.max(last_index);
        }
        LogObserver::committed(self, committed);
    }

    fn appended(&self, entries: Vec<Entry<TypeConfig>>) {
        let Some(first) = entries.first().map(|e| e.log_id.index) else {
            return;
        };
        let applied = self.applied();
        let mut st = self.state();
        if let Some(applied) = applied {
            st.prune(applied);
        }
        st.drop_from(first);
        for e in &entries {
            st.saw(e);
        }
        st.entries
            .extend(entries.into_iter().map(|e| Arc::new(Tracked::new(e))));
    }

    fn truncating(&self, since: u64) {
        self.state().drop_from(since);
    }

    fn committed(&self, index: u64) {
        self.committed.send_if_modified(|c| {
            let newer = index > *c;
            if newer {
                *c = index;
            }
            newer
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId};

    /// Test commands: one byte per key token; an empty command touches
    /// anything.
    fn footprint(bytes: &[u8], tokens: &mut Vec<u64>) -> bool {
        tokens.extend(bytes.iter().map(|&b| u64::from(b)));
        !bytes.is_empty()
    }

    fn entry(index: u64, commands: &[&[u8]]) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal {
                stamp_ms: 0,
                commands: commands
                    .iter()
                    .map(|c| serde_bytes::ByteBuf::from(c.to_vec()))
                    .collect(),
            }),
        }
    }

    fn blank(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn tracker() -> Unapplied {
        let u = Unapplied::new(footprint);
        u.restored(0, 0);
        u
    }

    #[test]
    fn a_read_waits_only_for_entries_that_may_touch_its_keys() {
        let u = tracker();
        u.appended(vec![
            blank(1),
            entry(2, &[&[1, 2]]),
            entry(3, &[&[3], &[4]]),
        ]);
        u.appended(vec![entry(4, &[&[2]]), entry(5, &[&[5]])]);
        LogObserver::committed(&u, 5);
        assert_eq!(u.must_apply(0, 5, &[9]), 0, "nothing touches 9");
        assert_eq!(u.must_apply(0, 5, &[4]), 3);
        assert_eq!(u.must_apply(0, 5, &[2]), 4, "the last entry touching 2");
        assert_eq!(u.must_apply(0, 3, &[2]), 2, "entries past the read index");
        assert_eq!(u.must_apply(0, 5, &[9, 5]), 5);
        assert_eq!(u.must_apply(4, 5, &[2]), 4, "applied entries are gone");
        assert_eq!(u.must_apply(5, 5, &[5]), 5);
        assert_eq!(u.must_apply(7, 5, &[5]), 7, "already applied past the read");
    }

    #[test]
    fn an_unbounded_command_holds_every_read_until_applied() {
        let u = tracker();
        u.appended(vec![
            entry(1, &[&[1]]),
            entry(2, &[&[2], &[]]),
            entry(3, &[&[3]]),
        ]);
        assert_eq!(u.must_apply(0, 3, &[7]), 2);
        assert_eq!(u.must_apply(2, 3, &[7]), 2);
    }

    #[test]
    fn what_it_did_not_see_appended_holds_reads() {
        let u = Unapplied::new(footprint);
        u.restored(4, 3);
        assert_eq!(u.committed_index(), 3, "the saved commit index");
        u.appended(vec![entry(5, &[&[1]])]);
        assert_eq!(
            u.must_apply(3, 5, &[7]),
            5,
            "entry 4 came before the tracker"
        );
        assert_eq!(u.must_apply(4, 5, &[7]), 4);

        let u = tracker();
        u.appended(vec![entry(3, &[&[1]])]);
        assert_eq!(u.must_apply(1, 3, &[7]), 3, "a gap: entry 2 is unknown");
        u.appended(vec![entry(1, &[&[1]])]);
        assert_eq!(
            u.must_apply(0, 2, &[7]),
            2,
            "the log ends before the read index"
        );
    }

    #[test]
    fn an_overwritten_tail_is_replaced() {
        let u = tracker();
        u.appended(vec![
            entry(1, &[&[1]]),
            entry(2, &[&[2]]),
            entry(3, &[&[3]]),
        ]);
        u.appended(vec![entry(2, &[&[4]])]);
        assert_eq!(u.must_apply(0, 2, &[2]), 0);
        assert_eq!(u.must_apply(0, 2, &[4]), 2);
        assert_eq!(u.must_apply(0, 3, &[9]), 3, "entry 3 went with the tail");
        u.truncating(2);
        u.appended(vec![entry(2, &[&[5]]), entry(3, &[&[6]])]);
        assert_eq!(u.must_apply(0, 3, &[4]), 0);
        assert_eq!(u.must_apply(0, 3, &[6]), 3);
    }

    #[test]
    fn committed_commands_count_only_committed_unapplied_ones() {
        let u = tracker();
        u.appended(vec![
            entry(1, &[&[1u8][..]; 4]),
            blank(2),
            entry(3, &[&[1u8][..]; 2]),
            entry(4, &[&[1u8][..]; 8]),
        ]);
        assert_eq!(u.committed_commands(0), 0, "nothing committed");
        LogObserver::committed(&u, 3);
        assert_eq!(u.committed_commands(0), 6);
        assert_eq!(u.committed_commands(1), 2);
        LogObserver::committed(&u, 2);
        assert_eq!(u.committed_index(), 3, "the commit index never goes back");
        LogObserver::committed(&u, 4);
        assert_eq!(u.committed_commands(3), 8);
        assert_eq!(
            u.committed_commands(0),
            8,
            "applied entries are gone for good"
        );
    }

    #[tokio::test]
    async fn waiting_for_a_commit_ends_when_it_is_reported() {
        let u = std::sync::Arc::new(tracker());
        LogObserver::committed(&*u, 2);
        u.wait_committed(2).await;
        let waiter = tokio::spawn({
            let u = u.clone();
            async move { u.wait_committed(5).await }
        });
        LogObserver::committed(&*u, 4);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        LogObserver::committed(&*u, 6);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the wait ends")
            .expect("no panic");
    }

    fn in_term(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload,
        }
    }

    #[test]
    fn it_knows_each_entrys_term_where_the_newest_term_starts_and_the_newest_membership_entry() {
        let u = tracker();
        assert_eq!(u.term_start(1), None);
        u.appended(vec![blank(1), entry(2, &[&[1]])]);
        assert_eq!(u.term_start(1), Some(1));
        let membership = || {
            EntryPayload::Membership(openraft::Membership::new(
                vec![std::collections::BTreeSet::from([1u64, 2, 3])],
                None,
            ))
        };
        u.appended(vec![
            in_term(3, 3, EntryPayload::Blank),
            in_term(3, 4, membership()),
        ]);
        assert_eq!(u.term_start(1), None, "no longer the newest term");
        assert_eq!(u.term_start(3), Some(3));
        assert_eq!(u.membership_at(), 4);
        assert!(u.holds(4, 3), "the entry at 4, written in term 3");
        assert!(
            !u.holds(4, 1) && !u.holds(4, 0),
            "another term, or not known"
        );
        assert!(!u.holds(9, 3), "not in the log");
        // A later entry of the same term does not move the start.
        u.appended(vec![in_term(3, 5, EntryPayload::Blank)]);
        assert_eq!(u.term_start(3), Some(3));
        // A new leader overwrites the tail: what was dropped is forgotten.
        u.truncating(4);
        assert_eq!(u.membership_at(), 0);
        assert_eq!(u.term_start(3), Some(3));
        u.appended(vec![in_term(4, 3, EntryPayload::Blank)]);
        assert_eq!(u.term_start(4), Some(3));
        assert_eq!(u.term_start(3), None);
        assert!(u.holds(3, 4) && !u.holds(3, 3), "replaced");
    }
}
