//! The replicated command set. Commands carry only what apply needs: the
//! keyed hash of the identity, never its plaintext number.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::domain::{DomainError, Reason};

/// Bumped when a command's shape changes; apply rejects versions it does not
/// know (deterministically, on every replica) instead of misreading them.
pub const COMMAND_VERSION: u8 = 1;
/// An envelope that also names its authenticated caller ([`Envelope::by`]).
pub const CALLER_VERSION: u8 = 2;
/// An envelope whose id keys are not plain version-1 keys
/// ([`Envelope::keys`]): a pepper rotation happened or is under way.
pub const KEYED_VERSION: u8 = 3;

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
    /// Which pepper version the command's id keys were derived with.
    pub keys: KeyBinding,
}

/// How a command's id keys relate to pepper versions, so apply can tell a
/// key derived before a rotation from one derived after, and find records
/// that a rotation in progress has moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum KeyBinding {
    /// Derived from an ID number under pepper `version`; during a rotation,
    /// `next` holds the same keys under the rotation's target version.
    Derived {
        version: u32,
        next: Option<NextKeys>,
    },
    /// Read back from stored state (e.g. the holder of a number): valid
    /// while records exist under it or it has moved.
    Stored,
}

impl Default for KeyBinding {
    fn default() -> Self {
        KeyBinding::Derived {
            version: 1,
            next: None,
        }
    }
}

/// A command's id keys under a rotation's target version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct NextKeys {
    pub version: u32,
    pub id_key: IdKey,
    /// Register only: the last-six tag and unit key under `version`.
    pub last6_tag: Option<[u8; 16]>,
    pub unit_key: Option<IdKey>,
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
            keys: KeyBinding::default(),
        }
    }

    /// Without a caller and with version-1 keys, exactly the version-1 bytes (what nodes without
    /// TLS, and log entries written before callers existed, hold); with
    /// one, version 2 appends it; with other keys, version 3 appends the
    /// binding too. bincode lays a struct out as the tuple of its fields, so
    /// the tuples below are the struct layouts.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        // A version byte names its layout on decode, so an envelope read
        // as version 2 or 3 keeps that layout even when the fields it adds
        // are empty: re-encoding must give back what was read.
        if self.version == KEYED_VERSION || self.keys != KeyBinding::default() {
            encode(&(
                KEYED_VERSION,
                &self.request_id,
                &self.command,
                &self.by,
                &self.keys,
            ))
        } else if self.version == CALLER_VERSION || !self.by.is_empty() {
            encode(&(CALLER_VERSION, &self.request_id, &self.command, &self.by))
        } else {
            encode(&(self.version, &self.request_id, &self.command))
        }
    }

    /// Reads every layout; the leading version byte says which.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, CodecError> {
        let version = *bytes
            .first()
            .ok_or_else(|| CodecError("empty envelope".into()))?;
        let (request_id, command, by, keys) = match version {
            KEYED_VERSION => {
                let (_, r, c, b, k) = decode::<(u8, String, Command, String, KeyBinding)>(bytes)?;
                (r, c, b, k)
            }
            CALLER_VERSION => {
                let (_, r, c, b) = decode::<(u8, String, Command, String)>(bytes)?;
                (r, c, b, KeyBinding::default())
            }
            _ => {
                let (_, r, c) = decode::<(u8, String, Command)>(bytes)?;
                (r, c, String::new(), KeyBinding::default())
            }
        };
        Ok(Envelope {
            version,
            request_id,
            command,
            by,
            keys,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
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
    /// An administrator starts moving every id key to a new pepper version.
    BeginRekey(Rekey),
    /// Proposed by the leader: moves identities to the new keys it derived.
    RekeyBatch(RekeyBatch),
    /// Proposed by the leader once no identity is left under the old keys.
    FinishRekey(Rekey),
    /// Proposed by the leader after a rotation: forgets old-to-new aliases.
    DropAliases(TrimRequestIds),
    /// An administrator moves the cluster to a newer revision of the rules
    /// (`domain::RULES_*`). New variants go last: bincode numbers them by
    /// position, and old entries must decode as they were written.
    SetRules(SetRules),
    /// The carrier reports the holder never completed real-name
    /// registration: suspended, terminated at the end of the window.
    RealNameMissing(RealNameMissing),
    /// The carrier reports the holder completed it: back in service.
    RealNameCompleted(Reverified),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct RealNameMissing {
    pub msisdn: String,
    pub carrier: String,
    /// Time the holder has to complete real-name registration.
    pub window_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SetRules {
    pub version: u32,
}

/// A pepper rotation from version `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Rekey {
    pub from: u32,
    pub to: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct RekeyBatch {
    pub rotation: Rekey,
    pub ids: Vec<MoveId>,
}

/// One identity's keys before and after, with what its cards hold under
/// the new version. Apply skips it if its cards changed since the leader
/// read them (the next pass picks it up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct MoveId {
    pub old: IdKey,
    pub new: IdKey,
    pub cards: Vec<MovedCard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct MovedCard {
    pub msisdn: String,
    pub last6_tag: [u8; 16],
    pub unit_key: Option<IdKey>,
}

impl Command {
    /// The id key this command is about, for the commands that name an
    /// identity (rather than a number, a dispute, ...).
    pub fn id_key(&self) -> Option<&IdKey> {
        match self {
            Command::Register(r) => Some(&r.id_key),
            Command::OpenDispute(o) => Some(&o.id_key),
            Command::Restrict(r) => Some(&r.id_key),
            Command::Unrestrict(u) => Some(&u.id_key),
            Command::FailedVerification(k) | Command::VerificationPassed(k) => Some(k),
            Command::NotifyCount(n) => Some(&n.id_key),
            _ => None,
        }
    }

    /// The same command with its id key (and a registration's derived
    /// tags) replaced: `None` when `next` lacks a tag the command needs.
    pub fn rekeyed(&self, id_key: IdKey, next: Option<&NextKeys>) -> Option<Command> {
        let mut c = self.clone();
        match &mut c {
            Command::Register(r) => {
                let next = next?;
                r.id_key = id_key;
                r.last6_tag = next.last6_tag?;
                if r.unit_key.is_some() {
                    r.unit_key = Some(next.unit_key?);
                }
            }
            Command::OpenDispute(o) => o.id_key = id_key,
            Command::Restrict(r) => r.id_key = id_key,
            Command::Unrestrict(u) => u.id_key = id_key,
            Command::FailedVerification(k) | Command::VerificationPassed(k) => *k = id_key,
            Command::NotifyCount(n) => n.id_key = id_key,
            _ => return None,
        }
        Some(c)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct TrimRequestIds {
    /// Most request ids forgotten by one command, bounding one apply's work.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct NotifyCount {
    pub id_key: IdKey,
    pub verify_msisdn: String,
}

pub use oneid_storage::records::PolicyValues as SetPolicy;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Cancel {
    pub msisdn: String,
    pub carrier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct FlagHighRisk {
    pub msisdn: String,
    /// Time allowed for re-verification; 0 takes the policy's window.
    pub window_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Reverified {
    pub msisdn: String,
    pub carrier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SweepOverdue {
    /// Most cards suspended by one command, bounding one apply's work.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct OpenDispute {
    pub id_key: IdKey,
    pub msisdn: String,
    /// Where to send the outcome: an active card under `id_key`; empty for
    /// none.
    pub contact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct ResolveDispute {
    pub dispute_id: u64,
    pub carrier: String,
    /// The domain's `DisputeOutcome::code`.
    pub outcome: u8,
    pub operator: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Restrict {
    pub id_key: IdKey,
    pub reason: String,
    /// How long from the apply time; 0 until lifted.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Unrestrict {
    pub id_key: IdKey,
}

/// An account on a platform linked to a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Link {
    pub msisdn: String,
    pub platform: String,
    pub account: String,
}

/// What applying a command produced. Rejections are results, not errors:
/// they are replicated and replayed like successes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
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
    /// Identities a rekey batch moved, and those it left for a later pass.
    Rekeyed {
        moved: u32,
        skipped: u32,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
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

fn config() -> oneid_storage::codec::Limited<MAX_DECODE_BYTES> {
    oneid_storage::codec::limited()
}

pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (v, used) =
        bincode::decode_from_slice(bytes, config()).map_err(|e| CodecError(e.to_string()))?;
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
            keys: KeyBinding::default(),
        };
        assert_eq!(Envelope::decode(&e.encode().unwrap()).unwrap(), e);
        e.by = "carrier:CMCC [CN=oneid client carrier:CMCC]".into();
        let back = Envelope::decode(&e.encode().unwrap()).unwrap();
        assert_eq!(back.version, CALLER_VERSION);
        assert_eq!(back.by, e.by);
        assert_eq!(back.command, e.command);
        e.keys = KeyBinding::Derived {
            version: 2,
            next: Some(NextKeys {
                version: 3,
                id_key: [9; 32],
                last6_tag: None,
                unit_key: None,
            }),
        };
        let back = Envelope::decode(&e.encode().unwrap()).unwrap();
        assert_eq!(back.version, KEYED_VERSION);
        assert_eq!((&back.keys, &back.by), (&e.keys, &e.by));
        e.by.clear();
        e.keys = KeyBinding::Stored;
        assert_eq!(Envelope::decode(&e.encode().unwrap()).unwrap().keys, e.keys);
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
        let old = bincode::serde::encode_to_vec(
            Legacy {
                version: 1,
                request_id: "r1".into(),
                command: cancel(),
            },
            config(),
        )
        .unwrap();
        let e = Envelope::decode(&old).unwrap();
        assert_eq!((e.version, e.by.as_str()), (1, ""));
        assert_eq!(e.encode().unwrap(), old);
    }

    #[test]
    fn every_layout_round_trips_with_its_added_fields_empty() {
        // Found by the stored_record fuzz target: a version-2 envelope with
        // no caller was written back in the version-1 layout, under its
        // version-2 byte, and no longer decoded.
        for version in [CALLER_VERSION, KEYED_VERSION] {
            let e = Envelope {
                version,
                request_id: "r1".into(),
                command: cancel(),
                by: String::new(),
                keys: KeyBinding::default(),
            };
            let bytes = e.encode().unwrap();
            assert_eq!(bytes[0], version);
            assert_eq!(Envelope::decode(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(Envelope::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut bytes = encode(&Outcome::Cancelled).unwrap();
        bytes.push(0);
        assert!(decode::<Outcome>(&bytes).is_err());
    }

    /// Commands, outcomes and envelopes were written with bincode's serde
    /// encoder until session 24, and nodes of both kinds may share a log
    /// during an upgrade: the derived encoding must give the same bytes,
    /// and decode every byte string to the same value or fail on it too.
    mod same_bytes_as_serde {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            "\\PC{0,12}"
        }

        fn link() -> impl Strategy<Value = Link> {
            (text(), text(), text()).prop_map(|(msisdn, platform, account)| Link {
                msisdn,
                platform,
                account,
            })
        }

        fn rekey() -> impl Strategy<Value = Rekey> {
            (any::<u32>(), any::<u32>()).prop_map(|(from, to)| Rekey { from, to })
        }

        fn register() -> impl Strategy<Value = Command> {
            (
                any::<IdKey>(),
                (text(), text()),
                any::<(u8, u8, u8, bool)>(),
                any::<[u8; 16]>(),
                any::<Option<IdKey>>(),
            )
                .prop_map(
                    |(
                        id_key,
                        (msisdn, carrier),
                        (province, kind, channel, strict),
                        last6_tag,
                        unit_key,
                    )| {
                        Command::Register(Register {
                            id_key,
                            msisdn,
                            carrier,
                            province,
                            kind,
                            channel,
                            strict_verification: strict,
                            last6_tag,
                            unit_key,
                        })
                    },
                )
        }

        fn command() -> impl Strategy<Value = Command> {
            let moved = (text(), any::<[u8; 16]>(), any::<Option<IdKey>>()).prop_map(
                |(msisdn, last6_tag, unit_key)| MovedCard {
                    msisdn,
                    last6_tag,
                    unit_key,
                },
            );
            let move_id = (
                any::<IdKey>(),
                any::<IdKey>(),
                prop::collection::vec(moved, 0..3),
            )
                .prop_map(|(old, new, cards)| MoveId { old, new, cards });
            prop_oneof![
                register(),
                (text(), text())
                    .prop_map(|(msisdn, carrier)| Command::Cancel(Cancel { msisdn, carrier })),
                (text(), any::<u64>()).prop_map(|(msisdn, window_ms)| {
                    Command::FlagHighRisk(FlagHighRisk { msisdn, window_ms })
                }),
                (text(), text()).prop_map(|(msisdn, carrier)| {
                    Command::Reverified(Reverified { msisdn, carrier })
                }),
                any::<u32>().prop_map(|limit| Command::SweepOverdue(SweepOverdue { limit })),
                (any::<IdKey>(), text(), text()).prop_map(|(id_key, msisdn, contact)| {
                    Command::OpenDispute(OpenDispute {
                        id_key,
                        msisdn,
                        contact,
                    })
                }),
                (any::<u64>(), text(), any::<u8>(), text()).prop_map(
                    |(dispute_id, carrier, outcome, operator)| {
                        Command::ResolveDispute(ResolveDispute {
                            dispute_id,
                            carrier,
                            outcome,
                            operator,
                        })
                    }
                ),
                (any::<IdKey>(), text(), any::<u64>()).prop_map(|(id_key, reason, duration_ms)| {
                    Command::Restrict(Restrict {
                        id_key,
                        reason,
                        duration_ms,
                    })
                }),
                any::<IdKey>().prop_map(|id_key| Command::Unrestrict(Unrestrict { id_key })),
                link().prop_map(Command::Link),
                link().prop_map(Command::Unlink),
                link().prop_map(Command::AckReverify),
                any::<(u32, u64, u32, u32, u32, u64)>().prop_map(|v| {
                    Command::SetPolicy(SetPolicy {
                        own_hall_threshold: v.0,
                        reverify_window_ms: v.1,
                        max_per_carrier: v.2,
                        max_total: v.3,
                        max_failed_verifications: v.4,
                        lockout_ms: v.5,
                    })
                }),
                any::<IdKey>().prop_map(Command::FailedVerification),
                any::<IdKey>().prop_map(Command::VerificationPassed),
                (any::<IdKey>(), text()).prop_map(|(id_key, verify_msisdn)| {
                    Command::NotifyCount(NotifyCount {
                        id_key,
                        verify_msisdn,
                    })
                }),
                any::<u64>().prop_map(Command::AckNotification),
                any::<u32>().prop_map(|limit| Command::TrimRequestIds(TrimRequestIds { limit })),
                rekey().prop_map(Command::BeginRekey),
                (rekey(), prop::collection::vec(move_id, 0..3))
                    .prop_map(|(rotation, ids)| Command::RekeyBatch(RekeyBatch { rotation, ids })),
                rekey().prop_map(Command::FinishRekey),
                any::<u32>().prop_map(|limit| Command::DropAliases(TrimRequestIds { limit })),
                any::<u32>().prop_map(|version| Command::SetRules(SetRules { version })),
                (text(), text(), any::<u64>()).prop_map(|(msisdn, carrier, window_ms)| {
                    Command::RealNameMissing(RealNameMissing {
                        msisdn,
                        carrier,
                        window_ms,
                    })
                }),
                (text(), text()).prop_map(|(msisdn, carrier)| {
                    Command::RealNameCompleted(Reverified { msisdn, carrier })
                }),
            ]
        }

        fn keys() -> impl Strategy<Value = KeyBinding> {
            let next = (
                any::<u32>(),
                any::<IdKey>(),
                any::<Option<[u8; 16]>>(),
                any::<Option<IdKey>>(),
            )
                .prop_map(|(version, id_key, last6_tag, unit_key)| NextKeys {
                    version,
                    id_key,
                    last6_tag,
                    unit_key,
                });
            prop_oneof![
                (any::<u32>(), prop::option::of(next))
                    .prop_map(|(version, next)| KeyBinding::Derived { version, next }),
                Just(KeyBinding::Stored),
            ]
        }

        fn outcome() -> impl Strategy<Value = Outcome> {
            prop_oneof![
                any::<u32>().prop_map(|n| Outcome::Registered {
                    active_at_carrier_province: n
                }),
                Just(Outcome::Cancelled),
                (text(), text())
                    .prop_map(|(reason, message)| Outcome::Rejected { reason, message }),
                any::<(u8, u8, u64)>().prop_map(|(status, suspend_reason, deadline_ms)| {
                    Outcome::CardStatus {
                        status,
                        suspend_reason,
                        deadline_ms,
                    }
                }),
                any::<u32>().prop_map(|suspended| Outcome::Swept { suspended }),
                any::<u64>().prop_map(|dispute_id| Outcome::DisputeOpened { dispute_id }),
                any::<u64>().prop_map(|notification_id| Outcome::Notified { notification_id }),
                Just(Outcome::Done),
                any::<u64>().prop_map(|until_ms| Outcome::LockedOut { until_ms }),
                any::<u32>().prop_map(|removed| Outcome::Trimmed { removed }),
                any::<(u32, u32)>()
                    .prop_map(|(moved, skipped)| Outcome::Rekeyed { moved, skipped }),
            ]
        }

        fn serde_bytes<T: Serialize>(value: &T) -> Vec<u8> {
            bincode::serde::encode_to_vec(value, config()).unwrap()
        }

        fn serde_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
            bincode::serde::decode_from_slice(bytes, config())
                .ok()
                .filter(|(_, used)| *used == bytes.len())
                .map(|(v, _)| v)
        }

        /// Each of `bytes` cut short, and with one byte changed: decoded by
        /// both, the results agree.
        fn damaged_versions_agree<T>(bytes: &[u8], at: usize, to: u8) -> Result<(), TestCaseError>
        where
            T: serde::de::DeserializeOwned + Decode<()> + PartialEq + std::fmt::Debug,
        {
            let at = at % bytes.len();
            let mut changed = bytes.to_vec();
            changed[at] = to;
            for damaged in [&bytes[..at], &changed[..]] {
                prop_assert_eq!(serde_decode::<T>(damaged), decode::<T>(damaged).ok());
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn envelopes(
                request_id in text(),
                command in command(),
                by in text(),
                keys in keys(),
                at in any::<usize>(),
                to in any::<u8>(),
            ) {
                let layouts = [
                    (serde_bytes(&(KEYED_VERSION, &request_id, &command, &by, &keys)),
                     encode(&(KEYED_VERSION, &request_id, &command, &by, &keys)).unwrap()),
                    (serde_bytes(&(CALLER_VERSION, &request_id, &command, &by)),
                     encode(&(CALLER_VERSION, &request_id, &command, &by)).unwrap()),
                    (serde_bytes(&(COMMAND_VERSION, &request_id, &command)),
                     encode(&(COMMAND_VERSION, &request_id, &command)).unwrap()),
                ];
                for (old, new) in &layouts {
                    prop_assert_eq!(old, new);
                    let e = Envelope::decode(old).unwrap();
                    prop_assert_eq!(&e.command, &command);
                    prop_assert_eq!(&e.encode().unwrap(), old);
                }
                let keyed = &layouts[0].0;
                damaged_versions_agree::<(u8, String, Command, String, KeyBinding)>(keyed, at, to)?;
                damaged_versions_agree::<(u8, String, Command)>(&layouts[2].0, at, to)?;
            }

            #[test]
            fn outcomes(outcome in outcome(), replayed in any::<bool>(), at in any::<usize>(), to in any::<u8>()) {
                let applied = Applied { outcome, replayed };
                let old = serde_bytes(&applied);
                prop_assert_eq!(&old, &encode(&applied).unwrap());
                prop_assert_eq!(decode::<Applied>(&old).unwrap(), applied);
                damaged_versions_agree::<Applied>(&old, at, to)?;
            }
        }
    }
}
