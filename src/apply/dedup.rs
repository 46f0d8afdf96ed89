//! Request ids: the first outcome of each id is kept so a retry replays it
//! instead of applying twice, for a bounded time. Past the retention the
//! leader proposes a trim; every replica removes the same records because
//! the cut-off comes from the replicated clock.

use oneid_storage::keys;
use oneid_storage::records::{
    DedupAgeBlock, DedupAgeRecord, DedupRecord, DEDUP_AGE_BLOCK_V, DEDUP_AGE_V, DEDUP_V,
};
use oneid_storage::schema::{BLOB_MIN_BYTES, CF_SM_DATA};
use oneid_storage::{codec, StorageError};

use super::{corrupt, Tx};
use crate::command::{self, Outcome};

/// How long a request id is remembered. A client retrying the same request
/// later than this is treated as new; the registry's own rules (a number
/// has one holder, a cancelled card stays cancelled) still refuse a repeat.
pub const REQUEST_ID_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// What the number index keeps of the request id that registered its
/// holder: 8 bytes of its SHA-256. Two request ids of registrations of the
/// same number would have to collide in 64 bits for a retry of one to
/// replay the other. None for an empty request id.
pub(super) fn request_tag(request_id: &str) -> Option<[u8; 8]> {
    use sha2::{Digest, Sha256};
    if request_id.is_empty() {
        return None;
    }
    let digest = Sha256::digest(request_id.as_bytes());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    Some(tag)
}

/// The first outcome of `request_id`, if it is still remembered.
pub(super) fn replay(tx: &mut Tx, request_id: &str) -> Result<Option<Outcome>, StorageError> {
    let key = keys::dedup_key(request_id);
    tx.get::<DedupRecord>(DEDUP_V, &key)?
        .map(|first| first_outcome(&key, &first))
        .transpose()
}

/// The outcome the request id record `first`, stored under `key`, keeps.
pub fn first_outcome(key: &[u8], first: &DedupRecord) -> Result<Outcome, StorageError> {
    command::decode(&first.outcome).map_err(|e| corrupt(key, e.to_string()))
}

pub(super) fn remember(
    tx: &mut Tx,
    request_id: &str,
    (index, now_ms): (u64, u64),
    outcome: &Outcome,
) -> Result<(), StorageError> {
    let record = DedupRecord {
        applied_at_ms: now_ms,
        outcome: command::encode(outcome).map_err(|e| StorageError::Encode(e.to_string()))?,
    };
    tx.put(DEDUP_V, keys::dedup_key(request_id), &record)?;
    tx.age(index, now_ms, request_id);
    Ok(())
}

/// Request ids in one age block at most. Request ids are at most 128
/// bytes, so a block stays under [`BLOB_MIN_BYTES`] and in table files:
/// trimming deletes age blocks, and a deleted value in a blob file would
/// stay on disk for good (blob files hold audit blocks, never deleted, and
/// are not garbage-collected).
pub(super) const AGE_BLOCK_IDS: usize = 100;
const _: () = assert!(AGE_BLOCK_IDS * 132 < BLOB_MIN_BYTES as usize);

/// Writes the request ids an apply call remembered (in log order) as
/// [`DedupAgeBlock`]s of up to [`AGE_BLOCK_IDS`] ids of one log entry, each
/// keyed by the entry's clock and its first id. Per entry, not per apply
/// call: replicas group entries into apply calls differently, and must
/// still write the same records. Two blocks cannot share a key: an id is
/// remembered again only after a trim forgot it, at a later clock.
pub(super) fn write_age_blocks(
    tx: &mut Tx,
    aged: Vec<(u64, u64, String)>,
) -> Result<(), StorageError> {
    for entry in super::runs(aged, |&(index, _, _)| index) {
        for block in entry.chunks(AGE_BLOCK_IDS) {
            let key = keys::dedup_age_key(block[0].1, &block[0].2);
            let request_ids = block.iter().map(|(_, _, id)| id.clone()).collect();
            tx.put(DEDUP_AGE_BLOCK_V, key, &DedupAgeBlock { request_ids })?;
        }
    }
    Ok(())
}

/// The request ids an age record stands for: a block's, or the one a
/// version-1 marker names in its key (`named`).
pub fn aged_ids(key: &[u8], value: &[u8], named: &str) -> Result<Vec<String>, StorageError> {
    if codec::version_of(value) == Some(DEDUP_AGE_BLOCK_V) {
        let block: DedupAgeBlock = codec::decode(DEDUP_AGE_BLOCK_V, value, CF_SM_DATA, key)?;
        return Ok(block.request_ids);
    }
    codec::decode::<DedupAgeRecord>(DEDUP_AGE_V, value, CF_SM_DATA, key)?;
    Ok(vec![named.to_string()])
}

/// Forgets request ids older than the retention, oldest first: whole age
/// records until `limit` ids are gone (one log entry's block may take it
/// past `limit`; it is never split).
pub(super) fn trim(tx: &mut Tx, now_ms: u64, limit: u32) -> Result<Outcome, StorageError> {
    let cutoff = now_ms.saturating_sub(REQUEST_ID_RETENTION_MS);
    let aged = tx.scan_raw(keys::DEDUP_AGE_PREFIX, limit as usize)?;
    let mut removed: u32 = 0;
    for (key, value) in aged {
        let (at_ms, named) =
            keys::parse_dedup_age_key(&key).ok_or_else(|| corrupt(&key, "bad dedup age key"))?;
        if at_ms >= cutoff || removed >= limit {
            break;
        }
        let ids = aged_ids(&key, &value, named)?;
        for id in &ids {
            tx.delete(keys::dedup_key(id));
        }
        tx.delete(key);
        removed = removed.saturating_add(u32::try_from(ids.len()).unwrap_or(u32::MAX));
    }
    Ok(Outcome::Trimmed { removed })
}

#[cfg(test)]
mod tests {
    use oneid_storage::Db;

    use super::*;
    use crate::apply::apply_envelope;
    use crate::command::{Applied, Cancel, Command, Envelope, Register, Restrict, TrimRequestIds};
    use crate::domain::{Channel, Policy};
    use oneid_storage::records::DedupRecord;

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

    /// Applies the log entry at `index`: restrictions of distinct
    /// identities under the request ids `ids`.
    fn apply_entry(tx: &mut Tx, index: u64, now_ms: u64, ids: &[&str]) {
        for (position, id) in ids.iter().enumerate() {
            let mut envelope = Envelope::internal(restrict(position as u8));
            envelope.request_id = (*id).into();
            let bytes = envelope.encode().unwrap();
            let at = (index, position as u32);
            apply_envelope(tx, &mut Policy::default(), at, now_ms, &bytes).unwrap();
        }
    }

    /// Applies the next log entry (see [`apply_entry`]) in one apply call.
    fn apply_together(n: &mut Node, now_ms: u64, ids: &[&str]) {
        n.index += 1;
        let mut tx = Tx::new(&n.db);
        apply_entry(&mut tx, n.index, now_ms, ids);
        n.db.raw().write(tx.into_batch().unwrap()).unwrap();
    }

    fn remembered(n: &mut Node, id: &str, now_ms: u64) -> bool {
        n.apply(id, now_ms, restrict(9)).replayed
    }

    #[test]
    fn how_entries_are_grouped_into_apply_calls_changes_nothing_stored() {
        // Replicas receive and apply entries in different groupings; the
        // per-entry records (audit, request-id ages) must not depend on it.
        // Entries 1-3 share a clock; entry 3 repeats an id of entry 1.
        let entries: [(u64, &[&str]); 4] = [
            (5, &["a", "b"]),
            (5, &["c"]),
            (5, &["d", "a", "e"]),
            (6, &["f"]),
        ];
        let together = Node::new();
        let mut tx = Tx::new(&together.db);
        for (i, (now_ms, ids)) in entries.iter().enumerate() {
            apply_entry(&mut tx, i as u64 + 1, *now_ms, ids);
        }
        together.db.raw().write(tx.into_batch().unwrap()).unwrap();
        let apart = Node::new();
        for (i, (now_ms, ids)) in entries.iter().enumerate() {
            let mut tx = Tx::new(&apart.db);
            apply_entry(&mut tx, i as u64 + 1, *now_ms, ids);
            apart.db.raw().write(tx.into_batch().unwrap()).unwrap();
        }
        let all = |n: &Node| n.db.scan_sm(&[], None, usize::MAX).unwrap();
        assert_eq!(all(&together), all(&apart));
        let ages = together
            .db
            .scan_sm(keys::DEDUP_AGE_PREFIX, None, 100)
            .unwrap();
        assert_eq!(ages.len(), 4, "one age record per entry");
    }

    #[test]
    fn one_age_record_per_log_entry_and_old_markers_still_trim() {
        let mut n = Node::new();
        let t0 = 1_000_000;
        // A marker as builds before blocks wrote it: one per request id.
        let old = DedupRecord {
            applied_at_ms: t0,
            outcome: command::encode(&Outcome::Done).unwrap(),
        };
        let put = |k: Vec<u8>, v: Vec<u8>| {
            let cf = n.db.sm_cf(&k).unwrap();
            n.db.raw().put_cf(cf, k, v).unwrap()
        };
        put(
            keys::dedup_key("old"),
            codec::encode(DEDUP_V, &old).unwrap(),
        );
        put(
            keys::dedup_age_key(t0, "old"),
            codec::encode(DEDUP_AGE_V, &DedupAgeRecord).unwrap(),
        );
        apply_together(&mut n, t0 + 1, &["b1", "b2", "b3"]);
        apply_together(&mut n, t0 + 2, &["c1", "c2"]);
        let ages = n.db.scan_sm(keys::DEDUP_AGE_PREFIX, None, 100).unwrap();
        assert_eq!(ages.len(), 3, "one marker and one block per entry");
        let reader = crate::reader::Reader::new(n.db.clone());
        assert_eq!(reader.oldest_request_id_ms().unwrap(), Some(t0));
        for id in ["old", "b1", "b2", "b3", "c1", "c2"] {
            assert!(remembered(&mut n, id, t0 + 3), "{id}");
        }

        // Limit 2: the old marker (1 id), then the whole first block (3):
        // a block is never split.
        let later = t0 + 10 + REQUEST_ID_RETENTION_MS;
        assert_eq!(n.trim(later, 2), 4);
        assert_eq!(reader.oldest_request_id_ms().unwrap(), Some(t0 + 2));
        assert!(remembered(&mut n, "c2", later));
        for id in ["old", "b1", "b2", "b3"] {
            assert!(!remembered(&mut n, id, later), "{id} was forgotten");
        }
        assert_eq!(n.trim(later, 100), 2);
        assert!(!remembered(&mut n, "c1", later + 1));
    }

    #[test]
    fn a_large_entry_ages_its_ids_in_blocks_that_stay_out_of_blob_files() {
        let mut n = Node::new();
        let t0 = 1_000_000;
        // The longest request ids there are, 250 of them in one entry.
        let ids: Vec<String> = (0..250).map(|i| format!("{i:0>128}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        apply_together(&mut n, t0, &refs);
        let ages = n.db.scan_sm(keys::DEDUP_AGE_PREFIX, None, 100).unwrap();
        assert_eq!(ages.len(), 250usize.div_ceil(AGE_BLOCK_IDS));
        for (key, value) in &ages {
            assert!(
                (value.len() as u64) < BLOB_MIN_BYTES,
                "{} bytes",
                value.len()
            );
            let (_, named) = keys::parse_dedup_age_key(key).unwrap();
            assert!(aged_ids(key, value, named).unwrap().len() <= AGE_BLOCK_IDS);
        }
        // Trimming still forgets every id, whole blocks at a time.
        let later = t0 + 1 + REQUEST_ID_RETENTION_MS;
        assert_eq!(n.trim(later, 1000), 250);
        assert!(n
            .db
            .scan_sm(keys::DEDUP_AGE_PREFIX, None, 100)
            .unwrap()
            .is_empty());
        assert!(!remembered(&mut n, &ids[249], later));
    }

    fn register(msisdn: &str) -> Command {
        Command::Register(Register {
            id_key: [1; 32],
            msisdn: msisdn.into(),
            carrier: "CMCC".into(),
            province: 11,
            kind: 1,
            channel: Channel::Agent.code() as u8,
            strict_verification: false,
            last6_tag: [0; 16],
            unit_key: None,
        })
    }

    fn has_record(n: &Node, request_id: &str) -> bool {
        let key = keys::dedup_key(request_id);
        let cf = n.db.sm_cf(&key).unwrap();
        n.db.raw().get_cf(cf, key).unwrap().is_some()
    }

    #[test]
    fn a_registration_is_remembered_by_its_number() {
        let mut n = Node::new();
        let t0 = 1_000_000;
        let number = "13800000001";
        let first = n.apply("r1", t0, register(number));
        assert!(!first.replayed);
        assert!(matches!(first.outcome, Outcome::Registered { .. }));
        // No request-id record and no age for it.
        assert!(!has_record(&n, "r1"));
        assert!(n
            .db
            .scan_sm(keys::DEDUP_AGE_PREFIX, None, 10)
            .unwrap()
            .is_empty());
        // Its retry replays, also past the retention and a trim.
        let again = n.apply("r1", t0 + 1, register(number));
        assert!(again.replayed);
        assert_eq!(again.outcome, first.outcome);
        let later = t0 + REQUEST_ID_RETENTION_MS + 10;
        n.trim(later, 100);
        assert_eq!(n.apply("r1", later, register(number)), again);

        // Another request for the same card: refused, and remembered as
        // refusals are.
        let other = n.apply("r2", later, register(number));
        assert!(other.outcome.as_error().is_some() && !other.replayed);
        assert!(has_record(&n, "r2"));
        assert_eq!(
            n.apply("r2", later, register(number)).outcome,
            other.outcome
        );

        // Cancelled and registered again to the same identity: the index
        // now names r3, and keeps r1 aside, so both still replay.
        let cancel = Command::Cancel(Cancel {
            msisdn: number.into(),
            carrier: "CMCC".into(),
        });
        assert!(n.apply("c1", later, cancel).outcome.as_error().is_none());
        let third = n.apply("r3", later + 1, register(number));
        assert!(matches!(third.outcome, Outcome::Registered { .. }));
        assert!(!has_record(&n, "r3") && !has_record(&n, "r1"));
        assert_eq!(n.apply("r1", later + 2, register(number)), again);
        assert!(n.apply("r3", later + 2, register(number)).replayed);
        n.trim(later + 2 + REQUEST_ID_RETENTION_MS + 10, 100);
        assert_eq!(n.apply("r1", later + 3, register(number)), again);
        // Another number's registration is not taken for it.
        assert!(!n.apply("r1", later + 3, register("13800000002")).replayed);
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
