//! Backup and restore with real processes: `oneid snapshot save` from a
//! follower of a 3-node cluster, corrupt and truncated copies refused by
//! `verify` and `restore` without writing anything, and the good file
//! restored into a new 1-node cluster that holds exactly the old data,
//! accepts new writes and survives a restart.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use oneid::pb;
use oneid::pb::cluster_client::ClusterClient;
use oneid::pb::registry_client::RegistryClient;
use tonic::transport::{Channel, Endpoint};

/// A standalone `oneid serve`, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    /// Node 1 of the restored cluster, at `addr`.
    fn start(addr: &str, data_dir: &Path, log: &Path) -> Server {
        // What an operator would pass on a first start; the restored node is
        // already initialized and must ignore it.
        Self::spawn(1, addr, data_dir, log, &format!("1={addr}"))
    }

    fn spawn(id: u64, addr: &str, data_dir: &Path, log: &Path, initial_cluster: &str) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_oneid"))
            .args(["serve", "--node-id", &id.to_string(), "--addr", addr])
            .arg("--insecure")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--initial-cluster", initial_cluster])
            .env("ONEID_PEPPER", PEPPER)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn oneid serve");
        Server { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Waits until the node at `addr` is the leader of its own cluster.
async fn wait_self_leader(addr: &str, log: &Path) -> pb::StatusResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = ClusterClient::new(channel(addr))
            .status(pb::StatusRequest::default())
            .await
        {
            let s = s.into_inner();
            if s.leader_id == s.node_id && s.role == "leader" {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restored node at {addr} did not become leader\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A linearizable count, retried while the node has no leader yet.
async fn count_on(addr: &str, id: &pb::Identity, verify: &str) -> pb::CountCardsResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match RegistryClient::new(channel(addr))
            .count_cards(count_req(id, verify))
            .await
        {
            Ok(r) => return r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("count on {addr}: {s:?}"),
        }
    }
}

/// A registration, retried while the node has no leader yet; the request
/// id makes the retry safe.
async fn register_on(addr: &str, req: pb::RegisterCardRequest) -> pb::RegisterCardResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match RegistryClient::new(channel(addr))
            .register_card(req.clone())
            .await
        {
            Ok(r) => return r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("register on {addr}: {s:?}"),
        }
    }
}

async fn digest_on(addr: &str) -> String {
    let d = ClusterClient::new(channel(addr))
        .status(pb::StatusRequest {
            include_digest: true,
        })
        .await
        .expect("status with digest")
        .into_inner()
        .state_digest;
    // "index:sha256": the new cluster's log indexes differ, its data must not.
    d.split_once(':').map(|(_, h)| h.to_string()).unwrap_or(d)
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_verify_and_restore_into_a_new_cluster() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = if leader == 1 { 2 } else { 1 };

    // Six identities holding one to three cards each.
    let mut holders = Vec::new();
    for i in 1..=6u32 {
        let id = resident_id(&format!("11010519491231{i:03}"));
        let numbers: Vec<String> = (0..=(i % 3))
            .map(|k| format!("1380000{i:02}{k:02}"))
            .collect();
        for (k, msisdn) in numbers.iter().enumerate() {
            let node = 1 + (i as u64 + k as u64) % 3;
            register_retrying(&c, node, register_req(&format!("bk-{i}-{k}"), &id, msisdn))
                .await
                .expect("register");
        }
        holders.push((id, numbers));
    }
    let mut expected = Vec::new();
    for (id, numbers) in &holders {
        expected.push(count_on(&c.node(leader).addr, id, &numbers[0]).await);
    }

    let work = c.dir.path().join("backup");
    std::fs::create_dir_all(&work).expect("backup dir");
    let file = work.join("registry.snap");
    let file_s = file.to_str().expect("utf-8 path");

    // Saved from a follower: the read barrier makes it hold every write above.
    let save = oneid_cli(&[
        "snapshot",
        "save",
        file_s,
        "--endpoints",
        &c.node(follower).addr,
    ]);
    let save_text = output_text(&save);
    assert!(save.status.success(), "{save_text}");
    for field in ["last_log_index=", "bytes=", "sha256="] {
        assert!(save_text.contains(field), "{save_text}");
    }
    assert!(!work.join("registry.snap.tmp").exists());
    let old_digest = digest_on(&c.node(follower).addr).await;

    let verify = oneid_cli(&["snapshot", "verify", file_s]);
    assert!(verify.status.success(), "{}", output_text(&verify));
    assert!(
        output_text(&verify).contains("ok "),
        "{}",
        output_text(&verify)
    );

    // A flipped byte in the middle and a truncated file: both refused, by
    // verify and by restore, and restore leaves no trace.
    let good = std::fs::read(&file).expect("read backup");
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    let bad_files = [
        ("flipped.snap", flipped),
        ("truncated.snap", good[..good.len() - 7].to_vec()),
    ];
    for (name, bytes) in &bad_files {
        let bad = work.join(name);
        std::fs::write(&bad, bytes).expect("write bad copy");
        let bad_s = bad.to_str().expect("utf-8 path");

        let v = oneid_cli(&["snapshot", "verify", bad_s]);
        assert!(!v.status.success(), "{name}: {}", output_text(&v));
        assert!(
            output_text(&v).contains("corrupt or truncated"),
            "{name}: {}",
            output_text(&v)
        );

        let target = work.join(format!("target-{name}"));
        let r = oneid_cli(&[
            "snapshot",
            "restore",
            bad_s,
            "--data-dir",
            target.to_str().expect("utf-8 path"),
            "--node-id",
            "1",
            "--addr",
            "127.0.0.1:1",
        ]);
        assert!(!r.status.success(), "{name}: {}", output_text(&r));
        assert!(
            output_text(&r).contains("corrupt or truncated"),
            "{name}: {}",
            output_text(&r)
        );
        assert!(!target.exists(), "{name}: restore created the data dir");
        assert!(
            !dir_entries(&work).iter().any(|n| n.contains(".restore-")),
            "{name}: restore left a staging dir: {:?}",
            dir_entries(&work)
        );
    }

    // A data dir that holds anything is refused and left alone.
    let occupied = work.join("occupied");
    std::fs::create_dir_all(&occupied).expect("occupied dir");
    std::fs::write(occupied.join("keep"), b"x").expect("write keep");
    let r = oneid_cli(&[
        "snapshot",
        "restore",
        file_s,
        "--data-dir",
        occupied.to_str().expect("utf-8 path"),
        "--node-id",
        "1",
        "--addr",
        "127.0.0.1:1",
    ]);
    assert!(!r.status.success(), "{}", output_text(&r));
    assert!(output_text(&r).contains("not empty"), "{}", output_text(&r));
    assert_eq!(dir_entries(&occupied), vec!["keep".to_string()]);

    // The good file seeds a new single-node cluster.
    let new_addr = format!("127.0.0.1:{}", free_port());
    let new_dir = work.join("restored");
    let new_log = work.join("restored.log");
    let restore = oneid_cli(&[
        "snapshot",
        "restore",
        file_s,
        "--data-dir",
        new_dir.to_str().expect("utf-8 path"),
        "--node-id",
        "1",
        "--addr",
        &new_addr,
    ]);
    assert!(restore.status.success(), "{}", output_text(&restore));

    let server = Server::start(&new_addr, &new_dir, &new_log);
    let status = wait_self_leader(&new_addr, &new_log).await;
    assert_eq!(status.members.len(), 1, "{status:?}");
    assert_eq!(status.members[0].addr, new_addr, "{status:?}");
    for ((id, numbers), want) in holders.iter().zip(&expected) {
        assert_eq!(&count_on(&new_addr, id, &numbers[0]).await, want);
    }
    assert_eq!(digest_on(&new_addr).await, old_digest);

    // The dedup table came along: an old request id replays.
    let (id1, numbers1) = &holders[0];
    let replay = register_on(&new_addr, register_req("bk-1-0", id1, &numbers1[0])).await;
    assert!(replay.replayed, "{replay:?}");

    // New writes are accepted, and stay in the new cluster.
    register_on(&new_addr, register_req("after-restore", id1, "13900000001")).await;
    let after = count_on(&new_addr, id1, &numbers1[0]).await;
    assert_eq!(after.total, expected[0].total + 1);
    assert_eq!(
        count_on(&c.node(leader).addr, id1, &numbers1[0]).await,
        expected[0]
    );

    // Restart (SIGKILL, no shutdown path): same data, still writable.
    server.kill();
    let server = Server::start(&new_addr, &new_dir, &new_log);
    wait_self_leader(&new_addr, &new_log).await;
    assert_eq!(count_on(&new_addr, id1, &numbers1[0]).await, after);
    for ((id, numbers), want) in holders.iter().zip(&expected).skip(1) {
        assert_eq!(&count_on(&new_addr, id, &numbers[0]).await, want);
    }
    register_on(&new_addr, register_req("after-restart", id1, "13900000002")).await;
    assert_eq!(
        count_on(&new_addr, id1, &numbers1[0]).await.total,
        after.total + 1
    );

    // A member that joins empty gets the restored data from raft as a
    // snapshot: the restored log starts after the backup's last index.
    let addr2 = format!("127.0.0.1:{}", free_port());
    let log2 = work.join("joined.log");
    let _joined = Server::spawn(2, &addr2, &work.join("joined"), &log2, "");
    let add = oneid_cli(&["member", "add", "2", &addr2, "--endpoints", &new_addr]);
    assert!(
        add.status.success(),
        "{}\n{}",
        output_text(&add),
        log_tail(&log2)
    );
    assert_eq!(
        count_on(&addr2, id1, &numbers1[0]).await.total,
        after.total + 1
    );
    assert_eq!(digest_on(&addr2).await, digest_on(&new_addr).await);
    drop(server);
}
