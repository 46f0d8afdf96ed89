//! Encoding of openraft messages on the node-to-node wire (bincode over serde).

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
#[error("wire: {0}")]
pub struct WireError(pub String);

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
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
