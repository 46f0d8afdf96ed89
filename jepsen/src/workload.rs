//! Clients: registrations, cancellations, verified counts and
//! linked-account counts on a few IDs so that operations collide, all at
//! one carrier-province through an agent channel, where the policy limit
//! (5) is hard.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oneid::cli::multiplex::Multiplexer;
use oneid::pb;
use oneid::pb::linkage_client::LinkageClient;
use oneid::pb::registry_client::RegistryClient;
use oneid::pb::regulator_client::RegulatorClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::{Code, Status};

use crate::history::{EventType, OpKind, Recorder, Value};
use crate::nodes;

pub const CARRIER: &str = "CMCC";
pub const PROVINCE: &str = "11";
/// The anchor card lives at another carrier so it never counts against the
/// workload's carrier-province limit.
pub const ANCHOR_CARRIER: &str = "CUCC";
/// Cards per ID outside the workload (the anchor), seen by every count.
pub const BASE: u32 = 1;
pub const LIMIT: u32 = 5;

#[derive(Clone, Debug)]
pub struct Key {
    pub label: String,
    pub identity: pb::Identity,
    /// The ID's last 6 characters, which verify a linked-account count.
    pub last6: String,
    /// Numbers only this key's operations use, so keys are independent and
    /// the history can be checked key by key.
    pub pool: Vec<String>,
    /// Always active: the phone that verifies every count.
    pub anchor: String,
}

pub fn keys(count: usize, pool: usize) -> Vec<Key> {
    (0..count)
        .map(|k| {
            let body = format!("11010119900101{:03}", k % 1000);
            let id = oneid::cli::sample::complete_resident_id(&body)
                .expect("a valid date and region always completes");
            Key {
                label: format!("id-{k}"),
                identity: pb::Identity {
                    doc_type: pb::DocType::ResidentId as i32,
                    number: id.number().to_string(),
                },
                last6: id.last6().to_string(),
                pool: (0..pool).map(|i| format!("139{k:04}{i:04}")).collect(),
                anchor: format!("186{k:04}0000"),
            }
        })
        .collect()
}

/// A definite answer, a domain refusal, or no answer in time.
pub enum Answer<T> {
    Ok(T),
    Refused(String),
    Unknown(String),
}

/// Domain refusals are definite: the command was applied (or checked) and
/// said no. Everything else may or may not have taken effect.
fn refusal(status: &Status) -> Option<String> {
    let definite = matches!(
        status.code(),
        Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::NotFound
            | Code::PermissionDenied
    );
    definite.then(|| {
        oneid::api::error::reason_of(status).unwrap_or_else(|| format!("{:?}", status.code()))
    })
}

pub struct Timeouts {
    /// One RPC attempt.
    pub attempt: Duration,
    /// All attempts of one write (same request id) before it is `info`.
    pub op: Duration,
}

/// How a client reaches the nodes.
pub enum Transport {
    /// A gRPC call of its own per attempt.
    Unary,
    /// The `Batch/Calls` stream to each node (index node - 1), shared with
    /// every other batching client, as a front end multiplexing many
    /// users' calls would.
    Batched(Arc<Vec<Multiplexer>>),
}

const REGISTER_CARD: &str = "/oneid.v1.Registry/RegisterCard";
const CANCEL_CARD: &str = "/oneid.v1.Registry/CancelCard";
const COUNT_CARDS: &str = "/oneid.v1.Registry/CountCards";
const COUNT_LINKED: &str = "/oneid.v1.Linkage/CountLinkedAccounts";

pub struct Client {
    pub id: u64,
    pub transport: Transport,
    pub nodes: usize,
    /// The node this client reads from; writes rotate on retry.
    pub home: usize,
    pub keys: Arc<Vec<Key>>,
    pub recorder: Recorder,
    pub timeouts: Timeouts,
    pub seed: u64,
    /// Mean pause between this client's operations.
    pub interval: Duration,
}

impl Client {
    fn channel(&self, node: usize) -> Result<tonic::transport::Channel, Status> {
        nodes::channel(node, self.timeouts.attempt).map_err(|e| Status::unavailable(e.to_string()))
    }

    fn registry(&self, node: usize) -> Result<RegistryClient<tonic::transport::Channel>, Status> {
        self.channel(node).map(RegistryClient::new)
    }

    async fn register(&self, node: usize, req: pb::RegisterCardRequest) -> Result<(), Status> {
        match &self.transport {
            Transport::Batched(streams) => streams[node - 1]
                .call::<_, pb::RegisterCardResponse>(REGISTER_CARD, &req)
                .await
                .map(|_| ()),
            Transport::Unary => self.registry(node)?.register_card(req).await.map(|_| ()),
        }
    }

    async fn cancel(&self, node: usize, req: pb::CancelCardRequest) -> Result<(), Status> {
        match &self.transport {
            Transport::Batched(streams) => streams[node - 1]
                .call::<_, pb::CancelCardResponse>(CANCEL_CARD, &req)
                .await
                .map(|_| ()),
            Transport::Unary => self.registry(node)?.cancel_card(req).await.map(|_| ()),
        }
    }

    /// One verified count on the client's home node, no retry: a read that
    /// fails has no effect.
    async fn count(&self, key: &Key) -> Answer<Value> {
        let req = pb::CountCardsRequest {
            identity: Some(key.identity.clone()),
            verify_msisdn: key.anchor.clone(),
        };
        let answer = match &self.transport {
            Transport::Batched(streams) => {
                streams[self.home - 1]
                    .call::<_, pb::CountCardsResponse>(COUNT_CARDS, &req)
                    .await
            }
            Transport::Unary => match self.registry(self.home) {
                Ok(mut c) => c.count_cards(req).await.map(|r| r.into_inner()),
                Err(s) => Err(s),
            },
        };
        count_answer(answer)
    }

    /// One linked-account count of `msisdn` on the client's home node,
    /// verified by the key's ID digits, no retry.
    async fn linked(&self, key: &Key, msisdn: &str) -> Answer<Value> {
        let req = pb::CountLinkedAccountsRequest {
            msisdn: msisdn.to_string(),
            id_last6: key.last6.clone(),
        };
        let answer = match &self.transport {
            Transport::Batched(streams) => streams[self.home - 1]
                .call::<_, pb::CountLinkedAccountsResponse>(COUNT_LINKED, &req)
                .await
                .map(|_| ()),
            Transport::Unary => match self.channel(self.home) {
                Ok(ch) => LinkageClient::new(ch)
                    .count_linked_accounts(req)
                    .await
                    .map(|_| ()),
                Err(s) => Err(s),
            },
        };
        match answer {
            Ok(()) => Answer::Ok(msisdn_value(msisdn)),
            Err(s) => read_failure(&s),
        }
    }

    /// Retries one write with one request id, rotating nodes, until a
    /// definite answer or the op timeout. Dedup in replicated state makes the
    /// retries safe: at most one attempt takes effect.
    async fn write<T, F, Fut>(&self, mut attempt: F) -> Answer<T>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.timeouts.op;
        let mut node = self.home;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            match attempt(node).await {
                Ok(v) => return Answer::Ok(v),
                Err(s) => match refusal(&s) {
                    Some(reason) => return Answer::Refused(reason),
                    None => last = format!("{:?}: {}", s.code(), s.message()),
                },
            }
            node = node % self.nodes + 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Answer::Unknown(last)
    }

    pub async fn run(self, stop: Arc<AtomicBool>) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut process = self.id;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let pause = self.interval.mul_f64(rng.gen_range(0.5..1.5));
            tokio::time::sleep(pause).await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let key = &self.keys[rng.gen_range(0..self.keys.len())];
            let msisdn = key.pool[rng.gen_range(0..key.pool.len())].clone();
            let roll = rng.gen_range(0..100);
            n += 1;
            let request_id = format!("jepsen-{}-c{}-{n}", self.seed, self.id);
            let (f, answer) = if roll < 40 {
                self.recorder.record(
                    process,
                    EventType::Invoke,
                    OpKind::Register,
                    &key.label,
                    msisdn_value(&msisdn),
                );
                let req = pb::RegisterCardRequest {
                    request_id,
                    identity: Some(key.identity.clone()),
                    msisdn: msisdn.clone(),
                    carrier: CARRIER.into(),
                    province: PROVINCE.into(),
                    kind: pb::CardKind::Personal as i32,
                    channel: pb::Channel::Agent as i32,
                    strict_verification: false,
                    responsible_unit: None,
                };
                let a = self.write(|node| self.register(node, req.clone())).await;
                (OpKind::Register, a.map_ok(|_| msisdn_value(&msisdn)))
            } else if roll < 70 {
                self.recorder.record(
                    process,
                    EventType::Invoke,
                    OpKind::Cancel,
                    &key.label,
                    msisdn_value(&msisdn),
                );
                let req = pb::CancelCardRequest {
                    request_id,
                    msisdn: msisdn.clone(),
                    carrier: CARRIER.into(),
                };
                let a = self.write(|node| self.cancel(node, req.clone())).await;
                (OpKind::Cancel, a.map_ok(|_| msisdn_value(&msisdn)))
            } else if roll < 85 {
                self.recorder.record(
                    process,
                    EventType::Invoke,
                    OpKind::Linked,
                    &key.label,
                    msisdn_value(&msisdn),
                );
                (OpKind::Linked, self.linked(key, &msisdn).await)
            } else {
                self.recorder.record(
                    process,
                    EventType::Invoke,
                    OpKind::Count,
                    &key.label,
                    Value::default(),
                );
                (OpKind::Count, self.count(key).await)
            };
            let input = if f == OpKind::Count {
                Value::default()
            } else {
                msisdn_value(&msisdn)
            };
            if record_answer(&self.recorder, process, f, &key.label, input, answer) {
                // Jepsen convention: after an indeterminate operation the
                // process counts as crashed; its successor gets a fresh id.
                process += 1_000;
            }
        }
    }
}

impl<T> Answer<T> {
    fn map_ok<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        match self {
            Answer::Ok(v) => Answer::Ok(f(v)),
            Answer::Refused(r) => Answer::Refused(r),
            Answer::Unknown(m) => Answer::Unknown(m),
        }
    }
}

fn msisdn_value(m: &str) -> Value {
    Value {
        msisdn: Some(m.to_string()),
        ..Value::default()
    }
}

/// Records the completion; true when it was `info`.
pub fn record_answer(
    recorder: &Recorder,
    process: u64,
    f: OpKind,
    key: &str,
    input: Value,
    answer: Answer<Value>,
) -> bool {
    let (kind, value) = match answer {
        Answer::Ok(v) => (EventType::Ok, v),
        Answer::Refused(reason) => (
            EventType::Fail,
            Value {
                error: Some(reason),
                ..input
            },
        ),
        Answer::Unknown(why) => (
            EventType::Info,
            Value {
                error: Some(why),
                ..input
            },
        ),
    };
    recorder.record(process, kind, f, key, value);
    kind == EventType::Info
}

/// One verified count on one node, no retry: a read that fails has no effect.
pub async fn count_with(node: usize, key: &Key, verify: &str, timeout: Duration) -> Answer<Value> {
    let client = match nodes::channel(node, timeout) {
        Ok(ch) => RegistryClient::new(ch),
        Err(e) => return Answer::Unknown(e.to_string()),
    };
    let req = pb::CountCardsRequest {
        identity: Some(key.identity.clone()),
        verify_msisdn: verify.to_string(),
    };
    count_answer(
        client
            .clone()
            .count_cards(req)
            .await
            .map(|r| r.into_inner()),
    )
}

fn count_answer(answer: Result<pb::CountCardsResponse, Status>) -> Answer<Value> {
    match answer {
        Ok(r) => Answer::Ok(Value {
            total: Some(r.total),
            ..Value::default()
        }),
        Err(s) => read_failure(&s),
    }
}

/// A read that failed: a definite refusal, or no answer.
fn read_failure(s: &Status) -> Answer<Value> {
    match refusal(s) {
        Some(reason) => Answer::Refused(reason),
        None => Answer::Unknown(format!("{:?}: {}", s.code(), s.message())),
    }
}

/// Registers every key's anchor card before the workload starts.
/// The final-state probe asks "does this number verify under this key?" for
/// every pair, so most probes fail verification on purpose; with the default
/// policy three failures would lock a key out and hide its real holders.
/// The run therefore sets a policy that never locks out (lockouts are tested
/// in tests/casework.rs, not here).
async fn allow_failed_verifications(nodes: usize, deadline: Instant) -> anyhow::Result<()> {
    let req = pb::SetPolicyRequest {
        request_id: "jepsen-policy".into(),
        policy: Some(pb::Policy {
            own_hall_threshold: 5,
            reverify_window_seconds: 86_400,
            max_cards_per_carrier: 0,
            max_cards_total: 0,
            max_failed_verifications: u32::MAX,
            lockout_seconds: 1,
        }),
    };
    let mut node = 1;
    loop {
        let mut c = RegulatorClient::new(nodes::channel(node, Duration::from_secs(2))?);
        match c.set_policy(req.clone()).await {
            Ok(_) => return Ok(()),
            Err(s) if Instant::now() < deadline => {
                if let Some(reason) = refusal(&s) {
                    anyhow::bail!("policy refused: {reason}");
                }
                node = node % nodes + 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => anyhow::bail!("policy not set in 30 s: {s}"),
        }
    }
}

pub async fn register_anchors(keys: &[Key], nodes: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    allow_failed_verifications(nodes, deadline).await?;
    for key in keys {
        let req = pb::RegisterCardRequest {
            request_id: format!("anchor-{}", key.label),
            identity: Some(key.identity.clone()),
            msisdn: key.anchor.clone(),
            carrier: ANCHOR_CARRIER.into(),
            province: PROVINCE.into(),
            kind: pb::CardKind::Personal as i32,
            channel: pb::Channel::OwnHall as i32,
            strict_verification: true,
            responsible_unit: None,
        };
        let mut node = 1;
        loop {
            let mut c = RegistryClient::new(nodes::channel(node, Duration::from_secs(2))?);
            match c.register_card(req.clone()).await {
                Ok(_) => break,
                Err(s) if Instant::now() < deadline => {
                    if let Some(reason) = refusal(&s) {
                        anyhow::bail!("anchor for {} refused: {reason}", key.label);
                    }
                    node = node % nodes + 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => anyhow::bail!("anchor for {} not registered in 30 s: {s}", key.label),
            }
        }
    }
    Ok(())
}
