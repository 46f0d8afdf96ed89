//! Where a client sends its writes: to the leader when one of its endpoints
//! is the leader, else to any endpoint (followers forward).
//!
//! A write sent to a follower costs a second hop: the follower receives it,
//! batches it with its other writes and forwards the batch to the leader,
//! which answers the follower, which answers the client. On this 2-core
//! machine that hop was ~15 % of a registration's CPU (node CPU 162–165 vs
//! 190–209 µs per registration, three alternating pairs at 64 clients,
//! and 15–21 % more registrations/s). Reads
//! stay spread over every endpoint: a follower serves a linearizable read
//! with one coalesced ReadIndex call, no hop per read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::Channel;

use crate::pb;
use crate::pb::cluster_client::ClusterClient;

/// How long one status call may take while looking for the leader: a dead
/// node must not hold the search up.
const STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// Value of `leader` while none of the endpoints is known to lead.
const UNKNOWN: usize = usize::MAX;

pub struct WriteRoute {
    /// The endpoints as given, in the order of `channels`.
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    /// Index into `channels` of the leader, or `UNKNOWN`.
    leader: AtomicUsize,
    /// One search at a time: many clients failing together search once.
    searching: tokio::sync::Mutex<()>,
}

impl WriteRoute {
    pub fn new(endpoints: Vec<String>, channels: Vec<Channel>) -> Self {
        WriteRoute {
            endpoints,
            channels,
            leader: AtomicUsize::new(UNKNOWN),
            searching: tokio::sync::Mutex::new(()),
        }
    }

    /// The endpoint index for client `client`'s next write.
    pub fn pick(&self, client: usize) -> usize {
        match self.leader.load(Ordering::Relaxed) {
            UNKNOWN => client % self.channels.len(),
            i => i,
        }
    }

    /// The endpoint writes go to now, if one leads.
    pub fn leader_endpoint(&self) -> Option<&str> {
        let i = self.leader.load(Ordering::Relaxed);
        self.endpoints.get(i).map(String::as_str)
    }

    /// Forgets the leader: the next writes spread over every endpoint until
    /// [`WriteRoute::find_leader`] names one again. For a write that failed
    /// on the node taken for leader (it may have died or stepped down).
    pub fn forget(&self, failed_on: usize) {
        let _ =
            self.leader
                .compare_exchange(failed_on, UNKNOWN, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Asks every endpoint for its status and routes writes to the one that
    /// says it leads. Only a node's own word counts: followers go on naming
    /// a dead leader until their election timeout. When none leads (an
    /// election, or the leader is not among the endpoints) writes spread.
    /// A leader cut off from its quorum may still say it leads until it
    /// hears of a newer term; writes sent there time out, and each timeout
    /// sends the route asking again.
    pub async fn find_leader(&self) {
        let Ok(_one) = self.searching.try_lock() else {
            return;
        };
        let asks = self.channels.iter().map(|ch| {
            let mut c = ClusterClient::new(ch.clone());
            async move {
                let mut req = tonic::Request::new(pb::StatusRequest::default());
                req.set_timeout(STATUS_TIMEOUT);
                c.status(req).await.ok().map(|r| r.into_inner())
            }
        });
        let replies = futures::future::join_all(asks).await;
        let found = leader_index(&self.endpoints, &replies);
        self.leader
            .store(found.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }
}

/// Whether a write that failed with `code` says the node it went to may no
/// longer lead (or be up): a node that lost leadership answers UNAVAILABLE,
/// a dead one fails the call. A rejection by the registry's rules (a taken
/// number, a limit) came from a working leader: no reason to look again.
pub fn leader_may_have_moved(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
    )
}

/// Which endpoint leads, by the replies to a status call on each (`None`
/// where the call failed): the one whose node names itself leader and whose
/// advertised address is that endpoint.
fn leader_index(endpoints: &[String], replies: &[Option<pb::StatusResponse>]) -> Option<usize> {
    replies.iter().enumerate().find_map(|(i, r)| {
        let s = r.as_ref()?;
        let me = s.members.iter().find(|m| m.node_id == s.node_id)?;
        let leads = s.leader_id != 0 && s.leader_id == s.node_id;
        (leads && me.addr == endpoints[i]).then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node_id: u64, leader_id: u64) -> pb::StatusResponse {
        pb::StatusResponse {
            node_id,
            leader_id,
            members: (1..=3)
                .map(|id| pb::Member {
                    node_id: id,
                    addr: format!("n{id}:7000"),
                    voter: true,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn endpoints() -> Vec<String> {
        (1..=3).map(|id| format!("n{id}:7000")).collect()
    }

    #[test]
    fn the_leader_is_the_node_that_says_it_leads() {
        let replies = [Some(status(1, 3)), Some(status(2, 3)), Some(status(3, 3))];
        assert_eq!(leader_index(&endpoints(), &replies), Some(2));
    }

    #[test]
    fn followers_naming_a_leader_that_does_not_answer_are_not_believed() {
        // Node 3 died; its followers still name it until their election
        // timeout. Writes must spread, not go on to the dead node.
        let replies = [Some(status(1, 3)), Some(status(2, 3)), None];
        assert_eq!(leader_index(&endpoints(), &replies), None);
    }

    #[test]
    fn no_leader_during_an_election() {
        let replies = [Some(status(1, 0)), Some(status(2, 0)), Some(status(3, 0))];
        assert_eq!(leader_index(&endpoints(), &replies), None);
    }

    #[test]
    fn a_leader_reached_under_another_name_is_not_taken_for_that_endpoint() {
        // The client knows node 2 as "localhost:7002"; the cluster calls it
        // "n2:7000". Without a match the route cannot tell which channel
        // leads, so it spreads writes rather than guess.
        let eps: Vec<String> = vec!["n1:7000".into(), "localhost:7002".into(), "n3:7000".into()];
        let replies = [Some(status(1, 2)), Some(status(2, 2)), Some(status(3, 2))];
        assert_eq!(leader_index(&eps, &replies), None);
    }

    #[test]
    fn only_failures_that_may_mean_a_lost_leader_send_the_route_looking() {
        assert!(leader_may_have_moved(tonic::Code::Unavailable));
        assert!(leader_may_have_moved(tonic::Code::DeadlineExceeded));
        assert!(!leader_may_have_moved(tonic::Code::AlreadyExists));
        assert!(!leader_may_have_moved(tonic::Code::FailedPrecondition));
        assert!(!leader_may_have_moved(tonic::Code::InvalidArgument));
        assert!(!leader_may_have_moved(tonic::Code::ResourceExhausted));
    }

    #[tokio::test]
    async fn writes_spread_until_a_leader_is_found_and_again_after_it_fails() {
        let ch =
            |p| Channel::from_shared(format!("http://127.0.0.1:{p}")).map(|e| e.connect_lazy());
        let chans = vec![ch(1).unwrap(), ch(2).unwrap(), ch(3).unwrap()];
        let route = WriteRoute::new(endpoints(), chans);
        assert_eq!((0..3).map(|c| route.pick(c)).collect::<Vec<_>>(), [0, 1, 2]);
        route.leader.store(1, Ordering::Relaxed);
        assert_eq!((0..3).map(|c| route.pick(c)).collect::<Vec<_>>(), [1, 1, 1]);
        // A failure on another endpoint says nothing about the leader.
        route.forget(0);
        assert_eq!(route.pick(0), 1);
        route.forget(1);
        assert_eq!((0..3).map(|c| route.pick(c)).collect::<Vec<_>>(), [0, 1, 2]);
    }
}
