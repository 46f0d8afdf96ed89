//! The operation history: one JSON object per line, in the shape Jepsen and
//! Porcupine use (invoke / ok / fail / info events paired by process).

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    /// The outcome is unknown: the operation may or may not have taken effect.
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Register,
    Cancel,
    Count,
    /// A linked-account count of one number, verified by the key's ID: it
    /// answers only while the number is active under the key.
    Linked,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msisdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub index: u64,
    pub time_ns: u64,
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub f: OpKind,
    pub key: String,
    pub value: Value,
}

/// Collects events from concurrent clients, numbers them in arrival order and
/// timestamps them against one monotonic clock.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    tx: mpsc::UnboundedSender<Event>,
}

impl Recorder {
    pub fn new(start: Instant) -> (Recorder, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { start, tx }, rx)
    }

    /// Records an event now; the index is assigned by the writer.
    pub fn record(&self, process: u64, kind: EventType, f: OpKind, key: &str, value: Value) {
        let event = Event {
            index: 0,
            time_ns: self.start.elapsed().as_nanos() as u64,
            process,
            kind,
            f,
            key: key.to_string(),
            value,
        };
        // The writer outlives all clients; a closed channel only happens on
        // shutdown, when late events no longer matter.
        let _ = self.tx.send(event);
    }
}

/// Drains the recorder into `path` and returns the numbered history. Events
/// are sorted by time first: two clients may enqueue out of order by a few
/// nanoseconds, and the checkers rely on time order.
pub async fn write_all(
    mut rx: mpsc::UnboundedReceiver<Event>,
    path: &Path,
) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    while let Some(e) = rx.recv().await {
        events.push(e);
    }
    events.sort_by_key(|e| e.time_ns);
    for (i, e) in events.iter_mut().enumerate() {
        e.index = i as u64;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in &events {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(events)
}

/// Reads a history file back (for `--check-only`).
pub fn read(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut events = Vec::new();
    for (n, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(&line)
            .map_err(|err| anyhow::anyhow!("{}:{}: {err}", path.display(), n + 1))?;
        events.push(e);
    }
    Ok(events)
}

/// One completed (or never completed) operation: an invoke paired with the
/// next event of the same process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    pub f: OpKind,
    pub key: String,
    pub input: Value,
    /// `None` for an invoke with no completion (the run ended mid-flight),
    /// treated as `info`.
    pub kind: EventType,
    pub output: Value,
    pub call_ns: u64,
    /// `u64::MAX` for `info` operations: they may take effect at any later time.
    pub return_ns: u64,
}

/// Pairs invokes with completions. A completion without an invoke, or a second
/// invoke on a busy process, is a malformed history.
pub fn pair(events: &[Event]) -> anyhow::Result<Vec<Operation>> {
    use std::collections::HashMap;
    let mut open: HashMap<u64, Operation> = HashMap::new();
    let mut done = Vec::new();
    for e in events {
        match e.kind {
            EventType::Invoke => {
                let op = Operation {
                    process: e.process,
                    f: e.f,
                    key: e.key.clone(),
                    input: e.value.clone(),
                    kind: EventType::Info,
                    output: Value::default(),
                    call_ns: e.time_ns,
                    return_ns: u64::MAX,
                };
                if open.insert(e.process, op).is_some() {
                    anyhow::bail!(
                        "event {}: process {} invoked while busy",
                        e.index,
                        e.process
                    );
                }
            }
            kind => {
                let Some(mut op) = open.remove(&e.process) else {
                    anyhow::bail!(
                        "event {}: completion for idle process {}",
                        e.index,
                        e.process
                    );
                };
                op.kind = kind;
                op.output = e.value.clone();
                if kind != EventType::Info {
                    op.return_ns = e.time_ns;
                }
                done.push(op);
            }
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|o| o.call_ns);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, t: u64, p: u64, kind: EventType) -> Event {
        Event {
            index,
            time_ns: t,
            process: p,
            kind,
            f: OpKind::Count,
            key: "k".into(),
            value: Value::default(),
        }
    }

    #[test]
    fn json_shape_matches_the_documented_format() {
        let mut e = ev(3, 10, 1, EventType::Fail);
        e.f = OpKind::Register;
        e.value = Value {
            msisdn: Some("13800000000".into()),
            total: None,
            error: Some("LIMIT_EXCEEDED".into()),
        };
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"index":3,"time_ns":10,"process":1,"type":"fail","f":"register","key":"k","value":{"msisdn":"13800000000","error":"LIMIT_EXCEEDED"}}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&s).unwrap(), e);
    }

    #[test]
    fn pairing_marks_unfinished_and_info_as_open_ended() {
        let events = vec![
            ev(0, 1, 1, EventType::Invoke),
            ev(1, 2, 2, EventType::Invoke),
            ev(2, 3, 1, EventType::Ok),
            ev(3, 4, 2, EventType::Info),
            ev(4, 5, 3, EventType::Invoke),
        ];
        let ops = pair(&events).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].return_ns, 3);
        assert_eq!(ops[1].return_ns, u64::MAX);
        assert_eq!(ops[2].kind, EventType::Info);
    }

    #[test]
    fn malformed_histories_are_rejected() {
        assert!(pair(&[ev(0, 1, 1, EventType::Ok)]).is_err());
        assert!(pair(&[
            ev(0, 1, 1, EventType::Invoke),
            ev(1, 2, 1, EventType::Invoke)
        ])
        .is_err());
    }
}
