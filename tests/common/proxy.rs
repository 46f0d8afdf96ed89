//! Network partitions without root: every node reaches every peer through a
//! TCP proxy of its own, one per direction, so cutting a node's proxies cuts
//! it off both ways while clients still reach it directly.
//!
//! Each founding node is given its own `--initial-cluster` view in which the
//! peers' addresses are its outbound proxies. openraft writes that view as
//! the very first log entry (log id 0, the same id on every node), so a
//! replica never replaces it with another node's view; the proxies stay shut
//! until every node has written its own, so no leader can ship its view to a
//! node first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::Cluster;

/// The proxies of a cluster, by (from, to) node id.
pub struct Mesh {
    links: BTreeMap<(u64, u64), watch::Sender<bool>>,
}

impl Mesh {
    /// Cuts node `id` off from every peer, both ways: open connections are
    /// dropped and new ones are closed as soon as they arrive.
    pub fn isolate(&self, id: u64) {
        self.set(id, true);
    }

    /// Lets node `id` reach its peers (and them it) again.
    pub fn heal(&self, id: u64) {
        self.set(id, false);
    }

    fn set(&self, id: u64, cut: bool) {
        for ((from, to), link) in &self.links {
            if *from == id || *to == id {
                link.send_replace(cut);
            }
        }
    }
}

/// Starts `n` nodes, each with an HTTP port, whose peer traffic all goes
/// through proxies; returns once every node has initialized and the
/// proxies forward.
pub async fn start_partitionable(n: u64) -> (Cluster, Mesh) {
    let mut c = Cluster::unstarted(n, &[], true);
    let mut links = BTreeMap::new();
    let mut views = Vec::new();
    for from in 1..=n {
        let mut view = Vec::new();
        for to in 1..=n {
            let target = c.node(to).addr.clone();
            if from == to {
                view.push(format!("{to}={target}"));
                continue;
            }
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
            let addr = listener.local_addr().expect("proxy address");
            // Shut until every node has written its own view.
            let (cut, state) = watch::channel(true);
            tokio::spawn(accept(listener, target, state));
            links.insert((from, to), cut);
            view.push(format!("{to}={addr}"));
        }
        views.push(view.join(","));
    }
    c.views = views;
    for id in 1..=n {
        c.spawn(id);
    }
    for id in 1..=n {
        wait_initialized(&c, id).await;
    }
    let mesh = Mesh { links };
    for id in 1..=n {
        mesh.heal(id);
    }
    (c, mesh)
}

/// Waits until node `id` has written its initial membership, and checks it
/// is the node's own view.
async fn wait_initialized(c: &Cluster, id: u64) {
    let deadline = Instant::now() + super::WAIT;
    let view = &c.views[(id - 1) as usize];
    loop {
        if let Some(s) = c.status(id).await {
            if !s.members.is_empty() {
                let seen: Vec<String> = s
                    .members
                    .iter()
                    .map(|m| format!("{}={}", m.node_id, m.addr))
                    .collect();
                assert_eq!(&seen.join(","), view, "node {id}'s view of its peers");
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not initialize\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn accept(listener: TcpListener, target: String, state: watch::Receiver<bool>) {
    while let Ok((inbound, _)) = listener.accept().await {
        if *state.borrow() {
            // Cut: the connection is closed as soon as it is accepted.
            continue;
        }
        tokio::spawn(forward(inbound, target.clone(), state.clone()));
    }
}

/// Copies bytes both ways until either side closes or the link is cut.
async fn forward(mut inbound: TcpStream, target: String, mut state: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = state.wait_for(|cut| *cut) => {}
    }
}
