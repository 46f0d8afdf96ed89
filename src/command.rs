//! The replicated command set. Commands carry only what apply needs: the
//! keyed hash of the identity, never its plaintext number.

use serde::{Deserialize, Serialize};

use crate::domain::{DomainError, Reason};

/// Bumped when a command's shape changes; apply rejects versions it does not
/// know (deterministically, on every replica) instead of misreading them.
pub const COMMAND_VERSION: u8 = 1;
/// An envelope that also names its authenticated caller ([`Envelope::by`]).
pub const CALLER_VERSION: u8 = 2;

pub type IdKey = oneid_storage::keys::IdKey;

/// Not serde: its bytes come from [`Envelope::encode`], which keeps the
/// version-1 layout for envelopes without a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub version: u8,
    /// Idempotency key (AIP-155): a retry returns the first outcome.
    pub request_id: String,
    pub command: Command,
    /// The authenticated caller (role and certificate subject) the audit
    /// trail names; empty without one (insecure mode, the node itself).
    pub by: String,
}

impl Envelope {
    /// A command the server proposes on its own behalf (a sweep, a failed
    /// verification): no request id, so no dedup record — each is a new
    /// event, and repeating one is harmless.
    pub fn internal(command: Command) -> Envelope {
        Envelope {
            version: COMMAND_VERSION,
            request_id: String::new(),
            command,
            by: String::new(),
        }
    }

    /// Without a caller, exactly the version-1 bytes (what nodes without
    /// TLS, and log entries written before callers existed, hold); with
    /// one, version 2 appends it. bincode lays a struct out as the tuple of
    /// its fields, so the tuples below are the struct layouts.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        if self.by.is_empty() {
            encode(&(self.version, &self.request_id, &self.command))
        } else {
            encode(&(CALLER_VERSION, &self.request_id, &self.command, &self.by))
        }
    }

    /// Reads either layout: a version-1 envelope is too short for version
    /// 2, and a version-2 one has bytes left over as version 1.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
        if let Ok((version, request_id, command)) = decode::<(u8, String, Command)>(bytes) {
            return Ok(Envelope {
                version,
                request_id,
                command,
                by: String::new(),
            });
        }
        let (version, request_id, command, by) = decode::<(u8, String, Command, String)>(bytes)?;
        Ok(Envelope {
            version,
            request_id,
            command,
            by,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Register(Register),
    Cancel(Cancel),
    FlagHighRisk(FlagHighRisk),
    Reverified(Reverified),
    /// Proposed by the leader, never by clients (empty request_id: no
    /// dedup record).
    SweepOverdue(SweepOverdue),
    OpenDispute(OpenDispute),
    ResolveDispute(ResolveDispute),
    Restrict(Restrict),
    Unrestrict(Unrestrict),
    Link(Link),
    Unlink(Link),
    AckReverify(Link),
    SetPolicy(SetPolicy),
    /// A count query's verification failed (proposed by the API).
    FailedVerification(IdKey),
    /// A count query verified after earlier failures: clears them.
    VerificationPassed(IdKey),
    /// 一证通查 as the real service answers it: by SMS. Apply verifies
    /// possession and writes the count into the outbox.
    NotifyCount(NotifyCount),
    /// The SMS gateway delivered a notification.
    AckNotification(u64),
    /// Proposed by the leader: forget request ids past their retention.
    TrimRequestIds(TrimRequestIds),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimRequestIds {
    /// Most request ids forgotten by one command, bounding one apply's work.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyCount {
    pub id_key: IdKey,
    pub verify_msisdn: String,
}

pub use oneid_storage::records::PolicyValues as SetPolicy;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    pub id_key: IdKey,
    pub msisdn: String,
    pub carrier: String,
    pub province: u8,
    pub kind: u8,
    pub channel: u8,
    pub strict_verification: bool,
    /// Keyed hash of the identity's last six characters (linkage queries).
    pub last6_tag: [u8; 16],
    /// IoT cards: keyed hash of the responsible unit's credit code.
    pub unit_key: Option<IdKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    pub msisdn: String,
    pub carrier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagHighRisk {
    pub msisdn: String,
    /// Time allowed for re-verification; 0 takes the policy's window.
    pub window_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reverified {
    pub msisdn: String,
    pub carrier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepOverdue {
    /// Most cards suspended by one command, bounding one apply's work.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenDispute {
    pub id_key: IdKey,
    pub msisdn: String,
    /// Where to send the outcome: an active card under `id_key`; empty for
    /// none.
    pub contact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveDispute {
    pub dispute_id: u64,
    pub carrier: String,
    /// The domain's `DisputeOutcome::code`.
    pub outcome: u8,
    pub operator: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restrict {
    pub id_key: IdKey,
    pub reason: String,
    /// How long from the apply time; 0 until lifted.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unrestrict {
    pub id_key: IdKey,
}

/// An account on a platform linked to a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub msisdn: String,
    pub platform: String,
    pub account: String,
}

/// What applying a command produced. Rejections are results, not errors:
/// they are replicated and replayed like successes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Registered {
        active_at_carrier_province: u32,
    },
    Cancelled,
    Rejected {
        reason: String,
        message: String,
    },
    /// A card's lifecycle after the command, as `Lifecycle::to_parts`.
    CardStatus {
        status: u8,
        suspend_reason: u8,
        deadline_ms: u64,
    },
    Swept {
        suspended: u32,
    },
    DisputeOpened {
        dispute_id: u64,
    },
    Notified {
        notification_id: u64,
    },
    /// The command took effect and has nothing more to report.
    Done,
    /// The identity is locked out of count queries until this time.
    LockedOut {
        until_ms: u64,
    },
    /// Request ids forgotten by a trim.
    Trimmed {
        removed: u32,
    },
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

/// Most bytes one decoded command or outcome may allocate for its strings:
/// far above any client message, far below what aborts the process when a
/// corrupt length prefix is believed (found by fuzzing).
const MAX_DECODE_BYTES: usize = 64 << 20;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_DECODE_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
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

    fn cancel() -> Command {
        Command::Cancel(Cancel {
            msisdn: "13800138000".into(),
            carrier: "CMCC".into(),
        })
    }

    #[test]
    fn envelope_round_trips_with_and_without_a_caller() {
        let mut e = Envelope {
            version: COMMAND_VERSION,
            request_id: "r1".into(),
            command: cancel(),
            by: String::new(),
        };
        assert_eq!(Envelope::decode(&e.encode().unwrap()).unwrap(), e);
        e.by = "carrier:CMCC [CN=oneid client carrier:CMCC]".into();
        let back = Envelope::decode(&e.encode().unwrap()).unwrap();
        assert_eq!(back.version, CALLER_VERSION);
        assert_eq!(back.by, e.by);
        assert_eq!(back.command, e.command);
    }

    #[test]
    fn version_one_envelopes_still_decode_and_encode_the_same() {
        // The envelope as it was serialized before callers existed.
        #[derive(Serialize)]
        struct Legacy {
            version: u8,
            request_id: String,
            command: Command,
        }
        let old = encode(&Legacy {
            version: 1,
            request_id: "r1".into(),
            command: cancel(),
        })
        .unwrap();
        let e = Envelope::decode(&old).unwrap();
        assert_eq!((e.version, e.by.as_str()), (1, ""));
        assert_eq!(e.encode().unwrap(), old);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(Envelope::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut bytes = encode(&Outcome::Cancelled).unwrap();
        bytes.push(0);
        assert!(decode::<Outcome>(&bytes).is_err());
    }
}
