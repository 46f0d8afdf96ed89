//! The leader's lease: for how long, counted from a quorum's last
//! acknowledgement, no other leader can exist, so the leader may answer a
//! read index from its own log instead of a round of heartbeats.
//!
//! Why it holds, with openraft 0.9: a follower that accepted an
//! AppendEntries (entries or a heartbeat) refuses every vote request for
//! its `election_timeout_max` after it processed it (its window, which it
//! states in its answer), and does not campaign on its own timer for
//! longer; a restarted follower keeps its persisted (committed) vote and
//! counts that window from its start. A request the leader sent at `t`
//! and a follower accepted was processed after `t`, so that follower
//! votes for no one before `t` plus its window. Once a quorum (the leader
//! counting itself) is bound so until `u`, no candidate can gather a
//! majority before `u` without a vote from the leader itself. Each
//! window counts a tenth short, against clock rates drifting apart
//! between machines. (A follower restarted with a shorter window within
//! the difference of the two after its last answer would vote sooner
//! than it promised: shorten election timeouts by restarting nodes more
//! than `election_timeout_max` apart, as any rolling restart does.)
//!
//! What the followers' window does not cover is closed by hand:
//! - the leader's own vote: it grants one once its own window from its
//!   election has passed, so any vote request it receives ends its lease
//!   ([`Lease::revoke`]), before raft sees the request;
//! - an election forced by a leadership transfer (`TimeoutNow` makes the
//!   target campaign at once, ignoring its window): a leader that started a
//!   transfer keeps no lease for the rest of its term
//!   ([`Lease::give_up_term`]), and the target campaigns only for the
//!   leader and term it last heard from (`crate::transfer`).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use openraft::Vote;

use crate::types::NodeId;

pub struct Lease {
    /// False: lease reads are off; every read runs a ReadIndex round.
    enabled: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The leadership the acknowledgements below were given to.
    vote: Option<Vote<NodeId>>,
    /// Per follower: until when it refuses votes, counted from when the
    /// latest request it accepted was sent.
    bound_until: Vec<(NodeId, Instant)>,
    /// Requests sent before this count for nothing.
    revoked_at: Option<Instant>,
    /// A term in which this node started a leadership transfer.
    given_up_term: Option<u64>,
}

impl Lease {
    /// `enabled` false: no lease reads.
    pub fn new(enabled: bool) -> Lease {
        Lease {
            enabled,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `follower` accepted a request sent at `sent` by the leadership
    /// `vote` (it did not answer with a higher vote), and refuses votes for
    /// `window` after it did (zero: it did not say).
    pub fn acked(&self, follower: NodeId, vote: &Vote<NodeId>, sent: Instant, window: Duration) {
        let mut st = self.state();
        if window.is_zero() || st.revoked_at.is_some_and(|r| sent <= r) {
            return;
        }
        let until = sent + (window - window / 10);
        match &st.vote {
            Some(v) if v == vote => {}
            // Only a newer leadership of this node replaces the old one:
            // what was acknowledged to the old one says nothing about it.
            Some(v) if vote.partial_cmp(v) != Some(std::cmp::Ordering::Greater) => return,
            _ => {
                st.vote = Some(*vote);
                st.bound_until.clear();
            }
        }
        match st.bound_until.iter_mut().find(|(id, _)| *id == follower) {
            Some((_, t)) => *t = (*t).max(until),
            None => st.bound_until.push((follower, until)),
        }
    }

    /// Forgets every acknowledgement so far: called before this node
    /// handles a vote request, which it may grant.
    pub fn revoke(&self) {
        let mut st = self.state();
        st.revoked_at = Some(Instant::now());
        st.bound_until.clear();
    }

    /// No lease for the rest of `term`: this node is asking another to
    /// campaign, and that node ignores its window when it does.
    pub fn give_up_term(&self, term: u64) {
        self.revoke();
        let mut st = self.state();
        st.given_up_term = Some(st.given_up_term.map_or(term, |t| t.max(term)));
    }

    /// Whether this node, leading as `vote` over `voters`, holds the lease
    /// at `now`.
    pub fn holds(
        &self,
        now: Instant,
        me: NodeId,
        vote: &Vote<NodeId>,
        voters: &BTreeSet<NodeId>,
    ) -> bool {
        if !self.enabled || !voters.contains(&me) {
            return false;
        }
        let st = self.state();
        if st.given_up_term.is_some_and(|t| t >= vote.leader_id().term) {
            return false;
        }
        let need = voters.len() / 2; // followers, besides this node
        if need == 0 {
            // The only voter: another leader needs this node's vote.
            return true;
        }
        if st.vote.as_ref() != Some(vote) {
            return false;
        }
        let mut until: Vec<Instant> = st
            .bound_until
            .iter()
            .filter(|(id, _)| *id != me && voters.contains(id))
            .map(|(_, t)| *t)
            .collect();
        if until.len() < need {
            return false;
        }
        until.sort_unstable_by(|a, b| b.cmp(a));
        now < until[need - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_millis(300);
    const LEASE: Duration = Duration::from_millis(270);

    fn vote(term: u64, node: NodeId) -> Vote<NodeId> {
        Vote::new_committed(term, node)
    }

    fn voters(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_quorum_of_acknowledgements_holds_the_lease_until_the_older_one_ages() {
        let lease = Lease::new(true);
        let v = vote(3, 1);
        let t0 = Instant::now();
        let five = voters(&[1, 2, 3, 4, 5]);
        assert!(!lease.holds(t0, 1, &v, &five), "nothing acknowledged");
        lease.acked(2, &v, t0, WINDOW);
        assert!(!lease.holds(t0, 1, &v, &five), "2 of 5");
        lease.acked(4, &v, t0 + Duration::from_millis(50), WINDOW);
        // 1, 2 and 4 make 3 of 5; the older of the two followers counts.
        assert!(lease.holds(t0 + LEASE - Duration::from_millis(1), 1, &v, &five));
        assert!(!lease.holds(t0 + LEASE, 1, &v, &five));
        lease.acked(3, &v, t0 + Duration::from_millis(100), WINDOW);
        assert!(lease.holds(t0 + LEASE + Duration::from_millis(40), 1, &v, &five));
        // A late answer to an older request does not move an ack back.
        lease.acked(3, &v, t0, WINDOW);
        assert!(lease.holds(t0 + LEASE + Duration::from_millis(40), 1, &v, &five));
        // Three voters: one follower is enough.
        assert!(lease.holds(t0 + LEASE, 1, &v, &voters(&[1, 3, 5])));
        // Acknowledgements from non-voters count for nothing.
        assert!(!lease.holds(t0, 1, &v, &voters(&[1, 6, 7])));
    }

    #[test]
    fn only_a_voter_leading_as_the_acknowledged_vote_holds_it() {
        let lease = Lease::new(true);
        let t0 = Instant::now();
        let three = voters(&[1, 2, 3]);
        lease.acked(2, &vote(3, 1), t0, WINDOW);
        assert!(lease.holds(t0, 1, &vote(3, 1), &three));
        assert!(!lease.holds(t0, 1, &vote(4, 1), &three), "a later term");
        assert!(!lease.holds(t0, 4, &vote(3, 1), &three), "not a voter");
        // A newer leadership starts over; answers to the old one are late.
        lease.acked(3, &vote(5, 1), t0, WINDOW);
        lease.acked(2, &vote(3, 1), t0 + Duration::from_millis(10), WINDOW);
        assert!(!lease.holds(t0, 1, &vote(3, 1), &three));
        assert!(lease.holds(t0, 1, &vote(5, 1), &three));
    }

    #[test]
    fn a_vote_request_ends_the_lease_until_requests_sent_after_it_are_acknowledged() {
        let lease = Lease::new(true);
        let v = vote(2, 1);
        let three = voters(&[1, 2, 3]);
        let before = Instant::now();
        lease.acked(2, &v, before, WINDOW);
        lease.revoke();
        assert!(!lease.holds(Instant::now(), 1, &v, &three));
        // An answer arriving now to a request sent before the vote request.
        lease.acked(3, &v, before, WINDOW);
        assert!(!lease.holds(Instant::now(), 1, &v, &three));
        let after = Instant::now() + Duration::from_millis(1);
        lease.acked(3, &v, after, WINDOW);
        assert!(lease.holds(after, 1, &v, &three));
    }

    #[test]
    fn a_leader_that_asked_another_to_campaign_holds_no_lease_in_that_term() {
        let lease = Lease::new(true);
        let three = voters(&[1, 2, 3]);
        lease.give_up_term(4);
        let t = Instant::now() + Duration::from_millis(1);
        lease.acked(2, &vote(4, 1), t, WINDOW);
        assert!(!lease.holds(t, 1, &vote(4, 1), &three));
        assert!(!lease.holds(t, 1, &vote(4, 1), &voters(&[1])));
        lease.acked(2, &vote(6, 1), t, WINDOW);
        assert!(lease.holds(t, 1, &vote(6, 1), &three), "a later term");
    }

    #[test]
    fn the_only_voter_always_holds_it_and_lease_reads_can_be_off() {
        let t = Instant::now();
        assert!(Lease::new(true).holds(t, 1, &vote(1, 1), &voters(&[1])));
        let off = Lease::new(false);
        off.acked(2, &vote(1, 1), t, WINDOW);
        assert!(!off.holds(t, 1, &vote(1, 1), &voters(&[1])));
        assert!(!off.holds(t, 1, &vote(1, 1), &voters(&[1, 2, 3])));
    }

    #[test]
    fn each_follower_binds_for_its_own_window_and_one_that_states_none_not_at_all() {
        let lease = Lease::new(true);
        let v = vote(2, 1);
        let t0 = Instant::now();
        let five = voters(&[1, 2, 3, 4, 5]);
        // Node 2 would vote again 100 ms after accepting (its window is
        // shorter than the leader's own): the lease ends with it.
        lease.acked(2, &v, t0, Duration::from_millis(100));
        lease.acked(3, &v, t0, WINDOW);
        assert!(lease.holds(t0 + Duration::from_millis(89), 1, &v, &five));
        assert!(!lease.holds(t0 + Duration::from_millis(90), 1, &v, &five));
        // A node of a build that does not state its window counts for
        // nothing.
        lease.acked(4, &v, t0, Duration::ZERO);
        assert!(!lease.holds(t0 + Duration::from_millis(90), 1, &v, &five));
        lease.acked(5, &v, t0, WINDOW);
        assert!(lease.holds(t0 + LEASE - Duration::from_millis(1), 1, &v, &five));
    }
}
