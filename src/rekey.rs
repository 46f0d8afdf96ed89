//! The leader's side of a pepper rotation: it walks every identity still
//! under the old keys, derives the new keys (it holds both peppers; apply
//! never does), and proposes them in batches; once a full pass finds none
//! left it finishes the rotation, then forgets the old-to-new aliases in
//! batches. Any leader can pick up where another stopped: what is left is
//! read from the replicated state, never from this task's memory.

use std::sync::Arc;
use std::time::Duration;

use oneid_raft::Replica;
use oneid_storage::keys::{self, IdKey};
use tokio::sync::watch;

use crate::command::{
    self, Command, Envelope, MoveId, MovedCard, Outcome, Rekey, RekeyBatch, TrimRequestIds,
};
use crate::idkey::{IdHasher, PepperError};
use crate::reader::Reader;

/// How often a leader checks for rotation work when there is none.
const IDLE: Duration = Duration::from_secs(1);
/// Identities per batch command: enough to amortize an entry, small
/// enough that one apply stays short (a few ms) beside client writes.
const PER_BATCH: usize = 256;
/// Aliases forgotten per command.
const PER_DROP: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
enum MigrateError {
    #[error(transparent)]
    Pepper(#[from] PepperError),
    #[error(transparent)]
    Storage(#[from] oneid_storage::StorageError),
    #[error("proposal not applied: {0}")]
    NotApplied(String),
}

/// Runs until `stop` turns true.
pub async fn run(
    replica: Arc<Replica>,
    reader: Reader,
    hasher: IdHasher,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let busy = if replica.shared.is_leader() {
            match step(&replica, &reader, &hasher).await {
                Ok(busy) => busy,
                Err(e) => {
                    tracing::warn!(error = %e, "pepper rotation step failed; retrying");
                    false
                }
            }
        } else {
            false
        };
        let pause = if busy { Duration::ZERO } else { IDLE };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One unit of work; true when there may be more right away.
async fn step(replica: &Replica, reader: &Reader, hasher: &IdHasher) -> Result<bool, MigrateError> {
    let state = reader.key_state()?;
    let Some(to) = state.rotating_to() else {
        if !reader.has_aliases()? {
            return Ok(false);
        }
        let drop = Command::DropAliases(TrimRequestIds { limit: PER_DROP });
        match propose(replica, drop).await? {
            Outcome::Trimmed { removed } => {
                tracing::info!(removed, "forgot pepper rotation aliases");
                return Ok(removed > 0);
            }
            other => return Err(MigrateError::NotApplied(format!("{other:?}"))),
        }
    };
    let rotation = Rekey {
        from: state.current,
        to,
    };
    // The scan can cover the whole id space at the end of a pass: off the
    // async workers, which serve client requests.
    let (scan_reader, scan_hasher) = (reader.clone(), hasher.clone());
    let moves = tokio::task::spawn_blocking(move || -> Result<Vec<MoveId>, MigrateError> {
        pending_ids(&scan_reader, PER_BATCH)?
            .into_iter()
            .map(|old| move_of(&scan_reader, &scan_hasher, old, to))
            .collect()
    })
    .await
    .map_err(|e| MigrateError::NotApplied(format!("rotation scan task: {e}")))??;
    if moves.is_empty() {
        return match propose(replica, Command::FinishRekey(rotation)).await? {
            Outcome::Done => {
                tracing::info!(
                    version = to,
                    moved = state.moved,
                    "pepper rotation finished"
                );
                Ok(true)
            }
            other => Err(MigrateError::NotApplied(format!("{other:?}"))),
        };
    }
    let batch = Command::RekeyBatch(RekeyBatch {
        rotation,
        ids: moves,
    });
    match propose(replica, batch).await? {
        Outcome::Rekeyed { moved, skipped } => {
            tracing::debug!(moved, skipped, "moved identities to new keys");
            Ok(true)
        }
        other => Err(MigrateError::NotApplied(format!("{other:?}"))),
    }
}

/// Up to `limit` identities still under the old keys, from the start of
/// each id-scoped family: moved ones leave the old keys and arrived ones
/// are skipped, so a scan from the start always finds what is left.
fn pending_ids(reader: &Reader, limit: usize) -> Result<Vec<IdKey>, MigrateError> {
    let mut out: Vec<IdKey> = Vec::new();
    for prefix in keys::ID_SCOPED_PREFIXES {
        let mut after: Option<Vec<u8>> = None;
        while out.len() < limit {
            let page = reader.id_keys(prefix, after.as_deref(), limit)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (_, id) in page {
                if out.len() < limit && !out.contains(&id) && !reader.has_arrived(&id)? {
                    out.push(id);
                }
            }
        }
    }
    Ok(out)
}

/// One identity's move: its keys and every card's tags under `to`.
fn move_of(
    reader: &Reader,
    hasher: &IdHasher,
    old: IdKey,
    to: u32,
) -> Result<MoveId, MigrateError> {
    let cards = reader
        .all_cards_of(&old)?
        .into_iter()
        .map(|(msisdn, card)| {
            Ok(MovedCard {
                msisdn,
                last6_tag: hasher.retag(&card.last6_tag, to)?,
                unit_key: card.unit_key.map(|u| hasher.rekey(&u, to)).transpose()?,
            })
        })
        .collect::<Result<Vec<_>, PepperError>>()?;
    Ok(MoveId {
        old,
        new: hasher.rekey(&old, to)?,
        cards,
    })
}

async fn propose(replica: &Replica, command: Command) -> Result<Outcome, MigrateError> {
    let bytes = Envelope::internal(command)
        .encode()
        .map_err(|e| MigrateError::NotApplied(e.to_string()))?;
    let (_, result) = replica
        .propose(bytes)
        .await
        .map_err(|e| MigrateError::NotApplied(e.to_string()))?;
    command::decode::<command::Applied>(&result)
        .map(|a| a.outcome)
        .map_err(|e| MigrateError::NotApplied(e.to_string()))
}
