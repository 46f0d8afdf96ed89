//! A cluster of real `oneid serve` processes for integration tests.
#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oneid::pb;
use oneid::pb::cluster_client::ClusterClient;
use oneid::pb::registry_client::RegistryClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub const PEPPER: &str = "integration-test-pepper-0123456789";

pub struct Node {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
    /// HOST:PORT of the node's HTTP port (`--http-addr`), when it has one.
    pub http_addr: Option<String>,
    /// HOST:PORT of the node's HTTPS gateway (`--gateway-addr`), when a
    /// test gives it one (TLS clusters only).
    pub gateway_addr: Option<String>,
    /// Started with `--initial-cluster`; otherwise it waits to be added.
    pub founding: bool,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub spec: String,
    /// Per-node `--initial-cluster` specs, when nodes must not all see the
    /// same peer addresses (see [`proxy`]); nodes beyond it get `spec`.
    pub views: Vec<String>,
    pub extra: Vec<String>,
    /// Certificates from `oneid certs` (nodes 1..n); none runs the nodes
    /// with `--insecure`, as most tests do.
    pub tls: Option<Tls>,
}

/// A TLS cluster's certificate directory and the client identity the
/// harness's own calls (status, wait_leader, ...) use.
pub struct Tls {
    pub dir: PathBuf,
    pub client: ClientTlsConfig,
}

impl Tls {
    /// Issues a CA, node certificates for `nodes` and client certificates
    /// for `roles` with `oneid certs`, into a fresh directory under `parent`.
    /// The harness's own calls use the admin certificate.
    pub fn issue(parent: &std::path::Path, nodes: u64, roles: &[&str]) -> Tls {
        Tls::issue_with(parent, nodes, roles, &[])
    }

    /// [`Tls::issue`] keeping the CA key and an empty revocation list
    /// (`crl.pem`), so `oneid revoke` can revoke certificates.
    pub fn issue_revocable(parent: &std::path::Path, nodes: u64, roles: &[&str]) -> Tls {
        Tls::issue_with(parent, nodes, roles, &["--keep-ca-key"])
    }

    fn issue_with(parent: &std::path::Path, nodes: u64, roles: &[&str], more: &[&str]) -> Tls {
        let dir = parent.join("tls");
        let ids: Vec<String> = (1..=nodes).map(|i| i.to_string()).collect();
        let mut clients: Vec<&str> = roles.to_vec();
        if !clients.contains(&"admin") {
            clients.push("admin");
        }
        let ids = ids.join(",");
        let clients = clients.join(",");
        let mut args = vec![
            "certs",
            "--out",
            dir.to_str().expect("utf-8 path"),
            "--nodes",
            &ids,
            "--clients",
            &clients,
        ];
        args.extend(more);
        let out = oneid_cli(&args);
        assert!(out.status.success(), "oneid certs: {}", output_text(&out));
        let client = client_tls(&dir, "client-admin");
        Tls { dir, client }
    }
}

/// Client TLS settings from `dir/ca.pem` and `dir/<stem>.pem|.key`.
pub fn client_tls(dir: &std::path::Path, stem: &str) -> ClientTlsConfig {
    let read =
        |name: String| std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem".into())))
        .identity(Identity::from_pem(
            read(format!("{stem}.pem")),
            read(format!("{stem}.key")),
        ))
}

/// Like [`channel`], over TLS.
pub fn tls_channel(addr: &str, tls: ClientTlsConfig) -> Channel {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// A port nothing listens on, below Linux's ephemeral range (32768+).
///
/// Asking the kernel for port 0 returns a port from the ephemeral range,
/// which the kernel also hands out as the source port of outgoing
/// connections: between the test freeing the port and the node binding it,
/// one of the nodes' own peer connections could take it ("Address already
/// in use", or a node answering on another cluster's address). Below the
/// range only listeners compete; each test process starts at its own
/// offset and counts up, probing with a bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // up to 31 999
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range");
}

impl Cluster {
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        Self::launch(n, extra, false)
    }

    /// Like [`Cluster::start`], and every node also serves HTTP (`/metrics`,
    /// `/ready`, `/live`) on a port of its own.
    pub fn start_with_http(n: u64, extra: &[&str]) -> Cluster {
        Self::launch(n, extra, true)
    }

    fn launch(n: u64, extra: &[&str], http: bool) -> Cluster {
        let mut c = Self::unstarted(n, extra, http);
        for id in 1..=n {
            c.spawn(id);
        }
        c
    }

    /// Nodes with their ports and directories chosen, none running yet.
    pub fn unstarted(n: u64, extra: &[&str], http: bool) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes: Vec<Node> = (1..=n)
            .map(|id| {
                let node_dir = dir.path().join(format!("n{id}"));
                std::fs::create_dir_all(&node_dir).expect("node dir");
                Node {
                    id,
                    addr: format!("127.0.0.1:{}", free_port()),
                    data_dir: node_dir.join("data"),
                    log: node_dir.join("node.log"),
                    child: None,
                    http_addr: http.then(|| format!("127.0.0.1:{}", free_port())),
                    gateway_addr: None,
                    founding: true,
                }
            })
            .collect();
        let spec = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        Cluster {
            dir,
            nodes,
            spec,
            views: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: None,
        }
    }

    /// Starts one more node, empty and outside the initial cluster, so it
    /// waits to be added (`oneid member add`). Returns its id.
    pub fn add_node(&mut self) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let node_dir = self.dir.path().join(format!("n{id}"));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        self.nodes.push(Node {
            id,
            addr: format!("127.0.0.1:{}", free_port()),
            data_dir: node_dir.join("data"),
            log: node_dir.join("node.log"),
            child: None,
            http_addr: None,
            gateway_addr: None,
            founding: false,
        });
        self.spawn(id);
        id
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    /// Every node's HOST:PORT, comma separated, as CLI `--endpoints` takes them.
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn spawn(&mut self, id: u64) {
        let spec = self
            .views
            .get((id - 1) as usize)
            .unwrap_or(&self.spec)
            .clone();
        let mut extra = self.extra.clone();
        match &self.tls {
            Some(tls) => {
                let file = |name: String| tls.dir.join(name).display().to_string();
                extra.extend([
                    "--ca".into(),
                    file("ca.pem".into()),
                    "--cert".into(),
                    file(format!("node-{id}.pem")),
                    "--key".into(),
                    file(format!("node-{id}.key")),
                ]);
            }
            None => extra.push("--insecure".into()),
        }
        let node = &mut self.nodes[(id - 1) as usize];
        assert!(node.child.is_none(), "node {id} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_oneid"))
            .args(["serve", "--node-id", &id.to_string(), "--addr", &node.addr])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(
                node.founding
                    .then(|| ["--initial-cluster".to_string(), spec])
                    .into_iter()
                    .flatten(),
            )
            .args(
                node.http_addr
                    .iter()
                    .flat_map(|h| ["--http-addr".to_string(), h.clone()]),
            )
            .args(
                node.gateway_addr
                    .iter()
                    .flat_map(|g| ["--gateway-addr".to_string(), g.clone()]),
            )
            .args(&extra)
            .env("ONEID_PEPPER", PEPPER)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn oneid");
        node.child = Some(child);
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self, id: u64) {
        let node = &mut self.nodes[(id - 1) as usize];
        if let Some(mut c) = node.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits (bounded) for the node to exit on its own;
    /// returns whether it exited successfully.
    pub fn terminate(&mut self, id: u64) -> bool {
        let node = &mut self.nodes[(id - 1) as usize];
        let Some(mut c) = node.child.take() else {
            return false;
        };
        // SAFETY: signalling a child we spawned and have not reaped.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        match exit_within(&mut c, Duration::from_secs(30)) {
            Some(status) => status.success(),
            None => {
                let _ = c.kill();
                let _ = c.wait();
                false
            }
        }
    }

    /// SIGSTOP: the node stays up but answers nothing, as a process stuck
    /// behind a long stall does; its peers' calls time out instead of being
    /// refused. Dropping the cluster SIGKILLs it, stopped or not.
    pub fn freeze(&self, id: u64) {
        self.signal(id, libc::SIGSTOP);
    }

    /// SIGCONT for a node [`Cluster::freeze`] stopped.
    pub fn thaw(&self, id: u64) {
        self.signal(id, libc::SIGCONT);
    }

    fn signal(&self, id: u64, sig: libc::c_int) {
        if let Some(child) = &self.node(id).child {
            // SAFETY: signalling a child the harness spawned and has not
            // reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, sig);
            }
        }
    }

    /// Waits (bounded) for a node to exit on its own, as one refusing to
    /// start does; `None` if it still runs (it is left running).
    pub fn exit_status_within(
        &mut self,
        id: u64,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        let node = &mut self.nodes[(id - 1) as usize];
        let status = exit_within(node.child.as_mut()?, within)?;
        node.child = None;
        Some(status)
    }

    pub fn endpoint(&self, id: u64) -> Channel {
        match &self.tls {
            Some(tls) => tls_channel(&self.node(id).addr, tls.client.clone()),
            None => channel(&self.node(id).addr),
        }
    }

    pub fn registry(&self, id: u64) -> RegistryClient<Channel> {
        RegistryClient::new(self.endpoint(id))
    }

    pub fn cluster(&self, id: u64) -> ClusterClient<Channel> {
        ClusterClient::new(self.endpoint(id))
    }

    pub async fn status(&self, id: u64) -> Option<pb::StatusResponse> {
        self.cluster(id)
            .status(pb::StatusRequest::default())
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits until the running nodes among `among` agree on a leader in `among`.
    pub async fn wait_leader(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut seen = Vec::new();
            for &id in among {
                if let Some(s) = self.status(id).await {
                    seen.push(s.leader_id);
                }
            }
            if seen.len() == among.len() && seen.iter().all(|l| *l == seen[0] && among.contains(l))
            {
                return seen[0];
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?}: {seen:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.status(id).await {
                if s.last_applied >= index {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {id} did not reach index {index}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn digest(&self, id: u64) -> String {
        self.cluster(id)
            .status(pb::StatusRequest {
                include_digest: true,
            })
            .await
            .expect("status with digest")
            .into_inner()
            .state_digest
    }

    /// Waits until nodes `ids` applied what node `from` has applied, then
    /// asserts that their state digests are equal.
    pub async fn assert_replicas_agree(&self, from: u64, ids: &[u64]) {
        let target = self.status(from).await.expect("status").last_applied;
        for id in ids {
            self.wait_applied(*id, target).await;
        }
        let digests = futures::future::join_all(ids.iter().map(|id| self.digest(*id))).await;
        assert!(
            digests.iter().all(|d| *d == digests[0]),
            "replicas differ: {digests:?}"
        );
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut section = |title: String, lines: &[&str]| {
            out.push_str(&format!("--- {title} ---\n"));
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        };
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            // A panic is the first thing to look for, and rarely in the tail.
            for (i, l) in lines.iter().enumerate() {
                if l.contains("panicked") {
                    section(
                        format!("node {} panic", n.id),
                        &lines[i..lines.len().min(i + 8)],
                    );
                }
            }
            let tail = &lines[lines.len().saturating_sub(30)..];
            section(format!("node {} log (last lines)", n.id), tail);
        }
        out
    }
}

fn exit_within(c: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A lazily connected client channel to HOST:PORT, with the deadlines every
/// test call uses.
pub fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// Every wait is bounded but generous: CI shares two cores between the
/// nodes and the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `probe` until it returns Ok, failing with `what` after [`WAIT`].
pub async fn eventually<T, F, Fut>(c: &Cluster, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    eventually_within(c, what, WAIT, probe).await
}

/// Polls `probe` until it returns Ok, failing with `what`, the last
/// answer and the node logs after `bound`.
pub async fn eventually_within<T, F, Fut>(
    c: &Cluster,
    what: &str,
    bound: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + bound;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: still not so after {bound:?}; last: {last}\n{}",
                c.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The data half of a state digest `<applied index>:<hash of the data>`.
pub fn data_hash(digest: &str) -> String {
    digest.split(':').nth(1).unwrap_or_default().to_string()
}

/// A valid resident ID with the given 17-digit body.
pub fn resident_id(body17: &str) -> pb::Identity {
    let id = oneid::cli::sample::complete_resident_id(body17).expect("valid body");
    pb::Identity {
        doc_type: pb::DocType::ResidentId as i32,
        number: id.number().to_string(),
    }
}

pub fn register_req(
    request_id: &str,
    identity: &pb::Identity,
    msisdn: &str,
) -> pb::RegisterCardRequest {
    pb::RegisterCardRequest {
        request_id: request_id.to_string(),
        identity: Some(identity.clone()),
        msisdn: msisdn.to_string(),
        carrier: "CMCC".into(),
        province: "11".into(),
        kind: pb::CardKind::Personal as i32,
        channel: pb::Channel::Agent as i32,
        strict_verification: false,
        responsible_unit: None,
    }
}

/// A 3-node cluster where alice registered `msisdn`, with a follower that
/// applied it stopped cleanly (a clean stop flushes the state machine:
/// applies skip the WAL, so after a kill -9 the card might exist only in
/// the raft log until replayed). Returns it, the leader, the stopped
/// follower and alice.
pub async fn cluster_with_a_stopped_follower(
    request_id: &str,
    msisdn: &str,
) -> (Cluster, u64, u64, pb::Identity) {
    let mut c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let alice = resident_id("11010519491231002");
    register_retrying(&c, leader, register_req(request_id, &alice, msisdn))
        .await
        .expect("register");
    let stopped = if leader == 3 { 2 } else { 3 };
    let target = c.status(leader).await.expect("status").last_applied;
    c.wait_applied(stopped, target).await;
    assert!(c.terminate(stopped), "node {stopped} stops cleanly");
    (c, leader, stopped, alice)
}

pub fn count_req(identity: &pb::Identity, verify: &str) -> pb::CountCardsRequest {
    pb::CountCardsRequest {
        identity: Some(identity.clone()),
        verify_msisdn: verify.to_string(),
    }
}

/// Imports `cards` through `node` in one call; every row must go in.
pub async fn import_all(c: &Cluster, node: u64, cards: Vec<pb::RegisterCardRequest>) {
    let results = c
        .registry(node)
        .import_cards(pb::ImportCardsRequest { cards })
        .await
        .expect("import")
        .into_inner()
        .results;
    assert!(results.iter().all(|r| r.ok), "every imported card is in");
}

/// Retries a write while the cluster has no leader (UNAVAILABLE), as a
/// client would; the request id makes the retry safe.
pub async fn register_retrying(
    c: &Cluster,
    node: u64,
    req: pb::RegisterCardRequest,
) -> Result<pb::RegisterCardResponse, tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.registry(node).register_card(req.clone()).await {
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other.map(|r| r.into_inner()),
        }
    }
}

pub fn reason(status: &tonic::Status) -> String {
    oneid::api::error::reason_of(status).unwrap_or_default()
}

/// Runs the `oneid` binary with `args` and waits for it. Client commands
/// speak plaintext (`ONEID_INSECURE`) to the harness's insecure clusters.
pub fn oneid_cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oneid"))
        .args(args)
        .env("ONEID_INSECURE", "true")
        .output()
        .expect("run oneid")
}

/// A finished command's stdout and stderr, for assertions and messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A plain HTTP/1.1 GET to node `id`'s HTTP port: (status, body), or None
/// when the node does not answer (not up yet, or killed).
pub async fn http_get(c: &Cluster, id: u64, path: &str) -> Option<(u16, String)> {
    http_exchange(c, id, |addr| {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
    })
    .await
}

/// A plain HTTP/1.1 POST of `body` (with `content_type`, if any) to node
/// `id`'s HTTP port: (status, body), or None when the node does not answer.
pub async fn http_post(
    c: &Cluster,
    id: u64,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> Option<(u16, String)> {
    http_exchange(c, id, |addr| post_request(addr, path, content_type, body)).await
}

/// The bytes of a POST of `body` to `addr`, asking the server to close the
/// connection after answering.
pub fn post_request(addr: &str, path: &str, content_type: Option<&str>, body: &str) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req.into_bytes()
}

/// One sample of the exposition text: metric name with its labels as
/// written (`name{a="b"}`), and the value.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// A node's `/metrics`, parsed; `None` unless it answered 200.
pub async fn scrape(c: &Cluster, id: u64) -> Option<BTreeMap<String, f64>> {
    match http_get(c, id, "/metrics").await {
        Some((200, body)) => Some(parse_metrics(&body)),
        _ => None,
    }
}

/// Sends the request `build` makes for the node's HTTP address and reads the
/// whole answer (the request asks the server to close the connection).
pub async fn http_exchange(
    c: &Cluster,
    id: u64,
    build: impl FnOnce(&str) -> Vec<u8>,
) -> Option<(u16, String)> {
    let addr = c.node(id).http_addr.clone().expect("node has no HTTP port");
    let req = build(&addr);
    http_exchange_at(addr, req).await
}

/// [`http_exchange`] with the node's HTTP address and the request given,
/// borrowing nothing: for a request that runs while the test changes the
/// cluster.
pub async fn http_exchange_at(addr: String, req: Vec<u8>) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
        s.write_all(&req).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        status_and_body(raw)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// The status and body of a whole HTTP/1.1 answer.
fn status_and_body(raw: Vec<u8>) -> Option<(u16, String)> {
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// POSTs JSON to the HTTPS gateway at `addr`, presenting the client
/// certificate `dir/<stem>.pem` (none: no certificate). None when the
/// connection, the handshake or the exchange failed.
pub async fn https_post(
    dir: &std::path::Path,
    stem: Option<&str>,
    addr: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca.pem") {
        roots.add(ca.expect("CA certificate")).expect("CA root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    let config = match stem {
        Some(stem) => {
            let chain = CertificateDer::pem_file_iter(dir.join(format!("{stem}.pem")))
                .expect("certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate");
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{stem}.key"))).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let name = ServerName::try_from("localhost").expect("server name");
        let mut s = connector.connect(name, tcp).await.ok()?;
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        // A server that closes without TLS's close_notify still sent the
        // whole answer before it.
        let _ = s.read_to_end(&mut raw).await;
        status_and_body(raw)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}
