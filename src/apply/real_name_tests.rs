//! Cards whose holder never completed real-name registration: suspended on
//! the carrier's report, back in service once the holder registers, and
//! terminated by the leader's sweep when the window ends first.

use oneid_storage::keys::{self, IdKey};
use oneid_storage::Db;

use super::model_tests::apply_at;
use super::Tx;
use crate::command::{Command, Outcome, RealNameMissing, Register, Reverified, SweepOverdue};
use crate::domain::{Channel, Lifecycle, Policy, Reason, RULES_MVNO_NATIONWIDE, RULES_REAL_NAME};

const NUMBER: &str = "13900000001";
const HOUR_MS: u64 = 3_600_000;

/// Applies `command` as write `seq` at replicated time `now_ms` under the
/// rules that have real-name reports, commits it.
fn apply(db: &Db, seq: u64, now_ms: u64, command: Command) -> Outcome {
    let mut policy = Policy {
        rules: RULES_REAL_NAME,
        ..Policy::default()
    };
    apply_under(db, &mut policy, seq, now_ms, command)
}

fn apply_under(db: &Db, policy: &mut Policy, seq: u64, now_ms: u64, command: Command) -> Outcome {
    apply_at(db, policy, seq, now_ms, command).unwrap()
}

fn register(id_key: IdKey) -> Command {
    Command::Register(Register {
        id_key,
        msisdn: NUMBER.into(),
        carrier: "CMCC".into(),
        province: 11,
        kind: 1,
        channel: Channel::Agent.code() as u8,
        strict_verification: false,
        last6_tag: [9; 16],
        unit_key: None,
    })
}

fn missing(carrier: &str, window_ms: u64) -> Command {
    Command::RealNameMissing(RealNameMissing {
        msisdn: NUMBER.into(),
        carrier: carrier.into(),
        window_ms,
    })
}

fn completed() -> Command {
    Command::RealNameCompleted(Reverified {
        msisdn: NUMBER.into(),
        carrier: "CMCC".into(),
    })
}

fn sweep() -> Command {
    Command::SweepOverdue(SweepOverdue { limit: 100 })
}

fn status(o: &Outcome) -> Option<Lifecycle> {
    match *o {
        Outcome::CardStatus {
            status,
            suspend_reason,
            deadline_ms,
        } => Lifecycle::from_parts(status, suspend_reason, deadline_ms),
        _ => None,
    }
}

/// (cards the identity holds, whether the number is in service, whether the
/// number is held by anyone).
fn held(db: &Db, id_key: &IdKey) -> (u32, Option<bool>, bool) {
    let tx = Tx::new(db);
    let holder = tx
        .holder(&keys::holder_key(id_key))
        .unwrap()
        .unwrap_or_default();
    let number = tx.number(&keys::msisdn_key(NUMBER)).unwrap();
    (
        holder.total(),
        holder.lists_in_service(NUMBER),
        number.is_some_and(|n| n.held),
    )
}

/// Older builds cannot decode real-name reports: before the rules that have
/// them, every build refuses them alike and nothing changes.
#[test]
fn refused_before_the_rules_that_have_them() {
    let (_dir, db) = super::test_db();
    let a = [1; 32];
    apply(&db, 1, 0, register(a));
    for rules in [1, RULES_MVNO_NATIONWIDE] {
        let mut policy = Policy {
            rules,
            ..Policy::default()
        };
        for (seq, command) in [(2, missing("CMCC", HOUR_MS)), (3, completed())] {
            let o = apply_under(&db, &mut policy, seq + u64::from(rules) * 10, 0, command);
            let e = o.as_error().expect("refused");
            assert_eq!(e.reason, Reason::IllegalTransition, "{o:?}");
            assert!(e.message.contains("needs rules version 3"), "{}", e.message);
        }
    }
    assert_eq!(held(&db, &a), (1, Some(true), true));
}

#[test]
fn suspended_until_registered_then_terminated_by_the_sweep() {
    let (_dir, db) = super::test_db();
    let (a, b) = ([1; 32], [2; 32]);
    assert!(matches!(
        apply(&db, 1, 0, register(a)),
        Outcome::Registered { .. }
    ));

    // Only the card's carrier may report it.
    let o = apply(&db, 2, 10, missing("CUCC", HOUR_MS));
    assert_eq!(o.as_error().map(|e| e.reason), Some(Reason::WrongCarrier));
    let o = apply(&db, 3, 10, missing("CMCC", HOUR_MS));
    let deadline_ms = 10 + HOUR_MS;
    assert_eq!(status(&o), Some(Lifecycle::RealNameMissing { deadline_ms }));
    // Still counted under the identity (no way around the limits), but out
    // of service: it proves possession of nothing.
    assert_eq!(held(&db, &a), (1, Some(false), true));

    // The sweep leaves it alone until the deadline, then terminates it.
    assert_eq!(
        apply(&db, 4, deadline_ms - 1, sweep()),
        Outcome::Swept { suspended: 0 }
    );
    assert_eq!(held(&db, &a), (1, Some(false), true));
    assert_eq!(
        apply(&db, 5, deadline_ms, sweep()),
        Outcome::Swept { suspended: 0 }
    );
    assert_eq!(held(&db, &a), (0, Some(false), false));
    let o = apply(&db, 6, deadline_ms + 1, completed());
    assert_eq!(
        o.as_error().map(|e| e.reason),
        Some(Reason::AlreadyCancelled)
    );
    // The number is free again.
    assert!(matches!(
        apply(&db, 7, deadline_ms + 2, register(b)),
        Outcome::Registered { .. }
    ));
}

#[test]
fn completing_real_name_registration_restores_the_card_and_stops_the_clock() {
    let (_dir, db) = super::test_db();
    let a = [1; 32];
    apply(&db, 1, 0, register(a));
    let o = apply(&db, 2, 0, completed());
    assert_eq!(
        o.as_error().map(|e| e.reason),
        Some(Reason::IllegalTransition)
    );
    apply(&db, 3, 0, missing("CMCC", HOUR_MS));
    let o = apply(&db, 4, 5, completed());
    assert_eq!(status(&o), Some(Lifecycle::Active));
    assert_eq!(held(&db, &a), (1, Some(true), true));
    // Nothing left for the sweep: the card stays active past the deadline.
    apply(&db, 5, 2 * HOUR_MS, sweep());
    assert_eq!(held(&db, &a), (1, Some(true), true));
    let tx = Tx::new(&db);
    assert!(tx.scan_raw(keys::PENDING_PREFIX, 10).unwrap().is_empty());
}

#[test]
fn a_high_risk_card_missing_real_name_keeps_one_deadline() {
    let (_dir, db) = super::test_db();
    let a = [1; 32];
    apply(&db, 1, 0, register(a));
    let flag = Command::FlagHighRisk(crate::command::FlagHighRisk {
        msisdn: NUMBER.into(),
        window_ms: HOUR_MS,
    });
    apply(&db, 2, 0, flag);
    let o = apply(&db, 3, 0, missing("CMCC", 3 * HOUR_MS));
    assert_eq!(
        status(&o),
        Some(Lifecycle::RealNameMissing {
            deadline_ms: 3 * HOUR_MS
        })
    );
    // The re-verification deadline is gone: at one hour nothing happens.
    apply(&db, 4, HOUR_MS, sweep());
    assert_eq!(held(&db, &a), (1, Some(false), true));
    let tx = Tx::new(&db);
    assert_eq!(tx.scan_raw(keys::PENDING_PREFIX, 10).unwrap().len(), 1);
}
