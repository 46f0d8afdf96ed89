//! Request ids: the first outcome of each id is kept so a retry replays it
//! instead of applying twice, for a bounded time. Past the retention the
//! leader proposes a trim; every replica removes the same records because
//! the cut-off comes from the replicated clock.

use oneid_storage::keys;
use oneid_storage::records::{DedupAgeRecord, DedupRecord, DEDUP_AGE_V, DEDUP_V};
use oneid_storage::StorageError;

use super::{corrupt, Tx};
use crate::command::{self, Outcome};

/// How long a request id is remembered. A client retrying the same request
/// later than this is treated as new; the registry's own rules (a number
/// has one holder, a cancelled card stays cancelled) still refuse a repeat.
pub const REQUEST_ID_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// The first outcome of `request_id`, if it is still remembered.
pub(super) fn replay(tx: &mut Tx, request_id: &str) -> Result<Option<Outcome>, StorageError> {
    let key = keys::dedup_key(request_id);
    match tx.get::<DedupRecord>(DEDUP_V, &key)? {
        Some(first) => command::decode(&first.outcome)
            .map(Some)
            .map_err(|e| corrupt(&key, e.to_string())),
        None => Ok(None),
    }
}

pub(super) fn remember(
    tx: &mut Tx,
    request_id: &str,
    now_ms: u64,
    outcome: &Outcome,
) -> Result<(), StorageError> {
    let record = DedupRecord {
        applied_at_ms: now_ms,
        outcome: command::encode(outcome).map_err(|e| StorageError::Encode(e.to_string()))?,
    };
    tx.put(DEDUP_V, keys::dedup_key(request_id), &record)?;
    tx.put(
        DEDUP_AGE_V,
        keys::dedup_age_key(now_ms, request_id),
        &DedupAgeRecord,
    )
}

/// Forgets up to `limit` request ids older than the retention, oldest first.
pub(super) fn trim(tx: &mut Tx, now_ms: u64, limit: u32) -> Result<Outcome, StorageError> {
    let cutoff = now_ms.saturating_sub(REQUEST_ID_RETENTION_MS);
    let aged: Vec<(Vec<u8>, DedupAgeRecord)> =
        tx.scan(DEDUP_AGE_V, keys::DEDUP_AGE_PREFIX, limit as usize)?;
    let mut removed = 0;
    for (key, _) in aged {
        let (at_ms, request_id) =
            keys::parse_dedup_age_key(&key).ok_or_else(|| corrupt(&key, "bad dedup age key"))?;
        if at_ms >= cutoff {
            break;
        }
        tx.delete(keys::dedup_key(request_id));
        tx.delete(key);
        removed += 1;
    }
    Ok(Outcome::Trimmed { removed })
}

#[cfg(test)]
mod tests {
    use oneid_storage::Db;

    use super::*;
    use crate::apply::apply_envelope;
    use crate::command::{Applied, Command, Envelope, Restrict, TrimRequestIds};
    use crate::domain::Policy;

    struct Node {
        _dir: tempfile::TempDir,
        db: std::sync::Arc<Db>,
        index: u64,
    }

    impl Node {
        fn new() -> Node {
            let (dir, db) = crate::apply::test_db();
            Node {
                _dir: dir,
                db,
                index: 0,
            }
        }

        fn apply(&mut self, request_id: &str, now_ms: u64, command: Command) -> Applied {
            self.index += 1;
            let mut envelope = Envelope::internal(command);
            envelope.request_id = request_id.into();
            let bytes = envelope.encode().unwrap();
            let mut tx = Tx::new(&self.db);
            let applied = apply_envelope(
                &mut tx,
                &mut Policy::default(),
                (self.index, 0),
                now_ms,
                &bytes,
            )
            .unwrap();
            self.db.raw().write(tx.into_batch().unwrap()).unwrap();
            applied
        }

        fn trim(&mut self, now_ms: u64, limit: u32) -> u32 {
            match self
                .apply(
                    "",
                    now_ms,
                    Command::TrimRequestIds(TrimRequestIds { limit }),
                )
                .outcome
            {
                Outcome::Trimmed { removed } => removed,
                other => panic!("trim answered {other:?}"),
            }
        }
    }

    fn restrict(who: u8) -> Command {
        Command::Restrict(Restrict {
            id_key: [who; 32],
            reason: "test".into(),
            duration_ms: 0,
        })
    }

    #[test]
    fn request_ids_replay_until_their_retention_then_are_forgotten_oldest_first() {
        let mut n = Node::new();
        let t0 = 1_000_000;
        assert!(!n.apply("a", t0, restrict(1)).replayed);
        assert!(!n.apply("b", t0 + 10, restrict(2)).replayed);
        assert!(!n.apply("c", t0 + 20, restrict(3)).replayed);
        assert!(n.apply("a", t0 + 5, restrict(1)).replayed);

        // Exactly at the retention nothing is due yet.
        assert_eq!(n.trim(t0 + REQUEST_ID_RETENTION_MS, 100), 0);
        assert!(n.apply("a", t0 + 30, restrict(1)).replayed);

        // Past it: the limit bounds one trim, oldest first.
        assert_eq!(n.trim(t0 + REQUEST_ID_RETENTION_MS + 15, 1), 1);
        assert!(n.apply("b", t0 + 40, restrict(2)).replayed);
        assert_eq!(n.trim(t0 + REQUEST_ID_RETENTION_MS + 15, 100), 1);
        assert!(n.apply("c", t0 + 50, restrict(3)).replayed);

        // A forgotten id is a new request again (and remembered anew).
        assert!(!n.apply("a", t0 + 60, restrict(1)).replayed);
        assert!(n.apply("a", t0 + 70, restrict(1)).replayed);
    }
}
