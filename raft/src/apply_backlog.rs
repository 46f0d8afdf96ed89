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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::unapplied::Unapplied;

/// Commands committed but not yet applied above which a follower holds
/// new entries: two full log entries, about 0.1 s of apply.
pub const MAX_BACKLOG: u64 = 8_192;

/// The brake: what the log holds unapplied (kept by the log store's
/// observer), and how often and how long it held replication.
pub struct ApplyBacklog {
    unapplied: Arc<Unapplied>,
    holds: AtomicU64,
    held_micros: AtomicU64,
}

impl ApplyBacklog {
    pub fn new(unapplied: Arc<Unapplied>) -> ApplyBacklog {
        ApplyBacklog {
            unapplied,
            holds: AtomicU64::new(0),
            held_micros: AtomicU64::new(0),
        }
    }

    /// Commands known to be committed and not applied once `applied` is.
    pub fn pending(&self, applied: u64) -> u64 {
        self.unapplied.committed_commands(applied)
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
    use crate::types::{Proposal, TypeConfig};
    use oneid_storage::log_store::LogObserver;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    fn no_keys(_: &[u8], _: &mut Vec<u64>) -> bool {
        false
    }

    /// A follower that has four full entries committed and none applied.
    fn behind() -> ApplyBacklog {
        let u = Unapplied::new(no_keys);
        let entries: Vec<Entry<TypeConfig>> = (1..=4)
            .map(|index| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(Proposal {
                    stamp_ms: 0,
                    commands: vec![serde_bytes::ByteBuf::new(); 4096],
                }),
            })
            .collect();
        u.appended(entries);
        u.committed(4);
        ApplyBacklog::new(Arc::new(u))
    }

    /// Long enough that a hold which returns did not run out of time.
    const PATIENT: Duration = Duration::from_secs(60);

    #[test]
    fn pending_counts_the_committed_unapplied_commands() {
        let b = behind();
        assert_eq!(b.pending(0), 4 * 4096);
        assert_eq!(b.pending(3), 4096);
    }

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
}
