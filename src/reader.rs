//! Read side of the registry: point reads of the local state machine, done
//! after a read barrier for linearizability. Every value is crc-checked; a
//! corrupt record is an error, never a wrong answer.

use std::sync::Arc;

use oneid_storage::keys;
use oneid_storage::records::{
    AliasRecord, AuditBlock, AuditRecord, CardRecord, DedupRecord, DisputeRecord, HolderRecord,
    KeyStateRecord, LinkRecord, LockoutRecord, MsisdnRecord, OutboxRecord, PendingRecord,
    RestrictionRecord, ReverifyRecord, StatsRecord, ALIAS_V, AUDIT_BLOCK_V, AUDIT_V, CARD_V,
    DEDUP_V, DISPUTE_V, KEY_STATE_V, LINK_V, LOCKOUT_V, OUTBOX_V, PENDING_V, RESTRICTION_V,
    REVERIFY_V, STATS_V,
};
use oneid_storage::rocksdb::{IteratorMode, ReadOptions};
use oneid_storage::schema::{sm_cf_name, CF_SM_DATA, SM_RECORD_CFS};
use oneid_storage::{codec, Db, StorageError};
use sha2::{Digest, Sha256};

use crate::command::IdKey;
use crate::domain::Lifecycle;
use crate::state_machine::read_applied;

/// Bounds on listings served in one response.
pub const MAX_CARDS_LISTED: usize = 1000;
pub const MAX_LINKS_LISTED: usize = 256;

/// The audit rows (index, position, row) one stored audit record holds: a
/// block's, or a single version-1 record's.
fn audit_rows(key: &[u8], value: &[u8]) -> Result<Vec<(u64, u32, AuditRecord)>, StorageError> {
    let (index, position) = keys::parse_audit_key(key).ok_or_else(|| StorageError::Corrupt {
        cf: CF_SM_DATA,
        key: codec::hex(key),
        reason: "malformed audit key".into(),
    })?;
    if codec::version_of(value) == Some(AUDIT_BLOCK_V) {
        let block: AuditBlock = codec::decode(AUDIT_BLOCK_V, value, CF_SM_DATA, key)?;
        return Ok(block
            .rows
            .into_iter()
            .map(|(position, row)| (index, position, row))
            .collect());
    }
    let row = codec::decode(AUDIT_V, value, CF_SM_DATA, key)?;
    Ok(vec![(index, position, row)])
}

/// True when `card` is active: what proves possession of its number.
fn in_service(card: &CardRecord) -> bool {
    card.status == Lifecycle::Active.to_parts().0
}

/// A looked-up (value, key) decoded as a record of `version`.
fn decoded<T: bincode::Decode<()>>(
    found: Option<(&[u8], &[u8])>,
    version: u8,
) -> Result<Option<T>, StorageError> {
    found
        .map(|(v, key)| codec::decode(version, v, sm_cf_name(key), key))
        .transpose()
}

/// What [`Reader::view`] read.
struct View {
    key_state: KeyStateRecord,
    lockout: Option<LockoutRecord>,
    holder: HolderRecord,
    card: Option<CardRecord>,
}

/// See [`Reader::verification`].
pub struct Verification {
    pub key_state: KeyStateRecord,
    pub lockout: Option<LockoutRecord>,
    pub active: bool,
    pub holder: HolderRecord,
}

#[derive(Clone)]
pub struct Reader {
    db: Arc<Db>,
}

impl Reader {
    pub fn new(db: Arc<Db>) -> Reader {
        Reader { db }
    }

    /// `key`'s value, if any, handed to `decode` without a copy.
    fn read<T>(
        &self,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, StorageError>,
    ) -> Result<Option<T>, StorageError> {
        let found = self.db.raw().get_pinned_cf(self.db.sm_cf(key)?, key)?;
        found.as_deref().map(decode).transpose()
    }

    fn get<T: bincode::Decode<()>>(
        &self,
        version: u8,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        self.read(key, |v| codec::decode(version, v, sm_cf_name(key), key))
    }

    /// The number index record under `key` (stored in more than one
    /// version).
    fn number(&self, key: &[u8]) -> Result<Option<MsisdnRecord>, StorageError> {
        self.read(key, |v| MsisdnRecord::decode(v, key))
    }

    /// The identity the number's index entry names, whether it holds the
    /// number now or held it last.
    pub fn number_holder(&self, msisdn: &str) -> Result<Option<IdKey>, StorageError> {
        Ok(self.number(&keys::msisdn_key(msisdn))?.map(|r| r.id_key))
    }

    pub fn holder(&self, id_key: &IdKey) -> Result<HolderRecord, StorageError> {
        let key = keys::holder_key(id_key);
        Ok(self
            .read(&key, |v| HolderRecord::decode(v, &key))?
            .unwrap_or_default())
    }

    /// The card currently holding `msisdn` (not cancelled or stripped).
    pub fn held_card(&self, msisdn: &str) -> Result<Option<(IdKey, CardRecord)>, StorageError> {
        let number_key = keys::msisdn_key(msisdn);
        let mut seen: Option<IdKey> = None;
        // The number index and the card are two reads; a pepper rotation
        // moving the holder in between leaves the index pointing at the new
        // key, so a missing card is looked up again under it.
        loop {
            let rec = self.number(&number_key)?;
            let Some(rec) = rec.filter(|r| r.held) else {
                return Ok(None);
            };
            if seen == Some(rec.id_key) {
                return Ok(None);
            }
            let card: Option<CardRecord> =
                self.get(CARD_V, &keys::card_key(&rec.id_key, msisdn))?;
            if let Some(card) = card {
                return Ok(Some((rec.id_key, card)));
            }
            seen = Some(rec.id_key);
        }
    }

    /// True when `msisdn` is an active (in service) card under `id_key`:
    /// the proof of possession a count query asks for.
    pub fn is_active_under(&self, msisdn: &str, id_key: &IdKey) -> Result<bool, StorageError> {
        Ok(self
            .held_card(msisdn)?
            .is_some_and(|(k, c)| &k == id_key && in_service(&c)))
    }

    /// What a count's proof of possession needs, read in one batched lookup
    /// from one consistent view of the replica: the key state (so the caller
    /// can check its key was derived under it), the identity's lockout, and
    /// whether `msisdn` is an active card held under `id_key`, with the
    /// identity's summary.
    ///
    /// The summary lists the identity's in-service numbers (apply keeps the
    /// list exact, `apply::model_tests` checks it after every command), so
    /// usually it alone answers "active under `id_key`": the card is read
    /// only when the summary does not know, and then with the other keys
    /// again, so that every value still comes from one view. The card alone
    /// answers too: apply keeps every held card in the number index under
    /// the same identity, so the index need not be read.
    pub fn verification(&self, id_key: &IdKey, msisdn: &str) -> Result<Verification, StorageError> {
        let view = self.view(id_key, None)?;
        let (view, active) = match view.holder.lists_in_service(msisdn) {
            Some(active) => (view, active),
            None => {
                let view = self.view(id_key, Some(msisdn))?;
                let active = view.card.as_ref().is_some_and(in_service);
                (view, active)
            }
        };
        Ok(Verification {
            key_state: view.key_state,
            lockout: view.lockout,
            active,
            holder: view.holder,
        })
    }

    /// The key state and `id_key`'s lockout and summary (and its card
    /// `msisdn`, if given) in one batched lookup: a multi-get reads every
    /// key at one sequence number, so the values are of one applied state,
    /// never half of an apply batch.
    fn view(&self, id_key: &IdKey, msisdn: Option<&str>) -> Result<View, StorageError> {
        let cfs = self.db.sm_cfs()?;
        let mut wanted = vec![
            keys::KEY_STATE.to_vec(),
            keys::lockout_key(id_key),
            keys::holder_key(id_key),
        ];
        if let Some(msisdn) = msisdn {
            wanted.push(keys::card_key(id_key, msisdn));
        }
        // Across column families too, one multi-get reads at one sequence
        // number.
        let found = self
            .db
            .raw()
            .multi_get_cf(wanted.iter().map(|k| (cfs.of(k), k)));
        let mut values = Vec::with_capacity(wanted.len());
        for v in found {
            values.push(v?);
        }
        let field = |i: usize| {
            values
                .get(i)
                .and_then(|v| v.as_deref())
                .map(|v| (v, wanted[i].as_slice()))
        };
        Ok(View {
            key_state: decoded(field(0), KEY_STATE_V)?.unwrap_or_default(),
            lockout: decoded(field(1), LOCKOUT_V)?,
            holder: field(2)
                .map(|(v, key)| HolderRecord::decode(v, key))
                .transpose()?
                .unwrap_or_default(),
            card: decoded(field(3), CARD_V)?,
        })
    }

    /// Every card registered under `id_key` (any status), by number.
    pub fn cards_of(&self, id_key: &IdKey) -> Result<Vec<(String, CardRecord)>, StorageError> {
        self.decode_cards(
            self.db
                .scan_sm(&keys::card_prefix(id_key), None, MAX_CARDS_LISTED)?,
        )
    }

    fn decode_cards(
        &self,
        rows: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<(String, CardRecord)>, StorageError> {
        rows.into_iter()
            .map(|(k, v)| {
                let card = codec::decode(CARD_V, &v, CF_SM_DATA, &k)?;
                let msisdn = keys::card_msisdn(&k).unwrap_or_default().to_string();
                Ok((msisdn, card))
            })
            .collect()
    }

    /// Every card under `id_key` in number order, unbounded: for moving an
    /// identity in a pepper rotation, which must see all of them.
    pub fn all_cards_of(&self, id_key: &IdKey) -> Result<Vec<(String, CardRecord)>, StorageError> {
        self.decode_cards(
            self.db
                .scan_sm(&keys::card_prefix(id_key), None, usize::MAX)?,
        )
    }

    /// Which pepper version keys are under, and the rotation under way.
    pub fn key_state(&self) -> Result<KeyStateRecord, StorageError> {
        Ok(self.get(KEY_STATE_V, keys::KEY_STATE)?.unwrap_or_default())
    }

    /// Where a rotation in progress moved the identity keyed `old`.
    pub fn moved_to(&self, old: &IdKey) -> Result<Option<IdKey>, StorageError> {
        Ok(self
            .get::<AliasRecord>(ALIAS_V, &keys::moved_key(old))?
            .map(|a| a.other))
    }

    /// True when `key` is already under the rotation's new version.
    pub fn has_arrived(&self, key: &IdKey) -> Result<bool, StorageError> {
        Ok(self
            .get::<AliasRecord>(ALIAS_V, &keys::arrived_key(key))?
            .is_some())
    }

    /// Up to `limit` identity keys of records under one of
    /// [`keys::ID_SCOPED_PREFIXES`], after the key `after`.
    pub fn id_keys(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, IdKey)>, StorageError> {
        Ok(self
            .db
            .scan_sm(prefix, after, limit)?
            .into_iter()
            .filter_map(|(k, _)| keys::id_of(&k).map(|id| (k, id)))
            .collect())
    }

    /// True when a finished rotation still has aliases to forget.
    pub fn has_aliases(&self) -> Result<bool, StorageError> {
        Ok(!self.db.scan_sm(keys::MOVED_PREFIX, None, 1)?.is_empty()
            || !self.db.scan_sm(keys::ARRIVED_PREFIX, None, 1)?.is_empty())
    }

    /// The first outcome of a write under `request_id`, if this replica has
    /// applied one and still remembers it (a record that never changes
    /// until the replicated trim removes it).
    pub fn remembered_outcome(
        &self,
        request_id: &str,
    ) -> Result<Option<crate::command::Outcome>, StorageError> {
        let key = keys::dedup_key(request_id);
        self.get::<DedupRecord>(DEDUP_V, &key)?
            .map(|first| crate::apply::first_outcome(&key, &first))
            .transpose()
    }

    pub fn dispute(&self, id: u64) -> Result<Option<DisputeRecord>, StorageError> {
        self.get(DISPUTE_V, &keys::dispute_key(id))
    }

    pub fn lockout(&self, id_key: &IdKey) -> Result<Option<LockoutRecord>, StorageError> {
        self.get(LOCKOUT_V, &keys::lockout_key(id_key))
    }

    pub fn stats(&self) -> Result<StatsRecord, StorageError> {
        Ok(self.get(STATS_V, keys::STATS)?.unwrap_or_default())
    }

    pub fn policy(&self) -> Result<crate::domain::Policy, StorageError> {
        crate::apply::load_policy(&self.db)
    }

    /// The rules revision applied here, even one this build does not know.
    pub fn rules_version(&self) -> Result<u32, StorageError> {
        crate::apply::stored_rules(&self.db)
    }

    /// Audit records after (`index`, `position`), oldest first, at most
    /// `limit`.
    pub fn audit(
        &self,
        after: Option<(u64, u32)>,
        limit: usize,
    ) -> Result<Vec<(u64, u32, AuditRecord)>, StorageError> {
        let page = limit.max(1);
        // A block is keyed by its entry's first row: start at the entry that
        // holds `after`, or its later rows would be skipped.
        let mut from = match after {
            Some((index, _)) if index > 0 => Some(keys::audit_key(index - 1, u32::MAX)),
            _ => None,
        };
        let mut out = Vec::new();
        loop {
            let stored = self.db.scan_sm(keys::AUDIT_PREFIX, from.as_deref(), page)?;
            let exhausted = stored.len() < page;
            for (k, v) in &stored {
                for row in audit_rows(k, v)? {
                    if out.len() < limit && after.is_none_or(|a| (row.0, row.1) > a) {
                        out.push(row);
                    }
                }
            }
            if out.len() >= limit || exhausted {
                return Ok(out);
            }
            from = stored.last().map(|(k, _)| k.clone());
        }
    }

    /// Outbox notifications with ids above `after`, oldest first.
    pub fn outbox(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxRecord)>, StorageError> {
        let after = keys::outbox_key(after);
        self.db
            .scan_sm(keys::OUTBOX_PREFIX, Some(&after), limit)?
            .into_iter()
            .map(|(k, v)| {
                let rec = codec::decode(OUTBOX_V, &v, CF_SM_DATA, &k)?;
                let id = keys::parse_outbox_key(&k).ok_or_else(|| StorageError::Corrupt {
                    cf: CF_SM_DATA,
                    key: codec::hex(&k),
                    reason: "malformed outbox key".into(),
                })?;
                Ok((id, rec))
            })
            .collect()
    }

    pub fn applied_index(&self) -> Result<u64, StorageError> {
        Ok(read_applied(&self.db)?
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0))
    }

    pub fn restriction(&self, id_key: &IdKey) -> Result<Option<RestrictionRecord>, StorageError> {
        self.get(RESTRICTION_V, &keys::restriction_key(id_key))
    }

    /// (platform, account, record) of every account linked to `msisdn`.
    pub fn links(&self, msisdn: &str) -> Result<Vec<(String, String, LinkRecord)>, StorageError> {
        let prefix = keys::link_prefix(msisdn);
        self.decode_pairs(&prefix, None, MAX_LINKS_LISTED, LINK_V)
    }

    /// (msisdn, account, record) awaiting re-verification by `platform`,
    /// after the `after` position (msisdn, account) for paging.
    pub fn reverify_queue(
        &self,
        platform: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, String, ReverifyRecord)>, StorageError> {
        let prefix = keys::reverify_prefix(platform);
        let after = after.map(|(m, a)| keys::reverify_key(platform, m, a));
        self.decode_pairs(&prefix, after.as_deref(), limit, REVERIFY_V)
    }

    fn decode_pairs<T: bincode::Decode<()>>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        version: u8,
    ) -> Result<Vec<(String, String, T)>, StorageError> {
        self.db
            .scan_sm(prefix, after, limit)?
            .into_iter()
            .map(|(k, v)| {
                let value = codec::decode(version, &v, CF_SM_DATA, &k)?;
                let (a, b) = keys::split_pair(&k, prefix).ok_or_else(|| StorageError::Corrupt {
                    cf: CF_SM_DATA,
                    key: codec::hex(&k),
                    reason: "malformed two-part key".into(),
                })?;
                Ok((a.to_string(), b.to_string(), value))
            })
            .collect()
    }

    /// The earliest re-verification deadline waiting, if any: the leader
    /// proposes a sweep once the clock passes it.
    pub fn earliest_deadline(&self) -> Result<Option<u64>, StorageError> {
        self.first_time(keys::PENDING_PREFIX, keys::parse_pending_key, |k, v, _| {
            codec::decode::<PendingRecord>(PENDING_V, v, CF_SM_DATA, k).is_ok()
        })
    }

    /// When the oldest remembered request id was applied, if any: the
    /// leader proposes a trim once it is past the retention.
    pub fn oldest_request_id_ms(&self) -> Result<Option<u64>, StorageError> {
        self.first_time(
            keys::DEDUP_AGE_PREFIX,
            keys::parse_dedup_age_key,
            |k, v, named| crate::apply::aged_request_ids(k, v, named).is_ok(),
        )
    }

    /// The time of the first entry of a time-ordered queue whose record
    /// passes `valid` (key, value, the key's suffix).
    fn first_time(
        &self,
        prefix: &[u8],
        parse: fn(&[u8]) -> Option<(u64, &str)>,
        valid: impl Fn(&[u8], &[u8], &str) -> bool,
    ) -> Result<Option<u64>, StorageError> {
        let first = self.db.scan_sm(prefix, None, 1)?;
        Ok(first.into_iter().next().and_then(|(k, v)| {
            let (ms, named) = parse(&k)?;
            valid(&k, &v, named).then_some(ms)
        }))
    }

    /// Approximate bytes of data on disk, all column families.
    pub fn data_bytes(&self) -> u64 {
        self.db.approximate_size()
    }

    /// SHA-256 over every state machine record, from one consistent view, with
    /// the applied index it reflects. Replicas at the same index must agree.
    pub fn state_digest(&self) -> Result<(u64, String), StorageError> {
        let raw = self.db.raw();
        let snap = raw.snapshot();
        let mut h = Sha256::new();
        // Which column family holds a record follows from its key, so the
        // families one after the other are as deterministic as one would be.
        for name in SM_RECORD_CFS {
            let mut opts = ReadOptions::default();
            opts.set_snapshot(&snap);
            opts.fill_cache(false);
            opts.set_total_order_seek(true);
            for item in raw.iterator_cf_opt(self.db.cf(name)?, opts, IteratorMode::Start) {
                let (k, v) = item?;
                h.update((k.len() as u32).to_le_bytes());
                h.update(&k);
                h.update((v.len() as u32).to_le_bytes());
                h.update(&v);
            }
        }
        // The applied index is read outside the RocksDB snapshot, but it
        // only labels the digest; callers compare digests once applies stop.
        let index = read_applied(&self.db)?
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        Ok((index, codec::hex(&h.finalize())))
    }
}

#[cfg(test)]
mod tests {
    use oneid_storage::records::{packed_number, HOLDER_V, KEY_STATE_V, LOCKOUT_V, MSISDN_V};

    use super::*;
    use crate::domain::Lifecycle;

    const NUMBER: &str = "13800000000";

    fn put<T: bincode::Encode>(db: &Db, version: u8, key: Vec<u8>, value: &T) {
        let cf = db.sm_cf(&key).unwrap();
        db.raw()
            .put_cf(cf, key, codec::encode(version, value).unwrap())
            .unwrap();
    }

    fn card(status: Lifecycle) -> CardRecord {
        let (status, suspend_reason, reverify_deadline_ms) = status.to_parts();
        CardRecord {
            carrier: "cmcc".into(),
            province: 11,
            kind: 1,
            channel: 1,
            status,
            suspend_reason,
            reverify_deadline_ms,
            registered_at_ms: 1,
            updated_at_ms: 1,
            open_dispute: 0,
            last6_tag: [0; 16],
            unit_key: None,
        }
    }

    /// The one-view read agrees with the separate point reads it replaces.
    fn agrees(r: &Reader, k: &IdKey) -> Verification {
        let v = r.verification(k, NUMBER).unwrap();
        assert_eq!(v.active, r.is_active_under(NUMBER, k).unwrap());
        assert_eq!(v.lockout, r.lockout(k).unwrap());
        assert_eq!(v.holder, r.holder(k).unwrap());
        assert_eq!(v.key_state, r.key_state().unwrap());
        v
    }

    fn row(n: u64) -> AuditRecord {
        AuditRecord {
            at_ms: n,
            actor: "system".into(),
            action: "test".into(),
            subject: String::new(),
            request_id: format!("r{n}"),
            outcome: "ok".into(),
        }
    }

    #[test]
    fn audit_pages_through_single_records_and_blocks_alike() {
        let (_dir, db) = crate::apply::test_db();
        let r = Reader::new(db.clone());
        // Entry 1 (before blocks): one record per command; entries 2 and 4:
        // blocks, entry 4 with a gap (a replayed command leaves no row).
        put(&db, AUDIT_V, keys::audit_key(1, 0), &row(10));
        put(&db, AUDIT_V, keys::audit_key(1, 1), &row(11));
        let block = |rows: &[(u32, u64)]| AuditBlock {
            rows: rows.iter().map(|&(p, n)| (p, row(n))).collect(),
        };
        put(
            &db,
            AUDIT_BLOCK_V,
            keys::audit_key(2, 0),
            &block(&[(0, 20), (1, 21), (2, 22)]),
        );
        put(
            &db,
            AUDIT_BLOCK_V,
            keys::audit_key(4, 1),
            &block(&[(1, 41), (3, 43)]),
        );
        let all: Vec<(u64, u32)> = vec![(1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (4, 1), (4, 3)];
        let positions = |rows: Vec<(u64, u32, AuditRecord)>| -> Vec<(u64, u32)> {
            rows.into_iter()
                .map(|(i, p, rec)| {
                    assert_eq!(rec.at_ms, i * 10 + u64::from(p), "row at {i}/{p}");
                    (i, p)
                })
                .collect()
        };
        assert_eq!(positions(r.audit(None, 100).unwrap()), all);
        for limit in 1..=4 {
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = positions(r.audit(after, limit).unwrap());
                assert!(page.len() <= limit);
                let Some(&last) = page.last() else { break };
                paged.extend(page);
                after = Some(last);
            }
            assert_eq!(paged, all, "pages of {limit}");
        }
        // Starting inside a block, and between entries.
        assert_eq!(
            positions(r.audit(Some((2, 0)), 2).unwrap()),
            vec![(2, 1), (2, 2)]
        );
        assert_eq!(
            positions(r.audit(Some((3, 7)), 9).unwrap()),
            vec![(4, 1), (4, 3)]
        );
        assert!(r.audit(Some((4, 3)), 9).unwrap().is_empty());
    }

    #[test]
    fn verification_reads_one_view_of_what_a_count_checks() {
        let (_dir, db) = crate::apply::test_db();
        let r = Reader::new(db.clone());
        let (mine, other) = ([1u8; 32], [2u8; 32]);

        // Nothing stored: not active, no lockout, empty summary, version 1.
        let v = agrees(&r, &mine);
        assert!(!v.active && v.lockout.is_none() && v.holder.total() == 0);
        assert_eq!(v.key_state.current, 1);

        // A summary that does not list its in-service numbers (written
        // before it could, or past the list's limit): the card answers.
        let mut holder = HolderRecord {
            in_service: None,
            ..HolderRecord::default()
        };
        holder.add_kind(false, "cmcc", 11);
        put(&db, HOLDER_V, keys::holder_key(&mine), &holder);
        let put_card =
            |k: &IdKey, status| put(&db, CARD_V, keys::card_key(k, NUMBER), &card(status));
        put_card(&mine, Lifecycle::Active);
        let index = |id_key, held| MsisdnRecord {
            id_key,
            held,
            registered_by: None,
        };
        put(&db, MSISDN_V, keys::msisdn_key(NUMBER), &index(mine, true));
        let v = agrees(&r, &mine);
        assert!(v.active);
        assert_eq!(v.holder.total(), 1);
        assert!(!agrees(&r, &other).active);

        // Stripped from this identity (the number released) and then
        // registered to someone else, as apply leaves it: not proof for
        // either until the new holder's card is stored.
        put_card(&mine, Lifecycle::Stripped);
        put(&db, MSISDN_V, keys::msisdn_key(NUMBER), &index(mine, false));
        assert!(!agrees(&r, &mine).active);
        put(&db, MSISDN_V, keys::msisdn_key(NUMBER), &index(other, true));
        assert!(!agrees(&r, &mine).active);
        put_card(&other, Lifecycle::Active);
        put(&db, HOLDER_V, keys::holder_key(&other), &holder);
        assert!(agrees(&r, &other).active && !agrees(&r, &mine).active);

        // Held, but the card is suspended: not proof either.
        put(&db, MSISDN_V, keys::msisdn_key(NUMBER), &index(mine, true));
        let suspended = Lifecycle::PendingReverify { deadline_ms: 9 };
        put_card(&mine, suspended);
        assert!(!agrees(&r, &mine).active);

        let lockout = LockoutRecord {
            failures: 2,
            locked_until_ms: 5,
        };
        put(&db, LOCKOUT_V, keys::lockout_key(&mine), &lockout);
        let rotating = KeyStateRecord {
            current: 1,
            next: 2,
            moved: 0,
        };
        put(&db, KEY_STATE_V, keys::KEY_STATE.to_vec(), &rotating);
        let v = agrees(&r, &mine);
        assert_eq!(v.lockout, Some(lockout.clone()));
        assert_eq!(v.key_state.rotating_to(), Some(2));

        // A summary that lists them answers alone, whatever the card says
        // (apply keeps the two in step): here the stored card is suspended.
        holder.in_service = Some(vec![packed_number(NUMBER).unwrap()]);
        put(&db, HOLDER_V, keys::holder_key(&mine), &holder);
        let v = r.verification(&mine, NUMBER).unwrap();
        assert!(v.active);
        assert_eq!((v.holder, v.lockout), (holder.clone(), Some(lockout)));
        holder.set_in_service(NUMBER, false);
        put(&db, HOLDER_V, keys::holder_key(&mine), &holder);
        put_card(&mine, Lifecycle::Active);
        assert!(!r.verification(&mine, NUMBER).unwrap().active);
    }
}
