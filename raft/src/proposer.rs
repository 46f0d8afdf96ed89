//! Group commit: concurrent client commands are coalesced into one log entry,
//! so one fsync (and one replication round) serves many writes, and each
//! caller gets its own result back.
//!
//! A batch that is full (`max_batch` commands) or carries part of a
//! multi-command call (an import request, a follower's forwarded batch) goes
//! to raft while up to `max_inflight - 1` others are in flight, keeping the
//! pipe busy: its caller batched already. A batch of single commands waits
//! until nothing else is in flight, and everything queued by then (up to
//! `max_batch`) joins it. It then waits, for at most a millisecond, until
//! three quarters of the callers the last such batch answered have sent
//! their next command. Batches therefore grow with load and stay at one
//! command when idle, adding no latency. Callers that do not come back at
//! once cost the batch up to that millisecond: 64 clients paced to 2 000
//! and 5 000 registrations/s saw their p50 rise by 0.2-0.3 ms, in 40 %
//! fewer entries (session 41).
//!
//! Every entry costs every replica an AppendEntries round, a log write, an
//! fsync and an apply call whatever it holds (~1.5 ms of CPU over three
//! nodes, fitted from session 9's runs at 16, 64 and 256 clients; 2.3 ms
//! in session 40's fit, against 56 µs per registration), so
//! under concurrent single writes one partial batch in flight beats two: at
//! 64 registering clients entries held ~30 commands instead of ~19, the
//! nodes spent 116-118 instead of 131-135 µs of CPU per registration, and
//! 11.2-11.3 k instead of 10.3-10.7 k registrations/s went through, with
//! lower p50 and p99 (alternating runs; 4, 16 and 256 clients no worse). Imports keep two
//! full batches in flight: with every batch alone, 3 M cards took 2 %
//! longer, as they did when a batch that was merely not full waited too
//! (the proposer often runs while an import request is still being queued).

use std::sync::Arc;
use std::time::Duration;

use futures::future::{FutureExt, Shared as SharedFuture};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::replica::Shared;
use crate::turns;
use crate::ReplicaError;

type Reply = oneshot::Sender<Result<(u64, Vec<u8>), ReplicaError>>;

/// Identifies one multi-command call while it is queued: the caller holds a
/// clone until it has sent its last command (or gave up), so the proposer
/// knows which calls may still send more.
type Call = Arc<()>;

struct Pending {
    command: Vec<u8>,
    reply: Reply,
    /// Sent here by a follower that took this node for the leader. It is
    /// never forwarded on: a leader that lost leadership while the batch
    /// waited would otherwise forward it to the new leader, whose own
    /// in-flight forwards may be waiting on this node — a cycle only the
    /// request timeout breaks.
    forwarded: bool,
    /// Set for a command of a call that sent several: they must apply in
    /// the order sent even when they land in different batches.
    call: Option<Call>,
}

pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

/// Queue depth before callers wait: bounds memory under a flood.
const QUEUE: usize = 16_384;

impl Proposer {
    pub fn start(shared: Arc<Shared>, max_batch: usize, max_inflight: usize) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let max_inflight = u32::try_from(max_inflight.max(1)).unwrap_or(u32::MAX);
        let inflight = Arc::new(Semaphore::new(max_inflight as usize));
        tokio::spawn(run(rx, shared, inflight, max_inflight, max_batch.max(1)));
        Proposer { tx }
    }

    pub async fn propose(&self, command: Vec<u8>) -> Result<(u64, Vec<u8>), ReplicaError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                command,
                reply,
                forwarded: false,
                call: None,
            })
            .await
            .map_err(|_| ReplicaError::ShuttingDown)?;
        rx.await.map_err(|_| ReplicaError::ShuttingDown)?
    }

    /// Queues several commands at once (an import request, a follower's
    /// forwarded batch): they coalesce with everything else queued here
    /// into the next entries, and apply in the order given.
    pub async fn propose_many(
        &self,
        commands: Vec<Vec<u8>>,
        forwarded: bool,
    ) -> Vec<Result<(u64, Vec<u8>), ReplicaError>> {
        let call = (commands.len() > 1).then(Call::default);
        let mut receivers = Vec::with_capacity(commands.len());
        for command in commands {
            let (reply, rx) = oneshot::channel();
            let pending = Pending {
                command,
                reply,
                forwarded,
                call: call.clone(),
            };
            if self.tx.send(pending).await.is_err() {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(Err(ReplicaError::ShuttingDown));
                receivers.push(rx);
            } else {
                receivers.push(rx);
            }
        }
        // Every command is queued: the proposer may now stop holding the
        // order of later batches for this call.
        drop(call);
        let mut out = Vec::with_capacity(receivers.len());
        for rx in receivers {
            out.push(rx.await.unwrap_or(Err(ReplicaError::ShuttingDown)));
        }
        out
    }
}

/// Proposes locally when this node leads, else forwards to the leader.
/// `ordered` (when given) is sent once nothing proposed after this batch can
/// be ordered before it: locally, when the entry is in raft's queue; when
/// forwarded, only once the leader has answered (two forwarded batches in
/// flight could reach the leader's queue in either order).
async fn submit(
    shared: &Shared,
    commands: Vec<Vec<u8>>,
    may_forward: bool,
    ordered: Option<oneshot::Sender<()>>,
) -> Result<Vec<(u64, Vec<u8>)>, ReplicaError> {
    let _gate = shared.gate.read().await;
    if shared.is_leader() {
        shared.propose_here(commands, ordered).await
    } else if may_forward {
        shared.forward(commands).await
    } else {
        // Nothing was proposed: the follower retries with the new leader.
        Err(ReplicaError::NoLeader)
    }
}

/// Fires (or is dropped) once a batch, and every held batch before it, can
/// no longer be overtaken by a later proposal.
type Signal = SharedFuture<oneshot::Receiver<()>>;

/// How a batch must be ordered against the batches formed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchOrder {
    /// It continues a call an earlier batch began: it may be proposed only
    /// once every earlier held batch is ordered.
    waits: bool,
    /// A call in it may continue in a later batch: later batches that
    /// continue it wait for this one.
    holds: bool,
}

/// The multi-command calls that have commands in batches already formed and
/// may still send more.
#[derive(Default)]
struct OpenCalls {
    open: Vec<Call>,
}

impl OpenCalls {
    /// Takes the call tags out of a new batch and says how it is ordered.
    fn admit(&mut self, batch: &mut [Pending]) -> BatchOrder {
        let mut waits = false;
        let mut mine: Vec<*const ()> = Vec::new();
        for call in batch.iter_mut().filter_map(|p| p.call.take()) {
            let id = Arc::as_ptr(&call);
            if mine.contains(&id) {
                continue;
            }
            mine.push(id);
            if self.open.iter().any(|c| Arc::ptr_eq(c, &call)) {
                waits = true;
            } else {
                self.open.push(call);
            }
        }
        // Held only by this list: its caller has queued every command and
        // all of them are in batches formed by now.
        self.open.retain(|c| Arc::strong_count(c) > 1);
        let holds = self.open.iter().any(|c| mine.contains(&Arc::as_ptr(c)));
        BatchOrder { waits, holds }
    }
}

/// Whether a batch goes to raft alone: it holds single commands only (no
/// part of a multi-command call) and is not full.
fn goes_alone(batch: &[Pending], max_batch: usize) -> bool {
    batch.len() < max_batch && batch.iter().all(|p| p.call.is_none())
}

/// In-flight slots a batch takes: all of them when it [`goes_alone`], else
/// one.
fn slots_needed(alone: bool, max_inflight: u32) -> u32 {
    if alone {
        max_inflight
    } else {
        1
    }
}

/// How long a batch of single commands waits, at most, for the callers
/// the last entry answered to send their next commands. tokio's timer ticks
/// in milliseconds: 300 µs or 2 ms served no more registrations than 1 ms.
const PATIENCE: Duration = Duration::from_millis(1);

/// How many commands a batch of single commands waits for: three quarters
/// of those the last such batch answered (callers that send one command
/// after another are back within a client's round trip; the last few
/// stragglers are not worth holding everyone for), plus those already
/// queued. Waiting for all of them kept ~64 commands per entry at 64
/// clients but left the cores idle while they came: 10.2 k instead of
/// 12 k registrations/s. Half of them grew entries less (48 instead of
/// 54) and was no faster than three quarters.
fn expected_batch(last_singles: usize, queued: usize) -> usize {
    last_singles * 3 / 4 + queued
}

/// Lets runnable tasks queue commands until `batch` holds `target` (at
/// most `max_batch`): first for up to [`turns::TURNS`] scheduler turns,
/// then waiting for arrivals up to [`PATIENCE`]. A batch already at the
/// target goes at once.
async fn top_up(
    rx: &mut mpsc::Receiver<Pending>,
    batch: &mut Vec<Pending>,
    target: usize,
    max_batch: usize,
) {
    let target = target.min(max_batch);
    if batch.len() >= target {
        return;
    }
    turns::yield_until(|| {
        take_queued(rx, batch, max_batch);
        batch.len() >= target
    })
    .await;
    if batch.len() >= target {
        return;
    }
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while batch.len() < target {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => {
                batch.push(p);
                take_queued(rx, batch, max_batch);
            }
            _ => break,
        }
    }
}

/// Moves queued commands into `batch` until it holds `max_batch`.
fn take_queued(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>, max_batch: usize) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Pending>,
    shared: Arc<Shared>,
    inflight: Arc<Semaphore>,
    max_inflight: u32,
    max_batch: usize,
) {
    // Batches go to raft side by side, and tokio runs spawned tasks in no
    // set order (the newest first), so one caller's commands cut into
    // several batches (an import request) could apply out of the order they
    // were sent — and a rule such as "a sixth card needs strict
    // verification" decides by what came before: a 10 M-card import refused
    // one row because of it. A batch that continues such a call therefore
    // waits until every batch before it that may hold the call's earlier
    // commands is ordered; other batches (single commands from concurrent
    // callers, which may apply in any order) do not wait. Forwarded batches
    // are ordered only when the leader answers, so a follower forwarding
    // only single commands keeps several forwards in flight.
    let mut calls = OpenCalls::default();
    let mut last_held: Option<Signal> = None;
    let mut last_singles = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        take_queued(&mut rx, &mut batch, max_batch);
        let alone = goes_alone(&batch, max_batch);
        let slots = slots_needed(alone, max_inflight);
        let Ok(permit) = inflight.clone().acquire_many_owned(slots).await else {
            return;
        };
        // Everything that arrived while we waited for the slots joins it.
        take_queued(&mut rx, &mut batch, max_batch);
        if alone {
            let expected = expected_batch(last_singles, batch.len());
            top_up(&mut rx, &mut batch, expected, max_batch).await;
            last_singles = batch.len();
        }
        let order = calls.admit(&mut batch);
        let after = if order.waits { last_held.clone() } else { None };
        let ordered = order.holds.then(|| {
            let (ordered, own) = oneshot::channel();
            let (done, signal) = oneshot::channel();
            let before = last_held.replace(signal.shared());
            tokio::spawn(async move {
                // Sent or dropped: either way that batch is ordered or was
                // never proposed.
                if let Some(before) = before {
                    let _ = before.await;
                }
                let _ = own.await;
                let _ = done.send(());
            });
            ordered
        });
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Some(after) = after {
                let _ = after.await;
            }
            let may_forward = !batch.iter().any(|p| p.forwarded);
            let (commands, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            match submit(&shared, commands, may_forward, ordered).await {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(call: Option<&Call>) -> Pending {
        Pending {
            command: Vec::new(),
            reply: oneshot::channel().0,
            forwarded: false,
            call: call.cloned(),
        }
    }

    fn order(waits: bool, holds: bool) -> BatchOrder {
        BatchOrder { waits, holds }
    }

    #[test]
    fn only_full_batches_and_calls_share_the_pipe() {
        let singles = |n| (0..n).map(|_| pending(None)).collect::<Vec<_>>();
        assert_eq!(slots_needed(goes_alone(&singles(4), 4), 2), 1);
        assert_eq!(slots_needed(goes_alone(&singles(3), 4), 2), 2);
        assert_eq!(slots_needed(goes_alone(&singles(1), 4), 3), 3);
        assert_eq!(slots_needed(goes_alone(&singles(1), 4), 1), 1);
        let call = Call::default();
        let mut mixed = singles(2);
        mixed.push(pending(Some(&call)));
        assert_eq!(slots_needed(goes_alone(&mixed, 4), 2), 1);
    }

    /// Sends one command after `n` scheduler turns.
    fn late_command(tx: &mpsc::Sender<Pending>, n: u32) {
        let tx = tx.clone();
        turns::after_turns(n, move || {
            let _ = tx.try_send(pending(None));
        });
    }

    /// Sends one command after `delay` of (paused) tokio time.
    fn command_after(tx: &mpsc::Sender<Pending>, delay: Duration) {
        let tx = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.try_send(pending(None));
        });
    }

    #[test]
    fn a_batch_expects_three_quarters_of_the_last_callers_and_the_queued() {
        assert_eq!(expected_batch(0, 1), 1);
        assert_eq!(expected_batch(1, 1), 1, "a lone caller never waits");
        assert_eq!(expected_batch(64, 0), 48);
        assert_eq!(expected_batch(40, 24), 54);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_batch_of_singles_waits_for_callers_within_its_patience() {
        let (tx, mut rx) = mpsc::channel(16);
        // Below the target: commands that arrive within the turns join it.
        late_command(&tx, 0);
        late_command(&tx, 3);
        let mut batch = vec![pending(None)];
        top_up(&mut rx, &mut batch, 3, 16).await;
        assert_eq!(batch.len(), 3);

        // Already at the target: it goes without waiting for the late one.
        late_command(&tx, 0);
        let mut batch = vec![pending(None)];
        top_up(&mut rx, &mut batch, 1, 16).await;
        assert_eq!(batch.len(), 1);
        take_queued(&mut rx, &mut batch, 16);
        assert_eq!(batch.len(), 1, "the late command had not run yet");

        // Past the turns but within the patience: it waits for it, and
        // goes as soon as the target is reached.
        let mut batch = vec![pending(None)];
        late_command(&tx, turns::TURNS + 5);
        let started = tokio::time::Instant::now();
        top_up(&mut rx, &mut batch, 3, 16).await;
        assert_eq!(batch.len(), 3, "the one left over from before joined too");
        assert!(started.elapsed() < PATIENCE);

        // Fewer come than the target: it goes after its patience with
        // those that came, never hanging, and one that comes later waits
        // for the next batch.
        command_after(&tx, PATIENCE * 3);
        let mut batch = vec![pending(None)];
        let started = tokio::time::Instant::now();
        top_up(&mut rx, &mut batch, 64, 16).await;
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() >= PATIENCE && started.elapsed() < PATIENCE * 3);
        take_queued(&mut rx, &mut batch, 16);
        assert_eq!(batch.len(), 1);
        tokio::time::sleep(PATIENCE * 3).await;
        take_queued(&mut rx, &mut batch, 16);
        assert_eq!(batch.len(), 2, "it came after all");
    }

    #[test]
    fn single_commands_neither_wait_nor_hold() {
        let mut calls = OpenCalls::default();
        let mut batch: Vec<_> = (0..5).map(|_| pending(None)).collect();
        assert_eq!(calls.admit(&mut batch), order(false, false));
        assert!(calls.open.is_empty());
    }

    #[test]
    fn a_call_cut_into_three_batches_holds_then_waits() {
        let mut calls = OpenCalls::default();
        let call = Call::default();
        let mut first = vec![pending(None), pending(Some(&call)), pending(Some(&call))];
        assert_eq!(calls.admit(&mut first), order(false, true));
        let mut middle = vec![pending(Some(&call)), pending(None)];
        assert_eq!(calls.admit(&mut middle), order(true, true));
        // The caller has queued its last command.
        let mut last = vec![pending(Some(&call))];
        drop(call);
        assert_eq!(calls.admit(&mut last), order(true, false));
        assert!(calls.open.is_empty());
        let mut after = vec![pending(None)];
        assert_eq!(calls.admit(&mut after), order(false, false));
    }

    #[test]
    fn a_call_inside_one_batch_does_not_hold() {
        let mut calls = OpenCalls::default();
        let call = Call::default();
        let mut batch = vec![pending(Some(&call)), pending(Some(&call))];
        drop(call);
        assert_eq!(calls.admit(&mut batch), order(false, false));
        assert!(calls.open.is_empty());
    }

    #[test]
    fn a_batch_without_the_open_call_does_not_wait_but_the_call_stays_open() {
        let mut calls = OpenCalls::default();
        let call = Call::default();
        let mut first = vec![pending(Some(&call))];
        assert_eq!(calls.admit(&mut first), order(false, true));
        let mut others = vec![pending(None), pending(None)];
        assert_eq!(calls.admit(&mut others), order(false, false));
        let mut rest = vec![pending(Some(&call))];
        assert_eq!(calls.admit(&mut rest), order(true, true));
    }

    #[test]
    fn commands_still_queued_keep_their_call_open() {
        let mut calls = OpenCalls::default();
        let call = Call::default();
        let mut first = vec![pending(Some(&call))];
        let queued = pending(Some(&call));
        // The caller is done sending; one of its commands is still queued.
        drop(call);
        assert_eq!(calls.admit(&mut first), order(false, true));
        let mut rest = vec![queued];
        assert_eq!(calls.admit(&mut rest), order(true, false));
        assert!(calls.open.is_empty());
    }

    #[test]
    fn an_abandoned_call_is_forgotten() {
        let mut calls = OpenCalls::default();
        let call = Call::default();
        let mut first = vec![pending(Some(&call))];
        assert_eq!(calls.admit(&mut first), order(false, true));
        // The caller was cancelled before sending the rest.
        drop(call);
        let mut next = vec![pending(None)];
        assert_eq!(calls.admit(&mut next), order(false, false));
        assert!(calls.open.is_empty());
    }
}
