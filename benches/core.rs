//! Micro benchmarks of the per-request CPU path: validation and the domain
//! rules, key and record encoding, a raft log append and a state machine
//! apply of a group-committed batch.
//!
//!   cargo bench --bench core

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use oneid::command::{Command, Envelope, Register, COMMAND_VERSION};
use oneid::domain::{
    check_registration, next_status, Channel, DocType, Event, Identity, Lifecycle, Msisdn, Policy,
    RegistrationContext,
};
use oneid::idkey::IdHasher;
use oneid::state_machine::StateMachine;
use oneid_raft::{Proposal, TypeConfig};
use oneid_storage::log_store::LogStore;
use oneid_storage::records::{CardRecord, CARD_V};
use oneid_storage::schema::Tuning;
use oneid_storage::{codec, keys, Db};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

// The allocator `oneid` itself runs with (see src/main.rs).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn card() -> CardRecord {
    CardRecord {
        carrier: "CMCC".into(),
        province: 44,
        kind: 1,
        channel: 2,
        status: 1,
        suspend_reason: 0,
        reverify_deadline_ms: 0,
        registered_at_ms: 1_700_000_000_000,
        updated_at_ms: 1_700_000_000_000,
        open_dispute: 0,
        last6_tag: [0; 16],
        unit_key: None,
    }
}

fn validation(c: &mut Criterion) {
    let hasher = IdHasher::new(b"bench-pepper-0123456789").expect("pepper");
    c.bench_function("domain/parse_resident_id", |b| {
        b.iter(|| Identity::parse(DocType::ResidentId, black_box("11010519491231002X")))
    });
    c.bench_function("domain/parse_msisdn", |b| {
        b.iter(|| Msisdn::parse(black_box("13800138000")))
    });
    let id = Identity::parse(DocType::ResidentId, "11010519491231002X").expect("id");
    c.bench_function("idkey/hmac_sha256", |b| {
        b.iter(|| hasher.id_key(black_box(&id)))
    });
}

fn domain_rules(c: &mut Criterion) {
    let policy = Policy::default();
    // A fourth card at a carrier that holds three: every limit is checked.
    let ctx = RegistrationContext {
        active_at_carrier_province: 3,
        own_hall_nationwide: false,
        held_at_carrier: 3,
        held_total: 3,
        channel: Channel::Agent,
        strict_verification: false,
        msisdn_active_holder: None,
    };
    c.bench_function("domain/check_registration", |b| {
        b.iter(|| check_registration(black_box(&policy), black_box(&ctx)))
    });
    c.bench_function("domain/flag_then_reverify", |b| {
        b.iter(|| {
            let flagged = next_status(
                black_box(Lifecycle::Active),
                Event::FlagHighRisk { deadline_ms: 1 },
            )?;
            next_status(flagged, Event::Reverified)
        })
    });
}

fn encoding(c: &mut Criterion) {
    let id_key = [7u8; 32];
    c.bench_function("keys/card_key", |b| {
        b.iter(|| keys::card_key(black_box(&id_key), black_box("13800138000")))
    });
    let rec = card();
    c.bench_function("codec/encode_card", |b| {
        b.iter(|| codec::encode(CARD_V, black_box(&rec)))
    });
    let bytes = codec::encode(CARD_V, &rec).expect("encode");
    c.bench_function("codec/decode_card_with_crc", |b| {
        b.iter(|| codec::decode::<CardRecord>(CARD_V, black_box(&bytes), "sm_data", b"k"))
    });
    let command = register_command(7);
    c.bench_function("command/decode_register", |b| {
        b.iter(|| Envelope::decode(black_box(&command)))
    });
    let envelope = Envelope::decode(&command).expect("decode");
    c.bench_function("command/encode_register", |b| {
        b.iter(|| black_box(&envelope).encode())
    });
}

fn register_command(i: u64) -> Vec<u8> {
    let mut id_key = [0u8; 32];
    id_key[..8].copy_from_slice(&i.to_be_bytes());
    Envelope {
        version: COMMAND_VERSION,
        request_id: format!("bench-{i}"),
        command: Command::Register(Register {
            id_key,
            msisdn: format!("138{:08}", i),
            carrier: "CMCC".into(),
            province: 44,
            kind: 1,
            channel: 2,
            strict_verification: false,
            last6_tag: [0; 16],
            unit_key: None,
        }),
        by: String::new(),
        keys: Default::default(),
    }
    .encode()
    .expect("encode")
}

fn proposal_entry(index: u64, first: u64, commands: u64) -> Entry<TypeConfig> {
    Entry::<TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            stamp_ms: 1_700_000_000_000 + index,
            commands: (first..first + commands)
                .map(|i| register_command(i).into())
                .collect(),
        }),
    }
}

/// One log entry appended and made durable, as a follower does for each
/// entry it receives (the fsync included: it is most of the cost).
fn log_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("db"), Tuning::default()).expect("db");
    let store = LogStore::<TypeConfig>::new(db.clone()).expect("log store");
    let mut index = 0u64;
    let mut group = c.benchmark_group("raft_log");
    for batch in [16u64, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("append_synced_{batch}"), |b| {
            b.iter_batched(
                || {
                    index += 1;
                    proposal_entry(index, index * batch, batch)
                },
                |entry| {
                    store.write_entries(&[entry]).expect("write");
                    db.sync_wal().expect("sync");
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn apply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(&dir.path().join("db"), Tuning::default()).expect("db");
    let mut sm = StateMachine::open(db, &dir.path().join("snap")).expect("sm");
    let mut next = 0u64;
    let mut index = 0u64;
    let mut group = c.benchmark_group("state_machine");
    // 16: an entry of a register run at 64 clients (~14 commands each);
    // 256: a larger entry, as under heavier load or in an import.
    for batch in [16u64, 256] {
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("apply_register_batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    index += 1;
                    next += batch;
                    proposal_entry(index, next - batch + 1, batch)
                },
                |entry| rt.block_on(sm.apply([entry])).expect("apply"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    validation,
    domain_rules,
    encoding,
    log_append,
    apply
);
criterion_main!(benches);
