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

// ---- sm_data ----
//
// The first byte is a tag naming the record type; ID-scoped records put the
// 32-byte id key right after it so `schema::SM_PREFIX_LEN` covers it.

const TAG_CARD: u8 = b'c';
const TAG_HOLDER: u8 = b'h';
const TAG_MSISDN: u8 = b'm';
const TAG_DEDUP: u8 = b'd';

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

/// `d ‖ request_id`: the first outcome of a mutating request.
pub fn dedup_key(request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + request_id.len());
    k.push(TAG_DEDUP);
    k.extend_from_slice(request_id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            prop_assert!(k.len() > crate::schema::SM_PREFIX_LEN);
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
        ];
        let tags: std::collections::BTreeSet<u8> = keys.iter().map(|k| k[0]).collect();
        assert_eq!(tags.len(), keys.len());
    }
}
