//! Key encodings. All keys are order-preserving byte strings: integers are
//! big-endian, variable-length parts come last or are length-prefixed.

/// Length of the keyed hash of an identity (HMAC-SHA256).
pub const ID_KEY_LEN: usize = 32;
pub type IdKey = [u8; ID_KEY_LEN];

// ---- raft_log ----

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn log_index(key: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

// ---- raft_meta ----

pub const META_VOTE: &[u8] = b"vote";
pub const META_COMMITTED: &[u8] = b"committed";
pub const META_LAST_PURGED: &[u8] = b"last_purged";

// ---- sm_meta ----

pub const SM_APPLIED: &[u8] = b"applied";
/// Present while a snapshot install is in progress; a node that restarts with
/// it set re-installs the retained snapshot before serving.
pub const SM_INSTALLING: &[u8] = b"installing";
/// The generation of the stored layout (see [`crate::format`]). In
/// `sm_meta`, so a snapshot carries the generation of the build that took it.
pub const SM_FORMAT: &[u8] = b"format";

// ---- sm_data ----
//
// The first byte is a tag naming the record type; ID-scoped records put the
// 32-byte id key right after it, so an identity's records of one type are
// neighbours.

const TAG_CARD: u8 = b'c';
const TAG_HOLDER: u8 = b'h';
const TAG_MSISDN: u8 = b'm';
const TAG_DEDUP: u8 = b'd';
const TAG_PENDING: u8 = b'p';
const TAG_DISPUTE: u8 = b'x';
const TAG_COUNTER: u8 = b'n';
const TAG_RESTRICTION: u8 = b'r';
const TAG_LINK: u8 = b'l';
const TAG_REVERIFY: u8 = b'v';
const TAG_LOCKOUT: u8 = b'f';
const TAG_AUDIT: u8 = b'A';
const TAG_OUTBOX: u8 = b'o';
const TAG_DEDUP_AGE: u8 = b'e';
const TAG_MOVED: u8 = b'a';
const TAG_ARRIVED: u8 = b'b';
const TAG_REPLACED: u8 = b'g';

/// The policy in force (limits, windows): replicated state, so every replica
/// enforces the same numbers.
pub const POLICY: &[u8] = b"P";
/// National statistics, updated in the same batch as the changes they count.
pub const STATS: &[u8] = b"S";
/// The revision of the rules in force; absent means the first.
pub const RULES: &[u8] = b"R";
/// Which pepper version the id keys are under, and the rotation in progress.
pub const KEY_STATE: &[u8] = b"K";

/// Key spaces nearly every command or query of some kind looks up and that
/// hold few records: request ids (every command with one), restrictions
/// (every registration), lockouts and the key state (every query that
/// verifies a number: most find no lockout; the key state is one record,
/// written only by a pepper rotation). They live in their own column family
/// (`schema::CF_SM_CHECKS`), where a lookup costs a glance at a small
/// memtable and a few small files instead of a probe per sorted run of the
/// big one (at 10 M cards, counts ran 7-10 % slower while the lockout and
/// key state lookups probed every run of `sm_data`, session 21).
pub const CHECK_PREFIXES: [&[u8]; 4] =
    [&[TAG_DEDUP], &[TAG_RESTRICTION], &[TAG_LOCKOUT], KEY_STATE];

/// Which of the [`CHECK_PREFIXES`] key spaces `key` is in, if any.
pub fn check_space(key: &[u8]) -> Option<usize> {
    CHECK_PREFIXES.iter().position(|p| key.starts_with(p))
}

/// True for keys of the [`CHECK_PREFIXES`] key spaces.
pub fn is_check_key(key: &[u8]) -> bool {
    check_space(key).is_some()
}

/// Separates variable-length parts; the parts never contain it (platforms,
/// accounts and numbers are validated printable ASCII).
const SEP: u8 = 0;

/// How much of `key` names the group a hot prefix scan reads whole: a
/// number's links (`l ‖ msisdn ‖ 0`); `None` for every other key.
/// `sm_data`'s bloom filters hold these prefixes (`schema`), so a scan of
/// one group skips the files and memtables that hold none of it instead
/// of seeking in each: every link counts its number's links, and with the
/// data spread over many sorted runs those seeks were a quarter of a
/// leader's CPU under links. An identity's cards are scanned too, but
/// only by card listings and key rotations: a prefix entry for every card
/// would cost each import more than those scans gain.
pub fn scan_prefix_len(key: &[u8]) -> Option<usize> {
    match *key.first()? {
        TAG_LINK => key[1..].iter().position(|&b| b == SEP).map(|at| at + 2),
        _ => None,
    }
}

/// `c ‖ id_key ‖ msisdn`: a card registered under an identity.
pub fn card_key(id_key: &IdKey, msisdn: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_KEY_LEN + msisdn.len());
    k.push(TAG_CARD);
    k.extend_from_slice(id_key);
    k.extend_from_slice(msisdn.as_bytes());
    k
}

/// Prefix of all cards of one identity.
pub fn card_prefix(id_key: &IdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_KEY_LEN);
    k.push(TAG_CARD);
    k.extend_from_slice(id_key);
    k
}

/// `h ‖ id_key`: per-identity summary of active card counts.
pub fn holder_key(id_key: &IdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_KEY_LEN);
    k.push(TAG_HOLDER);
    k.extend_from_slice(id_key);
    k
}

/// `m ‖ msisdn`: the current holder of a number.
pub fn msisdn_key(msisdn: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + msisdn.len());
    k.push(TAG_MSISDN);
    k.extend_from_slice(msisdn.as_bytes());
    k
}

/// `g ‖ msisdn ‖ request tag`: a registration of the number whose place
/// in the number index a later registration took.
pub fn replaced_registration_key(msisdn: &str, request_tag: &[u8; 8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + msisdn.len() + request_tag.len());
    k.push(TAG_REPLACED);
    k.extend_from_slice(msisdn.as_bytes());
    k.extend_from_slice(request_tag);
    k
}

/// `d ‖ request_id`: the first outcome of a mutating request.
pub fn dedup_key(request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + request_id.len());
    k.push(TAG_DEDUP);
    k.extend_from_slice(request_id.as_bytes());
    k
}

/// `A ‖ log index (BE) ‖ position in the entry (BE)`: the audit record of
/// one applied command, in log order.
pub fn audit_key(index: u64, position: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(13);
    k.push(TAG_AUDIT);
    k.extend_from_slice(&index.to_be_bytes());
    k.extend_from_slice(&position.to_be_bytes());
    k
}

pub const AUDIT_PREFIX: &[u8] = &[TAG_AUDIT];

pub fn parse_audit_key(key: &[u8]) -> Option<(u64, u32)> {
    let rest = key.strip_prefix(AUDIT_PREFIX)?;
    let (index, position) = rest.split_at_checked(8)?;
    Some((
        u64::from_be_bytes(index.try_into().ok()?),
        u32::from_be_bytes(position.try_into().ok()?),
    ))
}

/// `o ‖ notification id (BE)`: a notification waiting for its consumer.
pub fn outbox_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(TAG_OUTBOX);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub const OUTBOX_PREFIX: &[u8] = &[TAG_OUTBOX];

pub fn parse_outbox_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        key.strip_prefix(OUTBOX_PREFIX)?.try_into().ok()?,
    ))
}

/// `f ‖ id_key`: failed count verifications and lockout of an identity.
pub fn lockout_key(id_key: &IdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_KEY_LEN);
    k.push(TAG_LOCKOUT);
    k.extend_from_slice(id_key);
    k
}

/// `tag ‖ ms (BE) ‖ suffix`: a queue ordered by time, so a sweep reads only
/// what is due.
fn timed_key(tag: u8, ms: u64, suffix: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + suffix.len());
    k.push(tag);
    k.extend_from_slice(&ms.to_be_bytes());
    k.extend_from_slice(suffix.as_bytes());
    k
}

fn parse_timed_key<'k>(prefix: &[u8], key: &'k [u8]) -> Option<(u64, &'k str)> {
    let rest = key.strip_prefix(prefix)?;
    let (ms, suffix) = rest.split_at_checked(8)?;
    let ms = u64::from_be_bytes(ms.try_into().ok()?);
    Some((ms, std::str::from_utf8(suffix).ok()?))
}

/// `p ‖ deadline_ms (BE) ‖ msisdn`: cards awaiting re-verification, oldest
/// deadline first.
pub fn pending_key(deadline_ms: u64, msisdn: &str) -> Vec<u8> {
    timed_key(TAG_PENDING, deadline_ms, msisdn)
}

pub const PENDING_PREFIX: &[u8] = &[TAG_PENDING];

/// The deadline and number of a pending key.
pub fn parse_pending_key(key: &[u8]) -> Option<(u64, &str)> {
    parse_timed_key(PENDING_PREFIX, key)
}

/// `e ‖ applied_at_ms (BE) ‖ request_id`: dedup records by age, so the ones
/// past their retention are found without reading the rest.
pub fn dedup_age_key(applied_at_ms: u64, request_id: &str) -> Vec<u8> {
    timed_key(TAG_DEDUP_AGE, applied_at_ms, request_id)
}

pub const DEDUP_AGE_PREFIX: &[u8] = &[TAG_DEDUP_AGE];

/// The time and request id of a dedup age key.
pub fn parse_dedup_age_key(key: &[u8]) -> Option<(u64, &str)> {
    parse_timed_key(DEDUP_AGE_PREFIX, key)
}

/// `x ‖ dispute id (BE)`.
pub fn dispute_key(id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(TAG_DISPUTE);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// `n ‖ name`: a replicated sequence (e.g. dispute ids).
pub fn counter_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(TAG_COUNTER);
    k.extend_from_slice(name.as_bytes());
    k
}

/// `r ‖ id_key`: a restriction on new cards (限制入网).
pub fn restriction_key(id_key: &IdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_KEY_LEN);
    k.push(TAG_RESTRICTION);
    k.extend_from_slice(id_key);
    k
}

/// `a ‖ old id_key`: during a pepper rotation, where an identity's records
/// moved to (the new key), so commands and reads still holding the old key
/// find them. Dropped once the rotation finishes.
pub fn moved_key(old: &IdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_KEY_LEN);
    k.push(TAG_MOVED);
    k.extend_from_slice(old);
    k
}

/// `b ‖ new id_key`: marks a key as already under the rotation's new
/// version, so the background migration skips it.
pub fn arrived_key(new: &IdKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + ID_KEY_LEN);
    k.push(TAG_ARRIVED);
    k.extend_from_slice(new);
    k
}

pub const MOVED_PREFIX: &[u8] = &[TAG_MOVED];
pub const ARRIVED_PREFIX: &[u8] = &[TAG_ARRIVED];
/// Prefixes of the records keyed by an identity alone: every identity with
/// any state has at least one of them (cards come with a holder record).
pub const ID_SCOPED_PREFIXES: [&[u8]; 3] = [&[TAG_HOLDER], &[TAG_RESTRICTION], &[TAG_LOCKOUT]];

/// The id key of a `tag ‖ id_key` key.
pub fn id_of(key: &[u8]) -> Option<IdKey> {
    key.get(1..1 + ID_KEY_LEN)?.try_into().ok()
}

fn joined(tag: u8, parts: &[&str]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(tag);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(SEP);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// `l ‖ msisdn ‖ 0 ‖ platform ‖ 0 ‖ account`: an account linked to a number.
pub fn link_key(msisdn: &str, platform: &str, account: &str) -> Vec<u8> {
    joined(TAG_LINK, &[msisdn, platform, account])
}

/// Prefix of every link of one number.
pub fn link_prefix(msisdn: &str) -> Vec<u8> {
    let mut k = joined(TAG_LINK, &[msisdn]);
    k.push(SEP);
    k
}

/// `v ‖ platform ‖ 0 ‖ msisdn ‖ 0 ‖ account`: an account its platform must
/// re-verify, listed per platform.
pub fn reverify_key(platform: &str, msisdn: &str, account: &str) -> Vec<u8> {
    joined(TAG_REVERIFY, &[platform, msisdn, account])
}

pub fn reverify_prefix(platform: &str) -> Vec<u8> {
    let mut k = joined(TAG_REVERIFY, &[platform]);
    k.push(SEP);
    k
}

/// The (a, b) parts after a `prefix` of a two-part key (link or reverify).
pub fn split_pair<'k>(key: &'k [u8], prefix: &[u8]) -> Option<(&'k str, &'k str)> {
    let rest = key.strip_prefix(prefix)?;
    let at = rest.iter().position(|b| *b == SEP)?;
    let a = std::str::from_utf8(&rest[..at]).ok()?;
    let b = std::str::from_utf8(&rest[at + 1..]).ok()?;
    Some((a, b))
}

/// The msisdn part of a card key.
pub fn card_msisdn(key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.get(1 + ID_KEY_LEN..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scan_groups_are_a_numbers_links() {
        let id = [9u8; ID_KEY_LEN];
        let link = link_key("13800000000", "wechat", "acct");
        let prefix = link_prefix("13800000000");
        assert_eq!(scan_prefix_len(&link), Some(prefix.len()));
        assert_eq!(scan_prefix_len(&prefix), Some(prefix.len()));
        // Shorter prefixes and other key spaces scan in key order.
        assert_eq!(scan_prefix_len(&card_key(&id, "13800000000")), None);
        assert_eq!(scan_prefix_len(&card_prefix(&id)), None);
        assert_eq!(scan_prefix_len(&[TAG_LINK]), None);
        assert_eq!(scan_prefix_len(b"l138"), None);
        assert_eq!(scan_prefix_len(&holder_key(&id)), None);
        assert_eq!(scan_prefix_len(&msisdn_key("13800000000")), None);
        assert_eq!(scan_prefix_len(&[]), None);
    }

    proptest! {
        #[test]
        fn log_keys_sort_like_indexes(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(a.cmp(&b), log_key(a).cmp(&log_key(b)));
            prop_assert_eq!(log_index(&log_key(a)), Some(a));
        }

        #[test]
        fn cards_of_an_id_share_its_prefix(id in any::<[u8; 32]>(), m in "[0-9]{11,13}") {
            let k = card_key(&id, &m);
            prop_assert!(k.starts_with(&card_prefix(&id)));
            prop_assert!(k.len() > card_prefix(&id).len());
        }
    }

    #[test]
    fn check_keys_are_exactly_request_ids_restrictions_lockouts_and_key_state() {
        let id = [3u8; ID_KEY_LEN];
        for k in [
            dedup_key("req-1"),
            restriction_key(&id),
            lockout_key(&id),
            KEY_STATE.to_vec(),
        ] {
            assert!(is_check_key(&k));
            assert!(CHECK_PREFIXES.iter().any(|p| k.starts_with(p)));
        }
        let others = [
            card_key(&id, "13800000000"),
            holder_key(&id),
            msisdn_key("13800000000"),
            dedup_age_key(1, "req-1"),
            audit_key(1, 0),
            POLICY.to_vec(),
            RULES.to_vec(),
            Vec::new(),
        ];
        for k in others {
            assert!(!is_check_key(&k), "{k:?}");
            assert!(!CHECK_PREFIXES.iter().any(|p| k.starts_with(p)));
        }
    }

    proptest! {
        #[test]
        fn pending_keys_sort_by_deadline(a in any::<u64>(), b in any::<u64>(), m in "[0-9]{11}") {
            prop_assert_eq!(a.cmp(&b), pending_key(a, &m).cmp(&pending_key(b, &m)));
            let k = pending_key(a, &m);
            prop_assert_eq!(parse_pending_key(&k), Some((a, m.as_str())));
        }

        #[test]
        fn audit_keys_sort_in_log_order(a in any::<(u64, u32)>(), b in any::<(u64, u32)>()) {
            prop_assert_eq!(a.cmp(&b), audit_key(a.0, a.1).cmp(&audit_key(b.0, b.1)));
            prop_assert_eq!(parse_audit_key(&audit_key(a.0, a.1)), Some(a));
        }

        #[test]
        fn pair_keys_split_back(m in "[0-9]{11}", p in "[a-z_]{1,32}", a in "[!-~]{1,64}") {
            let k = link_key(&m, &p, &a);
            prop_assert!(k.starts_with(&link_prefix(&m)));
            prop_assert_eq!(split_pair(&k, &link_prefix(&m)), Some((p.as_str(), a.as_str())));
            let v = reverify_key(&p, &m, &a);
            prop_assert_eq!(split_pair(&v, &reverify_prefix(&p)), Some((m.as_str(), a.as_str())));
        }
    }

    #[test]
    fn tags_do_not_collide() {
        let id = [7u8; 32];
        let keys = [
            card_prefix(&id),
            holder_key(&id),
            msisdn_key("1"),
            dedup_key("1"),
            dedup_age_key(1, "1"),
            pending_key(1, "1"),
            dispute_key(1),
            counter_key("1"),
            restriction_key(&id),
            link_key("1", "2", "3"),
            reverify_key("1", "2", "3"),
            lockout_key(&id),
            audit_key(1, 0),
            outbox_key(1),
            moved_key(&id),
            arrived_key(&id),
            POLICY.to_vec(),
            STATS.to_vec(),
            RULES.to_vec(),
            KEY_STATE.to_vec(),
        ];
        let tags: std::collections::BTreeSet<u8> = keys.iter().map(|k| k[0]).collect();
        assert_eq!(tags.len(), keys.len());
    }
}
