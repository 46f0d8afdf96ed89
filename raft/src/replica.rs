//! A raft member as the application sees it: propose a command (group
//! committed, forwarded to the leader when needed) and pass a linearizable
//! read barrier (coalesced, ReadIndex from followers).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, ServerState};
use tonic::transport::Channel;

use crate::apply_backlog::ApplyBacklog;
use crate::lease::Lease;
use crate::network::{Channels, Network};
use crate::pb::raft_service_client::RaftServiceClient;
use crate::pb::{Empty, ForwardRequest};
use crate::proposer::Proposer;
use crate::reads::{ReadBarrier, ReadIndexCounts, ReadMode, ReadPoint};
use crate::types::{applied_index, NodeId, Proposal, Raft, TypeConfig};
use crate::unapplied::Unapplied;
use crate::ReplicaError;

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub node_id: NodeId,
    pub raft: openraft::Config,
    /// Most commands coalesced into one log entry.
    pub max_batch: usize,
    /// Most proposals in flight at once (pipelining through raft); only
    /// full batches (`max_batch` commands) and batches carrying part of a
    /// multi-command call share the pipe, a batch of single commands goes
    /// alone (see [`crate::proposer`]).
    pub max_inflight: usize,
    /// Deadline of forwarded requests and read barriers.
    pub request_timeout: Duration,
    /// How this node reaches its peers: mTLS with its node certificate, or
    /// plaintext when none (insecure mode).
    pub peer_tls: Option<Arc<dyn crate::network::PeerTls>>,
    /// The newest revision of the application's replicated rules this build
    /// applies (see [`crate::capabilities`]).
    pub rules_supported: u32,
    /// What the log holds unapplied: the log store given to
    /// [`Replica::start`] must report to it.
    pub unapplied: Arc<Unapplied>,
    /// A leader holding its lease answers read indexes without a quorum
    /// round (see [`crate::lease`]).
    pub lease_reads: bool,
}

/// Longest `add_learner` waits for the new learner to catch up; inside the
/// server's 30 s call limit. A learner still streaming a big snapshot by
/// then goes on catching up; the caller is told it has not yet.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(25);

/// Longest a request waits for a leader to become known before UNAVAILABLE.
const LEADER_WAIT: Duration = Duration::from_secs(2);

/// How long a leader keeps asking a quorum to confirm it for a read round
/// (at most half the request timeout): several election timeouts, after
/// which a majority that could not hear it has elected another leader.
const QUORUM_PATIENCE: Duration = Duration::from_secs(1);

/// Pause between two such attempts. A failed attempt mostly took a whole
/// heartbeat interval already; the pause only keeps an attempt refused at
/// once (no peer reachable) from spinning.
const QUORUM_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What the proposer and the read barrier share: the raft handle and the way
/// to reach the leader.
pub struct Shared {
    pub raft: Raft,
    pub node_id: NodeId,
    pub channels: Channels,
    pub request_timeout: Duration,
    /// Every batch passes this (shared) on its way into raft; a leadership
    /// transfer holds it exclusively so no write lands on a leader that is
    /// handing over.
    pub(crate) gate: tokio::sync::RwLock<()>,
    pub rules_supported: u32,
    pub(crate) lease: Arc<Lease>,
    /// The highest leadership this node heard an AppendEntries or a
    /// snapshot from (see [`Shared::elect_for`]).
    pub(crate) heard: tokio::sync::Mutex<Option<openraft::Vote<NodeId>>>,
}

/// The leader's wall clock, in ms since the Unix epoch. Only the leader calls
/// this, when it stamps a proposal; replicas never read their own clock.
pub fn leader_stamp_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// The leader this node currently knows of, with its address.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }

    /// The leader, waiting briefly when none is known yet. A node that was
    /// just started, just promoted, or is watching an election learns the
    /// leader within an election timeout or so; failing at once would push
    /// that ordinary gap onto every client as UNAVAILABLE.
    async fn known_leader(&self) -> Result<(NodeId, String), ReplicaError> {
        if let Some(l) = self.leader() {
            return Ok(l);
        }
        let mut changes = self.raft.metrics();
        let wait = async {
            loop {
                if let Some(l) = self.leader() {
                    return Ok(l);
                }
                if changes.changed().await.is_err() {
                    return Err(ReplicaError::ShuttingDown);
                }
            }
        };
        tokio::time::timeout(self.request_timeout.min(LEADER_WAIT), wait)
            .await
            .unwrap_or(Err(ReplicaError::NoLeader))
    }

    async fn leader_client(&self) -> Result<(NodeId, RaftServiceClient<Channel>), ReplicaError> {
        let (id, addr) = self.known_leader().await?;
        Ok((id, self.client_of(&addr)?))
    }

    fn client_of(&self, addr: &str) -> Result<RaftServiceClient<Channel>, ReplicaError> {
        let channel = self
            .channels
            .get(addr)
            .map_err(|e| ReplicaError::Rejected(format!("leader address {addr}: {e}")))?;
        Ok(RaftServiceClient::new(channel))
    }

    /// Appends a batch on this node, which must be the leader; each
    /// command's log index and result. Sends on `queued` (when given) once
    /// the entry is in raft's queue, ahead of any entry proposed after.
    pub async fn propose_here(
        &self,
        commands: Vec<Vec<u8>>,
        queued: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReplicaError> {
        let (index, results) = self.propose_local(commands, queued).await?;
        Ok(results.into_iter().map(|r| (index, r)).collect())
    }

    /// Appends a batch on this node, which must be the leader.
    async fn propose_local(
        &self,
        commands: Vec<Vec<u8>>,
        queued: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<(u64, Vec<Vec<u8>>), ReplicaError> {
        let n = commands.len();
        let proposal = Proposal {
            stamp_ms: leader_stamp_ms(),
            commands: commands
                .into_iter()
                .map(serde_bytes::ByteBuf::from)
                .collect(),
        };
        let answer = self
            .raft
            .client_write_ff(proposal)
            .await
            .map_err(|e| ReplicaError::Fatal(e.to_string()))?;
        if let Some(queued) = queued {
            let _ = queued.send(());
        }
        // Raft dropped the answer (it stopped) with the entry perhaps in
        // the log: the outcome is unknown until a retry.
        let answer = answer.await.map_err(|_| {
            ReplicaError::Indeterminate("raft stopped before answering the write".into())
        })?;
        match answer {
            Ok(resp) => {
                if resp.data.results.len() != n {
                    return Err(ReplicaError::Fatal(format!(
                        "state machine returned {} results for {n} commands",
                        resp.data.results.len()
                    )));
                }
                let results = resp
                    .data
                    .results
                    .into_iter()
                    .map(|b| b.into_vec())
                    .collect();
                Ok((resp.log_id.index, results))
            }
            // Leadership moved while the entry may already be in the log: the
            // outcome is unknown until a retry with the same request id.
            Err(ClientWriteError::ForwardToLeader(f)) => Err(ReplicaError::Indeterminate(format!(
                "leadership moved to {:?} during the write",
                f.leader_id
            ))),
            Err(e) => Err(ReplicaError::Rejected(e.to_string())),
        }
    }

    /// Sends a batch to the leader, which queues it with its own writes.
    /// Returns each command's log index and result.
    pub async fn forward(
        &self,
        commands: Vec<Vec<u8>>,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReplicaError> {
        let n = commands.len();
        let (leader, addr) = self.known_leader().await?;
        if leader == self.node_id {
            // This node won the election the batch was waiting on. Sent to
            // itself, the batch would queue behind the proposer slot it
            // holds until the request timeout: after a leader crash that
            // stalled every write for the whole timeout (3 s).
            return self.propose_here(commands, None).await;
        }
        let mut client = self.client_of(&addr)?;
        let mut req = tonic::Request::new(ForwardRequest {
            commands: commands.into_iter().map(Into::into).collect(),
        });
        req.set_timeout(self.request_timeout);
        match client.forward(req).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                if resp.results.len() != n || resp.applied_indexes.len() != n {
                    return Err(ReplicaError::Fatal(format!(
                        "leader {leader} returned {} results for {n} commands",
                        resp.results.len()
                    )));
                }
                Ok(resp
                    .applied_indexes
                    .into_iter()
                    .zip(resp.results.into_iter().map(|b| b.to_vec()))
                    .collect())
            }
            // The leader refused before proposing: nothing was applied.
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(ReplicaError::NoLeader),
            Err(s) => Err(ReplicaError::Indeterminate(format!(
                "forward to leader {leader}: {}",
                s.message()
            ))),
        }
    }

    /// Asks the leader for a read index (ReadIndex from a follower).
    pub async fn remote_read_index(&self) -> Result<ReadPoint, ReplicaError> {
        let (leader, mut client) = self.leader_client().await?;
        let mut req = tonic::Request::new(Empty {});
        req.set_timeout(self.request_timeout);
        match client.read_index(req).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(ReadPoint {
                    index: r.index,
                    term: r.term,
                })
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(ReplicaError::NoLeader),
            Err(s) => Err(ReplicaError::Rejected(format!(
                "read index from leader {leader}: {}",
                s.message()
            ))),
        }
    }

    /// Confirms leadership with a quorum and returns the index a read must
    /// wait for. Only valid on the leader.
    ///
    /// openraft gives each follower one heartbeat interval to acknowledge
    /// and fails the whole round when a quorum does not: followers busy
    /// applying a big import or syncing a snapshot miss that window now
    /// and then, and every read of the round failed UNAVAILABLE with the
    /// leader still in office. A leader asks again for a while; past a few
    /// election timeouts a majority that cannot hear it has moved on.
    /// Each attempt reads its own index after the reads it serves arrived,
    /// so a later attempt is as linearizable as the first.
    pub async fn leader_read_index(&self) -> Result<ReadPoint, ReplicaError> {
        let give_up = tokio::time::Instant::now() + (self.request_timeout / 2).min(QUORUM_PATIENCE);
        loop {
            match self.raft.get_read_log_id().await {
                Ok((read, _applied)) => {
                    return Ok(read.map_or(ReadPoint { index: 0, term: 0 }, |l| ReadPoint {
                        index: l.index,
                        term: l.leader_id.term,
                    }))
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)))
                    if self.is_leader() =>
                {
                    if tokio::time::Instant::now() + QUORUM_RETRY_PAUSE >= give_up {
                        return Err(ReplicaError::NoQuorum(format!(
                            "the leader could not confirm it still leads \
                             (acknowledged by {:?} of {})",
                            q.got, q.cluster
                        )));
                    }
                    tokio::time::sleep(QUORUM_RETRY_PAUSE).await;
                }
                Err(RaftError::APIError(_)) => return Err(ReplicaError::NoLeader),
                Err(RaftError::Fatal(e)) => return Err(ReplicaError::Fatal(e.to_string())),
            }
        }
    }

    /// The index this node has applied up to.
    pub fn applied(&self) -> u64 {
        applied_index(&self.raft.metrics().borrow())
    }

    /// Waits until this node has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), ReplicaError> {
        if self.applied() >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(self.request_timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ReplicaError::Timeout("apply"),
                openraft::metrics::WaitError::ShuttingDown => ReplicaError::ShuttingDown,
            })
    }
}

pub struct Replica {
    pub shared: Arc<Shared>,
    unapplied: Arc<Unapplied>,
    apply_backlog: Arc<ApplyBacklog>,
    proposer: Proposer,
    local_reads: ReadBarrier,
    leader_reads: ReadBarrier,
    read_counts: Arc<ReadIndexCounts>,
}

impl Replica {
    pub async fn start<LS, SM>(
        config: ReplicaConfig,
        log_store: LS,
        state_machine: SM,
    ) -> Result<Arc<Replica>, ReplicaError>
    where
        LS: RaftLogStorage<TypeConfig>,
        SM: RaftStateMachine<TypeConfig>,
    {
        let channels = Channels::new(config.peer_tls.clone());
        let raft_config = Arc::new(
            config
                .raft
                .validate()
                .map_err(|e| ReplicaError::Fatal(format!("raft config: {e}")))?,
        );
        let lease = Arc::new(Lease::new(config.lease_reads));
        let network = Network {
            channels: channels.clone(),
            lease: lease.clone(),
        };
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ReplicaError::Fatal(e.to_string()))?;
        config.unapplied.follow(raft.metrics());
        let shared = Arc::new(Shared {
            raft,
            node_id: config.node_id,
            channels,
            request_timeout: config.request_timeout,
            gate: tokio::sync::RwLock::new(()),
            rules_supported: config.rules_supported,
            lease,
            heard: tokio::sync::Mutex::new(None),
        });
        Ok(Arc::new(Replica {
            proposer: Proposer::start(shared.clone(), config.max_batch, config.max_inflight),
            local_reads: ReadBarrier::new(shared.clone(), ReadMode::AnyRole),
            leader_reads: ReadBarrier::new(shared.clone(), ReadMode::LeaderOnly),
            read_counts: Arc::default(),
            shared,
            apply_backlog: Arc::new(ApplyBacklog::new(config.unapplied.clone())),
            unapplied: config.unapplied,
        }))
    }

    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// What this node, as a follower, has committed and not yet applied.
    pub fn apply_backlog(&self) -> &Arc<ApplyBacklog> {
        &self.apply_backlog
    }

    /// Replicates one command; returns the log index it was applied at and
    /// the state machine's result for it.
    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), ReplicaError> {
        self.proposer.propose(command).await
    }

    /// Queues several commands at once (an import batch); they coalesce
    /// with everything else queued into the next entries.
    pub async fn propose_many(
        &self,
        commands: Vec<Vec<u8>>,
    ) -> Vec<Result<(u64, Vec<u8>), ReplicaError>> {
        self.proposer.propose_many(commands, false).await
    }

    /// Queues a follower's forwarded batch on this (leader) node; if
    /// leadership moves before it is proposed it fails with `NoLeader`
    /// (nothing applied) instead of being forwarded again.
    pub async fn propose_forwarded(
        &self,
        commands: Vec<Vec<u8>>,
    ) -> Vec<Result<(u64, Vec<u8>), ReplicaError>> {
        self.proposer.propose_many(commands, true).await
    }

    /// After this returns Ok, reading the local state machine is linearizable.
    pub async fn linearizable_barrier(&self) -> Result<(), ReplicaError> {
        let point = self.read_index().await?;
        self.shared.wait_applied(point.index).await
    }

    /// [`Replica::linearizable_barrier`] for a read of only the keys
    /// `tokens` stand for (see [`crate::unapplied::Footprint`]): it waits
    /// for the unapplied entries up to the read index that may touch them,
    /// not for the others. Returns the read index when it skipped any:
    /// state other than those keys is linearizable only once
    /// [`Replica::wait_applied`] has returned for it. `None`: everything
    /// up to the read index is applied.
    pub async fn linearizable_barrier_for(
        &self,
        tokens: &[u64],
    ) -> Result<Option<u64>, ReplicaError> {
        let point = self.read_index().await?;
        let index = point.index;
        if self.shared.applied() >= index {
            return Ok(None);
        }
        // Entries up to the read index are the leader's once this node
        // holds the leader's very entry there (Log Matching), or has
        // committed the index; before that, what it holds at those indexes
        // may yet be replaced. A follower learns of a commit only with the
        // next AppendEntries, which a bulk import's entries hold up.
        if !self.unapplied.holds(point.index, point.term) {
            tokio::time::timeout(
                self.shared.request_timeout,
                self.unapplied.wait_committed(index),
            )
            .await
            .map_err(|_| ReplicaError::Timeout("commit"))?;
        }
        Ok(self.wait_touching(index, tokens).await?.then_some(index))
    }

    /// After [`Replica::linearizable_barrier_for`] returned `Some(index)`:
    /// waits for the unapplied entries up to `index` that may touch
    /// `tokens` too, for a read whose next keys depend on what it read
    /// first. True when it skipped any.
    pub async fn wait_touching(&self, index: u64, tokens: &[u64]) -> Result<bool, ReplicaError> {
        let must = self
            .unapplied
            .must_apply(self.shared.applied(), index, tokens);
        self.shared.wait_applied(must).await?;
        Ok(must < index)
    }

    /// Waits until this node has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), ReplicaError> {
        self.shared.wait_applied(index).await
    }

    /// The index a read arriving now must wait for.
    async fn read_index(&self) -> Result<ReadPoint, ReplicaError> {
        // On the leader, local reads join the rounds run for the followers'
        // ReadIndex requests: one quorum round then serves both, where two
        // barriers ran two rounds side by side. A leader that lost its post
        // in between falls back to asking the new one.
        if self.shared.is_leader() {
            match self.leader_read_index().await {
                Err(ReplicaError::NoLeader) => self.local_reads.read_index().await,
                other => other,
            }
        } else {
            self.local_reads.read_index().await
        }
    }

    /// Read index for a follower's ReadIndex request; the leader only.
    pub async fn leader_read_index(&self) -> Result<ReadPoint, ReplicaError> {
        if let Some(point) = self.lease_read_index() {
            self.read_counts.lease.fetch_add(1, Ordering::Relaxed);
            return Ok(point);
        }
        let point = self.leader_reads.read_index().await?;
        self.read_counts.round.fetch_add(1, Ordering::Relaxed);
        Ok(point)
    }

    /// How many read indexes this node answered as leader, from its lease
    /// and with a quorum round.
    pub fn read_counts(&self) -> Arc<ReadIndexCounts> {
        self.read_counts.clone()
    }

    /// The read index when this node leads and holds its lease: the commit
    /// index as this node knows it, at least its own term's first entry
    /// (what earlier leaders committed lies before it). Every write
    /// acknowledged before the read arrived is applied on the leader that
    /// took it, and so committed here, unless a later leader took it: the
    /// lease, checked after the index is taken, rules that out up to now.
    /// Every entry from the term's first on is this term's.
    fn lease_read_index(&self) -> Option<ReadPoint> {
        let me = self.shared.node_id;
        let (vote, voters) = {
            let m = self.shared.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader || m.current_leader != Some(me) || !m.vote.committed {
                return None;
            }
            let config = &m.membership_config;
            // A membership change under way, or one appended that the
            // metrics do not show yet: which quorum counts is not plain.
            let shown = config.log_id().as_ref().map_or(0, |l| l.index);
            if config.membership().get_joint_config().len() != 1
                || self.unapplied.membership_at() > shown
            {
                return None;
            }
            let voters: BTreeSet<NodeId> = config.membership().voter_ids().collect();
            (m.vote, voters)
        };
        let term = vote.leader_id.term;
        let start = self.unapplied.term_start(term)?;
        let index = self.unapplied.committed_index().max(start);
        self.shared
            .lease
            .holds(Instant::now(), me, &vote, &voters)
            .then_some(ReadPoint { index, term })
    }

    /// Adds `id` as a non-voting learner and returns once it has caught up
    /// with the log (by snapshot if it is far behind). Leader only.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<u64, ReplicaError> {
        let index = match self
            .shared
            .raft
            .add_learner(id, BasicNode { addr: addr.clone() }, true)
            .await
        {
            Ok(r) => r.log_id.index,
            Err(e) => return Err(membership_error(e)),
        };
        // openraft's "blocking" add waits a fixed 500 ms and ignores the
        // outcome; callers are promised a learner that has caught up.
        self.shared
            .raft
            .wait(Some(LEARNER_CATCH_UP))
            .metrics(
                |m| crate::transfer::matched(m, id) >= Some(index),
                "the learner to catch up",
            )
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ReplicaError::Membership(format!(
                    "node {id} was added as a learner but has not caught up within {}s \
                     (it goes on catching up if it is running at {addr}); \
                     check `oneid status` before promoting it",
                    LEARNER_CATCH_UP.as_secs()
                )),
                openraft::metrics::WaitError::ShuttingDown => ReplicaError::ShuttingDown,
            })?;
        Ok(index)
    }

    /// Makes exactly `voters` the voting members (joint consensus, so the
    /// cluster stays available throughout). Members left out are removed.
    /// Every new voter must already be a member (add it as a learner first).
    pub async fn change_voters(
        &self,
        voters: std::collections::BTreeSet<NodeId>,
    ) -> Result<u64, ReplicaError> {
        if voters.is_empty() {
            return Err(ReplicaError::Membership(
                "the voter set cannot be empty".into(),
            ));
        }
        match self.shared.raft.change_membership(voters, false).await {
            Ok(r) => Ok(r.log_id.index),
            Err(e) => Err(membership_error(e)),
        }
    }

    /// Initializes a brand-new cluster; a no-op error on an initialized node.
    pub async fn initialize(&self, members: Vec<(NodeId, String)>) -> Result<bool, ReplicaError> {
        let nodes: std::collections::BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode { addr }))
            .collect();
        match self.shared.raft.initialize(nodes).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(ReplicaError::Fatal(e.to_string())),
        }
    }
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> ReplicaError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ReplicaError::Membership(match (f.leader_id, f.leader_node) {
                (Some(id), Some(node)) => {
                    format!("this node is not the leader; node {id} at {} is", node.addr)
                }
                _ => "this node is not the leader and no leader is known".into(),
            })
        }
        RaftError::APIError(e) => ReplicaError::Membership(e.to_string()),
        RaftError::Fatal(e) => ReplicaError::Fatal(e.to_string()),
    }
}
