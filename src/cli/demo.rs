//! `oneid demo`: a local 3-node cluster of child processes with sample data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use tonic::transport::Channel;

use super::client::{connect, format_count, ClientTls, Target};
use super::sample::{SampleGen, CARRIERS};
use crate::pb;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::registry_client::RegistryClient;
use crate::security::certs::{self, Plan};
use crate::security::Role;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// First of three consecutive ports on 127.0.0.1.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
    /// Port on 127.0.0.1 of node 1's HTTP/JSON gateway (HTTPS, client
    /// certificates).
    #[arg(long, default_value_t = 7443)]
    pub gateway_port: u16,
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

    let gateway = format!("127.0.0.1:{}", a.gateway_port);
    let pki = Pki::ensure(&dir.join("tls"))?;
    let mut nodes = Nodes(Vec::new());
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let node_dir = dir.join(format!("n{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let log = std::fs::File::create(node_dir.join("node.log"))?;
        let (cert, key) = certs::node_files(&pki.dir, id);
        let gateway = (id == 1).then(|| ["--gateway-addr".to_string(), gateway.clone()]);
        let child = Command::new(&exe)
            .args(["serve", "--node-id", &id.to_string(), "--addr", addr])
            .args(gateway.into_iter().flatten())
            .arg("--data-dir")
            .arg(node_dir.join("data"))
            .args(["--initial-cluster", &cluster])
            .arg("--ca")
            .arg(certs::ca_file(&pki.dir))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .env("ONEID_PEPPER", &pepper)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a node")?;
        nodes.0.push(child);
    }
    println!("oneid demo: 3 nodes, data and logs in {}", dir.display());

    let endpoints = addrs.join(",");
    let query = pki.target(&endpoints, &Role::Query);
    let leader = wait_for_leader(&query, Duration::from_secs(30)).await?;
    println!("leader elected: node {leader}");

    let started = Instant::now();
    let (example, cards) = load_sample(&pki, &endpoints, a.identities).await?;
    println!(
        "loaded {cards} sample registrations for {} identities in {:.1}s",
        a.identities,
        started.elapsed().as_secs_f64()
    );

    let (id, verify) = example;
    let mut client = RegistryClient::new(connect(&query).await?);
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
    let (cert, key) = certs::client_files(&pki.dir, &Role::Query);
    println!();
    println!(
        "$ export ONEID_CA={} ONEID_CERT={} ONEID_KEY={}",
        certs::ca_file(&pki.dir).display(),
        cert.display(),
        key.display()
    );
    println!(
        "$ oneid count --endpoints {} --id {id} --verify-msisdn {verify}",
        addrs[1]
    );
    println!("{}", format_count(&r));
    println!();
    println!("the same over HTTPS, through node 1's JSON gateway:");
    println!(
        "$ curl -s --cacert {} --cert {} --key {} https://localhost:{}/v1/cards:count \\\n  \
         -H 'content-type: application/json' \\\n  \
         -d '{{\"identity\": {{\"docType\": \"RESIDENT_ID\", \"number\": \"{id}\"}}, \"verifyMsisdn\": \"{verify}\"}}'",
        certs::ca_file(&pki.dir).display(),
        cert.display(),
        key.display(),
        a.gateway_port
    );
    println!();
    for (i, addr) in addrs.iter().enumerate() {
        println!("node {} listening on {addr}", i + 1);
    }
    println!(
        "try: oneid status --endpoints {} (certificates for every role in {})",
        addrs[0],
        pki.dir.display()
    );
    if a.exit {
        return Ok(());
    }
    println!("serving; Ctrl-C to stop");
    stop_requested().await;
    drop(nodes);
    Ok(())
}

/// Ctrl-C, or the TERM a supervisor (`timeout`, `kill`) or the HUP a closed
/// terminal sends: the demo returns, and dropping its nodes stops them.
/// Killed by a signal it does not handle, it would leave them running.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::select! {
                () = super::serve::shutdown_signal() => {}
                _ = hup.recv() => {}
            }
            return;
        }
    }
    super::serve::shutdown_signal().await;
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
async fn load_sample(
    pki: &Pki,
    endpoints: &str,
    n: u32,
) -> anyhow::Result<((String, String), u64)> {
    // Each carrier registers its own cards, with its own certificate.
    let mut channels = HashMap::new();
    for (carrier, _) in CARRIERS {
        let role = Role::Carrier(carrier.to_string());
        channels.insert(carrier, connect(&pki.target(endpoints, &role)).await?);
    }
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
        let clients: HashMap<&str, RegistryClient<Channel>> = channels
            .iter()
            .map(|(c, ch)| (*c, RegistryClient::new(ch.clone())))
            .collect();
        tasks.push(tokio::spawn(async move {
            loop {
                let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(job) = job else {
                    return Ok::<(), anyhow::Error>(());
                };
                let mut client = clients
                    .get(job.carrier.as_str())
                    .cloned()
                    .with_context(|| format!("no certificate for carrier {}", job.carrier))?;
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

/// The demo's certificates: a CA, one certificate per node and one per
/// client role, made on first start and reused with `--dir`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn ensure(dir: &Path) -> anyhow::Result<Pki> {
        if !certs::ca_file(dir).exists() {
            let mut clients: Vec<Role> = CARRIERS
                .iter()
                .map(|(c, _)| Role::Carrier(c.to_string()))
                .collect();
            clients.extend([
                Role::Query,
                Role::Regulator,
                Role::Admin,
                Role::Platform("wechat".into()),
            ]);
            certs::generate(
                dir,
                &Plan {
                    nodes: &[1, 2, 3],
                    clients: &clients,
                    hosts: &["localhost".into(), "127.0.0.1".into()],
                    keep_ca_key: false,
                },
            )
            .context("making the demo certificates")?;
        }
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// A client target holding `role`'s certificate.
    fn target(&self, endpoints: &str, role: &Role) -> Target {
        let (cert, key) = certs::client_files(&self.dir, role);
        Target {
            endpoints: endpoints.to_string(),
            timeout_ms: 5000,
            tls: ClientTls {
                ca: Some(certs::ca_file(&self.dir)),
                cert: Some(cert),
                key: Some(key),
                insecure: false,
            },
        }
    }
}
