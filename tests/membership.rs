//! Online membership change with real processes: a fourth node joins as a
//! learner, catches up, becomes a voter; a node is removed; the last voter
//! can never be removed.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_catches_up_and_votes() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let id = resident_id("11010519491231002");
    register_retrying(&c, 1, register_req("m-1", &id, "13800000001"))
        .await
        .expect("register");

    // A fourth node, started empty and outside the initial cluster.
    let addr4 = format!("127.0.0.1:{}", free_port());
    let dir4 = c.dir.path().join("n4");
    let _n4 = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_oneid"))
            .args(["serve", "--node-id", "4", "--addr", &addr4])
            .arg("--data-dir")
            .arg(&dir4)
            .env("ONEID_PEPPER", PEPPER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node 4"),
    );

    let ep = c.node(1).addr.clone();
    let add = oneid_cli(&["member", "add", "4", &addr4, "--endpoints", &ep]);
    assert!(add.status.success(), "{}", output_text(&add));
    let again = oneid_cli(&["member", "add", "4", &addr4, "--endpoints", &ep]);
    assert!(!again.status.success());
    assert!(
        output_text(&again).contains("already a member"),
        "{}",
        output_text(&again)
    );

    let promote = oneid_cli(&["member", "promote", "4", "--endpoints", &ep]);
    assert!(promote.status.success(), "{}", output_text(&promote));
    let list = output_text(&oneid_cli(&["member", "list", "--endpoints", &ep]));
    assert_eq!(list.lines().count(), 4, "{list}");
    assert!(!list.contains("learner"), "{list}");

    // The new voter serves a linearizable count of data written before it joined.
    let mut r4 = oneid::pb::registry_client::RegistryClient::connect(format!("http://{addr4}"))
        .await
        .unwrap();
    let n = r4
        .count_cards(count_req(&id, "13800000001"))
        .await
        .expect("count on the new voter")
        .into_inner()
        .total;
    assert_eq!(n, 1);

    // Remove a follower; the cluster keeps accepting writes.
    let follower = [1u64, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    let remove = oneid_cli(&[
        "member",
        "remove",
        &follower.to_string(),
        "--endpoints",
        &ep,
    ]);
    assert!(remove.status.success(), "{}", output_text(&remove));
    let other = [1u64, 2, 3].into_iter().find(|n| *n != follower).unwrap();
    register_retrying(&c, other, register_req("m-2", &id, "13800000002"))
        .await
        .expect("write after removal");
    let list = output_text(&oneid_cli(&[
        "member",
        "list",
        "--endpoints",
        &c.node(other).addr,
    ]));
    assert_eq!(list.lines().count(), 3, "{list}");
}

/// Kills the extra node even when an assertion fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
