//! The leader's housekeeping: the re-verification sweep and the trim of
//! old request ids. What is due is decided inside apply from the replicated
//! clock; this task only decides *when* to propose, so replicas never act on
//! their own clocks.

use std::sync::Arc;
use std::time::Duration;

use oneid_raft::replica::leader_stamp_ms;
use oneid_raft::Replica;
use tokio::sync::watch;

use crate::apply::REQUEST_ID_RETENTION_MS;
use crate::command::{self, Command, Envelope, Outcome, SweepOverdue, TrimRequestIds};
use crate::reader::Reader;

/// How often the leader looks for due work: the delay between a deadline
/// and the suspension is at most about this long.
const INTERVAL: Duration = Duration::from_millis(500);
/// Cards suspended per sweep command; a longer backlog takes more rounds.
const PER_SWEEP: u32 = 1000;
/// Request ids forgotten per trim command.
const PER_TRIM: u32 = 10_000;
/// A trim waits until the oldest id is this far past its retention, so each
/// trim (and its audit record) covers a minute of writes, not a handful.
const TRIM_SLACK_MS: u64 = 60_000;

/// Runs until `stop` turns true.
pub async fn run(replica: Arc<Replica>, reader: Reader, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if !replica.shared.is_leader() {
            continue;
        }
        let now = leader_stamp_ms();
        if due(
            reader.earliest_deadline(),
            "the re-verification queue",
            |d| d <= now,
        ) {
            let sweep = Command::SweepOverdue(SweepOverdue { limit: PER_SWEEP });
            if let Some(Outcome::Swept { suspended }) = propose(&replica, sweep).await {
                if suspended > 0 {
                    tracing::info!(
                        suspended,
                        "suspended cards past their re-verification deadline"
                    );
                }
            }
        }
        let trim_before = now.saturating_sub(REQUEST_ID_RETENTION_MS + TRIM_SLACK_MS);
        if due(reader.oldest_request_id_ms(), "the request ids", |at| {
            at < trim_before
        }) {
            let trim = Command::TrimRequestIds(TrimRequestIds { limit: PER_TRIM });
            if let Some(Outcome::Trimmed { removed }) = propose(&replica, trim).await {
                tracing::debug!(removed, "forgot request ids past their retention");
            }
        }
    }
}

fn due(
    first: Result<Option<u64>, oneid_storage::StorageError>,
    what: &str,
    is_due: impl Fn(u64) -> bool,
) -> bool {
    match first {
        Ok(first) => first.is_some_and(is_due),
        Err(e) => {
            tracing::error!(error = %e, "reading {what}");
            false
        }
    }
}

/// Proposes a server-side command; its outcome, or None after logging why
/// not (lost leadership or timed out: the next leader tries again).
async fn propose(replica: &Replica, command: Command) -> Option<Outcome> {
    let bytes = match Envelope::internal(command).encode() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "encoding a housekeeping command");
            return None;
        }
    };
    match replica.propose(bytes).await {
        Ok((_, result)) => match command::decode::<command::Applied>(&result) {
            Ok(a) => Some(a.outcome),
            Err(e) => {
                tracing::error!(error = %e, "decoding a housekeeping outcome");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "housekeeping command not applied");
            None
        }
    }
}
