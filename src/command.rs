//! The replicated command set. Commands carry only what apply needs: the
//! keyed hash of the identity, never its plaintext number.

use serde::{Deserialize, Serialize};

use crate::domain::{DomainError, Reason};

/// Bumped when a command's shape changes; apply rejects versions it does not
/// know (deterministically, on every replica) instead of misreading them.
pub const COMMAND_VERSION: u8 = 1;

pub type IdKey = oneid_storage::keys::IdKey;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub version: u8,
    /// Idempotency key (AIP-155): a retry returns the first outcome.
    pub request_id: String,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Register(Register),
    Cancel(Cancel),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    pub id_key: IdKey,
    pub msisdn: String,
    pub carrier: String,
    pub province: u8,
    pub kind: u8,
    pub channel: u8,
    pub strict_verification: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    pub msisdn: String,
    pub carrier: String,
}

/// What applying a command produced. Rejections are results, not errors:
/// they are replicated and replayed like successes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Registered { active_at_carrier_province: u32 },
    Cancelled,
    Rejected { reason: String, message: String },
}

impl Outcome {
    pub fn rejected(e: DomainError) -> Outcome {
        Outcome::Rejected {
            reason: e.reason.as_str().to_string(),
            message: e.message,
        }
    }

    /// The domain error of a rejection; unknown reason codes (from a newer
    /// version) surface as INVALID_ARGUMENT rather than being dropped.
    pub fn as_error(&self) -> Option<DomainError> {
        match self {
            Outcome::Rejected { reason, message } => Some(DomainError::new(
                Reason::from_str_code(reason).unwrap_or(Reason::InvalidArgument),
                message.clone(),
            )),
            _ => None,
        }
    }
}

/// The result returned to the proposer for one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub outcome: Outcome,
    /// True when `outcome` was recorded by an earlier request with the same id.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("command codec: {0}")]
pub struct CodecError(String);

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (v, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError(format!("{} trailing bytes", bytes.len() - used)));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips() {
        let e = Envelope {
            version: COMMAND_VERSION,
            request_id: "r1".into(),
            command: Command::Cancel(Cancel {
                msisdn: "13800138000".into(),
                carrier: "CMCC".into(),
            }),
        };
        let back: Envelope = decode(&encode(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode::<Envelope>(&[0xff, 0xff, 0xff]).is_err());
        let mut bytes = encode(&Outcome::Cancelled).unwrap();
        bytes.push(0);
        assert!(decode::<Outcome>(&bytes).is_err());
    }
}
