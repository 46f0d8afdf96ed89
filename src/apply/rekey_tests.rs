//! A pepper rotation must be invisible except for the keys: the same random
//! command sequence applied to a registry that rotates part-way (moves
//! interleaved with commands, finished and its aliases dropped at the end)
//! and to one that never rotates gives the same outcomes, and the same
//! stored state once the second's keys are mapped to the new version.

use std::collections::BTreeMap;

use oneid_storage::keys::{self, IdKey};
use oneid_storage::records::{
    CardRecord, HolderRecord, LockoutRecord, MsisdnRecord, PendingRecord, RestrictionRecord,
    StatsRecord, CARD_V, HOLDER_V, LOCKOUT_V, MSISDN_V, PENDING_V, RESTRICTION_V, STATS_V,
};
use oneid_storage::schema::CF_SM_DATA;
use oneid_storage::{codec, Db};
use proptest::prelude::*;

use super::{apply_envelope, key_state, Tx};
use crate::command::*;
use crate::domain::{Policy, Reason};

const NUMBERS: [&str; 4] = ["13800000000", "13800000001", "13800000002", "13800000003"];

fn old_key(who: u8) -> IdKey {
    [who + 1; 32]
}

/// Stands in for `HMAC(pepper_2, k)`: apply never derives keys, any
/// injective map exercises it the same way.
fn new_key(k: &IdKey) -> IdKey {
    k.map(|b| b ^ 0x55)
}

fn new_tag(t: &[u8; 16]) -> [u8; 16] {
    t.map(|b| b ^ 0xaa)
}

struct Node {
    _dir: tempfile::TempDir,
    db: std::sync::Arc<Db>,
    index: u64,
    policy: Policy,
}

impl Node {
    fn new() -> Node {
        let (dir, db) = super::test_db();
        Node {
            _dir: dir,
            db,
            index: 0,
            policy: Policy {
                own_hall_threshold: 100,
                ..Policy::default()
            },
        }
    }

    fn apply(&mut self, envelope: &Envelope, now_ms: u64) -> Applied {
        self.index += 1;
        let mut tx = Tx::new(&self.db);
        let applied = apply_envelope(
            &mut tx,
            &mut self.policy,
            (self.index, 0),
            now_ms,
            &envelope.encode().unwrap(),
        )
        .unwrap();
        self.db.raw().write(tx.into_batch().unwrap()).unwrap();
        applied
    }

    fn internal(&mut self, command: Command) -> Outcome {
        self.apply(&Envelope::internal(command), 1).outcome
    }

    fn scan<T: bincode::Decode<()>>(&self, version: u8, tag: u8) -> Vec<(Vec<u8>, T)> {
        self.db
            .scan_sm(&[tag], None, 100_000)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let t = codec::decode(version, &v, CF_SM_DATA, &k).unwrap();
                (k, t)
            })
            .collect()
    }

    /// What the leader's migration proposes for one identity.
    fn move_of(&self, old: IdKey) -> MoveId {
        let cards = self
            .db
            .scan_sm(&keys::card_prefix(&old), None, 1000)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let c: CardRecord = codec::decode(CARD_V, &v, CF_SM_DATA, &k).unwrap();
                MovedCard {
                    msisdn: keys::card_msisdn(&k).unwrap().to_string(),
                    last6_tag: new_tag(&c.last6_tag),
                    unit_key: c.unit_key.as_ref().map(new_key),
                }
            })
            .collect();
        MoveId {
            old,
            new: new_key(&old),
            cards,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Register {
        who: u8,
        num: usize,
        iot: bool,
    },
    Cancel {
        num: usize,
    },
    Flag {
        num: usize,
    },
    Restrict {
        who: u8,
    },
    Unrestrict {
        who: u8,
    },
    Fail {
        who: u8,
    },
    Dispute {
        who: u8,
        num: usize,
    },
    /// The rotating registry's leader moves one identity (if it can).
    Move {
        who: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0u8..4;
    let num = 0usize..NUMBERS.len();
    prop_oneof![
        4 => (who.clone(), num.clone(), any::<bool>()).prop_map(|(who, num, iot)| Op::Register { who, num, iot }),
        1 => num.clone().prop_map(|num| Op::Cancel { num }),
        1 => num.clone().prop_map(|num| Op::Flag { num }),
        1 => who.clone().prop_map(|who| Op::Restrict { who }),
        1 => who.clone().prop_map(|who| Op::Unrestrict { who }),
        1 => who.clone().prop_map(|who| Op::Fail { who }),
        1 => (who.clone(), num).prop_map(|(who, num)| Op::Dispute { who, num }),
        3 => who.prop_map(|who| Op::Move { who }),
    ]
}

/// The command of `op` with version-1 keys, and the keys it carries under
/// version 2.
fn command_of(op: &Op) -> Option<(Command, NextKeys)> {
    let next = |who: u8, tag: Option<[u8; 16]>, unit: Option<IdKey>| NextKeys {
        version: 2,
        id_key: new_key(&old_key(who)),
        last6_tag: tag.as_ref().map(new_tag),
        unit_key: unit.as_ref().map(new_key),
    };
    Some(match *op {
        Op::Register { who, num, iot } => {
            let tag = [who; 16];
            let unit = iot.then_some([200; 32]);
            (
                Command::Register(Register {
                    id_key: old_key(who),
                    msisdn: NUMBERS[num].into(),
                    carrier: "CMCC".into(),
                    province: 11,
                    kind: if iot { 2 } else { 1 },
                    channel: 1,
                    strict_verification: false,
                    last6_tag: tag,
                    unit_key: unit,
                }),
                next(who, Some(tag), unit),
            )
        }
        Op::Cancel { num } => (
            Command::Cancel(Cancel {
                msisdn: NUMBERS[num].into(),
                carrier: "CMCC".into(),
            }),
            next(0, None, None),
        ),
        Op::Flag { num } => (
            Command::FlagHighRisk(FlagHighRisk {
                msisdn: NUMBERS[num].into(),
                window_ms: 1000,
            }),
            next(0, None, None),
        ),
        Op::Restrict { who } => (
            Command::Restrict(Restrict {
                id_key: old_key(who),
                reason: "test".into(),
                duration_ms: 0,
            }),
            next(who, None, None),
        ),
        Op::Unrestrict { who } => (
            Command::Unrestrict(Unrestrict {
                id_key: old_key(who),
            }),
            next(who, None, None),
        ),
        Op::Fail { who } => (
            Command::FailedVerification(old_key(who)),
            next(who, None, None),
        ),
        Op::Dispute { who, num } => (
            Command::OpenDispute(OpenDispute {
                id_key: old_key(who),
                msisdn: NUMBERS[num].into(),
                contact: String::new(),
            }),
            next(who, None, None),
        ),
        Op::Move { .. } => return None,
    })
}

fn envelope(command: Command, keys: KeyBinding, request_id: String) -> Envelope {
    Envelope {
        keys,
        request_id,
        ..Envelope::internal(command)
    }
}

const ROTATION: Rekey = Rekey { from: 1, to: 2 };

/// The state both registries must agree on, with version-1 keys mapped to
/// version 2 when `map` is set (disputes keep the key they were opened
/// under once resolved, so they are compared through the cards instead).
fn state(n: &Node, map: bool) -> BTreeMap<Vec<u8>, String> {
    let k = |key: &[u8]| -> Vec<u8> {
        let mut key = key.to_vec();
        if map {
            if let Some(id) = keys::id_of(&key) {
                key[1..33].copy_from_slice(&new_key(&id));
            }
        }
        key
    };
    let id = |id: IdKey| if map { new_key(&id) } else { id };
    let mut out = BTreeMap::new();
    for (key, mut c) in n.scan::<CardRecord>(CARD_V, b'c') {
        if map {
            c.last6_tag = new_tag(&c.last6_tag);
            c.unit_key = c.unit_key.as_ref().map(new_key);
        }
        out.insert(k(&key), format!("{c:?}"));
    }
    for (key, h) in n.scan::<HolderRecord>(HOLDER_V, b'h') {
        out.insert(k(&key), format!("{h:?}"));
    }
    for (key, r) in n.scan::<RestrictionRecord>(RESTRICTION_V, b'r') {
        out.insert(k(&key), format!("{r:?}"));
    }
    for (key, l) in n.scan::<LockoutRecord>(LOCKOUT_V, b'f') {
        out.insert(k(&key), format!("{l:?}"));
    }
    for (key, mut m) in n.scan::<MsisdnRecord>(MSISDN_V, b'm') {
        m.id_key = id(m.id_key);
        out.insert(key, format!("{m:?}"));
    }
    for (key, mut p) in n.scan::<PendingRecord>(PENDING_V, b'p') {
        p.id_key = id(p.id_key);
        out.insert(key, format!("{p:?}"));
    }
    for (key, s) in n.scan::<StatsRecord>(STATS_V, b'S') {
        out.insert(key, format!("{s:?}"));
    }
    out
}

fn rejected_reason(o: &Outcome) -> Option<Reason> {
    o.as_error().map(|e| e.reason)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rotation_is_invisible_but_for_the_keys(
        ops in prop::collection::vec(op(), 1..40),
        begin_at in 0usize..40,
    ) {
        let mut plain = Node::new();
        let mut rotating = Node::new();
        let mut rotating_now = false;
        for (i, op) in ops.iter().enumerate() {
            if i == begin_at.min(ops.len() - 1) && !rotating_now {
                prop_assert_eq!(rotating.internal(Command::BeginRekey(ROTATION)), Outcome::Done);
                rotating_now = true;
            }
            let now = 1_000 + i as u64 * 10;
            let Some((command, next)) = command_of(op) else {
                if let (Op::Move { who }, true) = (op, rotating_now) {
                    let m = rotating.move_of(old_key(*who));
                    let o = rotating.internal(Command::RekeyBatch(RekeyBatch { rotation: ROTATION, ids: vec![m] }));
                    prop_assert!(matches!(o, Outcome::Rekeyed { .. }), "{:?}", o);
                }
                continue;
            };
            let rid = format!("r{i}");
            let a = plain.apply(&envelope(command.clone(), KeyBinding::default(), rid.clone()), now);
            let keys = if rotating_now {
                KeyBinding::Derived { version: 1, next: Some(next) }
            } else {
                KeyBinding::default()
            };
            let b = rotating.apply(&envelope(command, keys, rid), now);
            prop_assert_eq!(&a.outcome, &b.outcome, "op {} {:?}", i, op);
        }
        if !rotating_now {
            prop_assert_eq!(rotating.internal(Command::BeginRekey(ROTATION)), Outcome::Done);
        }
        for who in 0..4 {
            let m = rotating.move_of(old_key(who));
            rotating.internal(Command::RekeyBatch(RekeyBatch { rotation: ROTATION, ids: vec![m] }));
        }
        prop_assert_eq!(rotating.internal(Command::FinishRekey(ROTATION)), Outcome::Done);
        let dropped = rotating.internal(Command::DropAliases(TrimRequestIds { limit: 1000 }));
        prop_assert!(matches!(dropped, Outcome::Trimmed { .. }), "{:?}", dropped);
        prop_assert!(rotating.db.scan_sm(keys::MOVED_PREFIX, None, 1).unwrap().is_empty());
        prop_assert!(rotating.db.scan_sm(keys::ARRIVED_PREFIX, None, 1).unwrap().is_empty());
        prop_assert_eq!(state(&plain, true), state(&rotating, false));
        let ks = key_state(&Tx::new(&rotating.db)).unwrap();
        prop_assert_eq!((ks.current, ks.next), (2, 0));

        // Keys derived under the retired version are refused, retriably,
        // and not remembered: the retry with new keys goes through.
        let stale = envelope(
            Command::Restrict(Restrict { id_key: old_key(0), reason: "x".into(), duration_ms: 0 }),
            KeyBinding::default(),
            "late".into(),
        );
        let refused = rotating.apply(&stale, 5_000);
        prop_assert_eq!(rejected_reason(&refused.outcome), Some(Reason::KeyRotated));
        let retry = envelope(
            Command::Restrict(Restrict { id_key: new_key(&old_key(0)), reason: "x".into(), duration_ms: 0 }),
            KeyBinding::Derived { version: 2, next: None },
            "late".into(),
        );
        let done = rotating.apply(&retry, 5_010);
        prop_assert_eq!((done.outcome, done.replayed), (Outcome::Done, false));
    }
}

#[test]
fn rotations_go_one_version_at_a_time_and_never_overlap() {
    let mut n = Node::new();
    let refused = |o: Outcome| rejected_reason(&o) == Some(Reason::IllegalTransition);
    assert!(refused(
        n.internal(Command::BeginRekey(Rekey { from: 1, to: 3 }))
    ));
    assert!(refused(n.internal(Command::FinishRekey(ROTATION))));
    assert_eq!(n.internal(Command::BeginRekey(ROTATION)), Outcome::Done);
    assert!(refused(n.internal(Command::BeginRekey(ROTATION))));
    assert!(refused(
        n.internal(Command::DropAliases(TrimRequestIds { limit: 10 }))
    ));

    // During the rotation a command without keys for version 2 is refused.
    let restrict = Command::Restrict(Restrict {
        id_key: old_key(1),
        reason: "x".into(),
        duration_ms: 0,
    });
    let o = n.apply(
        &envelope(restrict.clone(), KeyBinding::default(), "a".into()),
        10,
    );
    assert_eq!(rejected_reason(&o.outcome), Some(Reason::KeyRotated));
    // A new identity is born under the new key, with an alias.
    let next = NextKeys {
        version: 2,
        id_key: new_key(&old_key(1)),
        last6_tag: None,
        unit_key: None,
    };
    let keyed = KeyBinding::Derived {
        version: 1,
        next: Some(next.clone()),
    };
    assert_eq!(
        n.apply(&envelope(restrict, keyed, "a".into()), 20).outcome,
        Outcome::Done
    );
    let tx = Tx::new(&n.db);
    assert!(tx.contains(&keys::restriction_key(&next.id_key)).unwrap());
    assert!(tx.contains(&keys::moved_key(&old_key(1))).unwrap());
    // Moving it again does nothing; a wrong pepper on a node is refused.
    let again = n.move_of(old_key(1));
    assert_eq!(
        n.internal(Command::RekeyBatch(RekeyBatch {
            rotation: ROTATION,
            ids: vec![again]
        })),
        Outcome::Rekeyed {
            moved: 0,
            skipped: 1
        }
    );
    let wrong = KeyBinding::Derived {
        version: 1,
        next: Some(NextKeys {
            id_key: [0; 32],
            ..next
        }),
    };
    let unrestrict = Command::Unrestrict(Unrestrict { id_key: old_key(1) });
    let o = n.apply(&envelope(unrestrict, wrong, "b".into()), 30);
    assert_eq!(rejected_reason(&o.outcome), Some(Reason::InvalidArgument));
    assert_eq!(n.internal(Command::FinishRekey(ROTATION)), Outcome::Done);
    // Aliases must be gone before the next rotation.
    assert!(refused(
        n.internal(Command::BeginRekey(Rekey { from: 2, to: 3 }))
    ));
    assert_eq!(
        n.internal(Command::DropAliases(TrimRequestIds { limit: 1 })),
        Outcome::Trimmed { removed: 1 }
    );
    assert_eq!(
        n.internal(Command::DropAliases(TrimRequestIds { limit: 10 })),
        Outcome::Trimmed { removed: 1 }
    );
    assert_eq!(
        n.internal(Command::BeginRekey(Rekey { from: 2, to: 3 })),
        Outcome::Done
    );
}
