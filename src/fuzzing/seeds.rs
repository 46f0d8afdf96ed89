//! Valid inputs for every branch of every target: where the fuzzer starts,
//! and (through the replay test) proof that each branch still accepts what
//! the node really sends and stores.

use std::collections::{BTreeMap, BTreeSet};

use bincode::serde::Compat;
use oneid_raft::{wire, Proposal};
use oneid_storage::codec;
use oneid_storage::records::*;
use openraft::error::{Fatal, RaftError};
use openraft::raft::{AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    StoredMembership, Vote,
};
use prost::Message;
use serde::Serialize;

use crate::api::convert;
use crate::command::{self, Applied, Cancel, Command, Envelope, Outcome, COMMAND_VERSION};
use crate::pb;
use crate::state_machine::AppliedRecord;

/// One seed: its target, a file name, its bytes.
pub type Seed = (&'static str, String, Vec<u8>);

const MSISDN: &str = "13800138000";
const OTHER_MSISDN: &str = "13900139000";

fn resident() -> Option<pb::Identity> {
    Some(pb::Identity {
        doc_type: 1,
        number: "11010519491231002X".into(),
    })
}

fn register(request_id: &str, msisdn: &str) -> pb::RegisterCardRequest {
    pb::RegisterCardRequest {
        request_id: request_id.into(),
        identity: resident(),
        msisdn: msisdn.into(),
        carrier: "CMCC".into(),
        province: "11".into(),
        kind: 1,
        channel: 1,
        strict_verification: false,
        responsible_unit: None,
    }
}

fn link() -> pb::LinkAccountRequest {
    pb::LinkAccountRequest {
        request_id: "r-link".into(),
        msisdn: MSISDN.into(),
        platform: "wechat".into(),
        account_id: "acct-1".into(),
    }
}

fn request(selector: u8, message: impl Message) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend(message.encode_to_vec());
    out
}

/// One accepted request per RPC `request_to_command` knows.
fn requests() -> Vec<Vec<u8>> {
    vec![
        request(0, register("r-1", MSISDN)),
        // 0x40: keys derived during a rotation to pepper version 2.
        request(0x40, register("r-1", MSISDN)),
        request(
            1,
            pb::ImportCardsRequest {
                cards: vec![register("r-2", MSISDN), register("r-3", OTHER_MSISDN)],
            },
        ),
        request(
            2,
            pb::CancelCardRequest {
                request_id: "r-4".into(),
                msisdn: MSISDN.into(),
                carrier: "CMCC".into(),
            },
        ),
        request(
            3,
            pb::ReportReverificationRequest {
                request_id: "r-5".into(),
                msisdn: "+8613800138000".into(),
                carrier: "cucc".into(),
            },
        ),
        request(
            4,
            pb::CountNotificationRequest {
                request_id: "r-6".into(),
                identity: resident(),
                verify_msisdn: MSISDN.into(),
            },
        ),
        request(
            5,
            pb::FlagHighRiskRequest {
                request_id: "r-7".into(),
                msisdn: MSISDN.into(),
                reverify_within_seconds: 3600,
            },
        ),
        request(
            6,
            pb::RestrictRequest {
                request_id: "r-8".into(),
                identity: resident(),
                reason: " fraud ring ".into(),
                duration_hours: 24,
            },
        ),
        request(
            7,
            pb::UnrestrictRequest {
                request_id: "r-9".into(),
                identity: resident(),
            },
        ),
        request(
            8,
            pb::SetPolicyRequest {
                request_id: "r-10".into(),
                policy: Some(pb::Policy {
                    own_hall_threshold: 5,
                    reverify_window_seconds: 86_400,
                    max_cards_per_carrier: 5,
                    max_cards_total: 10,
                    max_failed_verifications: 3,
                    lockout_seconds: 86_400,
                }),
            },
        ),
        request(
            9,
            pb::OpenDisputeRequest {
                request_id: "r-11".into(),
                identity: resident(),
                msisdn: MSISDN.into(),
                contact_msisdn: OTHER_MSISDN.into(),
            },
        ),
        request(
            10,
            pb::ResolveDisputeRequest {
                request_id: "r-12".into(),
                dispute_id: 1,
                carrier: "CMCC".into(),
                outcome: 1,
                operator: "op-7".into(),
            },
        ),
        request(11, link()),
        request(12, link()),
        request(13, link()),
        request(
            14,
            pb::AckNotificationRequest {
                request_id: "r-13".into(),
                notification_id: 9,
            },
        ),
        request(
            15,
            pb::ListReverifyRequest {
                platform: "wechat".into(),
                limit: 10,
                page_token: convert::page_token(MSISDN, "acct-1"),
            },
        ),
        request(
            16,
            pb::CountCardsRequest {
                identity: resident(),
                verify_msisdn: MSISDN.into(),
            },
        ),
        request(
            17,
            pb::SetRulesRequest {
                request_id: "r-14".into(),
                version: 2,
            },
        ),
        request(
            18,
            pb::ReportRealNameMissingRequest {
                request_id: "r-15".into(),
                msisdn: MSISDN.into(),
                carrier: "CMCC".into(),
                window_seconds: 86_400,
            },
        ),
        request(
            19,
            pb::ReportReverificationRequest {
                request_id: "r-16".into(),
                msisdn: MSISDN.into(),
                carrier: "CMCC".into(),
            },
        ),
        // The version-2 envelope, naming its caller.
        request(0x80, register("r-14", MSISDN)),
    ]
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn envelope(request_id: &str, by: &str) -> Vec<u8> {
    let e = Envelope {
        version: COMMAND_VERSION,
        request_id: request_id.into(),
        command: Command::Cancel(Cancel {
            msisdn: MSISDN.into(),
            carrier: "CMCC".into(),
        }),
        by: by.into(),
        keys: Default::default(),
    };
    e.encode().unwrap_or_default()
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn entries() -> Vec<Entry<oneid_raft::TypeConfig>> {
    let proposal = Proposal {
        stamp_ms: 1_700_000_000_000,
        commands: vec![
            envelope("r-1", "").into(),
            envelope("r-2", "carrier:CMCC [CN=oneid client carrier:CMCC]").into(),
        ],
    };
    vec![
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 2),
            payload: EntryPayload::Membership(membership()),
        },
        Entry {
            log_id: log_id(1, 3),
            payload: EntryPayload::Normal(proposal),
        },
    ]
}

fn snapshot_meta() -> SnapshotMeta<u64, BasicNode> {
    SnapshotMeta {
        last_log_id: Some(log_id(1, 3)),
        last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
        snapshot_id: "1-3-0".into(),
    }
}

fn wire_seed<T: Serialize>(selector: u8, value: &T) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend(wire::encode(value).unwrap_or_default());
    out
}

fn applied() -> Applied {
    Applied {
        outcome: Outcome::Registered {
            active_at_carrier_province: 1,
        },
        replayed: false,
    }
}

/// One message per type `raft_message` decodes.
fn messages() -> Vec<Vec<u8>> {
    let vote = Vote::new_committed(1, 1);
    let append = openraft::raft::AppendEntriesRequest::<oneid_raft::TypeConfig> {
        vote,
        prev_log_id: Some(log_id(1, 0)),
        entries: entries(),
        leader_commit: Some(log_id(1, 1)),
    };
    let forward = oneid_raft::pb::ForwardRequest {
        commands: vec![envelope("r-3", "").into()],
    };
    let mut raw_envelope = vec![6];
    raw_envelope.extend(envelope("r-4", "regulator"));
    let mut raw_applied = vec![7];
    raw_applied.extend(command::encode(&applied()).unwrap_or_default());
    vec![
        wire_seed(0, &append),
        wire_seed(1, &VoteRequest::new(Vote::new(2, 2), Some(log_id(1, 3)))),
        wire_seed(2, &(vote, snapshot_meta())),
        wire_seed(
            3,
            &Ok::<_, RaftError<u64>>(AppendEntriesResponse::<u64>::Success),
        ),
        wire_seed(
            3,
            &Err::<AppendEntriesResponse<u64>, _>(RaftError::<u64>::Fatal(Fatal::Stopped)),
        ),
        wire_seed(
            4,
            &Ok::<_, RaftError<u64>>(VoteResponse::new(vote, Some(log_id(1, 3)), true)),
        ),
        wire_seed(5, &Ok::<_, Fatal<u64>>(SnapshotResponse::new(vote))),
        raw_envelope,
        raw_applied,
        request(8, forward),
    ]
}

/// A record as stored (`raw`) and its bincode body alone (`sealed`, which
/// the target frames with version and crc itself).
fn record<T: bincode::Encode>(kind: u8, version: u8, value: &T) -> [Vec<u8>; 2] {
    let stored = codec::encode(version, value).unwrap_or_default();
    let mut raw = vec![kind];
    raw.extend(&stored);
    let mut sealed = vec![kind | 0x80];
    sealed.extend(stored.get(1..stored.len().saturating_sub(4)).unwrap_or(&[]));
    [raw, sealed]
}

/// One stored value per record kind `stored_record` knows.
fn records() -> Vec<Vec<u8>> {
    let key = [7u8; 32];
    let mut holder = HolderRecord::default();
    holder.add("CMCC", 11);
    holder.add_kind(true, "CUCC", 44);
    let audit_row = AuditRecord {
        at_ms: 1,
        actor: "carrier:CMCC".into(),
        action: "register".into(),
        subject: "138****8000".into(),
        request_id: "r-1".into(),
        outcome: "ok".into(),
    };
    let mut stats = StatsRecord::default();
    stats.apply(StatDelta::Held {
        carrier: "CMCC".into(),
        province: 11,
        delta: 2,
    });
    stats.apply(StatDelta::DisputeResolved(1));
    let policy = PolicyValues {
        own_hall_threshold: 5,
        reverify_window_ms: 1,
        max_per_carrier: 5,
        max_total: 10,
        max_failed_verifications: 3,
        lockout_ms: 2,
    };
    let parts = [
        record(
            0,
            CARD_V,
            &CardRecord {
                carrier: "CMCC".into(),
                province: 11,
                kind: 1,
                channel: 1,
                status: 1,
                suspend_reason: 0,
                reverify_deadline_ms: 0,
                registered_at_ms: 1,
                updated_at_ms: 2,
                open_dispute: 0,
                last6_tag: [3; 16],
                unit_key: Some(key),
            },
        ),
        record(1, HOLDER_V, &holder),
        record(
            2,
            MSISDN_V,
            &MsisdnRecord {
                id_key: key,
                held: true,
                registered_by: None,
            },
        ),
        record(3, PENDING_V, &PendingRecord { id_key: key }),
        record(
            4,
            DISPUTE_V,
            &DisputeRecord {
                id_key: key,
                msisdn: MSISDN.into(),
                carrier: "CMCC".into(),
                opened_at_ms: 1,
                outcome: 0,
                resolved_by: String::new(),
                resolved_at_ms: 0,
                contact: OTHER_MSISDN.into(),
            },
        ),
        record(5, COUNTER_V, &CounterRecord { next: 42 }),
        record(
            6,
            RESTRICTION_V,
            &RestrictionRecord {
                reason: "fraud".into(),
                added_at_ms: 1,
                expires_at_ms: 0,
            },
        ),
        record(
            7,
            LINK_V,
            &LinkRecord {
                linked_at_ms: 1,
                needs_reverify: true,
            },
        ),
        record(
            8,
            REVERIFY_V,
            &ReverifyRecord {
                marked_at_ms: 1,
                cause: "cancelled".into(),
            },
        ),
        record(
            9,
            DEDUP_V,
            &DedupRecord {
                applied_at_ms: 1,
                outcome: command::encode(&applied()).unwrap_or_default(),
            },
        ),
        record(10, DEDUP_AGE_V, &DedupAgeRecord),
        record(
            24,
            KEY_STATE_V,
            &KeyStateRecord {
                current: 2,
                next: 3,
                moved: 7,
            },
        ),
        record(25, ALIAS_V, &AliasRecord { other: [5; 32] }),
        record(
            27,
            DEDUP_AGE_BLOCK_V,
            &DedupAgeBlock {
                request_ids: vec!["r-1".into(), "r-2".into()],
            },
        ),
        record(
            11,
            POLICY_V,
            &PolicyRecord {
                values: policy,
                set_at_ms: 1,
            },
        ),
        record(12, STATS_V, &stats),
        record(13, AUDIT_V, &audit_row),
        record(
            26,
            AUDIT_BLOCK_V,
            &AuditBlock {
                rows: vec![(0, audit_row.clone()), (2, audit_row.clone())],
            },
        ),
        record(
            14,
            OUTBOX_V,
            &OutboxRecord {
                to: MSISDN.into(),
                kind: "count_result".into(),
                text: "2 cards".into(),
                created_at_ms: 1,
            },
        ),
        record(
            15,
            LOCKOUT_V,
            &LockoutRecord {
                failures: 2,
                locked_until_ms: 0,
            },
        ),
        record(
            16,
            SM_META_V,
            &Compat(AppliedRecord {
                last_applied: Some(log_id(1, 3)),
                last_membership: StoredMembership::new(Some(log_id(1, 2)), membership()),
                clock_ms: 1_700_000_000_000,
            }),
        ),
        record(17, RAFT_ENTRY_V, &Compat(&entries()[2])),
        record(18, RAFT_META_V, &Compat(Vote::new_committed(1, 1))),
        record(19, RAFT_META_V, &Compat(Some(log_id(1, 3)))),
        record(20, RAFT_META_V, &Compat(log_id(1, 3))),
        record(21, SNAPSHOT_HEADER_V, &Compat(snapshot_meta())),
        record(
            22,
            SM_META_V,
            &Compat(StoredMembership::new(Some(log_id(1, 2)), membership())),
        ),
        record(28, REPLACED_V, &ReplacedRecord { held_after: 3 }),
    ];
    let mut out: Vec<Vec<u8>> = parts.into_iter().flatten().collect();
    out.push(snapshot_file());
    out
}

/// An empty snapshot file as `snapshot_file` lays it out: magic, format,
/// header (the snapshot meta record), end frame with entry count and crc.
fn snapshot_file() -> Vec<u8> {
    let header = codec::encode_serde(SNAPSHOT_HEADER_V, &snapshot_meta()).unwrap_or_default();
    let mut file = b"ONEIDSNP".to_vec();
    file.push(1);
    file.extend((header.len() as u32).to_le_bytes());
    file.extend(&header);
    file.push(0);
    file.extend(0u64.to_le_bytes());
    let crc = crc32fast::hash(&file);
    file.extend(crc.to_le_bytes());
    let mut seed = vec![23];
    seed.extend(file);
    seed
}

pub fn seeds() -> Vec<Seed> {
    let named = |target: &'static str, inputs: Vec<Vec<u8>>| {
        inputs
            .into_iter()
            .enumerate()
            .map(move |(i, bytes)| (target, format!("seed-{i:02}"), bytes))
    };
    named("request_to_command", requests())
        .chain(named("raft_message", messages()))
        .chain(named("stored_record", records()))
        .collect()
}
