//! Rule revisions carried in the log: what `SetRules` changes, that it only
//! moves forward, and that a build which does not know a revision stops
//! instead of applying the log differently from its peers.

use oneid_storage::records::{RulesRecord, RULES_V};
use oneid_storage::{codec, keys, Db, StorageError};

use super::load_policy;
use super::model_tests::apply_at;
use crate::command::{Command, Outcome, Register, SetPolicy, SetRules};
use crate::domain::{Channel, Policy, Reason, LATEST_RULES, RULES_MVNO_NATIONWIDE, RULES_ORIGINAL};

const THRESHOLD: u32 = 2;

/// Applies `command` as write `seq` in a transaction of its own, commits it.
fn apply(db: &Db, pol: &mut Policy, seq: u64, command: Command) -> Result<Outcome, StorageError> {
    apply_at(db, pol, seq, 1_000, command)
}

/// Card `seq` of one identity at `carrier` in `province`, by an agent or by
/// the carrier's own hall with strict verification.
fn card(seq: u64, carrier: &str, province: u8, own_hall: bool) -> Command {
    let channel = if own_hall {
        Channel::OwnHall
    } else {
        Channel::Agent
    };
    Command::Register(Register {
        id_key: [3; 32],
        msisdn: format!("1390000{seq:04}"),
        carrier: carrier.into(),
        province,
        kind: 1,
        channel: channel.code() as u8,
        strict_verification: own_hall,
        last6_tag: [9; 16],
        unit_key: None,
    })
}

fn rules(version: u32) -> Command {
    Command::SetRules(SetRules { version })
}

fn registered(o: &Outcome) -> bool {
    matches!(o, Outcome::Registered { .. })
}

fn refused(o: &Outcome) -> Option<Reason> {
    o.as_error().map(|e| e.reason)
}

fn start() -> (tempfile::TempDir, std::sync::Arc<Db>, Policy) {
    let (dir, db) = super::test_db();
    let pol = Policy {
        own_hall_threshold: THRESHOLD,
        ..Policy::default()
    };
    (dir, db, pol)
}

#[test]
fn an_mvno_counts_nationwide_once_the_rules_say_so() {
    let (_dir, db, mut pol) = start();
    let seq = std::cell::Cell::new(0);
    let next = || {
        seq.set(seq.get() + 1);
        seq.get()
    };
    let register = |pol: &mut Policy, carrier: &str, province: u8, own_hall: bool| {
        let seq = next();
        apply(&db, pol, seq, card(seq, carrier, province, own_hall)).unwrap()
    };
    // The first rules: an MVNO's cards count per province, like CMCC's.
    for province in [11, 31, 44] {
        let o = register(&mut pol, "XIAOMI", province, false);
        assert!(registered(&o), "rules 1, XIAOMI/{province}: {o:?}");
    }
    let o = register(&mut pol, "XIAOMI", 50, false);
    assert!(registered(&o), "rules 1 counts the province only: {o:?}");

    let o = apply(&db, &mut pol, next(), rules(RULES_MVNO_NATIONWIDE)).unwrap();
    assert_eq!(o, Outcome::Done);
    assert_eq!(pol.rules, RULES_MVNO_NATIONWIDE);

    // Now the MVNO's four cards count wherever they are: a fifth needs the
    // own hall, even in a province where it holds none.
    let o = register(&mut pol, "XIAOMI", 51, false);
    assert_eq!(refused(&o), Some(Reason::LimitExceeded), "{o:?}");
    assert!(
        o.as_error()
            .unwrap()
            .message
            .contains("MVNO in all provinces"),
        "{o:?}"
    );
    let o = register(&mut pol, "XIAOMI", 51, true);
    assert!(registered(&o), "by the own hall: {o:?}");
    // A basic carrier still counts per province.
    for _ in 0..THRESHOLD {
        let o = register(&mut pol, "CMCC", 11, false);
        assert!(registered(&o), "CMCC/11: {o:?}");
    }
    let o = register(&mut pol, "CMCC", 31, false);
    assert!(registered(&o), "CMCC/31: {o:?}");
    let o = register(&mut pol, "CMCC", 11, false);
    assert_eq!(refused(&o), Some(Reason::LimitExceeded), "{o:?}");
}

#[test]
fn rules_only_move_forward_and_survive_a_restart_and_a_policy_change() {
    let (_dir, db, mut pol) = start();
    assert_eq!(load_policy(&db).unwrap().rules, RULES_ORIGINAL);
    for (seq, version, want) in [
        (1, RULES_ORIGINAL, Some(Reason::IllegalTransition)),
        (2, 0, Some(Reason::InvalidArgument)),
        (3, RULES_MVNO_NATIONWIDE, None),
        (4, RULES_MVNO_NATIONWIDE, Some(Reason::IllegalTransition)),
        (5, RULES_ORIGINAL, Some(Reason::IllegalTransition)),
    ] {
        let o = apply(&db, &mut pol, seq, rules(version)).unwrap();
        assert_eq!(refused(&o), want, "rules {version}: {o:?}");
    }
    assert_eq!(pol.rules, RULES_MVNO_NATIONWIDE);
    // A new policy leaves the rules as they are, in memory and on disk.
    let values = SetPolicy {
        own_hall_threshold: 7,
        reverify_window_ms: 1_000,
        max_per_carrier: 0,
        max_total: 0,
        max_failed_verifications: 3,
        lockout_ms: 1_000,
    };
    let o = apply(&db, &mut pol, 6, Command::SetPolicy(values)).unwrap();
    assert_eq!(o, Outcome::Done);
    assert_eq!((pol.own_hall_threshold, pol.rules), (7, 2));
    assert_eq!(load_policy(&db).unwrap(), pol);
}

#[test]
fn a_build_that_does_not_know_the_rules_stops_applying() {
    let (_dir, db, mut pol) = start();
    let before = pol;
    let e = apply(&db, &mut pol, 1, rules(LATEST_RULES + 1)).unwrap_err();
    assert!(matches!(e, StorageError::NeedsNewerBuild(_)), "{e}");
    assert_eq!(pol, before);
    // Nor does it serve from a store (a snapshot) a newer build wrote.
    let record = RulesRecord {
        version: LATEST_RULES + 1,
        set_at_ms: 1,
    };
    let bytes = codec::encode(RULES_V, &record).unwrap();
    db.raw()
        .put_cf(db.sm_cfs().unwrap().of(keys::RULES), keys::RULES, bytes)
        .unwrap();
    let e = load_policy(&db).unwrap_err();
    assert!(matches!(e, StorageError::NeedsNewerBuild(_)), "{e}");
}
