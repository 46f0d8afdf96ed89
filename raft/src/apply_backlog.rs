//! A follower's brake on replication while it is far behind in applying.
//!
//! A leader applies what it proposes before it answers, so its apply
//! keeps pace with its commits; a follower's apply answers to no one and,
//! on a machine shared with the leader, fell 17-39 full import entries
//! (70-160 k commands) behind during a 3 M-card import. A linearizable
//! read on a follower waits for it to apply up to the leader's commit
//! index, so its counts took seconds (p99 1.2 s, some past the request
//! timeout) while the leader's took 0.2 s. A follower therefore holds an
//! AppendEntries that brings more entries while more than
//! [`MAX_BACKLOG`] commands it knows are committed wait to apply, for a
//! bounded time well inside the leader's RPC timeout. Commits (which need
//! a follower's acknowledgement) and so the leader's proposals slow down
//! to what the followers can apply. Only entries already known to be
//! committed count: they apply without any further message from the
//! leader, so the hold can never wait on itself.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Commands committed but not yet applied above which a follower holds
/// new entries: two full log entries, about 0.1 s of apply.
pub const MAX_BACKLOG: u64 = 8_192;

/// Commands in each log entry this follower accepted and has not applied
/// yet, and the highest commit index it has heard of.
#[derive(Default)]
pub struct ApplyBacklog {
    state: Mutex<State>,
    holds: AtomicU64,
    held_micros: AtomicU64,
}

#[derive(Default)]
struct State {
    /// (log index, commands), by index.
    entries: VecDeque<(u64, u64)>,
    committed: u64,
}

impl ApplyBacklog {
    /// Records entries this follower appended (`(index, commands)` in log
    /// order) and the leader's commit index that came with them. Entries
    /// at or after the first one replace any held there before (a new
    /// leader overwrote an uncommitted tail).
    pub fn appended(&self, entries: &[(u64, u64)], leader_commit: Option<u64>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(first, _)) = entries.first() {
            while st.entries.back().is_some_and(|&(i, _)| i >= first) {
                st.entries.pop_back();
            }
            st.entries.extend(entries.iter().copied());
        }
        if let Some(c) = leader_commit {
            st.committed = st.committed.max(c);
        }
    }

    /// Commands known to be committed and not applied once `applied` is.
    pub fn pending(&self, applied: u64) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while st.entries.front().is_some_and(|&(i, _)| i <= applied) {
            st.entries.pop_front();
        }
        let committed = st.committed;
        st.entries
            .iter()
            .take_while(|&&(i, _)| i <= committed)
            .map(|&(_, n)| n)
            .sum()
    }

    /// Waits while more than [`MAX_BACKLOG`] known-committed commands are
    /// unapplied, as `applied` reads the applied index from what `updates`
    /// carries, for `max` at most.
    pub async fn hold<M>(
        &self,
        updates: &mut watch::Receiver<M>,
        applied: impl Fn(&M) -> u64,
        max: Duration,
    ) {
        let start = tokio::time::Instant::now();
        let mut held = false;
        loop {
            let index = applied(&updates.borrow_and_update());
            if self.pending(index) <= MAX_BACKLOG {
                break;
            }
            held = true;
            match tokio::time::timeout_at(start + max, updates.changed()).await {
                Ok(Ok(())) => {}
                // Out of time, or the sender (raft) is gone.
                _ => break,
            }
        }
        if held {
            self.holds.fetch_add(1, Ordering::Relaxed);
            let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.held_micros.fetch_add(micros, Ordering::Relaxed);
        }
    }

    /// AppendEntries held so far, and the time they were held.
    pub fn holds(&self) -> (u64, Duration) {
        (
            self.holds.load(Ordering::Relaxed),
            Duration::from_micros(self.held_micros.load(Ordering::Relaxed)),
        )
    }
}

/// How long a follower may hold one AppendEntries: a third of the
/// leader's RPC timeout (one heartbeat interval), which leaves the rest
/// for the append, its fsync and the way back.
pub fn max_hold(heartbeat_interval: Duration) -> Duration {
    heartbeat_interval / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_committed_unapplied_commands_count() {
        let b = ApplyBacklog::default();
        b.appended(&[(1, 4096), (2, 4096), (3, 10)], Some(0));
        assert_eq!(b.pending(0), 0, "nothing known to be committed");
        b.appended(&[], Some(2));
        assert_eq!(b.pending(0), 8192);
        assert_eq!(b.pending(1), 4096);
        b.appended(&[(4, 7)], Some(4));
        assert_eq!(b.pending(2), 17);
        assert_eq!(b.pending(4), 0);
        assert_eq!(b.pending(1), 0, "applied entries are gone for good");
    }

    #[test]
    fn an_overwritten_tail_is_replaced() {
        let b = ApplyBacklog::default();
        b.appended(&[(1, 1), (2, 100), (3, 100)], Some(1));
        // A new leader's log differs from index 2 on.
        b.appended(&[(2, 5)], Some(2));
        assert_eq!(b.pending(0), 6);
        b.appended(&[], Some(9));
        assert_eq!(b.pending(0), 6, "index 3 was dropped with the old tail");
    }

    fn behind() -> ApplyBacklog {
        let b = ApplyBacklog::default();
        b.appended(&[(1, 4096), (2, 4096), (3, 4096), (4, 4096)], Some(4));
        b
    }

    /// Long enough that a hold which returns did not run out of time.
    const PATIENT: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_follower_within_the_limit_is_not_held() {
        let b = behind();
        let (_tx, mut rx) = watch::channel(2u64);
        b.hold(&mut rx, |&a| a, PATIENT).await;
        assert_eq!(b.holds(), (0, Duration::ZERO));
    }

    #[tokio::test]
    async fn a_held_append_goes_on_once_apply_catches_up() {
        let b = behind();
        let (tx, mut rx) = watch::channel(0u64);
        tokio::spawn(async move {
            // Still too far behind, then within the limit.
            let _ = tx.send(1);
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = tx.send(2);
            tokio::time::sleep(PATIENT).await;
        });
        b.hold(&mut rx, |&a| a, PATIENT).await;
        let (holds, held) = b.holds();
        assert_eq!(holds, 1);
        assert!(held >= Duration::from_millis(10), "{held:?}");
    }

    #[tokio::test]
    async fn a_hold_ends_when_its_time_is_up() {
        let b = behind();
        let (tx, mut rx) = watch::channel(0u64);
        let short = Duration::from_millis(20);
        b.hold(&mut rx, |&a| a, short).await;
        assert_eq!(b.holds().0, 1);
        assert!(b.holds().1 >= short);
        // Apply moved, but not far enough: held again for the full time.
        tx.send(1).expect("receiver alive");
        b.hold(&mut rx, |&a| a, short).await;
        assert_eq!(b.holds().0, 2);
        assert!(b.holds().1 >= short * 2);
        // Raft gone: nothing left to wait for.
        drop(tx);
        tokio::time::timeout(PATIENT / 2, b.hold(&mut rx, |&a| a, PATIENT))
            .await
            .expect("a hold with raft gone returns at once");
        assert_eq!(b.holds().0, 3);
    }

    #[test]
    fn the_commit_index_never_goes_back() {
        let b = ApplyBacklog::default();
        b.appended(&[(1, 3), (2, 3)], Some(2));
        b.appended(&[], Some(1));
        assert_eq!(b.pending(0), 6);
    }
}
