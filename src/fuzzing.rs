//! Bodies of the cargo-fuzz targets in `fuzz/`. They live in the library so
//! stable builds compile them and `tests/fuzz_corpus.rs` replays the
//! committed corpus through exactly what the fuzzer ran.
//!
//! Each body takes arbitrary bytes, drives a real decode or validation
//! path, and panics only when an invariant breaks: a decoded value that does
//! not re-encode to a fixed point, bad input answered with anything but a
//! clear rejection, a truncated record that still decodes.

mod seeds;

use std::fmt::Debug;

use bincode::serde::Compat;
use oneid_raft::network::SnapshotHeader;
use oneid_raft::{wire, TypeConfig};
use oneid_storage::records::*;
use oneid_storage::{codec, snapshot_file};
use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{EntryPayload, LogId, SnapshotMeta, StoredMembership, Vote};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::commands::Bound;
use crate::api::keyring::Keyring;
use crate::api::{commands, convert, error::reason_of, verify, ApiError};
use crate::command::{
    self, Applied, Command, Envelope, KeyBinding, CALLER_VERSION, COMMAND_VERSION, KEYED_VERSION,
};
use crate::domain::{
    AccountId, CardKind, Carrier, Channel, DisputeOutcome, DomainError, Identity, Msisdn, Platform,
    Province,
};
use crate::idkey::IdHasher;
use crate::pb;
use crate::state_machine::AppliedRecord;

pub use seeds::{seeds, Seed};

/// The caller a fuzzed envelope names when the selector's top bit asks for
/// one (the version-2 layout).
const FUZZ_CALLER: &str = "carrier:CMCC [CN=oneid client carrier:CMCC]";

fn hasher() -> IdHasher {
    match IdHasher::with_versions(&[
        b"oneid fuzzing pepper, not a secret",
        b"the second fuzzing pepper, not one either",
    ]) {
        Ok(h) => h,
        Err(e) => panic!("fuzz pepper rejected: {e}"),
    }
}

/// Keys as a registry at pepper version 1 derives them, or (`rotating`)
/// one rotating to version 2, whose commands carry both sets of keys.
fn keyring(h: &IdHasher, rotating: bool) -> Keyring {
    let state = KeyStateRecord {
        next: if rotating { 2 } else { 0 },
        ..KeyStateRecord::default()
    };
    Keyring::fixed(h.clone(), state)
}

// ---------------------------------------------------------------------------
// Target 1: protobuf request -> validation -> command -> envelope.

/// Write RPCs (and the reads whose validation is pure) the first byte picks.
const REQUESTS: u8 = 20;

/// Decodes `data[1..]` as the request of the RPC `data[0]` names, runs the
/// validation and command construction its handler runs, and checks the
/// result: a rejection is a clear client error, an accepted command holds
/// only canonical values, and its envelope survives the log byte for byte.
/// True when the request was accepted.
pub fn request_to_command(data: &[u8]) -> bool {
    let Some((&selector, body)) = data.split_first() else {
        return false;
    };
    let with_caller = selector & 0x80 != 0;
    let h = hasher();
    let k = keyring(&h, selector & 0x40 != 0);
    let result = match (selector & 0x3f) % REQUESTS {
        0 => decoded(body, |r: pb::RegisterCardRequest| {
            check_identity(&h, r.identity.as_ref());
            check_identity(&h, r.responsible_unit.as_ref());
            commands::register(&k, &r)
        }),
        1 => {
            let Ok(r) = pb::ImportCardsRequest::decode(body) else {
                return false;
            };
            // Each item goes through the single-card path; all must hold.
            let accepted = r
                .cards
                .iter()
                .map(|card| finish(commands::register(&k, card), with_caller));
            return accepted.fold(false, |any, ok| any | ok);
        }
        2 => decoded(body, |r: pb::CancelCardRequest| commands::cancel(&r)),
        3 => decoded(body, |r: pb::ReportReverificationRequest| {
            submitted(&r.request_id, commands::reverified(&r))
        }),
        4 => decoded(body, |r: pb::CountNotificationRequest| {
            check_identity(&h, r.identity.as_ref());
            bound(&r.request_id, commands::notify_count(&k, &r))
        }),
        5 => decoded(body, |r: pb::FlagHighRiskRequest| {
            submitted(&r.request_id, commands::flag_high_risk(&r))
        }),
        6 => decoded(body, |r: pb::RestrictRequest| {
            check_identity(&h, r.identity.as_ref());
            bound(&r.request_id, commands::restrict(&k, &r))
        }),
        7 => decoded(body, |r: pb::UnrestrictRequest| {
            check_identity(&h, r.identity.as_ref());
            bound(&r.request_id, commands::unrestrict(&k, &r))
        }),
        8 => decoded(body, |r: pb::SetPolicyRequest| {
            submitted(&r.request_id, commands::set_policy(&r))
        }),
        9 => decoded(body, |r: pb::OpenDisputeRequest| {
            check_identity(&h, r.identity.as_ref());
            bound(&r.request_id, commands::open_dispute(&k, &r))
        }),
        10 => decoded(body, |r: pb::ResolveDisputeRequest| {
            submitted(&r.request_id, commands::resolve_dispute(&r))
        }),
        11 => decoded(body, |r: pb::LinkAccountRequest| {
            submitted(&r.request_id, commands::link(&r).map(Command::Link))
        }),
        12 => decoded(body, |r: pb::LinkAccountRequest| {
            submitted(&r.request_id, commands::link(&r).map(Command::Unlink))
        }),
        13 => decoded(body, |r: pb::LinkAccountRequest| {
            submitted(&r.request_id, commands::link(&r).map(Command::AckReverify))
        }),
        14 => decoded(body, |r: pb::AckNotificationRequest| {
            submitted(&r.request_id, commands::ack_notification(&r))
        }),
        15 => {
            return pb::ListReverifyRequest::decode(body).is_ok_and(|r| list_reverify(&r));
        }
        16 => return pb::CountCardsRequest::decode(body).is_ok_and(|r| count_cards(&k, &r)),
        17 => decoded(body, |r: pb::SetRulesRequest| {
            submitted(&r.request_id, commands::set_rules(&r))
        }),
        18 => decoded(body, |r: pb::ReportRealNameMissingRequest| {
            submitted(&r.request_id, commands::real_name_missing(&r))
        }),
        _ => decoded(body, |r: pb::ReportReverificationRequest| {
            submitted(&r.request_id, commands::real_name_completed(&r))
        }),
    };
    result.is_some_and(|result| finish(result, with_caller))
}

fn decoded<R: Message + Default>(
    body: &[u8],
    f: impl FnOnce(R) -> Result<Envelope, ApiError>,
) -> Option<Result<Envelope, ApiError>> {
    R::decode(body).ok().map(f)
}

/// What `Writer::submit` does after the handler built its command.
fn submitted(request_id: &str, command: Result<Command, ApiError>) -> Result<Envelope, ApiError> {
    commands::envelope(request_id, (command?, KeyBinding::default()))
}

/// The same for a command about an identity, with its key binding.
fn bound(request_id: &str, command: Result<Bound, ApiError>) -> Result<Envelope, ApiError> {
    commands::envelope(request_id, command?)
}

fn finish(result: Result<Envelope, ApiError>, with_caller: bool) -> bool {
    match result {
        Err(e) => {
            check_rejection(e);
            false
        }
        Ok(mut envelope) => {
            if with_caller {
                envelope.by = FUZZ_CALLER.to_string();
            }
            check_envelope(&envelope);
            true
        }
    }
}

/// Bad input is the client's fault and says why: never an internal error,
/// always a machine-readable reason.
fn check_rejection(e: ApiError) {
    let shown = e.to_string();
    assert!(
        matches!(e, ApiError::Domain(_)),
        "bad input gave a non-domain error: {shown}"
    );
    let status: tonic::Status = e.into();
    assert_ne!(status.code(), tonic::Code::Internal, "{shown}");
    assert!(reason_of(&status).is_some(), "no reason in {shown}");
}

fn check_envelope(envelope: &Envelope) {
    assert_eq!(envelope.version, COMMAND_VERSION);
    let id = &envelope.request_id;
    assert!(
        !id.is_empty()
            && id.len() <= convert::MAX_REQUEST_ID
            && id.bytes().all(|b| b.is_ascii_graphic()),
        "request id {id:?} passed validation"
    );
    check_command(&envelope.command);
    // Keys for a rotation's target come only with a command about an
    // identity, complete enough for apply to rebind it.
    if let KeyBinding::Derived {
        next: Some(next), ..
    } = &envelope.keys
    {
        assert!(
            envelope.command.rekeyed(next.id_key, Some(next)).is_some(),
            "{envelope:?} carries keys apply cannot bind"
        );
    }
    let bytes = match envelope.encode() {
        Ok(b) => b,
        Err(e) => panic!("validated envelope does not encode: {e}"),
    };
    let back = match Envelope::decode(&bytes) {
        Ok(b) => b,
        Err(e) => panic!("encoded envelope does not decode: {e}"),
    };
    let mut expected = envelope.clone();
    if expected.keys != KeyBinding::default() {
        expected.version = KEYED_VERSION;
    } else if !expected.by.is_empty() {
        expected.version = CALLER_VERSION;
    }
    assert_eq!(back, expected);
}

/// Every value a command carries is already in canonical form: validating
/// it again yields it unchanged.
fn check_command(command: &Command) {
    match command {
        Command::Register(r) => {
            canonical(&r.msisdn, |s| Msisdn::parse(s).map(|v| v.as_str().into()));
            canonical(&r.carrier, |s| Carrier::parse(s).map(|v| v.as_str().into()));
            assert!(Province::from_code(r.province).is_some(), "{r:?}");
            assert!(CardKind::from_code(i32::from(r.kind)).is_some(), "{r:?}");
            assert!(Channel::from_code(i32::from(r.channel)).is_some(), "{r:?}");
        }
        Command::Cancel(c) => {
            canonical(&c.msisdn, |s| Msisdn::parse(s).map(|v| v.as_str().into()));
            canonical(&c.carrier, |s| Carrier::parse(s).map(|v| v.as_str().into()));
        }
        Command::Reverified(c) | Command::RealNameCompleted(c) => {
            canonical(&c.msisdn, |s| Msisdn::parse(s).map(|v| v.as_str().into()));
            canonical(&c.carrier, |s| Carrier::parse(s).map(|v| v.as_str().into()));
        }
        Command::RealNameMissing(c) => {
            canonical(&c.msisdn, |s| Msisdn::parse(s).map(|v| v.as_str().into()));
            canonical(&c.carrier, |s| Carrier::parse(s).map(|v| v.as_str().into()));
            assert!(
                c.window_ms > 0 && c.window_ms <= crate::domain::rules::MAX_WINDOW_SECONDS * 1000
            );
        }
        Command::FlagHighRisk(c) => {
            canonical(&c.msisdn, |s| Msisdn::parse(s).map(|v| v.as_str().into()))
        }
        Command::NotifyCount(c) => canonical(&c.verify_msisdn, |s| {
            Msisdn::parse(s).map(|v| v.as_str().into())
        }),
        Command::Restrict(c) => canonical(&c.reason, |s| convert::note("reason", s, 200)),
        Command::OpenDispute(c) => {
            canonical(&c.msisdn, |s| Msisdn::parse(s).map(|v| v.as_str().into()));
            if !c.contact.is_empty() {
                canonical(&c.contact, |s| Msisdn::parse(s).map(|v| v.as_str().into()));
            }
        }
        Command::ResolveDispute(c) => {
            assert_ne!(c.dispute_id, 0);
            canonical(&c.carrier, |s| Carrier::parse(s).map(|v| v.as_str().into()));
            assert!(DisputeOutcome::from_code(i32::from(c.outcome)).is_some());
            canonical(&c.operator, |s| convert::note("operator", s, 64));
        }
        Command::Link(l) | Command::Unlink(l) | Command::AckReverify(l) => {
            canonical(&l.msisdn, |s| Msisdn::parse(s).map(|v| v.as_str().into()));
            canonical(&l.platform, |s| {
                Platform::parse(s).map(|v| v.as_str().into())
            });
            canonical(&l.account, |s| {
                AccountId::parse(s).map(|v| v.as_str().into())
            });
        }
        Command::AckNotification(id) => assert_ne!(*id, 0),
        Command::Unrestrict(_)
        | Command::SetPolicy(_)
        | Command::SweepOverdue(_)
        | Command::FailedVerification(_)
        | Command::VerificationPassed(_)
        | Command::TrimRequestIds(_)
        | Command::BeginRekey(_)
        | Command::RekeyBatch(_)
        | Command::FinishRekey(_)
        | Command::DropAliases(_) => {}
        Command::SetRules(r) => {
            assert!((1..=crate::domain::LATEST_RULES).contains(&r.version));
        }
    }
}

fn canonical(value: &str, validate: impl Fn(&str) -> Result<String, DomainError>) {
    match validate(value) {
        Ok(again) => assert_eq!(again, value, "validation is not idempotent"),
        Err(e) => panic!("{value:?} was accepted once, then refused: {e}"),
    }
}

/// An accepted identity is normalized: parsing its number again gives the
/// same number and so the same keyed hash (one person, one id_key).
fn check_identity(h: &IdHasher, raw: Option<&pb::Identity>) {
    let Ok(identity) = convert::identity(raw) else {
        return;
    };
    match Identity::parse(identity.doc_type(), identity.number()) {
        Ok(again) => {
            assert_eq!(again.number(), identity.number());
            assert_eq!(h.id_key(&again), h.id_key(&identity));
            assert!(identity.last6().len() <= 6);
        }
        Err(e) => panic!("normalized identity {identity:?} refused: {e}"),
    }
}

/// A page token this server hands out parses back to its position.
fn list_reverify(r: &pb::ListReverifyRequest) -> bool {
    let platform = accepted(convert::platform(&r.platform));
    let token = match convert::parse_page_token(&r.page_token) {
        Err(e) => {
            check_rejection(e.into());
            false
        }
        Ok(None) => {
            assert!(r.page_token.is_empty());
            true
        }
        Ok(Some((m, a))) => {
            let token = convert::page_token(&m, &a);
            assert_eq!(convert::parse_page_token(&token).ok(), Some(Some((m, a))));
            true
        }
    };
    platform && token
}

/// Whether a validation passed; a refusal must be a clear one.
fn accepted<T>(result: Result<T, DomainError>) -> bool {
    match result {
        Ok(_) => true,
        Err(e) => {
            check_rejection(e.into());
            false
        }
    }
}

fn count_cards(k: &Keyring, r: &pb::CountCardsRequest) -> bool {
    check_identity(k.hasher(), r.identity.as_ref());
    let (key, subject) = verify::identity_subject(k, r.identity.as_ref());
    // An accepted identity is audited as a short hash prefix, never as
    // its number (a refused one gets a fixed label).
    if let (Ok(_), Some(id)) = (&key, &r.identity) {
        assert!(!subject.contains(id.number.trim()), "{subject}");
    }
    accepted(key) & accepted(convert::msisdn(&r.verify_msisdn))
}

// ---------------------------------------------------------------------------
// Target 2: stored records (crc + version + bincode).

/// Record kinds the low bits of the first byte pick.
const RECORDS: u8 = 29;
/// Top bit of the first byte: wrap the rest in a valid version and crc, so
/// the fuzzer reaches the bincode body instead of stopping at the crc.
const SEAL: u8 = 0x80;

/// Decodes bytes as a stored record of the kind `data[0]` picks (raw, or
/// sealed with the right version and a valid crc), and checks that
/// anything refused is reported as corruption and anything accepted
/// re-encodes to a fixed point whose every truncation is refused. True
/// when the bytes decoded.
pub fn stored_record(data: &[u8]) -> bool {
    let Some((&selector, body)) = data.split_first() else {
        return false;
    };
    let sealed = selector & SEAL != 0;
    let kind = (selector & !SEAL) % RECORDS;
    match kind {
        0 => record::<CardRecord>(CARD_V, body, sealed).is_some(),
        1 => record::<HolderRecord>(HOLDER_V, body, sealed).is_some(),
        2 => record::<MsisdnRecord>(MSISDN_V, body, sealed).is_some(),
        3 => record::<PendingRecord>(PENDING_V, body, sealed).is_some(),
        4 => record::<DisputeRecord>(DISPUTE_V, body, sealed).is_some(),
        5 => record::<CounterRecord>(COUNTER_V, body, sealed).is_some(),
        6 => record::<RestrictionRecord>(RESTRICTION_V, body, sealed).is_some(),
        7 => record::<LinkRecord>(LINK_V, body, sealed).is_some(),
        8 => record::<ReverifyRecord>(REVERIFY_V, body, sealed).is_some(),
        9 => {
            let d = record::<DedupRecord>(DEDUP_V, body, sealed);
            // The stored first outcome is replayed to a retried request.
            d.is_some_and(|d| {
                fixed_point(&d.outcome, command::decode::<Applied>, command::encode).is_some()
            })
        }
        10 => record::<DedupAgeRecord>(DEDUP_AGE_V, body, sealed).is_some(),
        11 => record::<PolicyRecord>(POLICY_V, body, sealed).is_some(),
        12 => record::<StatsRecord>(STATS_V, body, sealed).is_some(),
        13 => record::<AuditRecord>(AUDIT_V, body, sealed).is_some(),
        14 => record::<OutboxRecord>(OUTBOX_V, body, sealed).is_some(),
        15 => record::<LockoutRecord>(LOCKOUT_V, body, sealed).is_some(),
        16 => record::<Compat<AppliedRecord>>(SM_META_V, body, sealed).is_some(),
        17 => {
            let entry = record::<Compat<openraft::Entry<TypeConfig>>>(RAFT_ENTRY_V, body, sealed);
            if let Some(EntryPayload::Normal(proposal)) = entry.as_ref().map(|e| &e.0.payload) {
                proposal.commands.iter().for_each(|c| envelope_bytes(c));
            }
            entry.is_some()
        }
        18 => record::<Compat<Vote<u64>>>(RAFT_META_V, body, sealed).is_some(),
        19 => record::<Compat<Option<LogId<u64>>>>(RAFT_META_V, body, sealed).is_some(),
        20 => record::<Compat<LogId<u64>>>(RAFT_META_V, body, sealed).is_some(),
        21 => record::<Compat<SnapshotMeta<u64, openraft::BasicNode>>>(
            SNAPSHOT_HEADER_V,
            body,
            sealed,
        )
        .is_some(),
        22 => record::<Compat<StoredMembership<u64, openraft::BasicNode>>>(SM_META_V, body, sealed)
            .is_some(),
        24 => record::<KeyStateRecord>(KEY_STATE_V, body, sealed).is_some(),
        25 => record::<AliasRecord>(ALIAS_V, body, sealed).is_some(),
        26 => record::<AuditBlock>(AUDIT_BLOCK_V, body, sealed).is_some(),
        27 => record::<DedupAgeBlock>(DEDUP_AGE_BLOCK_V, body, sealed).is_some(),
        28 => record::<ReplacedRecord>(REPLACED_V, body, sealed).is_some(),
        _ => snapshot_file_bytes(body),
    }
}

/// The label `codec::decode` puts in its errors; any will do here.
const FUZZ_CF: &str = "fuzz";

fn record<T: bincode::Encode + bincode::Decode<()>>(
    version: u8,
    body: &[u8],
    sealed: bool,
) -> Option<T> {
    let bytes = if sealed {
        seal(version, body)
    } else {
        body.to_vec()
    };
    let value = match codec::decode::<T>(version, &bytes, FUZZ_CF, b"k") {
        Ok(v) => v,
        Err(e) => {
            assert!(e.is_corruption(), "a bad record gave {e}");
            return None;
        }
    };
    let canonical = match codec::encode(version, &value) {
        Ok(b) => b,
        Err(e) => panic!("a decoded record does not re-encode: {e}"),
    };
    fixed_point(
        &canonical,
        |b| codec::decode::<T>(version, b, FUZZ_CF, b"k"),
        |v| codec::encode(version, v),
    );
    for len in 0..canonical.len() {
        match codec::decode::<T>(version, &canonical[..len], FUZZ_CF, b"k") {
            Ok(_) => panic!("a record truncated to {len} bytes still decodes"),
            Err(e) => assert!(e.is_corruption(), "a truncated record gave {e}"),
        }
    }
    Some(value)
}

/// `[version][body][crc32]`, as `codec::encode` frames a record.
fn seal(version: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(version);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// If `bytes` decode, re-encoding gives bytes that decode and re-encode to
/// themselves (a decoder may accept non-canonical input, but one round
/// settles it).
fn fixed_point<T, E: Debug, F: Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Result<Vec<u8>, F>,
) -> Option<T> {
    let value = decode(bytes).ok()?;
    let once = match encode(&value) {
        Ok(b) => b,
        Err(e) => panic!("decoded value does not re-encode: {e:?}"),
    };
    let again = match decode(&once) {
        Ok(v) => v,
        Err(e) => panic!("re-encoded value does not decode: {e:?}"),
    };
    match encode(&again) {
        Ok(twice) => assert_eq!(once, twice, "encoding is not a fixed point"),
        Err(e) => panic!("decoded value does not re-encode: {e:?}"),
    }
    Some(value)
}

/// A snapshot file is read from disk, so the body is written to a scratch
/// file (one per process) first; every refusal must name the file as bad.
fn snapshot_file_bytes(body: &[u8]) -> bool {
    let path = std::env::temp_dir().join(format!("oneid-fuzz-{}.snap", std::process::id()));
    if let Err(e) = std::fs::write(&path, body) {
        panic!("scratch file {}: {e}", path.display());
    }
    let result = snapshot_file::verify(&path);
    let _ = std::fs::remove_file(&path);
    match result {
        Err(e) => {
            assert!(e.is_corruption(), "a bad snapshot gave {e}");
            false
        }
        Ok(header) => record::<Compat<SnapshotMeta<u64, openraft::BasicNode>>>(
            SNAPSHOT_HEADER_V,
            &header,
            false,
        )
        .is_some(),
    }
}

// ---------------------------------------------------------------------------
// Target 3: raft messages on the node-to-node wire.

const MESSAGES: u8 = 9;

/// Decodes bytes as the raft message `data[0]` picks, as the raft service
/// or its client would, checks the decoded value is an encoding fixed
/// point, and pushes the commands an AppendEntries carries through the
/// envelope decode apply runs. True when the message decoded.
pub fn raft_message(data: &[u8]) -> bool {
    let Some((&selector, body)) = data.split_first() else {
        return false;
    };
    match selector % MESSAGES {
        0 => {
            let rpc = wire_fixed_point::<AppendEntriesRequest<TypeConfig>>(body);
            for entry in rpc.iter().flat_map(|r| &r.entries) {
                if let EntryPayload::Normal(proposal) = &entry.payload {
                    proposal.commands.iter().for_each(|c| envelope_bytes(c));
                }
            }
            rpc.is_some()
        }
        1 => wire_fixed_point::<VoteRequest<u64>>(body).is_some(),
        2 => wire_fixed_point::<SnapshotHeader>(body).is_some(),
        3 => wire_fixed_point::<Result<AppendEntriesResponse<u64>, RaftError<u64>>>(body).is_some(),
        4 => wire_fixed_point::<Result<VoteResponse<u64>, RaftError<u64>>>(body).is_some(),
        5 => wire_fixed_point::<Result<SnapshotResponse<u64>, Fatal<u64>>>(body).is_some(),
        6 => {
            envelope_bytes(body);
            Envelope::decode(body).is_ok()
        }
        7 => fixed_point(body, command::decode::<Applied>, command::encode).is_some(),
        _ => {
            // A follower's forwarded batch: each command goes to apply as is.
            let req = oneid_raft::pb::ForwardRequest::decode(body);
            req.iter()
                .flat_map(|r| &r.commands)
                .for_each(|c| envelope_bytes(c));
            req.is_ok()
        }
    }
}

fn wire_fixed_point<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    fixed_point(body, wire::decode::<T>, wire::encode)
}

/// Command bytes as apply receives them. Whatever decodes re-encodes to a
/// fixed point with the same request id, command and caller, so every
/// replica (and a replay of the log) reads the same command.
fn envelope_bytes(bytes: &[u8]) {
    let Ok(first) = Envelope::decode(bytes) else {
        return;
    };
    let once = match first.encode() {
        Ok(b) => b,
        Err(e) => panic!("a decoded envelope does not re-encode: {e}"),
    };
    let back = match Envelope::decode(&once) {
        Ok(e) => e,
        Err(e) => panic!("a re-encoded envelope does not decode: {e}"),
    };
    assert_eq!(back.request_id, first.request_id);
    assert_eq!(back.command, first.command);
    assert_eq!(back.by, first.by);
    match back.encode() {
        Ok(twice) => assert_eq!(once, twice, "envelope encoding is not a fixed point"),
        Err(e) => panic!("a decoded envelope does not re-encode: {e}"),
    }
}
