//! `oneid demo`: a local 3-node cluster of child processes with sample data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use super::client::{connect, format_count, Target};
use super::sample::SampleGen;
use crate::pb;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::registry_client::RegistryClient;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// First of three consecutive ports on 127.0.0.1.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Identities to generate (each gets 1–4 cards).
    #[arg(long, default_value_t = 500)]
    pub identities: u32,
    /// Keep data here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Exit after loading and printing instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
}

/// Kills the children however the demo ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new().prefix("oneid-demo-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let exe = std::env::current_exe().context("locating the oneid binary")?;
    let addrs: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", a.base_port + i))
        .collect();
    let cluster = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let pepper = {
        use rand::Rng;
        format!("{:032x}", rand::thread_rng().gen::<u128>())
    };

    let mut nodes = Nodes(Vec::new());
    for (i, addr) in addrs.iter().enumerate() {
        let node_dir = dir.join(format!("n{}", i + 1));
        std::fs::create_dir_all(&node_dir)?;
        let log = std::fs::File::create(node_dir.join("node.log"))?;
        let child = Command::new(&exe)
            .args(["serve", "--node-id", &(i + 1).to_string(), "--addr", addr])
            .arg("--data-dir")
            .arg(node_dir.join("data"))
            .args(["--initial-cluster", &cluster])
            .env("ONEID_PEPPER", &pepper)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a node")?;
        nodes.0.push(child);
    }
    println!("oneid demo: 3 nodes, data and logs in {}", dir.display());

    let target = Target {
        endpoints: addrs.join(","),
        timeout_ms: 5000,
    };
    let leader = wait_for_leader(&target, Duration::from_secs(30)).await?;
    println!("leader elected: node {leader}");

    let started = Instant::now();
    let (example, cards) = load_sample(&target, a.identities).await?;
    println!(
        "loaded {cards} sample registrations for {} identities in {:.1}s",
        a.identities,
        started.elapsed().as_secs_f64()
    );

    let (id, verify) = example;
    let mut client = RegistryClient::new(connect(&target).await?);
    let r = client
        .count_cards(pb::CountCardsRequest {
            identity: Some(pb::Identity {
                doc_type: pb::DocType::ResidentId as i32,
                number: id.clone(),
            }),
            verify_msisdn: verify.clone(),
        })
        .await
        .map_err(super::client::explain)?
        .into_inner();
    println!();
    println!(
        "$ oneid count --endpoints {} --id {id} --verify-msisdn {verify}",
        addrs[1]
    );
    println!("{}", format_count(&r));
    println!();
    for (i, addr) in addrs.iter().enumerate() {
        println!("node {} listening on {addr}", i + 1);
    }
    println!("try: oneid status --endpoints {}", addrs[0]);
    if a.exit {
        return Ok(());
    }
    println!("serving; Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    drop(nodes);
    Ok(())
}

async fn wait_for_leader(target: &Target, limit: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(ch) = connect(target).await {
            let mut c = ClusterClient::new(ch);
            if let Ok(s) = c.status(pb::StatusRequest::default()).await {
                let s = s.into_inner();
                if s.leader_id != 0 {
                    return Ok(s.leader_id);
                }
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no leader elected within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Registers 1–4 cards for each of `n` generated identities, 32 requests in
/// flight. Returns one (identity, its first number) pair and the card count.
async fn load_sample(target: &Target, n: u32) -> anyhow::Result<((String, String), u64)> {
    let channel = connect(target).await?;
    let mut gen = SampleGen::new(2021);
    let mut jobs = Vec::new();
    let mut serial = 0u64;
    let mut example = None;
    for i in 0..n {
        let id = gen.identity();
        let province = format!("{:02}", gen.province().code());
        let cards = 1 + (i % 4);
        for _ in 0..cards {
            serial += 1;
            let msisdn = gen.msisdn(serial);
            if example.is_none() && cards == 4 {
                example = Some((id.number().to_string(), msisdn.clone()));
            }
            jobs.push(pb::RegisterCardRequest {
                request_id: format!("demo-{serial}"),
                identity: Some(pb::Identity {
                    doc_type: pb::DocType::ResidentId as i32,
                    number: id.number().to_string(),
                }),
                msisdn,
                carrier: gen.carrier().to_string(),
                province: province.clone(),
                kind: pb::CardKind::Personal as i32,
                channel: pb::Channel::Agent as i32,
                strict_verification: false,
                responsible_unit: None,
            });
        }
    }
    let total = jobs.len() as u64;
    let queue = Arc::new(std::sync::Mutex::new(jobs));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let queue = queue.clone();
        let mut client = RegistryClient::new(channel.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(job) = job else {
                    return Ok::<(), anyhow::Error>(());
                };
                let mut attempts = 0;
                // Retries reuse the request id, so a retry after an unknown
                // outcome cannot register twice.
                loop {
                    match client.register_card(job.clone()).await {
                        Ok(_) => break,
                        Err(s) if s.code() == tonic::Code::Unavailable && attempts < 20 => {
                            attempts += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(s) => return Err(super::client::explain(s)),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let example = example.context("no sample identities requested")?;
    Ok((example, total))
}
