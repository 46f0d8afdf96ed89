//! The leader's re-verification sweep. Deadlines are checked against the
//! replicated clock inside apply; this task only decides *when* to propose a
//! sweep, so replicas never act on their own clocks.

use std::sync::Arc;
use std::time::Duration;

use oneid_raft::replica::leader_stamp_ms;
use oneid_raft::Replica;
use tokio::sync::watch;

use crate::command::{self, Command, Envelope, Outcome, SweepOverdue};
use crate::reader::Reader;

/// How often the leader looks for overdue cards: the delay between a
/// deadline and the suspension is at most about this long.
const INTERVAL: Duration = Duration::from_millis(500);
/// Cards suspended per sweep command; a longer backlog takes more rounds.
const PER_SWEEP: u32 = 1000;

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
        let due = match reader.earliest_deadline() {
            Ok(Some(deadline)) => deadline <= leader_stamp_ms(),
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, "reading the re-verification queue");
                false
            }
        };
        if due {
            sweep_once(&replica).await;
        }
    }
}

async fn sweep_once(replica: &Replica) {
    let envelope = Envelope::internal(Command::SweepOverdue(SweepOverdue { limit: PER_SWEEP }));
    let bytes = match envelope.encode() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "encoding a sweep");
            return;
        }
    };
    match replica.propose(bytes).await {
        Ok((index, result)) => match command::decode::<command::Applied>(&result) {
            Ok(a) => {
                if let Outcome::Swept { suspended } = a.outcome {
                    if suspended > 0 {
                        tracing::info!(
                            index,
                            suspended,
                            "suspended cards past their re-verification deadline"
                        );
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "decoding a sweep outcome"),
        },
        // Lost leadership or timed out: the next leader sweeps.
        Err(e) => tracing::warn!(error = %e, "sweep not applied"),
    }
}
