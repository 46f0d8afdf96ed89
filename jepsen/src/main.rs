//! oneid-jepsen: runs a oneid cluster in network namespaces under faults,
//! records a history and checks it. See jepsen/README.md.

mod checks;
mod history;
mod linearizable;
mod membership;
mod model;
mod nemesis;
mod net;
mod nodes;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use oneid::cli::multiplex::Multiplexer;
use rand::SeedableRng;
use serde::Serialize;

use history::{EventType, OpKind};
use workload::{Answer, Key, BASE, LIMIT};

#[derive(Parser, Debug)]
#[command(
    name = "oneid-jepsen",
    about = "Chaos tests for oneid: faults, history, linearizability"
)]
struct Args {
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// Faults: comma-separated kill,pause,partition,membership; or all; or none.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Seed for the fault schedule and the clients' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 10)]
    clients: u64,
    /// Identities the clients share (few, so operations collide).
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Phone numbers per identity (more than the limit of 5, at most 64).
    #[arg(long, default_value_t = 8)]
    pool: usize,
    /// Target operations per second over all clients.
    #[arg(long, default_value_t = 150)]
    rate: u64,
    /// The oneid binary (default: next to this one).
    #[arg(long)]
    oneid: Option<PathBuf>,
    /// Output directory (default: jepsen-runs/<time>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds the linearizability search may take per key.
    #[arg(long, default_value_t = 60)]
    check_budget: u64,
    /// Seconds the cluster gets to accept writes again after healing.
    #[arg(long, default_value_t = 30)]
    recover_bound: u64,
    /// Succeed only if a violation is found (to prove the checker can fail,
    /// e.g. against a build with the unsafe-stale-reads feature).
    #[arg(long)]
    expect_violation: bool,
    /// Network slot 0..=9: concurrent runs need different slots.
    #[arg(long, default_value_t = 0)]
    net_slot: u8,
    /// Only check an existing history.jsonl (linearizability per key) and exit.
    #[arg(long, value_name = "HISTORY")]
    check: Option<PathBuf>,
    /// Extra arguments for `oneid serve`.
    #[arg(long, allow_hyphen_values = true)]
    serve_arg: Vec<String>,
}

#[derive(Serialize, Default)]
struct Counts {
    ok: u64,
    fail: u64,
    info: u64,
}

#[derive(Serialize)]
struct Results {
    seed: u64,
    time_limit_s: u64,
    nemesis: String,
    nodes: usize,
    clients: u64,
    ops: BTreeMap<String, Counts>,
    faults: Vec<String>,
    crashes: Vec<String>,
    recovered_ms: Option<u128>,
    linearizability: Vec<checks::KeyVerdict>,
    invariant_violations: Vec<String>,
    final_state: checks::FinalState,
    valid: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Err(e) = net::set_slot(args.net_slot) {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Dropping the run's guards (nodes, network) has already cleaned up;
    // this catches whatever an interrupted run left behind.
    net::cleanup_leftovers();
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Returns whether the run passed (or, with --expect-violation, failed as
/// expected).
async fn run(args: Args) -> anyhow::Result<bool> {
    if let Some(path) = &args.check {
        return check_only(path, Duration::from_secs(args.check_budget));
    }
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "must run as root: nodes live in network namespaces and faults use iptables"
    );
    let kinds = nemesis::parse_kinds(&args.nemesis).map_err(anyhow::Error::msg)?;
    anyhow::ensure!((1..=9).contains(&args.nodes), "--nodes must be 1..=9");
    anyhow::ensure!(
        args.pool > LIMIT as usize && args.pool <= 64,
        "--pool must be 6..=64"
    );
    anyhow::ensure!(
        args.clients > 0 && args.keys > 0 && args.rate > 0,
        "--clients, --keys and --rate must be positive"
    );
    let bin = match &args.oneid {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("executable has no directory")?
            .join("oneid"),
    };
    anyhow::ensure!(
        bin.exists(),
        "oneid binary not found at {} (use --oneid)",
        bin.display()
    );
    let out = args.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(format!("jepsen-runs/{t}-seed{}", args.seed))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    eprintln!("run directory: {}", out.display());

    let net = Arc::new(net::Net::setup(args.nodes).context("building the test network")?);
    let nodes = Arc::new(Mutex::new(nodes::Nodes::new(
        &bin,
        &out,
        args.nodes,
        args.serve_arg.clone(),
    )));
    for i in 1..=args.nodes {
        lock(&nodes).start(i)?;
    }
    wait_for_leader(args.nodes, Duration::from_secs(30)).await?;
    let keys = Arc::new(workload::keys(args.keys, args.pool));
    workload::register_anchors(&keys, args.nodes).await?;

    let start = Instant::now();
    let (recorder, rx) = history::Recorder::new(start);
    let history_path = out.join("history.jsonl");
    let writer = tokio::spawn(async move { history::write_all(rx, &history_path).await });
    let stop = Arc::new(AtomicBool::new(false));
    let interval = Duration::from_secs_f64(args.clients as f64 / args.rate as f64);
    let attempt = Duration::from_secs(1);
    // Half the clients (odd ids) send over the batch streams, so both ways
    // of calling are checked in every run.
    let streams = Arc::new(
        (1..=args.nodes)
            .map(|n| Ok(Multiplexer::new(nodes::channel(n, attempt)?, attempt)))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    let clients: Vec<_> = (0..args.clients)
        .map(|id| {
            let c = workload::Client {
                id,
                transport: if id % 2 == 1 {
                    workload::Transport::Batched(streams.clone())
                } else {
                    workload::Transport::Unary
                },
                nodes: args.nodes,
                home: (id as usize % args.nodes) + 1,
                keys: keys.clone(),
                recorder: recorder.clone(),
                timeouts: workload::Timeouts {
                    attempt,
                    op: Duration::from_secs(4),
                },
                seed: args.seed.wrapping_mul(1_000).wrapping_add(id),
                interval,
            };
            tokio::spawn(c.run(stop.clone()))
        })
        .collect();

    let mut nem = nemesis::Nemesis {
        kinds,
        rng: rand::rngs::StdRng::seed_from_u64(args.seed),
        net: net.clone(),
        nodes: nodes.clone(),
        start,
        log: std::fs::File::create(out.join("nemesis.jsonl"))?,
        injected: Vec::new(),
        round: Vec::new(),
    };
    let until = start + Duration::from_secs(args.time_limit);
    let nemesis_result = nem.run(until).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    // Heal everything whatever the nemesis left, then measure recovery.
    net.heal()?;
    let crashes: Vec<String> = lock(&nodes)
        .crashed()
        .into_iter()
        .map(|(n, s)| format!("n{n} exited on its own: {s}"))
        .collect();
    lock(&nodes).restore_all()?;
    nemesis_result?;
    let healed = Instant::now();
    let recovered = wait_for_write(args.nodes, Duration::from_secs(args.recover_bound)).await;
    let recovered_ms = recovered.then(|| healed.elapsed().as_millis());

    let fin = final_state(&keys, args.nodes, &recorder).await;
    drop(recorder);
    let events = writer.await??;
    let ops = history::pair(&events)?;
    let budget = Duration::from_secs(args.check_budget);
    let lin = checks::linearizability(&ops, LIMIT, BASE, budget);
    let pools: BTreeMap<String, Vec<String>> = keys
        .iter()
        .map(|k| (k.label.clone(), k.pool.clone()))
        .collect();
    let mut violations = checks::invariants(&ops, &pools, &fin, LIMIT, BASE);
    if !recovered {
        violations.push(format!(
            "no write succeeded within {} s of healing",
            args.recover_bound
        ));
    }
    violations.extend(crashes.iter().cloned());

    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    for op in &ops {
        let c = counts
            .entry(format!("{:?}", op.f).to_lowercase())
            .or_default();
        match op.kind {
            EventType::Ok => c.ok += 1,
            EventType::Fail => c.fail += 1,
            _ => c.info += 1,
        }
    }
    let violated = lin.iter().any(|k| k.violated()) || !violations.is_empty();
    let results = Results {
        seed: args.seed,
        time_limit_s: args.time_limit,
        nemesis: args.nemesis.clone(),
        nodes: args.nodes,
        clients: args.clients,
        ops: counts,
        faults: nem.injected.clone(),
        crashes,
        recovered_ms,
        linearizability: lin,
        invariant_violations: violations,
        final_state: fin,
        valid: !violated,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    print_summary(&results, &out);
    lock(&nodes).stop_all();
    Ok(if args.expect_violation {
        if violated {
            println!("expected a violation and found one: the checker works");
        } else {
            println!("expected a violation but the run looked valid: the checker missed it");
        }
        violated
    } else {
        !violated
    })
}

fn check_only(path: &std::path::Path, budget: Duration) -> anyhow::Result<bool> {
    let ops = history::pair(&history::read(path)?)?;
    let lin = checks::linearizability(&ops, LIMIT, BASE, budget);
    for k in &lin {
        println!(
            "linearizability {:<6} ({} ops): {}",
            k.key, k.ops, k.verdict
        );
        if let Some(d) = &k.detail {
            println!("    {d}");
        }
    }
    Ok(!lin.iter().any(|k| k.violated()))
}

fn lock(nodes: &Mutex<nodes::Nodes>) -> std::sync::MutexGuard<'_, nodes::Nodes> {
    // A panic while holding the lock leaves consistent process handles.
    nodes.lock().unwrap_or_else(|p| p.into_inner())
}

async fn wait_for_leader(n: usize, bound: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if nodes::leader(n).await.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the cluster elected no leader within {bound:?}; see the node logs")
}

/// Polls with a fresh registration until one succeeds through any node.
async fn wait_for_write(n: usize, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let node = (i as usize % n) + 1;
        let Ok(ch) = nodes::channel(node, Duration::from_secs(1)) else {
            continue;
        };
        let req = oneid::pb::CancelCardRequest {
            // A cancel of a number never registered: a definite NOT_FOUND
            // answer means the write path (leader, log, apply) works, and it
            // changes nothing the checkers look at.
            request_id: format!("liveness-{i}"),
            msisdn: "13999999999".into(),
            carrier: workload::CARRIER.into(),
        };
        let r = oneid::pb::registry_client::RegistryClient::new(ch)
            .cancel_card(req)
            .await;
        match r {
            Err(s) if s.code() == tonic::Code::NotFound => return true,
            Ok(_) => return true,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    false
}

/// Reads the healed cluster: one recorded count per key (part of the
/// history), which key each number verifies under, and every replica's
/// digest once all have applied the same index.
async fn final_state(keys: &[Key], n: usize, recorder: &history::Recorder) -> checks::FinalState {
    let mut fin = checks::FinalState::default();
    let timeout = Duration::from_secs(5);
    for (i, key) in keys.iter().enumerate() {
        for attempt in 0..20u64 {
            let process = 1_000_000_000 + i as u64 + attempt * 1_000;
            recorder.record(
                process,
                EventType::Invoke,
                OpKind::Count,
                &key.label,
                Default::default(),
            );
            let node = (attempt as usize % n) + 1;
            let answer = workload::count_with(node, key, &key.anchor, timeout).await;
            if let Answer::Ok(v) = &answer {
                fin.totals.insert(key.label.clone(), v.total.unwrap_or(0));
            }
            let ok = matches!(answer, Answer::Ok(_));
            workload::record_answer(
                recorder,
                process,
                OpKind::Count,
                &key.label,
                Default::default(),
                answer,
            );
            if ok {
                break;
            }
        }
    }
    for key in keys {
        for m in keys.iter().flat_map(|k| k.pool.iter()) {
            for attempt in 0..20 {
                match workload::count_with((attempt % n) + 1, key, m, timeout).await {
                    Answer::Ok(_) => {
                        fin.holders
                            .entry(m.clone())
                            .or_default()
                            .push(key.label.clone());
                        break;
                    }
                    Answer::Refused(_) => break,
                    Answer::Unknown(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut applied = Vec::new();
        for node in 1..=n {
            applied.push(nodes::status(node, false).await.map(|s| s.last_applied));
        }
        let settled = applied.iter().all(|a| a.is_some() && *a == applied[0]);
        if settled || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for node in 1..=n {
        let d = nodes::status(node, true)
            .await
            .map(|s| s.state_digest)
            .unwrap_or_else(|| "unreachable".into());
        fin.digests.insert(node, d);
    }
    fin
}

fn fault_label(description: &str) -> &'static str {
    if description.starts_with("kill") {
        "kill"
    } else if description.starts_with("pause") {
        "pause"
    } else if description.starts_with("membership") {
        "membership"
    } else if description.contains("bridge") {
        "partition-bridge"
    } else if description.contains("one-way") {
        "partition-one-way"
    } else {
        "partition-split"
    }
}

fn print_summary(r: &Results, out: &std::path::Path) {
    println!(
        "== oneid-jepsen seed={} nemesis={} time={}s nodes={} clients={}",
        r.seed, r.nemesis, r.time_limit_s, r.nodes, r.clients
    );
    for (f, c) in &r.ops {
        println!(
            "ops {f:<9} ok={:<6} fail={:<6} info={}",
            c.ok, c.fail, c.info
        );
    }
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &r.faults {
        *by_kind.entry(fault_label(f)).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "faults injected: {} ({}; full list in results.json)",
        r.faults.len(),
        kinds.join(", ")
    );
    match r.recovered_ms {
        Some(ms) => println!("writes recovered {ms} ms after healing"),
        None => println!("writes did NOT recover"),
    }
    for k in &r.linearizability {
        println!(
            "linearizability {:<6} ({} ops): {}",
            k.key, k.ops, k.verdict
        );
        if let Some(d) = &k.detail {
            println!("    {d}");
        }
    }
    if r.invariant_violations.is_empty() {
        println!(
            "invariants: ok (no lost acks, limit held, one holder per number, replicas identical)"
        );
    } else {
        for v in &r.invariant_violations {
            println!("invariant VIOLATED: {v}");
        }
    }
    println!(
        "verdict: {}   (details: {})",
        if r.valid { "VALID" } else { "INVALID" },
        out.join("results.json").display()
    );
}
