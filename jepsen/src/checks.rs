//! Verdicts over a finished run: linearizability per key, plus invariants
//! that hold whatever order the operations took.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::history::{EventType, OpKind, Operation};
use crate::linearizable::{self, Verdict};
use crate::model::{self, Registry};

/// What the cluster holds after the run, probed once everything healed.
#[derive(Debug, Default, Serialize)]
pub struct FinalState {
    /// Keys under which each probed number verifies (is active).
    pub holders: BTreeMap<String, Vec<String>>,
    /// Final verified count per key.
    pub totals: BTreeMap<String, u32>,
    /// State digest per node.
    pub digests: BTreeMap<usize, String>,
}

#[derive(Debug, Serialize)]
pub struct KeyVerdict {
    pub key: String,
    pub ops: usize,
    /// "linearizable", "NOT linearizable" or "unknown (budget exhausted)".
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl KeyVerdict {
    pub fn violated(&self) -> bool {
        self.verdict == "NOT linearizable"
    }
}

pub fn linearizability(
    ops: &[Operation],
    limit: u32,
    base: u32,
    budget: Duration,
) -> Vec<KeyVerdict> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let model = Registry { limit, base };
    std::thread::scope(|s| {
        let handles: Vec<_> = by_key
            .into_iter()
            .map(|(key, key_ops)| {
                let model = &model;
                s.spawn(move || check_key(model, key, &key_ops, budget))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("checker thread panicked"))
            .collect()
    })
}

fn check_key(model: &Registry, key: &str, ops: &[&Operation], budget: Duration) -> KeyVerdict {
    let timed = match model::to_timed(ops) {
        Ok(t) => t,
        Err(e) => {
            return KeyVerdict {
                key: key.to_string(),
                ops: ops.len(),
                verdict: "NOT linearizable".into(),
                detail: Some(format!("malformed history: {e}")),
            }
        }
    };
    let (verdict, detail) = match linearizable::check(model, &timed, budget) {
        Verdict::Linearizable => ("linearizable", None),
        Verdict::Unknown => ("unknown (budget exhausted)", None),
        Verdict::NotLinearizable {
            linearized,
            stuck_at,
        } => {
            let show: Vec<String> = stuck_at
                .iter()
                .take(6)
                .map(|&i| format!("{:?} at {}ns", timed[i].op, timed[i].call))
                .collect();
            (
                "NOT linearizable",
                Some(format!(
                    "after {linearized} operations none of these could come next: {}",
                    show.join("; ")
                )),
            )
        }
    };
    KeyVerdict {
        key: key.to_string(),
        ops: timed.len(),
        verdict: verdict.into(),
        detail,
    }
}

/// Invariant violations, each a sentence. `pools` maps each key to the
/// numbers its operations used.
pub fn invariants(
    ops: &[Operation],
    pools: &BTreeMap<String, Vec<String>>,
    fin: &FinalState,
    limit: u32,
    base: u32,
) -> Vec<String> {
    let mut out = Vec::new();
    for op in ops.iter().filter(|o| o.f == OpKind::Count) {
        match op.kind {
            EventType::Fail => out.push(format!(
                "count of {} refused ({}) though its anchor card is always active",
                op.key,
                op.output.error.as_deref().unwrap_or("?")
            )),
            EventType::Ok => {
                let total = op.output.total.unwrap_or(0);
                if total > base + limit {
                    out.push(format!(
                        "count of {} at {}ns saw {total} cards: over the limit of {limit} (+{base} anchor)",
                        op.key, op.return_ns
                    ));
                }
            }
            _ => {}
        }
    }
    for op in ops.iter().filter(|o| o.f == OpKind::Linked) {
        if op.kind == EventType::Fail && op.output.error.as_deref() != Some(crate::model::NOT_HELD)
        {
            out.push(format!(
                "linked-account count of {} under {} refused ({})",
                op.input.msisdn.as_deref().unwrap_or("?"),
                op.key,
                op.output.error.as_deref().unwrap_or("?")
            ));
        }
    }
    // Per (key, number): the registrations and cancellations touching it.
    let mut touched: HashMap<(&str, &str), Vec<&Operation>> = HashMap::new();
    for op in ops
        .iter()
        .filter(|o| matches!(o.f, OpKind::Register | OpKind::Cancel))
    {
        if let Some(m) = op.input.msisdn.as_deref() {
            touched.entry((op.key.as_str(), m)).or_default().push(op);
        }
    }
    for (key, pool) in pools {
        let mut active = 0u32;
        for m in pool {
            let holders = fin.holders.get(m).cloned().unwrap_or_default();
            if holders.len() > 1 {
                out.push(format!(
                    "{m} is active under {} identities: {holders:?}",
                    holders.len()
                ));
            }
            let here = holders.iter().any(|h| h == key);
            active += here as u32;
            let history = touched
                .get(&(key.as_str(), m.as_str()))
                .cloned()
                .unwrap_or_default();
            if must_be_active(&history) && !here {
                out.push(format!(
                    "acknowledged registration of {m} under {key} was lost (no cancel could have removed it)"
                ));
            }
            let maybe_registered = history.iter().any(|o| {
                o.f == OpKind::Register && matches!(o.kind, EventType::Ok | EventType::Info)
            });
            if here && !maybe_registered {
                out.push(format!(
                    "{m} is active under {key} but no registration of it could have succeeded"
                ));
            }
        }
        if active > limit {
            out.push(format!(
                "{key} ends with {active} active cards, over the limit of {limit}"
            ));
        }
        match fin.totals.get(key) {
            Some(&t) if t != base + active => out.push(format!(
                "{key}: final count {t} disagrees with the {active} numbers that verify (+{base} anchor)"
            )),
            Some(_) => {}
            None => out.push(format!("{key}: no final count could be read")),
        }
    }
    let distinct: std::collections::BTreeSet<&String> = fin.digests.values().collect();
    if distinct.len() > 1 {
        out.push(format!("replicas differ after heal: {:?}", fin.digests));
    }
    out
}

/// True when some registration was acknowledged and no cancellation that
/// might have taken effect could be ordered after it.
fn must_be_active(history: &[&Operation]) -> bool {
    history
        .iter()
        .filter(|r| r.f == OpKind::Register && r.kind == EventType::Ok)
        .any(|r| {
            !history.iter().any(|c| {
                c.f == OpKind::Cancel
                    && matches!(c.kind, EventType::Ok | EventType::Info)
                    && c.return_ns > r.call_ns
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Value;

    fn op(f: OpKind, kind: EventType, m: Option<&str>, call: u64, ret: u64) -> Operation {
        Operation {
            process: 0,
            f,
            key: "k".into(),
            input: Value {
                msisdn: m.map(str::to_string),
                ..Value::default()
            },
            kind,
            output: Value::default(),
            call_ns: call,
            return_ns: ret,
        }
    }

    fn pools() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([("k".to_string(), vec!["a".to_string(), "b".to_string()])])
    }

    fn final_with(active: &[&str], total: u32) -> FinalState {
        FinalState {
            holders: active
                .iter()
                .map(|m| (m.to_string(), vec!["k".to_string()]))
                .collect(),
            totals: BTreeMap::from([("k".to_string(), total)]),
            digests: BTreeMap::from([(1, "x".into()), (2, "x".into())]),
        }
    }

    #[test]
    fn clean_run_has_no_violations() {
        let ops = vec![op(OpKind::Register, EventType::Ok, Some("a"), 0, 1)];
        assert!(invariants(&ops, &pools(), &final_with(&["a"], 2), 5, 1).is_empty());
    }

    #[test]
    fn lost_acknowledged_registration_is_reported() {
        let ops = vec![op(OpKind::Register, EventType::Ok, Some("a"), 0, 1)];
        let v = invariants(&ops, &pools(), &final_with(&[], 1), 5, 1);
        assert!(v.iter().any(|s| s.contains("was lost")), "{v:?}");
    }

    #[test]
    fn a_linked_account_count_refused_but_for_verification_is_reported() {
        let refused = |reason: &str| Operation {
            output: Value {
                error: Some(reason.into()),
                ..Value::default()
            },
            ..op(OpKind::Linked, EventType::Fail, Some("a"), 2, 3)
        };
        let ops = vec![
            op(OpKind::Register, EventType::Ok, Some("a"), 0, 1),
            refused(crate::model::NOT_HELD),
        ];
        assert!(invariants(&ops, &pools(), &final_with(&["a"], 2), 5, 1).is_empty());
        let ops = vec![
            op(OpKind::Register, EventType::Ok, Some("a"), 0, 1),
            refused("LOCKED_OUT"),
        ];
        let v = invariants(&ops, &pools(), &final_with(&["a"], 2), 5, 1);
        assert!(
            v.iter().any(|s| s.contains("refused (LOCKED_OUT)")),
            "{v:?}"
        );
    }

    #[test]
    fn a_possibly_applied_cancel_excuses_the_loss() {
        let ops = vec![
            op(OpKind::Register, EventType::Ok, Some("a"), 0, 1),
            op(OpKind::Cancel, EventType::Info, Some("a"), 2, u64::MAX),
        ];
        assert!(invariants(&ops, &pools(), &final_with(&[], 1), 5, 1).is_empty());
    }

    #[test]
    fn phantom_card_two_holders_limit_and_digest_are_reported() {
        let mut fin = final_with(&["b"], 2);
        fin.holders
            .insert("a".into(), vec!["k".into(), "other".into()]);
        fin.digests.insert(3, "y".into());
        let ops = vec![
            op(OpKind::Register, EventType::Info, Some("a"), 0, u64::MAX),
            Operation {
                output: Value {
                    total: Some(9),
                    ..Value::default()
                },
                ..op(OpKind::Count, EventType::Ok, None, 3, 4)
            },
        ];
        let v = invariants(&ops, &pools(), &fin, 1, 1).join("\n");
        assert!(
            v.contains("no registration of it could have succeeded"),
            "{v}"
        );
        assert!(v.contains("active under 2 identities"), "{v}");
        assert!(v.contains("over the limit"), "{v}");
        assert!(v.contains("replicas differ"), "{v}");
        assert!(v.contains("disagrees"), "{v}");
    }
}
