//! The `oneid` processes under test, each inside its node's namespace, with
//! the process-level faults: kill -9 + restart on the same data dir, and
//! SIGSTOP/SIGCONT.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use oneid::pb;
use oneid::pb::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

use crate::net;

pub const PORT: u16 = 7400;
pub const PEPPER: &str = "jepsen-pepper-not-a-secret-0123456789";

pub struct Nodes {
    bin: PathBuf,
    dir: PathBuf,
    spec: String,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    extra: Vec<String>,
}

pub fn addr(node: usize) -> String {
    format!("{}:{PORT}", net::ip(node))
}

pub fn channel(node: usize, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{}", addr(node)))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

impl Nodes {
    pub fn new(bin: &Path, dir: &Path, n: usize, extra: Vec<String>) -> Nodes {
        let spec = (1..=n)
            .map(|i| format!("{i}={}", addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        Nodes {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            spec,
            children: (0..n).map(|_| None).collect(),
            paused: vec![false; n],
            extra,
        }
    }

    pub fn count(&self) -> usize {
        self.children.len()
    }

    pub fn log_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("n{node}.log"))
    }

    pub fn start(&mut self, node: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.children[node - 1].is_none(), "node {node} is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))?;
        let data = self.dir.join(format!("n{node}-data"));
        // `ip netns exec` execs in place, so the child's pid is oneid's own
        // and signals reach it directly.
        let child = Command::new("ip")
            .args(["netns", "exec", &net::ns(node)])
            .arg(&self.bin)
            .args([
                "serve",
                "--node-id",
                &node.to_string(),
                "--addr",
                &addr(node),
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(["--initial-cluster", &self.spec])
            // The checker's clients speak plaintext; faults, not TLS, are
            // under test here.
            .arg("--insecure")
            // Its clients reach the nodes from the bridge, not loopback, and
            // a throttled count is a lost observation: the query rate limit
            // is tested in tests/abuse.rs, not here.
            .args([
                "--queries-per-second",
                "1000000",
                "--query-burst",
                "1000000",
            ])
            .args(&self.extra)
            .env("ONEID_PEPPER", PEPPER)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting node {node}"))?;
        self.children[node - 1] = Some(child);
        self.paused[node - 1] = false;
        Ok(())
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.children[node - 1].is_some()
    }

    /// SIGKILL: no shutdown code runs, unsynced state is lost.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut c) = self.children[node - 1].take() {
            if self.paused[node - 1] {
                self.signal(&c, libc::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused[node - 1] = false;
    }

    pub fn pause(&mut self, node: usize) {
        if let Some(c) = &self.children[node - 1] {
            self.signal(c, libc::SIGSTOP);
            self.paused[node - 1] = true;
        }
    }

    pub fn resume(&mut self, node: usize) {
        if let Some(c) = &self.children[node - 1] {
            self.signal(c, libc::SIGCONT);
        }
        self.paused[node - 1] = false;
    }

    fn signal(&self, child: &Child, sig: libc::c_int) {
        // The pid is our own child's, alive until we wait() on it.
        unsafe {
            libc::kill(child.id() as libc::pid_t, sig);
        }
    }

    /// Every node running and not paused.
    pub fn restore_all(&mut self) -> anyhow::Result<()> {
        for node in 1..=self.count() {
            if self.paused[node - 1] {
                self.resume(node);
            }
            if !self.is_running(node) {
                self.start(node)?;
            }
        }
        Ok(())
    }

    /// Reports nodes whose process exited on its own (a crash).
    pub fn crashed(&mut self) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for (i, c) in self.children.iter_mut().enumerate() {
            if let Some(child) = c {
                if let Ok(Some(status)) = child.try_wait() {
                    out.push((i + 1, status.to_string()));
                    *c = None;
                }
            }
        }
        out
    }

    pub fn stop_all(&mut self) {
        for node in 1..=self.count() {
            self.kill(node);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

pub async fn status(node: usize, digest: bool) -> Option<pb::StatusResponse> {
    let ch = channel(node, Duration::from_secs(if digest { 20 } else { 1 })).ok()?;
    ClusterClient::new(ch)
        .status(pb::StatusRequest {
            include_digest: digest,
        })
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// The leader all reachable nodes agree on, if any.
pub async fn leader(n: usize) -> Option<usize> {
    let mut seen = Vec::new();
    for node in 1..=n {
        if let Some(s) = status(node, false).await {
            seen.push(s.leader_id);
        }
    }
    let first = *seen.first()?;
    (first != 0 && seen.iter().all(|l| *l == first)).then_some(first as usize)
}
