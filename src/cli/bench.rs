//! `oneid bench`: a closed-loop load generator. N clients each keep one
//! request in flight for a fixed time or op count; latencies go into an
//! HdrHistogram. The same logic drives etcd (put of a card-sized value /
//! linearizable get / put of a link-sized value), so both systems are
//! measured by one tool.
//!
//! Prints one line per run:
//! `target=… op=… clients=… ops=… ops_per_s=… p50_us=… p99_us=… errors=… max_gap_ms=…`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use tonic::transport::{Channel, Endpoint};

use super::multiplex::Multiplexer;
use super::route::{leader_may_have_moved, WriteRoute};
use super::sample::SampleGen;
use crate::domain::Identity;
use crate::etcdpb::kv_client::KvClient;
use crate::pb;
use crate::pb::linkage_client::LinkageClient;
use crate::pb::registry_client::RegistryClient;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchTarget {
    Oneid,
    Etcd,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchOp {
    /// Register a new card (etcd: put a card-sized value).
    Register,
    /// Linearizable verified count (etcd: linearizable get).
    Count,
    /// 90% count, 10% register.
    Mixed,
    /// Link a new platform account to one of the population's registered
    /// numbers (etcd: put of a link-sized value).
    Link,
    /// Linearizable count of the accounts linked to one of the
    /// population's numbers, verified by the last 6 characters of its
    /// holder's ID (etcd: linearizable get).
    LinkedCount,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "oneid")]
    pub target: BenchTarget,
    /// Node addresses, comma separated; clients are spread over all of them.
    /// oneid writes go to the endpoint that leads (see `--spread-writes`).
    #[arg(long, default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")]
    pub endpoints: String,
    /// oneid: send writes round-robin like reads, followers forwarding
    /// them, instead of to the leader. etcd writes always go round-robin,
    /// as etcd's own client sends them; give the leader's address alone to
    /// measure etcd's writes on the leader.
    #[arg(long)]
    pub spread_writes: bool,
    /// oneid: send all clients' calls to a node over one `Batch/Calls`
    /// stream (calls that queue together share a message) instead of one
    /// gRPC call each.
    #[arg(long)]
    pub batch_stream: bool,
    #[arg(long, value_enum, default_value = "register")]
    pub op: BenchOp,
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Seconds to run (after warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Stop after this many operations, if sooner.
    #[arg(long, default_value_t = u64::MAX)]
    pub ops: u64,
    /// Paces the clients to this many operations per second together:
    /// each starts an operation no sooner than `clients / rate` seconds
    /// after its last one started, so callers pause between calls instead
    /// of sending the next at once (as independent writers would). A
    /// client that falls behind goes on at once, without catching up.
    /// tokio's timer ticks in milliseconds, so pacing is that coarse.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Identities pre-registered for counts, one number each; links go to
    /// these numbers.
    #[arg(long, default_value_t = 10_000)]
    pub population: usize,
    /// Distinguishes runs against the same cluster (number and key space):
    /// runs 0..=79 never share a number.
    #[arg(long, default_value_t = 1)]
    pub run: u64,
    /// Per-request deadline in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// TLS for oneid targets (etcd is always plaintext). A mixed workload
    /// registers (carrier) and counts (query), and a link workload
    /// registers its numbers first (carrier) then links (platform), which
    /// one role cannot do: run them against an --insecure cluster.
    #[command(flatten)]
    pub tls: super::client::ClientTls,
}

fn endpoints(a: &BenchArgs) -> Vec<String> {
    a.endpoints
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect()
}

/// One connection per endpoint; clients share them round-robin (HTTP/2
/// multiplexes), as a real client pool would.
fn channels(a: &BenchArgs, endpoints: &[String]) -> anyhow::Result<Vec<Channel>> {
    endpoints
        .iter()
        .map(|ep| {
            let endpoint = match a.target {
                BenchTarget::Oneid => a.tls.endpoint(ep)?,
                BenchTarget::Etcd => Endpoint::from_shared(format!("http://{ep}"))
                    .with_context(|| format!("bad endpoint {ep}"))?,
            };
            Ok(endpoint
                .tcp_nodelay(true)
                .timeout(Duration::from_millis(a.timeout_ms))
                .connect_lazy())
        })
        .collect()
}

/// How often the write route looks for the leader while nothing fails.
const LEADER_RECHECK: Duration = Duration::from_millis(500);

/// What one client does for one operation.
enum Client {
    Oneid(OneidClient),
    Etcd(KvClient<Channel>),
}

/// A oneid client reaches every endpoint: reads go to its own endpoint
/// (clients spread over all of them), writes where `route` says.
struct OneidClient {
    /// This client's number: picks its read endpoint.
    id: usize,
    endpoints: usize,
    calls: Calls,
    /// None: writes go round-robin like reads.
    route: Option<Arc<WriteRoute>>,
}

/// How a oneid client sends its calls, per endpoint.
enum Calls {
    /// One gRPC call per operation.
    Unary {
        registry: Vec<RegistryClient<Channel>>,
        linkage: Vec<LinkageClient<Channel>>,
    },
    /// All clients' calls to an endpoint share one batch stream.
    Batched(Arc<Vec<Multiplexer>>),
}

const REGISTER_CARD: &str = "/oneid.v1.Registry/RegisterCard";
const COUNT_CARDS: &str = "/oneid.v1.Registry/CountCards";
const LINK_ACCOUNT: &str = "/oneid.v1.Linkage/LinkAccount";
const COUNT_LINKED: &str = "/oneid.v1.Linkage/CountLinkedAccounts";

impl Calls {
    async fn register(
        &mut self,
        on: usize,
        req: pb::RegisterCardRequest,
    ) -> Result<(), tonic::Status> {
        match self {
            Calls::Unary { registry, .. } => registry[on].register_card(req).await.map(|_| ()),
            Calls::Batched(m) => m[on]
                .call::<_, pb::RegisterCardResponse>(REGISTER_CARD, &req)
                .await
                .map(|_| ()),
        }
    }

    async fn link(&mut self, on: usize, req: pb::LinkAccountRequest) -> Result<(), tonic::Status> {
        match self {
            Calls::Unary { linkage, .. } => linkage[on].link_account(req).await.map(|_| ()),
            Calls::Batched(m) => m[on]
                .call::<_, pb::WriteResponse>(LINK_ACCOUNT, &req)
                .await
                .map(|_| ()),
        }
    }

    async fn count(&mut self, on: usize, req: pb::CountCardsRequest) -> Result<u32, tonic::Status> {
        let r = match self {
            Calls::Unary { registry, .. } => registry[on].count_cards(req).await?.into_inner(),
            Calls::Batched(m) => {
                m[on]
                    .call::<_, pb::CountCardsResponse>(COUNT_CARDS, &req)
                    .await?
            }
        };
        Ok(r.total)
    }

    async fn count_links(
        &mut self,
        on: usize,
        req: pb::CountLinkedAccountsRequest,
    ) -> Result<(), tonic::Status> {
        match self {
            Calls::Unary { linkage, .. } => {
                linkage[on].count_linked_accounts(req).await.map(|_| ())
            }
            Calls::Batched(m) => m[on]
                .call::<_, pb::CountLinkedAccountsResponse>(COUNT_LINKED, &req)
                .await
                .map(|_| ()),
        }
    }
}

impl OneidClient {
    fn write_endpoint(&self) -> usize {
        match &self.route {
            Some(r) => r.pick(self.id),
            None => self.id % self.endpoints,
        }
    }

    /// A write failed on endpoint `on`: if that was the leader and the
    /// failure says it may be gone, writes spread until the route has found
    /// the leader again.
    async fn write_failed(&self, on: usize, status: &tonic::Status) {
        match &self.route {
            Some(r) if leader_may_have_moved(status.code()) => {
                r.forget(on);
                r.find_leader().await;
            }
            _ => {}
        }
    }

    async fn register(&mut self, req: pb::RegisterCardRequest) -> Result<(), tonic::Status> {
        let i = self.write_endpoint();
        let r = self.calls.register(i, req).await;
        if let Err(s) = &r {
            self.write_failed(i, s).await;
        }
        r
    }

    async fn link(&mut self, req: pb::LinkAccountRequest) -> Result<(), tonic::Status> {
        let i = self.write_endpoint();
        let r = self.calls.link(i, req).await;
        if let Err(s) = &r {
            self.write_failed(i, s).await;
        }
        r
    }

    async fn count(&mut self, req: pb::CountCardsRequest) -> Result<u32, tonic::Status> {
        let i = self.id % self.endpoints;
        self.calls.count(i, req).await
    }

    async fn count_links(
        &mut self,
        req: pb::CountLinkedAccountsRequest,
    ) -> Result<(), tonic::Status> {
        let i = self.id % self.endpoints;
        self.calls.count_links(i, req).await
    }
}

struct Workload {
    run: u64,
    /// (identity, its verification number) pre-registered for counts.
    population: Vec<(Identity, String)>,
    /// Identities that receive new cards.
    writers: Vec<Identity>,
    seq: AtomicU64,
}

const PROVINCES: [&str; 8] = ["11", "31", "44", "32", "33", "51", "37", "42"];
const CARRIERS: [&str; 4] = ["CMCC", "CTCC", "CUCC", "CBN"];
const PLATFORMS: [&str; 4] = ["wechat", "alipay", "douyin", "weibo"];

impl Workload {
    /// The n-th new card: identities × carriers × provinces are cycled so no
    /// identity reaches the per-carrier-province limit before 4 × 32 × |writers| cards.
    fn register_request(&self, n: u64) -> pb::RegisterCardRequest {
        let w = self.writers.len() as u64;
        let id = &self.writers[(n % w) as usize];
        let slot = n / w;
        let carrier = CARRIERS[(slot % 4) as usize];
        let province = PROVINCES[((slot / 4) % 8) as usize];
        pb::RegisterCardRequest {
            request_id: format!("bench-{}-{n}", self.run),
            identity: Some(pb::Identity {
                doc_type: pb::DocType::ResidentId as i32,
                number: id.number().to_string(),
            }),
            msisdn: registered_number(self.run, n),
            carrier: carrier.into(),
            province: province.into(),
            kind: pb::CardKind::Personal as i32,
            channel: pb::Channel::Agent as i32,
            strict_verification: false,
            responsible_unit: None,
        }
    }

    /// Which of the population the n-th read asks about: a stride that
    /// spreads consecutive reads over it.
    fn counted(&self, n: u64) -> usize {
        (n as usize * 7919) % self.population.len()
    }

    /// The n-th new link: a fresh account, the population's numbers taken
    /// in turn, so a number reaches the per-number link limit only after
    /// 256 × |population| links.
    fn link_request(&self, n: u64) -> pb::LinkAccountRequest {
        let (_, msisdn) = &self.population[(n % self.population.len() as u64) as usize];
        pb::LinkAccountRequest {
            request_id: format!("bench-link-{}-{n}", self.run),
            msisdn: msisdn.clone(),
            platform: PLATFORMS[(n % 4) as usize].into(),
            account_id: format!("acct-{}-{n}", self.run),
        }
    }
}

/// Numbers in one block: a run's registrations take one block and its
/// population another, so runs 0..=MAX_RUN against one cluster never
/// reuse a number (a reused one is refused as taken, and every refusal
/// backs the client off).
const BLOCK: u64 = 10_000_000;
const PREFIXES: [&str; 16] = [
    "134", "135", "136", "137", "138", "139", "150", "151", "152", "157", "158", "159", "182",
    "183", "187", "188",
];
/// The highest `--run` whose blocks fit in the numbers `PREFIXES` give.
pub const MAX_RUN: u64 = (PREFIXES.len() as u64 * 100_000_000) / BLOCK / 2 - 1;

fn registered_number(run: u64, n: u64) -> String {
    number_in_block(2 * run, n)
}

fn population_number(run: u64, n: u64) -> String {
    number_in_block(2 * run + 1, n)
}

/// The `n`-th 11-digit number of `block` (wrapping after `BLOCK` numbers).
fn number_in_block(block: u64, n: u64) -> String {
    let g = block * BLOCK + n % BLOCK;
    let p = PREFIXES[((g / 100_000_000) % PREFIXES.len() as u64) as usize];
    format!("{p}{:08}", g % 100_000_000)
}

/// About the size of a link record (linked-at time, re-verify flag).
fn etcd_link_value(n: u64) -> Vec<u8> {
    format!("{{\"linked_at_ms\":{n},\"needs_reverify\":false}}").into_bytes()
}

fn etcd_value(n: u64) -> Vec<u8> {
    // About the size of a card record plus its indexes.
    format!("{{\"carrier\":\"CMCC\",\"province\":44,\"kind\":1,\"channel\":2,\"status\":1,\"registered_at_ms\":{n},\"id_key\":\"{:064x}\"}}", n)
        .into_bytes()
}

/// A failed call as the run's `first error` line shows it: the CLI's
/// account of the error, whose reason and message tell a timeout from a
/// lost leader.
fn failure(s: tonic::Status) -> String {
    super::client::explain(s).to_string()
}

impl Client {
    async fn one(&mut self, w: &Workload, op: BenchOp, n: u64) -> Result<(), String> {
        let write = match op {
            BenchOp::Register | BenchOp::Link => true,
            BenchOp::Count | BenchOp::LinkedCount => false,
            BenchOp::Mixed => n % 10 == 0,
        };
        match self {
            Client::Oneid(c) if op == BenchOp::Link => {
                let k = w.seq.fetch_add(1, Ordering::Relaxed);
                c.link(w.link_request(k)).await.map_err(failure)
            }
            Client::Etcd(c) if op == BenchOp::Link => {
                let k = w.seq.fetch_add(1, Ordering::Relaxed);
                let l = w.link_request(k);
                c.put(crate::etcdpb::PutRequest {
                    key: format!("link/{}/{}/{}", l.msisdn, l.platform, l.account_id).into_bytes(),
                    value: etcd_link_value(k),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(failure)
            }
            Client::Oneid(c) if op == BenchOp::LinkedCount => {
                let (id, msisdn) = &w.population[w.counted(n)];
                c.count_links(pb::CountLinkedAccountsRequest {
                    msisdn: msisdn.clone(),
                    id_last6: id.last6().to_string(),
                })
                .await
                .map_err(failure)
            }
            Client::Oneid(c) => {
                if write {
                    let k = w.seq.fetch_add(1, Ordering::Relaxed);
                    c.register(w.register_request(k)).await.map_err(failure)
                } else {
                    let (id, verify) = &w.population[w.counted(n)];
                    let total = c
                        .count(pb::CountCardsRequest {
                            identity: Some(pb::Identity {
                                doc_type: pb::DocType::ResidentId as i32,
                                number: id.number().to_string(),
                            }),
                            verify_msisdn: verify.clone(),
                        })
                        .await
                        .map_err(failure)?;
                    if total == 0 {
                        return Err("empty count".into());
                    }
                    Ok(())
                }
            }
            Client::Etcd(c) => {
                if write {
                    let k = w.seq.fetch_add(1, Ordering::Relaxed);
                    c.put(crate::etcdpb::PutRequest {
                        key: format!("card/{}", registered_number(w.run, k)).into_bytes(),
                        value: etcd_value(k),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(failure)
                } else {
                    let i = w.counted(n);
                    let r = c
                        .range(crate::etcdpb::RangeRequest {
                            key: format!("pop/{}/{i}", w.run).into_bytes(),
                            serializable: false,
                            ..Default::default()
                        })
                        .await
                        .map_err(failure)?;
                    if r.get_ref().kvs.is_empty() {
                        return Err("missing key".into());
                    }
                    Ok(())
                }
            }
        }
    }
}

/// The connections and, for oneid, where writes go; shared by all clients.
struct Pool {
    target: BenchTarget,
    channels: Vec<Channel>,
    route: Option<Arc<WriteRoute>>,
    /// One per endpoint, with `--batch-stream`.
    multiplexers: Option<Arc<Vec<Multiplexer>>>,
}

impl Pool {
    /// Client number `id`.
    fn client(&self, id: usize) -> Client {
        match self.target {
            BenchTarget::Oneid => Client::Oneid(OneidClient {
                id,
                endpoints: self.channels.len(),
                calls: match &self.multiplexers {
                    Some(m) => Calls::Batched(m.clone()),
                    None => Calls::Unary {
                        registry: self
                            .channels
                            .iter()
                            .cloned()
                            .map(RegistryClient::new)
                            .collect(),
                        linkage: self
                            .channels
                            .iter()
                            .cloned()
                            .map(LinkageClient::new)
                            .collect(),
                    },
                },
                route: self.route.clone(),
            }),
            BenchTarget::Etcd => Client::Etcd(KvClient::new(
                self.channels[id % self.channels.len()].clone(),
            )),
        }
    }
}

/// Registers the count population (oneid) or writes the keys to read (etcd).
async fn populate(a: &BenchArgs, pool: &Pool, w: &Workload) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..64usize {
        let mut client = pool.client(c);
        let next = next.clone();
        let pop: Vec<(String, String)> = w
            .population
            .iter()
            .map(|(id, m)| (id.number().to_string(), m.clone()))
            .collect();
        let (target, run) = (a.target, a.run);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((number, verify)) = pop.get(i) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let r = match &mut client {
                    Client::Oneid(c) => {
                        c.register(pb::RegisterCardRequest {
                            request_id: format!("bench-pop-{run}-{i}"),
                            identity: Some(pb::Identity {
                                doc_type: pb::DocType::ResidentId as i32,
                                number: number.clone(),
                            }),
                            msisdn: verify.clone(),
                            carrier: "CMCC".into(),
                            province: "44".into(),
                            kind: pb::CardKind::Personal as i32,
                            channel: pb::Channel::Agent as i32,
                            strict_verification: false,
                            responsible_unit: None,
                        })
                        .await
                    }
                    Client::Etcd(c) => c
                        .put(crate::etcdpb::PutRequest {
                            key: format!("pop/{run}/{i}").into_bytes(),
                            value: etcd_value(i as u64),
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                };
                // A replayed registration (re-running the same --run) is fine.
                if let Err(s) = r {
                    if s.code() != tonic::Code::AlreadyExists {
                        anyhow::bail!("populating {target:?}: {s}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// When a paced client (`--rate`) starts its next operation: one period
/// after its last slot, or at once (`now`) when it is behind, so a slow
/// operation is not followed by a burst that catches up.
fn next_slot(last: Instant, period: Duration, now: Instant) -> Instant {
    (last + period).max(now)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.clients > 0, "--clients must be positive");
    anyhow::ensure!(a.run <= MAX_RUN, "--run must be 0..={MAX_RUN}");
    let endpoints = endpoints(&a);
    anyhow::ensure!(!endpoints.is_empty(), "no endpoints");
    let channels = channels(&a, &endpoints)?;
    let route = (a.target == BenchTarget::Oneid && !a.spread_writes)
        .then(|| Arc::new(WriteRoute::new(endpoints, channels.clone())));
    if let Some(r) = &route {
        r.find_leader().await;
    }
    let multiplexers = (a.target == BenchTarget::Oneid && a.batch_stream).then(|| {
        let timeout = Duration::from_millis(a.timeout_ms);
        Arc::new(
            channels
                .iter()
                .map(|c| Multiplexer::new(c.clone(), timeout))
                .collect(),
        )
    });
    let pool = Pool {
        target: a.target,
        channels,
        route,
        multiplexers,
    };

    let mut gen = SampleGen::new(0xbe9c4 + a.run);
    let population: Vec<(Identity, String)> = (0..a.population.max(1))
        .map(|i| (gen.identity(), population_number(a.run, i as u64)))
        .collect();
    let writers: Vec<Identity> = (0..4096).map(|_| gen.identity()).collect();
    let w = Arc::new(Workload {
        run: a.run,
        population,
        writers,
        seq: AtomicU64::new(0),
    });
    // Links go to registered numbers; etcd puts need nothing there first.
    let needs_population = match a.op {
        BenchOp::Register => false,
        BenchOp::Link => a.target == BenchTarget::Oneid,
        BenchOp::Count | BenchOp::Mixed | BenchOp::LinkedCount => true,
    };
    if needs_population {
        let t = Instant::now();
        populate(&a, &pool, &w).await?;
        eprintln!(
            "populated {} identities in {:.1}s",
            w.population.len(),
            t.elapsed().as_secs_f64()
        );
    }

    let deadline = Instant::now() + Duration::from_secs(a.duration);
    // Leadership can also move without a write failing (a handover: the
    // old leader forwards): look again now and then.
    if let Some(r) = pool.route.clone() {
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(LEADER_RECHECK).await;
                r.find_leader().await;
            }
        });
    }
    let issued = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // The longest stretch with no successful operation: how long writes
    // stop when a leader dies under load.
    let last_ok_us = Arc::new(AtomicU64::new(0));
    let max_gap_us = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let period = a
        .rate
        .map(|r| Duration::from_secs_f64(a.clients as f64 / r as f64));
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let mut client = pool.client(c);
        let (w, issued, errors) = (w.clone(), issued.clone(), errors.clone());
        let (last_ok_us, max_gap_us) = (last_ok_us.clone(), max_gap_us.clone());
        let (op, max_ops) = (a.op, a.ops);
        // A paced client's next slot and its period; clients start spread
        // over one period, not all at once.
        let mut pace = period.map(|p| (started + p.mul_f64(c as f64 / a.clients as f64), p));
        tasks.push(tokio::spawn(async move {
            let mut h =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let mut first_error = None;
            loop {
                if let Some((slot, p)) = &mut pace {
                    tokio::time::sleep_until((*slot).into()).await;
                    *slot = next_slot(*slot, *p, Instant::now());
                }
                let n = issued.fetch_add(1, Ordering::Relaxed);
                if n >= max_ops || Instant::now() >= deadline {
                    return Ok::<_, String>((h, first_error));
                }
                let t = Instant::now();
                match client.one(&w, op, n).await {
                    Ok(()) => {
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                        let now = started.elapsed().as_micros() as u64;
                        let prev = last_ok_us.fetch_max(now, Ordering::Relaxed);
                        max_gap_us.fetch_max(now.saturating_sub(prev), Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert(e);
                        // A real client backs off; spinning on a dead node's
                        // refused connections would starve the live ones.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut first_error = None;
    for t in tasks {
        let (h, e) = t.await?.map_err(|e| anyhow::anyhow!(e))?;
        total.add(&h)?;
        if first_error.is_none() {
            first_error = e;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let op =
        a.op.to_possible_value()
            .map_or_else(|| format!("{:?}", a.op), |v| v.get_name().to_string());
    let target = format!("{:?}", a.target).to_lowercase();
    println!(
        "target={target} op={op} clients={} ops={} ops_per_s={:.0} p50_us={} p99_us={} errors={} max_gap_ms={}",
        a.clients,
        total.len(),
        total.len() as f64 / secs,
        total.value_at_quantile(0.50),
        total.value_at_quantile(0.99),
        errors.load(Ordering::Relaxed),
        max_gap_us.load(Ordering::Relaxed) / 1000
    );
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    match pool.route.as_ref().map(|r| r.leader_endpoint()) {
        Some(Some(leader)) => eprintln!("writes went to the leader, {leader}, at the end"),
        Some(None) => eprintln!("writes were spread at the end: no endpoint was known to lead"),
        None => eprintln!("writes were spread over the endpoints"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_servers_reason_when_it_gives_one() {
        assert_eq!(
            failure(tonic::Status::unavailable("read barrier timed out")),
            "Unavailable: read barrier timed out"
        );
        assert_eq!(failure(tonic::Status::unavailable("")), "Unavailable");
    }

    #[test]
    fn a_paced_client_keeps_its_period_and_never_catches_up() {
        let t = Instant::now();
        let p = Duration::from_millis(32);
        assert_eq!(next_slot(t, p, t), t + p);
        assert_eq!(
            next_slot(t, p, t + p / 2),
            t + p,
            "early: waits for its slot"
        );
        let late = t + p * 5;
        assert_eq!(
            next_slot(t, p, late),
            late,
            "behind: goes at once, no burst"
        );
    }

    #[test]
    fn runs_never_share_a_number() {
        let mut seen = std::collections::HashSet::new();
        for run in [0, 1, 3, 11, 17, 40, MAX_RUN] {
            for n in [0, 1, 99_999, BLOCK - 1] {
                for number in [registered_number(run, n), population_number(run, n)] {
                    crate::domain::Msisdn::parse(&number).expect("a valid number");
                    assert!(
                        seen.insert(number.clone()),
                        "{number} twice (run {run}, n {n})"
                    );
                }
            }
        }
    }
}
