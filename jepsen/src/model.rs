//! The registry as a sequential object, per identity: the set of active
//! MSISDNs the workload's carrier-province holds under that ID, with the
//! policy limit, plus the cards outside the workload (the anchor) that every
//! count also sees.

use std::collections::HashMap;

use crate::history::{EventType, OpKind, Operation};
use crate::linearizable::{Model, Timed};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CardSet {
    pub active: u64,
    /// Numbers ever registered under this ID: cancelling one that was never
    /// registered is NOT_FOUND, one already cancelled is ALREADY_CANCELLED.
    pub ever: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail(String),
    /// Unknown: apply the model's own transition if linearized at all.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CardOp {
    Register {
        bit: u8,
        outcome: Outcome,
    },
    Cancel {
        bit: u8,
        outcome: Outcome,
    },
    Count {
        total: u32,
    },
    /// A linked-account count of the number: answered (`held`) or refused
    /// as not registered under the ID.
    Held {
        bit: u8,
        held: bool,
    },
}

/// How a linked-account count refuses a number not active under the ID
/// it names (the same answer as wrong ID digits, by design).
pub const NOT_HELD: &str = "VERIFICATION_FAILED";

pub struct Registry {
    /// Active cards per carrier-province before a registration is refused.
    pub limit: u32,
    /// Cards under the ID that the workload never touches (the anchor).
    pub base: u32,
}

impl Model for Registry {
    type State = CardSet;
    type Op = CardOp;

    fn init(&self) -> CardSet {
        CardSet { active: 0, ever: 0 }
    }

    fn step(&self, s: &CardSet, op: &CardOp) -> Option<CardSet> {
        match op {
            CardOp::Register { bit, outcome } => {
                let m = 1u64 << bit;
                let expected: Result<CardSet, &str> = if s.active & m != 0 {
                    Err("NUMBER_IN_USE")
                } else if s.active.count_ones() >= self.limit {
                    Err("LIMIT_EXCEEDED")
                } else {
                    Ok(CardSet {
                        active: s.active | m,
                        ever: s.ever | m,
                    })
                };
                judge(s, expected, outcome)
            }
            CardOp::Cancel { bit, outcome } => {
                let m = 1u64 << bit;
                let expected: Result<CardSet, &str> = if s.active & m != 0 {
                    Ok(CardSet {
                        active: s.active & !m,
                        ever: s.ever,
                    })
                } else if s.ever & m != 0 {
                    Err("ALREADY_CANCELLED")
                } else {
                    Err("NOT_FOUND")
                };
                judge(s, expected, outcome)
            }
            CardOp::Count { total } => (*total == self.base + s.active.count_ones()).then_some(*s),
            CardOp::Held { bit, held } => (((s.active >> bit) & 1 == 1) == *held).then_some(*s),
        }
    }
}

fn judge(s: &CardSet, expected: Result<CardSet, &str>, observed: &Outcome) -> Option<CardSet> {
    match (expected, observed) {
        (Ok(next), Outcome::Ok | Outcome::Unknown) => Some(next),
        (Err(_), Outcome::Unknown) => Some(*s),
        (Err(want), Outcome::Fail(got)) if want == got => Some(*s),
        _ => None,
    }
}

/// Converts one key's operations into the checker's input. Count reads that
/// timed out carry no information and are dropped (a count that failed with a
/// domain error is the invariant checker's business, and so is a
/// linked-account count refused for any reason but a failed verification).
/// A failed write's reason must be the one the model predicts. More than 64
/// distinct numbers per key is a workload error.
pub fn to_timed(ops: &[&Operation]) -> anyhow::Result<Vec<Timed<CardOp>>> {
    let mut bits: HashMap<String, u8> = HashMap::new();
    let mut out = Vec::new();
    for op in ops {
        let outcome = match op.kind {
            EventType::Ok => Outcome::Ok,
            EventType::Fail => Outcome::Fail(op.output.error.clone().unwrap_or_default()),
            EventType::Info | EventType::Invoke => Outcome::Unknown,
        };
        let mut bit_of = |m: &Option<String>| -> anyhow::Result<u8> {
            let m = m
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("{:?} without msisdn", op.f))?;
            let next = bits.len();
            anyhow::ensure!(
                next < 64 || bits.contains_key(m),
                "more than 64 numbers per key"
            );
            Ok(*bits.entry(m.to_string()).or_insert(next as u8))
        };
        let card_op = match op.f {
            OpKind::Register => CardOp::Register {
                bit: bit_of(&op.input.msisdn)?,
                outcome,
            },
            OpKind::Cancel => CardOp::Cancel {
                bit: bit_of(&op.input.msisdn)?,
                outcome,
            },
            OpKind::Count => match (op.kind, op.output.total) {
                (EventType::Ok, Some(total)) => CardOp::Count { total },
                (EventType::Ok, None) => anyhow::bail!("count ok without total"),
                _ => continue,
            },
            OpKind::Linked => {
                let held = match (op.kind, op.output.error.as_deref()) {
                    (EventType::Ok, _) => true,
                    (EventType::Fail, Some(NOT_HELD)) => false,
                    _ => continue,
                };
                CardOp::Held {
                    bit: bit_of(&op.input.msisdn)?,
                    held,
                }
            }
        };
        out.push(Timed {
            op: card_op,
            call: op.call_ns,
            ret: op.return_ns,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizable::{check, Verdict};
    use std::time::Duration;

    const INF: u64 = u64::MAX;
    const M: Registry = Registry { limit: 2, base: 1 };

    fn reg(bit: u8, o: Outcome, call: u64, ret: u64) -> Timed<CardOp> {
        Timed {
            op: CardOp::Register { bit, outcome: o },
            call,
            ret,
        }
    }
    fn cancel(bit: u8, o: Outcome, call: u64, ret: u64) -> Timed<CardOp> {
        Timed {
            op: CardOp::Cancel { bit, outcome: o },
            call,
            ret,
        }
    }
    fn count(total: u32, call: u64, ret: u64) -> Timed<CardOp> {
        Timed {
            op: CardOp::Count { total },
            call,
            ret,
        }
    }
    fn fail(r: &str) -> Outcome {
        Outcome::Fail(r.into())
    }
    fn verdict(h: &[Timed<CardOp>]) -> Verdict {
        check(&M, h, Duration::from_secs(5))
    }
    fn bad(h: &[Timed<CardOp>]) -> bool {
        matches!(verdict(h), Verdict::NotLinearizable { .. })
    }

    #[test]
    fn the_limit_is_a_hard_limit() {
        let ok = [
            reg(0, Outcome::Ok, 0, 1),
            reg(1, Outcome::Ok, 2, 3),
            reg(2, fail("LIMIT_EXCEEDED"), 4, 5),
            count(3, 6, 7),
        ];
        assert_eq!(verdict(&ok), Verdict::Linearizable);
        let over = [
            reg(0, Outcome::Ok, 0, 1),
            reg(1, Outcome::Ok, 2, 3),
            reg(2, Outcome::Ok, 4, 5),
        ];
        assert!(bad(&over));
    }

    #[test]
    fn concurrent_registrations_race_for_the_last_slot() {
        // Both race for one free slot: exactly one may win.
        let one_wins = [
            reg(0, Outcome::Ok, 0, 1),
            reg(1, Outcome::Ok, 2, 10),
            reg(2, fail("LIMIT_EXCEEDED"), 3, 9),
        ];
        assert_eq!(verdict(&one_wins), Verdict::Linearizable);
        let both_fail = [
            reg(0, Outcome::Ok, 0, 1),
            reg(1, fail("LIMIT_EXCEEDED"), 2, 10),
            reg(2, fail("LIMIT_EXCEEDED"), 3, 9),
        ];
        assert!(bad(&both_fail));
    }

    #[test]
    fn lost_acknowledged_registration_is_caught() {
        let h = [reg(0, Outcome::Ok, 0, 1), count(1, 2, 3)];
        assert!(bad(&h));
    }

    fn held(bit: u8, held: bool, call: u64, ret: u64) -> Timed<CardOp> {
        Timed {
            op: CardOp::Held { bit, held },
            call,
            ret,
        }
    }

    #[test]
    fn a_linked_account_count_sees_the_number_exactly_while_it_is_active() {
        let h = [
            held(0, false, 0, 1),
            reg(0, Outcome::Ok, 2, 3),
            held(0, true, 4, 5),
            cancel(0, Outcome::Ok, 6, 7),
            held(0, false, 8, 9),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
        // Stale: the registration was acknowledged before the count began.
        assert!(bad(&[reg(0, Outcome::Ok, 0, 1), held(0, false, 2, 3)]));
        // Stale: the cancellation was acknowledged before the count began.
        assert!(bad(&[
            reg(0, Outcome::Ok, 0, 1),
            cancel(0, Outcome::Ok, 2, 3),
            held(0, true, 4, 5),
        ]));
        // Concurrent with the registration: either answer.
        for answer in [true, false] {
            let h = [reg(0, Outcome::Ok, 0, 10), held(0, answer, 2, 3)];
            assert_eq!(verdict(&h), Verdict::Linearizable);
        }
    }

    #[test]
    fn stale_count_after_cancel_is_caught() {
        let h = [
            reg(0, Outcome::Ok, 0, 1),
            count(2, 2, 3),
            cancel(0, Outcome::Ok, 4, 5),
            count(2, 6, 7),
        ];
        assert!(bad(&h));
    }

    #[test]
    fn timed_out_registration_may_apply_later() {
        let h = [
            reg(0, Outcome::Unknown, 0, INF),
            count(1, 2, 3),
            count(2, 4, 5),
            cancel(0, Outcome::Ok, 6, 7),
            count(1, 8, 9),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn cancel_reasons_distinguish_never_registered_from_cancelled() {
        let h = [cancel(0, fail("ALREADY_CANCELLED"), 0, 1)];
        assert!(bad(&h));
        let h = [
            reg(0, Outcome::Ok, 0, 1),
            cancel(0, Outcome::Ok, 2, 3),
            cancel(0, fail("ALREADY_CANCELLED"), 4, 5),
            cancel(1, fail("NOT_FOUND"), 6, 7),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn double_registration_of_one_number_is_caught() {
        let h = [reg(0, Outcome::Ok, 0, 1), reg(0, Outcome::Ok, 2, 3)];
        assert!(bad(&h));
        let h = [
            reg(0, Outcome::Ok, 0, 1),
            reg(0, fail("NUMBER_IN_USE"), 2, 3),
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable);
    }

    #[test]
    fn unexpected_failure_reason_is_a_violation() {
        let h = [reg(0, fail("INTERNAL"), 0, 1)];
        assert!(bad(&h));
    }
}
