//! State machine applies skip RocksDB's WAL: a node killed with -9 loses
//! what it applied since its last flush and applies it again from its raft
//! log. Here every node is killed at once, after enough entries that
//! snapshots were built and logs purged behind them, and each must come back
//! holding exactly the state it held before.

mod common;

use common::*;
use oneid::pb;

/// Comfortably past openraft's 1 000 logs kept behind a snapshot, so the
/// nodes purge part of their logs before the crash.
const SINGLE: u32 = 1_250;
const IMPORTED: u32 = 400;

fn card(n: u32) -> pb::RegisterCardRequest {
    // Three cards per identity, all at one carrier-province: under the limit.
    let id = resident_id(&format!("110105199001{:05}", 10_000 + n / 3));
    register_req(&format!("crash-{n}"), &id, &format!("139{n:08}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_killed_at_once_comes_back_with_the_same_state() {
    let mut c = Cluster::start(3, &["--snapshot-logs", "100"]);
    let leader = c.wait_leader(&[1, 2, 3]).await;

    // One entry per registration: the log grows past several snapshots.
    for n in 0..SINGLE {
        register_retrying(&c, leader, card(n))
            .await
            .expect("register");
    }
    // And big entries, the import's shape.
    import_all(&c, leader, (SINGLE..SINGLE + IMPORTED).map(card).collect()).await;

    let target = c.status(leader).await.expect("status").last_applied;
    for id in 1..=3 {
        c.wait_applied(id, target).await;
        let s = c.status(id).await.expect("status");
        assert!(
            s.snapshot_index > 1_000,
            "node {id} built snapshots past the kept logs: {s:?}"
        );
    }
    let before = data_hash(&c.digest(leader).await);
    for id in 1..=3 {
        assert_eq!(data_hash(&c.digest(id).await), before, "node {id} before");
    }

    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.spawn(id);
    }
    let leader = c.wait_leader(&[1, 2, 3]).await;
    // The new leader's first entry is a blank one; nothing else changes state.
    let target = c.status(leader).await.expect("status").last_applied;
    for id in 1..=3 {
        c.wait_applied(id, target).await;
        assert_eq!(
            data_hash(&c.digest(id).await),
            before,
            "node {id} after kill -9 and restart"
        );
    }
    for n in [0, SINGLE - 1, SINGLE + IMPORTED - 1] {
        let id = resident_id(&format!("110105199001{:05}", 10_000 + n / 3));
        let r = c
            .registry(leader)
            .count_cards(count_req(&id, &format!("139{n:08}")))
            .await
            .expect("count after restart")
            .into_inner();
        assert!(r.total >= 1, "card {n} is still registered");
    }
}
