//! Encoding of openraft messages on the node-to-node wire (bincode over serde).

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("wire: {0}")]
pub struct WireError(pub String);

/// Most bytes one decoded message may allocate for its byte strings: the
/// node's raft message size limit. Without it bincode allocates whatever
/// length prefix it reads before finding the bytes missing, and ten bytes
/// claiming a terabyte string abort the process (found by fuzzing).
pub const MAX_DECODE_BYTES: usize = 512 << 20;

fn config() -> oneid_storage::codec::Limited<MAX_DECODE_BYTES> {
    oneid_storage::codec::limited()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| WireError(e.to_string()))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (v, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| WireError(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError(format!("{} trailing bytes", bytes.len() - used)));
    }
    Ok(v)
}
