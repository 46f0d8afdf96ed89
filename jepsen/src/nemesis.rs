//! The fault schedule. A seeded RNG picks every fault, target and duration,
//! so a run can be replayed with the same `--seed` (only "isolate the leader"
//! depends on which node won the election).

use std::io::Write;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use crate::membership;
use crate::net::Net;
use crate::nodes::{self, Nodes};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Membership,
}

impl FromStr for FaultKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kill" => Ok(FaultKind::Kill),
            "pause" => Ok(FaultKind::Pause),
            "partition" => Ok(FaultKind::Partition),
            "membership" => Ok(FaultKind::Membership),
            "clock" => Err("nemesis `clock` is not available: replicas never read their own clock for state (see jepsen/README.md)".into()),
            other => Err(format!(
                "unknown nemesis `{other}`; use kill, pause, partition, membership, all or none"
            )),
        }
    }
}

/// Parses `--nemesis`: a comma-separated list, `all` or `none`.
pub fn parse_kinds(s: &str) -> Result<Vec<FaultKind>, String> {
    match s {
        "all" => Ok(vec![
            FaultKind::Kill,
            FaultKind::Pause,
            FaultKind::Partition,
            FaultKind::Membership,
        ]),
        "none" => Ok(Vec::new()),
        list => list.split(',').map(|k| k.trim().parse()).collect(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill(usize),
    Pause(usize),
    /// The node is removed from the cluster while it keeps running; healing
    /// adds it back as a learner, then promotes it to voter.
    Remove(usize),
    /// Every link between the two sides dropped, both directions.
    Split {
        minority: Vec<usize>,
    },
    /// Two sides that cannot talk, and one node that talks to both.
    Bridge {
        bridge: usize,
    },
    /// Packets from `from` to `to` dropped; the reverse direction works.
    OneWay {
        from: usize,
        to: usize,
    },
}

impl Fault {
    pub fn describe(&self) -> String {
        match self {
            Fault::Kill(n) => format!("kill -9 n{n}"),
            Fault::Pause(n) => format!("pause n{n}"),
            Fault::Split { minority } => format!("partition {minority:?} | rest"),
            Fault::Bridge { bridge } => format!("partition bridge via n{bridge}"),
            Fault::OneWay { from, to } => format!("partition one-way n{from} -/-> n{to}"),
            Fault::Remove(n) => format!("membership remove n{n}, then re-add"),
        }
    }

    fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill(_) => FaultKind::Kill,
            Fault::Pause(_) => FaultKind::Pause,
            Fault::Remove(_) => FaultKind::Membership,
            _ => FaultKind::Partition,
        }
    }
}

#[derive(Serialize)]
struct LogLine<'a> {
    time_ns: u64,
    event: &'a str,
    fault: &'a str,
}

pub struct Nemesis {
    pub kinds: Vec<FaultKind>,
    pub rng: StdRng,
    pub net: Arc<Net>,
    pub nodes: Arc<Mutex<Nodes>>,
    pub start: Instant,
    pub log: std::fs::File,
    pub injected: Vec<String>,
    /// Kinds still to inject in the current round.
    pub round: Vec<FaultKind>,
}

impl Nemesis {
    fn note(&mut self, event: &str, fault: &str) {
        let line = LogLine {
            time_ns: self.start.elapsed().as_nanos() as u64,
            event,
            fault,
        };
        if let Ok(s) = serde_json::to_string(&line) {
            let _ = writeln!(self.log, "{s}");
        }
        eprintln!(
            "[{:>7.2}s] nemesis {event}: {fault}",
            self.start.elapsed().as_secs_f64()
        );
    }

    /// Injects faults until `until`, each healed before the next.
    pub async fn run(&mut self, until: Instant) -> anyhow::Result<()> {
        if self.kinds.is_empty() {
            tokio::time::sleep_until(until.into()).await;
            return Ok(());
        }
        loop {
            let quiet = Duration::from_millis(self.rng.gen_range(1500..3000));
            let hold = Duration::from_millis(self.rng.gen_range(3000..6000));
            if Instant::now() + quiet + hold > until {
                break;
            }
            tokio::time::sleep(quiet).await;
            let fault = self.pick().await;
            let text = fault.describe();
            self.apply(&fault).await?;
            self.injected.push(text.clone());
            self.note("start", &text);
            tokio::time::sleep(hold).await;
            self.heal(&fault).await?;
            self.note("end", &text);
        }
        tokio::time::sleep_until(until.into()).await;
        Ok(())
    }

    async fn pick(&mut self) -> Fault {
        let n = self.nodes.lock().expect("nodes lock").count();
        // Every kind once per round, in a seeded random order, so even a
        // short run injects each enabled kind.
        if self.round.is_empty() {
            self.round = self.kinds.clone();
            self.round.shuffle(&mut self.rng);
        }
        let kind = self.round.pop().expect("refilled above");
        let any = self.rng.gen_range(1..=n);
        match kind {
            FaultKind::Kill => Fault::Kill(any),
            FaultKind::Pause => Fault::Pause(any),
            FaultKind::Membership => Fault::Remove(any),
            FaultKind::Partition => match self.rng.gen_range(0..4) {
                0 => Fault::Split {
                    minority: vec![nodes::leader(n).await.unwrap_or(any)],
                },
                1 => {
                    let mut all: Vec<usize> = (1..=n).collect();
                    all.shuffle(&mut self.rng);
                    let mut minority = all[..(n - 1) / 2].to_vec();
                    minority.sort_unstable();
                    Fault::Split { minority }
                }
                2 => Fault::Bridge { bridge: any },
                _ => {
                    let to = (any % n) + 1;
                    Fault::OneWay { from: any, to }
                }
            },
        }
    }

    async fn apply(&mut self, fault: &Fault) -> anyhow::Result<()> {
        let n = self.nodes.lock().expect("nodes lock").count();
        match fault {
            Fault::Kill(node) => self.nodes.lock().expect("nodes lock").kill(*node),
            Fault::Pause(node) => self.nodes.lock().expect("nodes lock").pause(*node),
            Fault::Split { minority } => {
                for &a in minority {
                    for b in (1..=n).filter(|b| !minority.contains(b)) {
                        self.net.drop_link(a, b)?;
                        self.net.drop_link(b, a)?;
                    }
                }
            }
            Fault::Bridge { bridge } => {
                let others: Vec<usize> = (1..=n).filter(|x| x != bridge).collect();
                let (left, right) = others.split_at(others.len() / 2);
                for &a in left {
                    for &b in right {
                        self.net.drop_link(a, b)?;
                        self.net.drop_link(b, a)?;
                    }
                }
            }
            Fault::OneWay { from, to } => self.net.drop_link(*from, *to)?,
            Fault::Remove(node) => {
                let voters = (1..=n).filter(|v| v != node).map(|v| v as u64).collect();
                membership::change_voters(n, voters).await?;
            }
        }
        Ok(())
    }

    async fn heal(&mut self, fault: &Fault) -> anyhow::Result<()> {
        match fault.kind() {
            FaultKind::Membership => {
                let n = self.nodes.lock().expect("nodes lock").count();
                if let Fault::Remove(node) = fault {
                    membership::add_learner(n, *node).await?;
                }
                membership::change_voters(n, (1..=n as u64).collect()).await
            }
            FaultKind::Kill | FaultKind::Pause => {
                self.nodes.lock().expect("nodes lock").restore_all()
            }
            FaultKind::Partition => self.net.heal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_list_parsing() {
        assert_eq!(parse_kinds("all").unwrap().len(), 4);
        assert!(parse_kinds("none").unwrap().is_empty());
        assert_eq!(
            parse_kinds("kill,partition").unwrap(),
            vec![FaultKind::Kill, FaultKind::Partition]
        );
        assert_eq!(
            parse_kinds("membership").unwrap(),
            vec![FaultKind::Membership]
        );
        assert!(parse_kinds("clock").unwrap_err().contains("not available"));
        assert!(parse_kinds("bogus")
            .unwrap_err()
            .contains("unknown nemesis"));
    }
}
