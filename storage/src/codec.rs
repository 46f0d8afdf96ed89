//! The envelope every stored value is wrapped in:
//!
//! ```text
//! [format version: u8][bincode body ...][crc32 of version+body: u32 LE]
//! ```
//!
//! The version lets a record type evolve; the crc catches bit rot and torn or
//! foreign writes that RocksDB's own block checksums cannot (for example a
//! value written by a buggy tool, or memory corruption before the write).

use bincode::{Decode, Encode};

use crate::StorageError;

const CRC_LEN: usize = 4;

/// Most bytes one decoded record may allocate for its byte strings (a raft
/// log entry is the largest record: at most one raft message). Without it
/// bincode allocates whatever length prefix it reads, and a record claiming
/// a terabyte string aborts the node instead of being reported corrupt
/// (found by fuzzing).
pub const MAX_DECODE_BYTES: usize = 512 << 20;

/// bincode's standard configuration with a decode allocation limit of
/// `LIMIT` bytes: every bincode format of the node (records, raft wire,
/// commands) uses it with its own limit.
pub type Limited<const LIMIT: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
>;

pub fn limited<const LIMIT: usize>() -> Limited<LIMIT> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// The configuration every stored record's body is read and written with.
pub(crate) fn config() -> Limited<MAX_DECODE_BYTES> {
    limited()
}

/// Encodes `value` as a versioned, checksummed record.
///
/// Bodies are bincode's derived encoding: the same bytes its serde encoder
/// wrote for the same types until session 24, at a fraction of the cost
/// (fixed-size byte arrays, such as id keys, go as one copy instead of a
/// call per byte). Types that only implement serde (openraft's) go through
/// [`bincode::serde::Compat`], which writes the same bytes as before.
pub fn encode<T: Encode>(version: u8, value: &T) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::with_capacity(64);
    out.push(version);
    bincode::encode_into_std_write(value, &mut out, config())
        .map_err(|e| StorageError::Encode(e.to_string()))?;
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks the crc and version of a record and decodes its body.
///
/// `cf` and `key` only label the error so an operator can find the record.
pub fn decode<T: Decode<()>>(
    expected_version: u8,
    bytes: &[u8],
    cf: &'static str,
    key: &[u8],
) -> Result<T, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        cf,
        key: hex(key),
        reason,
    };
    if bytes.len() < 1 + CRC_LEN {
        return Err(corrupt(format!(
            "record of {} bytes is too short",
            bytes.len()
        )));
    }
    let (payload, crc_bytes) = bytes.split_at(bytes.len() - CRC_LEN);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let actual = crc32fast::hash(payload);
    if stored != actual {
        return Err(corrupt(format!(
            "crc32 mismatch: stored {stored:08x}, computed {actual:08x}"
        )));
    }
    let version = payload[0];
    if version != expected_version {
        return Err(corrupt(format!(
            "format version {version}, this build reads {expected_version}"
        )));
    }
    let (value, used) = bincode::decode_from_slice(&payload[1..], config())
        .map_err(|e| corrupt(format!("decode: {e}")))?;
    if used != payload.len() - 1 {
        return Err(corrupt(format!(
            "{} trailing bytes after the body",
            payload.len() - 1 - used
        )));
    }
    Ok(value)
}

/// [`encode`] for a type that implements serde only (openraft's).
pub fn encode_serde<T: serde::Serialize>(version: u8, value: &T) -> Result<Vec<u8>, StorageError> {
    encode(version, &bincode::serde::Compat(value))
}

/// [`decode`] for a type that implements serde only (openraft's).
pub fn decode_serde<T: serde::de::DeserializeOwned>(
    expected_version: u8,
    bytes: &[u8],
    cf: &'static str,
    key: &[u8],
) -> Result<T, StorageError> {
    decode::<bincode::serde::Compat<T>>(expected_version, bytes, cf, key).map(|c| c.0)
}

/// The format version a stored record claims, for a key space that holds
/// more than one record type (checked again, with the crc, by [`decode`]).
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

/// Lower-case hex, for naming keys in errors and logs.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, Encode, Decode)]
    struct Sample {
        a: u64,
        b: String,
        c: Vec<u8>,
    }

    fn sample() -> Sample {
        Sample {
            a: 7,
            b: "x".into(),
            c: vec![1, 2, 3],
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(1, &sample()).unwrap();
        let back: Sample = decode(1, &bytes, "t", b"k").unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn wrong_version_is_corruption() {
        let bytes = encode(2, &sample()).unwrap();
        let err = decode::<Sample>(1, &bytes, "t", b"k").unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(err.to_string().contains("format version 2"), "{err}");
    }

    #[test]
    fn short_record_is_corruption() {
        for len in 0..5 {
            let err = decode::<Sample>(1, &vec![0u8; len], "t", b"k").unwrap_err();
            assert!(err.is_corruption());
        }
    }

    #[test]
    fn trailing_bytes_are_corruption() {
        let mut bytes = encode(1, &sample()).unwrap();
        bytes.truncate(bytes.len() - 4);
        bytes.push(0);
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let err = decode::<Sample>(1, &bytes, "t", b"k").unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }

    #[test]
    fn a_huge_length_prefix_is_corruption_not_an_abort() {
        // A string claiming 2^40 bytes, in a record with a valid crc.
        let mut bytes = vec![1, 0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let err = decode::<String>(1, &bytes, "t", b"k").unwrap_err();
        assert!(err.is_corruption(), "{err}");
    }

    proptest! {
        // Any single flipped bit anywhere in the record is detected.
        #[test]
        fn any_bit_flip_is_detected(a in any::<u64>(), b in ".{0,40}", c in proptest::collection::vec(any::<u8>(), 0..64), pos in any::<proptest::sample::Index>(), bit in 0u8..8) {
            let value = Sample { a, b, c };
            let mut bytes = encode(1, &value).unwrap();
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(decode::<Sample>(1, &bytes, "t", b"k").is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(1, &bytes, "t", b"k");
        }
    }
}
