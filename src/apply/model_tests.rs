//! Model-based test: random command sequences are applied to the real apply
//! code on RocksDB and to a small in-memory model; after every step the
//! outcomes agree and the stored indexes match the cards (holder summaries =
//! held cards, one holder per number, the pending queue = pending cards,
//! the re-verification queue = flagged links).

use std::collections::{BTreeMap, BTreeSet};

use oneid_storage::keys::{self, IdKey};
use oneid_storage::records::{
    packed_number, CardRecord, HolderRecord, LinkRecord, MsisdnRecord, PendingRecord,
    ReverifyRecord, StatsRecord, CARD_V, HOLDER_V, HOLDER_V2, LINK_V, MSISDN_V, PENDING_V,
    REVERIFY_V, STATS_V,
};
use oneid_storage::schema::CF_SM_DATA;
use oneid_storage::{codec, Db};
use proptest::prelude::*;

use super::{apply_envelope, Tx};
use crate::command::*;
use crate::domain::{next_status, Channel, DisputeOutcome, Event, Lifecycle, Policy, Reason};

const NUMBERS: [&str; 5] = [
    "13800000000",
    "13800000001",
    "13800000002",
    "13800000003",
    "13800000004",
];
const CARRIERS: [&str; 2] = ["CMCC", "CUCC"];
const PLATFORMS: [&str; 2] = ["wechat", "alipay"];
const THRESHOLD: u32 = 2;

fn id(i: u8) -> IdKey {
    [i + 1; 32]
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        who: u8,
        num: usize,
        carrier: usize,
        strict: bool,
    },
    Cancel {
        num: usize,
        carrier: usize,
    },
    Flag {
        num: usize,
        window: u64,
    },
    Reverified {
        num: usize,
        carrier: usize,
    },
    Tick {
        ms: u64,
    },
    Sweep,
    Open {
        who: u8,
        num: usize,
    },
    Resolve {
        dispute: u64,
        carrier: usize,
        outcome: u8,
    },
    Restrict {
        who: u8,
    },
    Unrestrict {
        who: u8,
    },
    Link {
        num: usize,
        platform: usize,
    },
    Unlink {
        num: usize,
        platform: usize,
    },
    Ack {
        num: usize,
        platform: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0u8..3;
    let num = 0usize..NUMBERS.len();
    let carrier = 0usize..2;
    prop_oneof![
        4 => (who.clone(), num.clone(), carrier.clone(), any::<bool>())
            .prop_map(|(who, num, carrier, strict)| Op::Register { who, num, carrier, strict }),
        1 => (num.clone(), carrier.clone()).prop_map(|(num, carrier)| Op::Cancel { num, carrier }),
        2 => (num.clone(), 1u64..50).prop_map(|(num, window)| Op::Flag { num, window }),
        1 => (num.clone(), carrier.clone()).prop_map(|(num, carrier)| Op::Reverified { num, carrier }),
        1 => (1u64..40).prop_map(|ms| Op::Tick { ms }),
        1 => Just(Op::Sweep),
        2 => (who.clone(), num.clone()).prop_map(|(who, num)| Op::Open { who, num }),
        2 => (1u64..5, carrier.clone(), 0u8..6)
            .prop_map(|(dispute, carrier, outcome)| Op::Resolve { dispute, carrier, outcome }),
        1 => who.clone().prop_map(|who| Op::Restrict { who }),
        1 => who.prop_map(|who| Op::Unrestrict { who }),
        2 => (num.clone(), 0usize..2).prop_map(|(num, platform)| Op::Link { num, platform }),
        1 => (num.clone(), 0usize..2).prop_map(|(num, platform)| Op::Unlink { num, platform }),
        1 => (num, 0usize..2).prop_map(|(num, platform)| Op::Ack { num, platform }),
    ]
}

#[derive(Debug, Clone)]
struct Card {
    carrier: &'static str,
    status: Lifecycle,
    open_dispute: u64,
}

#[derive(Debug, Clone)]
struct Dispute {
    who: IdKey,
    num: &'static str,
    carrier: &'static str,
    closed: bool,
}

/// The reference: what the registry should contain, in plain maps.
#[derive(Default)]
struct Model {
    clock: u64,
    cards: BTreeMap<(IdKey, &'static str), Card>,
    holder_of: BTreeMap<&'static str, IdKey>,
    disputes: Vec<Dispute>,
    restricted: BTreeSet<IdKey>,
    /// (number, platform) → needs re-verification.
    links: BTreeMap<(&'static str, &'static str), bool>,
}

type Expect = Result<(), Reason>;

impl Model {
    fn held(&self, who: IdKey, carrier: &str) -> u32 {
        self.cards
            .iter()
            .filter(|((k, _), c)| *k == who && c.carrier == carrier && c.status.is_held())
            .count() as u32
    }

    fn card_of(&self, num: &'static str) -> Option<(IdKey, Card)> {
        // The number's last holder: the held one, else any (latest wins in
        // the store's number index; the model tracks it the same way).
        self.holder_of
            .get(num)
            .and_then(|k| self.cards.get(&(*k, num)).map(|c| (*k, c.clone())))
    }

    fn change(&mut self, who: IdKey, num: &'static str, event: Event) -> Expect {
        let card = self
            .cards
            .get(&(who, num))
            .cloned()
            .ok_or(Reason::NotFound)?;
        let to = next_status(card.status, event).map_err(|e| e.reason)?;
        if matches!(
            to,
            Lifecycle::Stripped | Lifecycle::Cancelled | Lifecycle::PendingReverify { .. }
        ) && to != card.status
        {
            for ((n, _), flag) in self.links.iter_mut() {
                if *n == num {
                    *flag = true;
                }
            }
        }
        if let Some(c) = self.cards.get_mut(&(who, num)) {
            c.status = to;
        }
        Ok(())
    }

    fn is_held_number(&self, num: &'static str) -> bool {
        self.holder_of.get(num).is_some_and(|k| {
            self.cards
                .get(&(*k, num))
                .is_some_and(|c| c.status.is_held())
        })
    }

    fn apply(&mut self, op: &Op) -> Expect {
        match *op {
            Op::Register {
                who,
                num,
                carrier,
                strict,
            } => {
                let (who, num, carrier) = (id(who), NUMBERS[num], CARRIERS[carrier]);
                if self.restricted.contains(&who) {
                    return Err(Reason::Restricted);
                }
                if self.is_held_number(num) {
                    return Err(Reason::NumberInUse);
                }
                if self.held(who, carrier) >= THRESHOLD && !strict {
                    return Err(Reason::LimitExceeded);
                }
                self.cards.insert(
                    (who, num),
                    Card {
                        carrier,
                        status: Lifecycle::Active,
                        open_dispute: 0,
                    },
                );
                self.holder_of.insert(num, who);
                Ok(())
            }
            Op::Cancel { num, carrier } => {
                let num = NUMBERS[num];
                let (who, card) = self.card_of(num).ok_or(Reason::NotFound)?;
                if card.carrier != CARRIERS[carrier] {
                    return Err(Reason::WrongCarrier);
                }
                self.change(who, num, Event::Cancel)
            }
            Op::Flag { num, window } => {
                let num = NUMBERS[num];
                let (who, _) = self.card_of(num).ok_or(Reason::NotFound)?;
                self.change(
                    who,
                    num,
                    Event::FlagHighRisk {
                        deadline_ms: self.clock + window,
                    },
                )
            }
            Op::Reverified { num, carrier } => {
                let num = NUMBERS[num];
                let (who, card) = self.card_of(num).ok_or(Reason::NotFound)?;
                if card.carrier != CARRIERS[carrier] {
                    return Err(Reason::WrongCarrier);
                }
                self.change(who, num, Event::Reverified)
            }
            Op::Tick { ms } => {
                self.clock += ms;
                Ok(())
            }
            Op::Sweep => {
                let due: Vec<_> = self
                    .cards
                    .iter()
                    .filter(|(_, c)| matches!(c.status, Lifecycle::PendingReverify { deadline_ms } if deadline_ms <= self.clock))
                    .map(|(k, _)| *k)
                    .collect();
                for (who, num) in due {
                    self.change(who, num, Event::DeadlineCheck { now_ms: self.clock })?;
                }
                Ok(())
            }
            Op::Open { who, num } => {
                let (who, num) = (id(who), NUMBERS[num]);
                let card = match self.cards.get(&(who, num)) {
                    Some(c) if c.status.is_held() => c.clone(),
                    _ => return Err(Reason::NotFound),
                };
                if card.open_dispute != 0 {
                    return Err(Reason::DisputeOpen);
                }
                self.disputes.push(Dispute {
                    who,
                    num,
                    carrier: card.carrier,
                    closed: false,
                });
                let d = self.disputes.len() as u64;
                if let Some(c) = self.cards.get_mut(&(who, num)) {
                    c.open_dispute = d;
                }
                Ok(())
            }
            Op::Resolve {
                dispute,
                carrier,
                outcome,
            } => {
                let Some(outcome) = DisputeOutcome::from_code(outcome as i32) else {
                    return Err(Reason::InvalidArgument);
                };
                let Some(d) = self.disputes.get(dispute as usize - 1).cloned() else {
                    return Err(Reason::NotFound);
                };
                if d.closed {
                    return Err(Reason::DisputeClosed);
                }
                if d.carrier != CARRIERS[carrier] {
                    return Err(Reason::WrongCarrier);
                }
                if let Some(ev) = outcome.event() {
                    self.change(d.who, d.num, ev)?;
                }
                if let Some(c) = self.cards.get_mut(&(d.who, d.num)) {
                    if c.open_dispute == dispute {
                        c.open_dispute = 0;
                    }
                }
                self.disputes[dispute as usize - 1].closed = true;
                Ok(())
            }
            Op::Restrict { who } => {
                self.restricted.insert(id(who));
                Ok(())
            }
            Op::Unrestrict { who } => {
                if self.restricted.remove(&id(who)) {
                    Ok(())
                } else {
                    Err(Reason::NotFound)
                }
            }
            Op::Link { num, platform } => {
                let num = NUMBERS[num];
                if !self.is_held_number(num) {
                    return Err(Reason::NotFound);
                }
                self.links
                    .entry((num, PLATFORMS[platform]))
                    .or_insert(false);
                Ok(())
            }
            Op::Unlink { num, platform } => self
                .links
                .remove(&(NUMBERS[num], PLATFORMS[platform]))
                .map(|_| ())
                .ok_or(Reason::NotFound),
            Op::Ack { num, platform } => {
                match self.links.get_mut(&(NUMBERS[num], PLATFORMS[platform])) {
                    Some(flag) if *flag => {
                        *flag = false;
                        Ok(())
                    }
                    _ => Err(Reason::NotFound),
                }
            }
        }
    }
}

const ACCOUNT: &str = "acct";

fn command_of(op: &Op) -> Option<Command> {
    Some(match *op {
        Op::Register {
            who,
            num,
            carrier,
            strict,
        } => Command::Register(Register {
            id_key: id(who),
            msisdn: NUMBERS[num].into(),
            carrier: CARRIERS[carrier].into(),
            province: 11,
            kind: 1,
            channel: if strict {
                Channel::OwnHall
            } else {
                Channel::Agent
            }
            .code() as u8,
            strict_verification: strict,
            last6_tag: [9; 16],
            unit_key: None,
        }),
        Op::Cancel { num, carrier } => Command::Cancel(Cancel {
            msisdn: NUMBERS[num].into(),
            carrier: CARRIERS[carrier].into(),
        }),
        Op::Flag { num, window } => Command::FlagHighRisk(FlagHighRisk {
            msisdn: NUMBERS[num].into(),
            window_ms: window,
        }),
        Op::Reverified { num, carrier } => Command::Reverified(Reverified {
            msisdn: NUMBERS[num].into(),
            carrier: CARRIERS[carrier].into(),
        }),
        Op::Tick { .. } => return None,
        Op::Sweep => Command::SweepOverdue(SweepOverdue { limit: 100 }),
        Op::Open { who, num } => Command::OpenDispute(OpenDispute {
            id_key: id(who),
            msisdn: NUMBERS[num].into(),
            contact: String::new(),
        }),
        Op::Resolve {
            dispute,
            carrier,
            outcome,
        } => Command::ResolveDispute(ResolveDispute {
            dispute_id: dispute,
            carrier: CARRIERS[carrier].into(),
            outcome,
            operator: "op".into(),
        }),
        Op::Restrict { who } => Command::Restrict(Restrict {
            id_key: id(who),
            reason: "test".into(),
            duration_ms: 0,
        }),
        Op::Unrestrict { who } => Command::Unrestrict(Unrestrict { id_key: id(who) }),
        Op::Link { num, platform } | Op::Unlink { num, platform } | Op::Ack { num, platform } => {
            let l = Link {
                msisdn: NUMBERS[num].into(),
                platform: PLATFORMS[platform].into(),
                account: ACCOUNT.into(),
            };
            match op {
                Op::Link { .. } => Command::Link(l),
                Op::Unlink { .. } => Command::Unlink(l),
                _ => Command::AckReverify(l),
            }
        }
    })
}

fn scan<T: bincode::Decode<()>>(db: &Db, version: u8, prefix: &[u8]) -> Vec<(Vec<u8>, T)> {
    db.scan_sm(prefix, None, 10_000)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let value = codec::decode(version, &v, CF_SM_DATA, &k).unwrap();
            (k, value)
        })
        .collect()
}

/// The stored state agrees with the model, and the indexes agree with the
/// cards.
fn check_store(db: &Db, m: &Model) {
    let mut held_by: BTreeMap<(IdKey, String), u32> = BTreeMap::new();
    let mut pending = BTreeSet::new();
    let mut stored_cards = 0;
    for who in 0..3u8 {
        let k = id(who);
        let mut in_service = Vec::new();
        for (key, card) in scan::<CardRecord>(db, CARD_V, &keys::card_prefix(&k)) {
            stored_cards += 1;
            let num = keys::card_msisdn(&key).unwrap().to_string();
            let status =
                Lifecycle::from_parts(card.status, card.suspend_reason, card.reverify_deadline_ms)
                    .unwrap();
            if status.is_active() {
                in_service.extend(packed_number(&num));
            }
            let model = m
                .cards
                .iter()
                .find(|((mk, mn), _)| *mk == k && *mn == num)
                .map(|(_, c)| c)
                .expect("stored card is in the model");
            assert_eq!(status, model.status, "card {num} of {who}");
            assert_eq!(card.open_dispute, model.open_dispute, "dispute on {num}");
            if status.is_held() {
                *held_by.entry((k, card.carrier.clone())).or_default() += 1;
                let idx: MsisdnRecord = scan(db, MSISDN_V, &keys::msisdn_key(&num))
                    .into_iter()
                    .next()
                    .expect("held number is indexed")
                    .1;
                assert!(idx.held && idx.id_key == k, "number index of {num}");
            }
            if let Lifecycle::PendingReverify { deadline_ms } = status {
                pending.insert((deadline_ms, num.clone()));
            }
        }
        let holder: HolderRecord = scan(db, HOLDER_V, &keys::holder_key(&k))
            .into_iter()
            .next()
            .map(|(_, h)| h)
            .unwrap_or_default();
        // Five numbers never overflow the list.
        in_service.sort_unstable();
        assert_eq!(
            holder.in_service,
            Some(in_service),
            "in service under {who}"
        );
        for c in CARRIERS {
            let want = held_by.get(&(k, c.to_string())).copied().unwrap_or(0);
            assert_eq!(holder.at(c, 11), want, "summary of {who} at {c}");
            assert_eq!(want, m.held(k, c), "model summary of {who} at {c}");
        }
    }
    assert_eq!(stored_cards, m.cards.len());
    let stats: StatsRecord = scan(db, STATS_V, keys::STATS)
        .into_iter()
        .next()
        .map(|(_, s)| s)
        .unwrap_or_default();
    for c in CARRIERS {
        let want: u32 = (0..3u8).map(|w| m.held(id(w), c)).sum();
        let got = stats.held.get(&(c.to_string(), 11)).copied().unwrap_or(0);
        assert_eq!(got, u64::from(want), "national statistics at {c}");
    }
    let queued: BTreeSet<(u64, String)> =
        scan::<PendingRecord>(db, PENDING_V, keys::PENDING_PREFIX)
            .into_iter()
            .map(|(k, _)| {
                let (d, n) = keys::parse_pending_key(&k).unwrap();
                (d, n.to_string())
            })
            .collect();
    assert_eq!(queued, pending, "re-verification queue");
    for num in NUMBERS {
        let stored = scan::<LinkRecord>(db, LINK_V, &keys::link_prefix(num));
        for p in PLATFORMS {
            let model = m.links.get(&(num, p));
            let row = stored
                .iter()
                .find(|(k, _)| *k == keys::link_key(num, p, ACCOUNT))
                .map(|(_, l)| l.needs_reverify);
            assert_eq!(row, model.copied(), "link {num}/{p}");
            let queued =
                !scan::<ReverifyRecord>(db, REVERIFY_V, &keys::reverify_key(p, num, ACCOUNT))
                    .is_empty();
            assert_eq!(queued, model == Some(&true), "reverify queue {num}/{p}");
        }
    }
}

fn policy() -> Policy {
    Policy {
        own_hall_threshold: THRESHOLD,
        ..Policy::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_the_model(
        ops in prop::collection::vec(
            (op(), 1usize..4, prop::option::of(any::<prop::sample::Index>())),
            1..60,
        ),
    ) {
        let (_dir, db) = super::test_db();
        let mut model = Model::default();
        let mut pol = policy();
        let mut seq = 0u64;
        // Each registration that went through, as sent, with its outcome.
        let mut registered: Vec<(Vec<u8>, Outcome)> = Vec::new();
        // Ops are applied in groups sharing one transaction, like the
        // commands of one log entry: later ones must see earlier writes.
        let mut tx = Tx::new(&db);
        for (op, group, retry) in ops {
            let want = model.apply(&op);
            if let Some(cmd) = command_of(&op) {
                seq += 1;
                let bytes = envelope_bytes(seq, cmd);
                let got = apply_envelope(&mut tx, &mut pol, (seq, 0), model.clock, &bytes).unwrap();
                if matches!(got.outcome, Outcome::Registered { .. }) {
                    registered.push((bytes, got.outcome.clone()));
                }
                let got = match got.outcome.as_error() {
                    Some(e) => Err(e.reason),
                    None => Ok(()),
                };
                prop_assert_eq!(got, want, "{:?}", op);
            }
            // A registration retried under its request id, whatever
            // happened to its card since (cancelled, stripped, registered
            // again to someone else): its first outcome, nothing written.
            if let Some(pick) = retry.filter(|_| !registered.is_empty()) {
                let (bytes, first) = &registered[pick.index(registered.len())];
                let again = apply_envelope(&mut tx, &mut pol, (seq, 1), model.clock, bytes).unwrap();
                prop_assert!(again.replayed);
                prop_assert_eq!(&again.outcome, first);
            }
            if seq as usize % group == 0 {
                db.raw().write(std::mem::replace(&mut tx, Tx::new(&db)).into_batch().unwrap()).unwrap();
                check_store(&db, &model);
            }
        }
        db.raw().write(tx.into_batch().unwrap()).unwrap();
        check_store(&db, &model);
    }
}

/// `command` as the `seq`-th client write encodes it (request id `r{seq}`).
fn envelope_bytes(seq: u64, command: Command) -> Vec<u8> {
    Envelope {
        version: COMMAND_VERSION,
        request_id: format!("r{seq}"),
        command,
        by: String::new(),
        keys: KeyBinding::default(),
    }
    .encode()
    .unwrap()
}

/// Applies one command in a transaction of its own and commits it.
fn apply_one(db: &Db, pol: &mut Policy, seq: u64, op: &Op) -> Outcome {
    let command = command_of(op).expect("a command");
    apply_at(db, pol, seq, 1_000, command).unwrap()
}

/// Applies `command` as client write `seq` at replicated time `now_ms` in
/// a transaction of its own, and commits it.
pub(super) fn apply_at(
    db: &Db,
    pol: &mut Policy,
    seq: u64,
    now_ms: u64,
    command: Command,
) -> Result<Outcome, oneid_storage::StorageError> {
    let mut tx = Tx::new(db);
    let got = apply_envelope(
        &mut tx,
        pol,
        (seq, 0),
        now_ms,
        &envelope_bytes(seq, command),
    )?;
    db.raw().write(tx.into_batch()?)?;
    Ok(got.outcome)
}

/// A summary stored before summaries listed their in-service numbers
/// (version 2) does not learn them later: it stays unlisted through new
/// registrations and status changes, and counts read the card instead.
#[test]
fn a_version_2_summary_stays_unlisted_and_counts_read_the_card() {
    let (_dir, db) = super::test_db();
    let mut pol = policy();
    let reader = crate::reader::Reader::new(db.clone());
    let register = |num| Op::Register {
        who: 0,
        num,
        carrier: 0,
        strict: false,
    };
    let active = |num: usize| reader.verification(&id(0), NUMBERS[num]).unwrap().active;
    assert!(matches!(
        apply_one(&db, &mut pol, 1, &register(0)),
        Outcome::Registered { .. }
    ));
    let holder = reader.holder(&id(0)).unwrap();
    assert_eq!(holder.lists_in_service(NUMBERS[0]), Some(true));

    // Stored again as version 2 stored it: the two count maps alone.
    let v2 = codec::encode(HOLDER_V2, &(holder.active.clone(), holder.iot.clone())).unwrap();
    let cf = db.cf(CF_SM_DATA).unwrap();
    db.raw().put_cf(cf, keys::holder_key(&id(0)), v2).unwrap();
    assert_eq!(reader.holder(&id(0)).unwrap().in_service, None);
    assert!(active(0) && !active(1));

    assert!(matches!(
        apply_one(&db, &mut pol, 2, &register(1)),
        Outcome::Registered { .. }
    ));
    let flag = Op::Flag { num: 0, window: 10 };
    assert!(apply_one(&db, &mut pol, 3, &flag).as_error().is_none());
    let holder = reader.holder(&id(0)).unwrap();
    assert_eq!((holder.total(), holder.in_service), (2, None));
    assert!(!active(0) && active(1) && !active(2));
}

/// What the identity reads see of identity `who` and number `num`, raw:
/// the key state; the identity's lockout, summary, restriction and card
/// `num`; the number's index entry.
fn count_view(db: &Db, who: u8, num: usize) -> [Option<Vec<u8>>; 6] {
    let id = id(who);
    let msisdn = NUMBERS[num];
    [
        keys::KEY_STATE.to_vec(),
        keys::lockout_key(&id),
        keys::holder_key(&id),
        keys::restriction_key(&id),
        keys::card_key(&id, msisdn),
        keys::msisdn_key(msisdn),
    ]
    .map(|k| db.raw().get_cf(db.sm_cf(&k).unwrap(), &k).unwrap())
}

/// What a linked-account count reads of a number besides its index
/// entry and card: its linked accounts.
fn links_view(db: &Db, num: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.scan_sm(&keys::link_prefix(NUMBERS[num]), None, 10_000)
        .unwrap()
}

/// What the reads that wait for no bounded command read: the platforms'
/// re-verification queues, the notification outbox, the disputes and the
/// policy with its rules revision.
fn outside_view(db: &Db) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut all = Vec::new();
    for k in [keys::POLICY, keys::RULES] {
        if let Some(v) = db.raw().get_cf(db.sm_cf(k).unwrap(), k).unwrap() {
            all.push((k.to_vec(), v));
        }
    }
    for prefix in PLATFORMS
        .iter()
        .map(|p| keys::reverify_prefix(p))
        .chain([keys::OUTBOX_PREFIX.to_vec()])
    {
        all.extend(db.scan_sm(&prefix, None, 10_000).unwrap());
    }
    for id in 0..16 {
        let k = keys::dispute_key(id);
        if let Some(v) = db.raw().get_cf(db.sm_cf(&k).unwrap(), &k).unwrap() {
            all.push((k, v));
        }
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Reads skip unapplied entries whose commands' footprints miss their
    /// keys (`crate::footprint`): applying a command with a bounded
    /// footprint must leave what a count (of cards or of linked accounts)
    /// reads unchanged for every identity and number outside it, and what
    /// the reads outside every footprint read unchanged altogether.
    #[test]
    fn a_bounded_command_changes_nothing_a_read_skipping_it_reads(
        steps in prop::collection::vec((op(), prop::option::of((0u8..3, any::<bool>()))), 1..60),
    ) {
        let (_dir, db) = super::test_db();
        let mut pol = policy();
        let mut clock = 1_000u64;
        for (seq, (op, verification)) in steps.into_iter().enumerate() {
            let seq = seq as u64 + 1;
            if let Op::Tick { ms } = op {
                clock += ms;
            }
            let command = match verification {
                Some((who, true)) => Command::FailedVerification(id(who)),
                Some((who, false)) => Command::VerificationPassed(id(who)),
                None => match command_of(&op) {
                    Some(c) => c,
                    None => continue,
                },
            };
            let mut tokens = Vec::new();
            let bounded = crate::footprint::of_command(&envelope_bytes(seq, command.clone()), &mut tokens);
            let before: Vec<_> = (0..3u8)
                .flat_map(|w| (0..NUMBERS.len()).map(move |n| (w, n)))
                .map(|(w, n)| ((w, n), count_view(&db, w, n)))
                .collect();
            let links_before: Vec<_> = (0..NUMBERS.len()).map(|n| links_view(&db, n)).collect();
            let outside_before = outside_view(&db);
            apply_at(&db, &mut pol, seq, clock, command.clone()).unwrap();
            if !bounded {
                continue;
            }
            prop_assert_eq!(outside_view(&db), outside_before, "{:?}", command);
            for (n, was) in links_before.into_iter().enumerate() {
                if !tokens.contains(&crate::footprint::number(NUMBERS[n])) {
                    prop_assert_eq!(links_view(&db, n), was, "links of {}, {:?}", n, command);
                }
            }
            for ((w, n), was) in before {
                let now = count_view(&db, w, n);
                let id_in = tokens.contains(&crate::footprint::identity(&id(w)));
                let num_in = tokens.contains(&crate::footprint::number(NUMBERS[n]));
                prop_assert_eq!(&now[0], &was[0], "key state, {:?}", command);
                // An identity's cards are its records too: a carrier's
                // listing of them waits for its identity's writes alone.
                if !id_in {
                    prop_assert_eq!(&now[1..5], &was[1..5], "identity {}, {:?}", w, command);
                }
                if !num_in {
                    prop_assert_eq!(&now[5], &was[5], "number {}, {:?}", n, command);
                }
            }
        }
    }
}
