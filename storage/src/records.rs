//! On-disk record types of the state machine and their format versions.
//! Each is stored through [`crate::codec`].

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::keys::IdKey;
use crate::schema::CF_SM_DATA;
use crate::{codec, StorageError};

pub const CARD_V: u8 = 2;
pub const PENDING_V: u8 = 1;
pub const DISPUTE_V: u8 = 1;
pub const COUNTER_V: u8 = 1;
pub const RESTRICTION_V: u8 = 1;
pub const LINK_V: u8 = 1;
pub const REVERIFY_V: u8 = 1;
pub const POLICY_V: u8 = 1;
pub const RULES_V: u8 = 1;
pub const STATS_V: u8 = 1;
pub const LOCKOUT_V: u8 = 1;
pub const AUDIT_V: u8 = 1;
/// An [`AuditBlock`] under the audit key of its first row (session 7 on;
/// version-1 single records written before stay readable).
pub const AUDIT_BLOCK_V: u8 = 2;
pub const OUTBOX_V: u8 = 1;
/// A [`HolderRecord`] with its in-service numbers (session 13 on; version-2
/// records stay readable, see [`HolderRecord::decode`]).
pub const HOLDER_V: u8 = 3;
/// A holder summary without [`HolderRecord::in_service`].
pub const HOLDER_V2: u8 = 2;
/// A [`MsisdnRecord`] with the registration that made its holder (session
/// 11 on; version-1 records stay readable, see [`MsisdnRecord::decode`]).
pub const MSISDN_V: u8 = 2;
/// A number index record without [`MsisdnRecord::registered_by`].
pub const MSISDN_V1: u8 = 1;
pub const REPLACED_V: u8 = 1;
pub const DEDUP_V: u8 = 1;
pub const DEDUP_AGE_V: u8 = 1;
/// A [`DedupAgeBlock`] (session 7 on; version-1 markers stay readable).
pub const DEDUP_AGE_BLOCK_V: u8 = 2;
pub const KEY_STATE_V: u8 = 1;
pub const ALIAS_V: u8 = 1;
pub const SM_META_V: u8 = 1;
pub const RAFT_ENTRY_V: u8 = 1;
pub const RAFT_META_V: u8 = 1;
pub const SNAPSHOT_HEADER_V: u8 = 1;
pub const STORE_FORMAT_V: u8 = 1;

/// A card under `c ‖ id_key ‖ msisdn`. Enum fields hold the domain's stable
/// numeric codes so the format does not depend on Rust enum layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct CardRecord {
    pub carrier: String,
    pub province: u8,
    pub kind: u8,
    pub channel: u8,
    /// Lifecycle as (status, suspend reason, re-verification deadline):
    /// the domain's `Lifecycle::to_parts`.
    pub status: u8,
    pub suspend_reason: u8,
    pub reverify_deadline_ms: u64,
    pub registered_at_ms: u64,
    pub updated_at_ms: u64,
    /// The open dispute on this card, 0 when none.
    pub open_dispute: u64,
    /// Keyed hash of the holder's last six ID characters, so a linkage query
    /// can check them without any plaintext ID at rest.
    pub last6_tag: [u8; 16],
    /// IoT cards: keyed hash of the responsible unit.
    pub unit_key: Option<IdKey>,
}

/// Per-identity summary under `h ‖ id_key`, updated in the same write batch as
/// the card, so a count is one point read. Counts held cards (active,
/// suspended or pending re-verification).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct HolderRecord {
    /// Held personal cards by (carrier, province). Entries at zero are
    /// removed.
    pub active: BTreeMap<(String, u8), u32>,
    /// Held IoT cards the identity is the responsible person for, likewise;
    /// counted and reported apart, outside the personal-card limits.
    pub iot: BTreeMap<(String, u8), u32>,
    /// The numbers of the identity's in-service cards (personal or IoT),
    /// packed (see [`packed_number`]) and sorted, while there are at most
    /// [`IN_SERVICE_LISTED`]: a count's proof of possession is then
    /// answered from this record alone, without a second point read for
    /// the card (a tenth of a serving node's CPU, measured). `None`: not
    /// known from here (more numbers than that at some point, a number that
    /// does not pack, or a version-2 record); read the card.
    pub in_service: Option<Vec<u64>>,
}

/// Most in-service numbers a [`HolderRecord`] lists. Personal cards are
/// few per identity; an IoT fleet's responsible person may have thousands,
/// and the record is rewritten by every registration of the identity.
pub const IN_SERVICE_LISTED: usize = 16;

impl Default for HolderRecord {
    /// The summary of an identity without cards: nothing in service, known.
    fn default() -> Self {
        HolderRecord {
            active: BTreeMap::new(),
            iot: BTreeMap::new(),
            in_service: Some(Vec::new()),
        }
    }
}

/// A number of 1 to 16 ASCII digits as one integer, its length in the top
/// byte so leading zeros survive: the in-service list is rewritten with
/// every registration of its identity, and integers cost no allocation.
pub fn packed_number(msisdn: &str) -> Option<u64> {
    let digits = msisdn.as_bytes();
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
    Some((digits.len() as u64) << 56 | value)
}

/// [`HolderRecord`] as version 2 stored it.
#[derive(Serialize, Deserialize, Encode, Decode)]
struct HolderRecordV2 {
    active: BTreeMap<(String, u8), u32>,
    iot: BTreeMap<(String, u8), u32>,
}

impl HolderRecord {
    /// A stored holder summary of either version. Every read goes through
    /// here; writes are always [`HOLDER_V`].
    pub fn decode(bytes: &[u8], key: &[u8]) -> Result<HolderRecord, StorageError> {
        upgraded(bytes, key, (HOLDER_V2, HOLDER_V), |v2: HolderRecordV2| {
            HolderRecord {
                active: v2.active,
                iot: v2.iot,
                in_service: None,
            }
        })
    }

    /// Whether `msisdn` is one of the identity's in-service cards, if this
    /// record knows. A number that does not pack is never listed.
    pub fn lists_in_service(&self, msisdn: &str) -> Option<bool> {
        let numbers = self.in_service.as_ref()?;
        Some(packed_number(msisdn).is_some_and(|n| numbers.binary_search(&n).is_ok()))
    }

    /// Records that the card `msisdn` went into service (`true`) or out of
    /// it. Past [`IN_SERVICE_LISTED`] numbers, or with a number that does
    /// not pack, the list is dropped for good: rebuilding it would take a
    /// scan of the identity's cards.
    pub fn set_in_service(&mut self, msisdn: &str, in_service: bool) {
        let Some(numbers) = self.in_service.as_mut() else {
            return;
        };
        let Some(number) = packed_number(msisdn) else {
            if in_service {
                self.in_service = None;
            }
            return;
        };
        match (numbers.binary_search(&number), in_service) {
            (Ok(at), false) => {
                numbers.remove(at);
            }
            (Err(_), true) if numbers.len() >= IN_SERVICE_LISTED => self.in_service = None,
            (Err(at), true) => numbers.insert(at, number),
            (Ok(_), true) | (Err(_), false) => {}
        }
    }

    pub fn total(&self) -> u32 {
        self.active.values().sum()
    }

    pub fn at(&self, carrier: &str, province: u8) -> u32 {
        self.active
            .get(&(carrier.to_string(), province))
            .copied()
            .unwrap_or(0)
    }

    pub fn by_carrier(&self) -> BTreeMap<&str, u32> {
        sum_by_carrier(&self.active)
    }

    pub fn iot_by_carrier(&self) -> BTreeMap<&str, u32> {
        sum_by_carrier(&self.iot)
    }

    fn counts(&mut self, iot: bool) -> &mut BTreeMap<(String, u8), u32> {
        if iot {
            &mut self.iot
        } else {
            &mut self.active
        }
    }

    pub fn add(&mut self, carrier: &str, province: u8) {
        self.add_kind(false, carrier, province);
    }

    pub fn remove(&mut self, carrier: &str, province: u8) {
        self.remove_kind(false, carrier, province);
    }

    pub fn add_kind(&mut self, iot: bool, carrier: &str, province: u8) {
        *self
            .counts(iot)
            .entry((carrier.to_string(), province))
            .or_insert(0) += 1;
    }

    pub fn remove_kind(&mut self, iot: bool, carrier: &str, province: u8) {
        let key = (carrier.to_string(), province);
        let counts = self.counts(iot);
        if let Some(n) = counts.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&key);
            }
        }
    }
}

fn sum_by_carrier(m: &BTreeMap<(String, u8), u32>) -> BTreeMap<&str, u32> {
    let mut out = BTreeMap::new();
    for ((carrier, _), n) in m {
        *out.entry(carrier.as_str()).or_insert(0) += n;
    }
    out
}

/// The last holder of a number, under `m ‖ msisdn`. A number has at most one
/// holder; after cancellation or stripping the record stays (not held) so a
/// later cancel can say "already cancelled" rather than "not found".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct MsisdnRecord {
    pub id_key: IdKey,
    pub held: bool,
    /// The registration that made `id_key` the holder, so a retry of it
    /// replays from here (the record every registration reads anyway)
    /// instead of from a request-id record of its own.
    pub registered_by: Option<Registration>,
}

/// What a registration's retry must find and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Registration {
    /// The first 8 bytes of the SHA-256 of the registration's request id.
    pub request_tag: [u8; 8],
    /// Its outcome: the holder's cards at the carrier-province (IoT cards,
    /// for an IoT card) after it.
    pub held_after: u32,
}

/// [`MsisdnRecord`] as version 1 stored it.
#[derive(Serialize, Deserialize, Encode, Decode)]
struct MsisdnRecordV1 {
    id_key: IdKey,
    held: bool,
}

impl MsisdnRecord {
    /// A stored number index record of either version. Every read goes
    /// through here; writes are always [`MSISDN_V`].
    pub fn decode(bytes: &[u8], key: &[u8]) -> Result<MsisdnRecord, StorageError> {
        upgraded(bytes, key, (MSISDN_V1, MSISDN_V), |v1: MsisdnRecordV1| {
            MsisdnRecord {
                id_key: v1.id_key,
                held: v1.held,
                registered_by: None,
            }
        })
    }
}

/// An `sm_data` record stored in its `current` version or in the `old`
/// one, which `upgrade` turns into the current shape.
fn upgraded<T: Decode<()>, Old: Decode<()>>(
    bytes: &[u8],
    key: &[u8],
    (old, current): (u8, u8),
    upgrade: impl FnOnce(Old) -> T,
) -> Result<T, StorageError> {
    if codec::version_of(bytes) == Some(old) {
        codec::decode(old, bytes, CF_SM_DATA, key).map(upgrade)
    } else {
        codec::decode(current, bytes, CF_SM_DATA, key)
    }
}

/// A registration whose place in the number index a later registration of
/// the number took, under [`crate::keys::replaced_registration_key`], so a
/// retry of it still replays. Kept for good: one small record per number
/// registered again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct ReplacedRecord {
    pub held_after: u32,
}

/// A card awaiting re-verification, under `p ‖ deadline ‖ msisdn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct PendingRecord {
    pub id_key: IdKey,
}

/// A dispute under `x ‖ id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct DisputeRecord {
    pub id_key: IdKey,
    pub msisdn: String,
    pub carrier: String,
    pub opened_at_ms: u64,
    /// 0 while open, else the domain's `DisputeOutcome::code`.
    pub outcome: u8,
    pub resolved_by: String,
    pub resolved_at_ms: u64,
    /// Where the outcome is sent (an active card of the person at opening);
    /// empty: no notification.
    pub contact: String,
}

/// A replicated sequence under `n ‖ name`: the next value to hand out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct CounterRecord {
    pub next: u64,
}

/// A restriction on new cards under `r ‖ id_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct RestrictionRecord {
    pub reason: String,
    pub added_at_ms: u64,
    /// 0: until lifted.
    pub expires_at_ms: u64,
}

/// An account linked to a number, under `l ‖ msisdn ‖ platform ‖ account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct LinkRecord {
    pub linked_at_ms: u64,
    pub needs_reverify: bool,
}

/// An account its platform must re-verify, under
/// `v ‖ platform ‖ msisdn ‖ account`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct ReverifyRecord {
    pub marked_at_ms: u64,
    /// Card status name that caused it ("stripped", "cancelled", ...).
    pub cause: String,
}

/// The first outcome of a request, under `d ‖ request_id`, as the opaque
/// bytes the state machine returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct DedupRecord {
    pub applied_at_ms: u64,
    pub outcome: Vec<u8>,
}

/// Under `e ‖ applied_at_ms ‖ request_id`: marks a dedup record for trimming
/// once its retention has passed. The key says it all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct DedupAgeRecord;

/// Under `e ‖ applied_at_ms ‖ first request id`: every request id one log
/// entry remembered, so an entry of thousands of commands writes one age
/// record instead of one each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct DedupAgeBlock {
    pub request_ids: Vec<String>,
}

/// Policy values as commands carry them and the store keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct PolicyValues {
    pub own_hall_threshold: u32,
    pub reverify_window_ms: u64,
    pub max_per_carrier: u32,
    pub max_total: u32,
    pub max_failed_verifications: u32,
    pub lockout_ms: u64,
}

/// The policy in force, under `P`; absent means the built-in defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct PolicyRecord {
    pub values: PolicyValues,
    pub set_at_ms: u64,
}

/// The revision of the rules in force, under `R`; absent means the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct RulesRecord {
    pub version: u32,
    pub set_at_ms: u64,
}

/// National statistics under `S`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct StatsRecord {
    /// Held cards by (carrier, province).
    pub held: BTreeMap<(String, u8), u64>,
    pub high_risk_flagged: u64,
    pub reverified: u64,
    pub high_risk_suspended: u64,
    pub disputes_opened: u64,
    /// Resolved disputes by outcome code.
    pub disputes_resolved: BTreeMap<u8, u64>,
    pub lockouts: u64,
}

/// One change to the statistics, applied when its command commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatDelta {
    Held {
        carrier: String,
        province: u8,
        delta: i64,
    },
    HighRiskFlagged,
    Reverified,
    HighRiskSuspended,
    DisputeOpened,
    DisputeResolved(u8),
    Lockout,
}

impl StatsRecord {
    /// Folds `d` in. By value: an import entry applies one `Held` delta per
    /// card, and its carrier moves into the map key instead of being cloned
    /// (twice, before: 1.4 % of a follower's CPU during an import).
    pub fn apply(&mut self, d: StatDelta) {
        match d {
            StatDelta::Held {
                carrier,
                province,
                delta,
            } => {
                let key = (carrier, province);
                let n = self
                    .held
                    .get(&key)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add_signed(delta);
                if n == 0 {
                    self.held.remove(&key);
                } else {
                    self.held.insert(key, n);
                }
            }
            StatDelta::HighRiskFlagged => self.high_risk_flagged += 1,
            StatDelta::Reverified => self.reverified += 1,
            StatDelta::HighRiskSuspended => self.high_risk_suspended += 1,
            StatDelta::DisputeOpened => self.disputes_opened += 1,
            StatDelta::DisputeResolved(o) => *self.disputes_resolved.entry(o).or_insert(0) += 1,
            StatDelta::Lockout => self.lockouts += 1,
        }
    }
}

/// One applied command, under `A ‖ index ‖ position`. Holds no plaintext
/// identity: identities appear as a short prefix of their keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct AuditRecord {
    pub at_ms: u64,
    /// Who acted: the verified caller (role and certificate subject) when
    /// the command carried one, else as the command names it (a carrier,
    /// "regulator", a platform, "holder", "system").
    pub actor: String,
    pub action: String,
    /// What it acted on: a masked number, an id-key prefix, a dispute id.
    pub subject: String,
    pub request_id: String,
    /// "ok" or the rejection reason.
    pub outcome: String,
}

/// The audit records of one log entry's commands, under the audit key of
/// the first (`A ‖ index ‖ first position`), each with its position: one
/// record per entry instead of one per command. Replayed commands leave no
/// row, so positions may skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct AuditBlock {
    pub rows: Vec<(u32, AuditRecord)>,
}

/// A notification for the SMS gateway, under `o ‖ id`, removed when the
/// consumer acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct OutboxRecord {
    /// The number to send to.
    pub to: String,
    /// "count_result" or "dispute_outcome".
    pub kind: String,
    pub text: String,
    pub created_at_ms: u64,
}

/// Failed count verifications of an identity under `f ‖ id_key`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct LockoutRecord {
    pub failures: u32,
    /// 0 when not locked.
    pub locked_until_ms: u64,
}

/// Which pepper version id keys are under (`K`). Absent: version 1, no
/// rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct KeyStateRecord {
    pub current: u32,
    /// The version a rotation in progress moves to; 0 when none.
    pub next: u32,
    /// Identities moved by the rotation in progress (or the last one).
    pub moved: u64,
}

impl Default for KeyStateRecord {
    fn default() -> Self {
        KeyStateRecord {
            current: 1,
            next: 0,
            moved: 0,
        }
    }
}

impl KeyStateRecord {
    pub fn rotating_to(&self) -> Option<u32> {
        (self.next != 0).then_some(self.next)
    }
}

/// The other end of a move during a rotation, under `a ‖ old` (the new
/// key) and `b ‖ new` (the old key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct AliasRecord {
    pub other: IdKey,
}

/// The generation of the stored layout a data dir holds (`sm_meta`
/// `format`; see [`crate::format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct StoreFormatRecord {
    pub generation: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_counts_add_and_remove() {
        let mut h = HolderRecord::default();
        h.add("CMCC", 11);
        h.add("CMCC", 11);
        h.add("CMCC", 44);
        h.add("CUCC", 11);
        assert_eq!(h.total(), 4);
        assert_eq!(h.at("CMCC", 11), 2);
        assert_eq!(h.by_carrier().get("CMCC"), Some(&3));
        h.remove("CMCC", 11);
        h.remove("CMCC", 11);
        h.remove("CMCC", 11);
        assert_eq!(h.at("CMCC", 11), 0);
        assert!(!h.active.contains_key(&("CMCC".to_string(), 11)));
        assert_eq!(h.total(), 2);
    }

    #[test]
    fn number_records_of_both_versions_decode() {
        let key = b"m-key";
        let v1 = MsisdnRecordV1 {
            id_key: [4; 32],
            held: true,
        };
        let old = MsisdnRecord::decode(&codec::encode(MSISDN_V1, &v1).unwrap(), key).unwrap();
        assert_eq!(
            old,
            MsisdnRecord {
                id_key: [4; 32],
                held: true,
                registered_by: None,
            }
        );
        let new = MsisdnRecord {
            registered_by: Some(Registration {
                request_tag: [1, 2, 3, 4, 5, 6, 7, 8],
                held_after: 4,
            }),
            ..old
        };
        let bytes = codec::encode(MSISDN_V, &new).unwrap();
        assert_eq!(MsisdnRecord::decode(&bytes, key).unwrap(), new);
        // A version-2 body is not mistaken for a version-1 one.
        assert!(codec::decode::<MsisdnRecordV1>(MSISDN_V1, &bytes, CF_SM_DATA, key).is_err());
    }

    #[test]
    fn holder_records_of_both_versions_decode() {
        let key = b"h-key";
        let mut counts = BTreeMap::new();
        counts.insert(("CMCC".to_string(), 11), 2);
        let v2 = HolderRecordV2 {
            active: counts.clone(),
            iot: BTreeMap::new(),
        };
        let old = HolderRecord::decode(&codec::encode(HOLDER_V2, &v2).unwrap(), key).unwrap();
        assert_eq!(old.active, counts);
        // A version-2 record never says which numbers are in service.
        assert_eq!(old.in_service, None);
        assert_eq!(old.lists_in_service("13800000000"), None);
        let mut new = HolderRecord::default();
        new.set_in_service("13800000000", true);
        let bytes = codec::encode(HOLDER_V, &new).unwrap();
        assert_eq!(HolderRecord::decode(&bytes, key).unwrap(), new);
    }

    #[test]
    fn in_service_numbers_are_exact_until_the_list_overflows() {
        let mut h = HolderRecord::default();
        assert_eq!(h.lists_in_service("13800000000"), Some(false));
        let number = |i: usize| format!("1380000{i:04}");
        // Out of order, with a repeat: the list stays sorted and unique.
        for i in [3, 1, 2, 1] {
            h.set_in_service(&number(i), true);
        }
        let packed = |i| packed_number(&number(i)).unwrap();
        assert_eq!(h.in_service, Some(vec![packed(1), packed(2), packed(3)]));
        h.set_in_service(&number(2), false);
        h.set_in_service(&number(9), false);
        assert_eq!(h.lists_in_service(&number(2)), Some(false));
        assert_eq!(h.lists_in_service(&number(3)), Some(true));
        for i in 10..10 + IN_SERVICE_LISTED - 2 {
            h.set_in_service(&number(i), true);
        }
        assert_eq!(h.in_service.as_ref().map(Vec::len), Some(IN_SERVICE_LISTED));
        // A listed number going in again changes nothing; one more is too many.
        h.set_in_service(&number(1), true);
        assert_eq!(h.lists_in_service(&number(1)), Some(true));
        h.set_in_service(&number(99), true);
        assert_eq!(h.lists_in_service(&number(1)), None);
        // Gone for good: taking numbers out does not bring it back.
        h.set_in_service(&number(1), false);
        assert_eq!(h.in_service, None);

        // A number that does not pack is never listed, and going into
        // service it makes the list unknown.
        let mut h = HolderRecord::default();
        h.set_in_service("1380000x000", false);
        assert_eq!(h.lists_in_service("1380000x000"), Some(false));
        h.set_in_service("1380000x000", true);
        assert_eq!(h.lists_in_service(&number(1)), None);
    }

    #[test]
    fn numbers_pack_one_to_one() {
        let all = [
            "0",
            "00",
            "1",
            "0138",
            "138",
            "13800000000",
            "9999999999999999",
        ];
        let packed: Vec<u64> = all.iter().map(|n| packed_number(n).unwrap()).collect();
        let mut distinct = packed.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len());
        for bad in ["", "12345678901234567", "138-0000", "１３８"] {
            assert_eq!(packed_number(bad), None, "{bad:?}");
        }
    }

    /// Records were written with bincode's serde encoder until session 24:
    /// the derived encoding must give the same bytes, and decode every
    /// byte string to the same value or fail on it too, or a database (or
    /// a replica of another build) would read differently.
    mod same_bytes_as_serde {
        use super::*;
        use proptest::prelude::*;
        use serde::de::DeserializeOwned;

        use crate::codec::config;

        /// `value`'s bytes are the same both ways; `value`'s bytes cut
        /// short at `at`, and with the byte there set to `to`, decode the
        /// same both ways.
        fn agree<T>(value: &T, at: usize, to: u8) -> Result<(), TestCaseError>
        where
            T: Serialize + DeserializeOwned + Encode + Decode<()> + PartialEq + std::fmt::Debug,
        {
            let old = bincode::serde::encode_to_vec(value, config()).unwrap();
            prop_assert_eq!(&old, &bincode::encode_to_vec(value, config()).unwrap());
            let mut changed = old.clone();
            let cut = if old.is_empty() { 0 } else { at % old.len() };
            if let Some(b) = changed.get_mut(cut) {
                *b = to;
            }
            for bytes in [&old[..], &old[..cut], &changed[..]] {
                let by_serde = bincode::serde::decode_from_slice::<T, _>(bytes, config())
                    .ok()
                    .filter(|(_, used)| *used == bytes.len())
                    .map(|(v, _)| v);
                let derived = bincode::decode_from_slice::<T, _>(bytes, config())
                    .ok()
                    .filter(|(_, used)| *used == bytes.len())
                    .map(|(v, _)| v);
                prop_assert_eq!(by_serde, derived);
            }
            Ok(())
        }

        fn text() -> impl Strategy<Value = String> {
            "\\PC{0,10}"
        }

        fn card() -> impl Strategy<Value = CardRecord> {
            (
                text(),
                any::<(u8, u8, u8, u8, u8)>(),
                any::<(u64, u64, u64, u64)>(),
                any::<[u8; 16]>(),
                any::<Option<IdKey>>(),
            )
                .prop_map(|(carrier, b, t, last6_tag, unit_key)| CardRecord {
                    carrier,
                    province: b.0,
                    kind: b.1,
                    channel: b.2,
                    status: b.3,
                    suspend_reason: b.4,
                    reverify_deadline_ms: t.0,
                    registered_at_ms: t.1,
                    updated_at_ms: t.2,
                    open_dispute: t.3,
                    last6_tag,
                    unit_key,
                })
        }

        fn counts() -> impl Strategy<Value = BTreeMap<(String, u8), u32>> {
            prop::collection::btree_map((text(), any::<u8>()), any::<u32>(), 0..4)
        }

        fn holder() -> impl Strategy<Value = HolderRecord> {
            (
                counts(),
                counts(),
                prop::option::of(prop::collection::vec(any::<u64>(), 0..5)),
            )
                .prop_map(|(active, iot, in_service)| HolderRecord {
                    active,
                    iot,
                    in_service,
                })
        }

        fn msisdn() -> impl Strategy<Value = MsisdnRecord> {
            let registration =
                (any::<[u8; 8]>(), any::<u32>()).prop_map(|(request_tag, held_after)| {
                    Registration {
                        request_tag,
                        held_after,
                    }
                });
            (
                any::<IdKey>(),
                any::<bool>(),
                prop::option::of(registration),
            )
                .prop_map(|(id_key, held, registered_by)| MsisdnRecord {
                    id_key,
                    held,
                    registered_by,
                })
        }

        fn stats() -> impl Strategy<Value = StatsRecord> {
            (
                prop::collection::btree_map((text(), any::<u8>()), any::<u64>(), 0..4),
                any::<(u64, u64, u64, u64, u64)>(),
                prop::collection::btree_map(any::<u8>(), any::<u64>(), 0..3),
            )
                .prop_map(|(held, n, disputes_resolved)| StatsRecord {
                    held,
                    high_risk_flagged: n.0,
                    reverified: n.1,
                    high_risk_suspended: n.2,
                    disputes_opened: n.3,
                    disputes_resolved,
                    lockouts: n.4,
                })
        }

        fn audit() -> impl Strategy<Value = AuditBlock> {
            let row = (
                any::<u32>(),
                any::<u64>(),
                [text(), text(), text(), text(), text()],
            )
                .prop_map(
                    |(position, at_ms, [actor, action, subject, request_id, outcome])| {
                        (
                            position,
                            AuditRecord {
                                at_ms,
                                actor,
                                action,
                                subject,
                                request_id,
                                outcome,
                            },
                        )
                    },
                );
            prop::collection::vec(row, 0..3).prop_map(|rows| AuditBlock { rows })
        }

        proptest! {
            #[test]
            fn cards(v in card(), at in any::<usize>(), to in any::<u8>()) {
                agree(&v, at, to)?;
            }

            #[test]
            fn holders(v in holder(), at in any::<usize>(), to in any::<u8>()) {
                agree(&v, at, to)?;
                let v2 = HolderRecordV2 { active: v.active, iot: v.iot };
                prop_assert_eq!(
                    bincode::serde::encode_to_vec(&v2, config()).unwrap(),
                    bincode::encode_to_vec(&v2, config()).unwrap()
                );
            }

            #[test]
            fn numbers(v in msisdn(), at in any::<usize>(), to in any::<u8>()) {
                agree(&v, at, to)?;
                let v1 = MsisdnRecordV1 { id_key: v.id_key, held: v.held };
                prop_assert_eq!(
                    bincode::serde::encode_to_vec(&v1, config()).unwrap(),
                    bincode::encode_to_vec(&v1, config()).unwrap()
                );
            }

            #[test]
            fn statistics(v in stats(), at in any::<usize>(), to in any::<u8>()) {
                agree(&v, at, to)?;
            }

            #[test]
            fn audit_blocks(v in audit(), at in any::<usize>(), to in any::<u8>()) {
                agree(&v, at, to)?;
            }

            #[test]
            fn the_other_records(
                id_key in any::<IdKey>(),
                s in [text(), text(), text(), text()],
                n in any::<(u64, u64, u32, u8, bool)>(),
                ids in prop::collection::vec(text(), 0..3),
                outcome in prop::collection::vec(any::<u8>(), 0..6),
                at in any::<usize>(),
                to in any::<u8>(),
            ) {
                let [a, b, c, d] = s;
                agree(&PendingRecord { id_key }, at, to)?;
                agree(&AliasRecord { other: id_key }, at, to)?;
                agree(&DisputeRecord {
                    id_key,
                    msisdn: a.clone(),
                    carrier: b.clone(),
                    opened_at_ms: n.0,
                    outcome: n.3,
                    resolved_by: c.clone(),
                    resolved_at_ms: n.1,
                    contact: d.clone(),
                }, at, to)?;
                agree(&RestrictionRecord { reason: a.clone(), added_at_ms: n.0, expires_at_ms: n.1 }, at, to)?;
                agree(&LinkRecord { linked_at_ms: n.0, needs_reverify: n.4 }, at, to)?;
                agree(&ReverifyRecord { marked_at_ms: n.1, cause: b.clone() }, at, to)?;
                agree(&DedupRecord { applied_at_ms: n.0, outcome }, at, to)?;
                agree(&DedupAgeBlock { request_ids: ids }, at, to)?;
                agree(&OutboxRecord { to: a, kind: b, text: c, created_at_ms: n.0 }, at, to)?;
                agree(&LockoutRecord { failures: n.2, locked_until_ms: n.1 }, at, to)?;
                agree(&KeyStateRecord { current: n.2, next: n.2 ^ 1, moved: n.0 }, at, to)?;
                agree(&CounterRecord { next: n.0 }, at, to)?;
                agree(&ReplacedRecord { held_after: n.2 }, at, to)?;
                agree(&RulesRecord { version: n.2, set_at_ms: n.0 }, at, to)?;
                agree(&PolicyRecord {
                    values: PolicyValues {
                        own_hall_threshold: n.2,
                        reverify_window_ms: n.0,
                        max_per_carrier: n.2 / 2,
                        max_total: n.2 / 3,
                        max_failed_verifications: u32::from(n.3),
                        lockout_ms: n.1,
                    },
                    set_at_ms: n.0 ^ n.1,
                }, at, to)?;
            }
        }
    }
}
