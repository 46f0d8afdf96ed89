//! A node never opens a data dir written by a newer build: it refuses to
//! start, says why, and leaves the data as it found it.

mod common;

use std::time::Duration;

use common::*;
use oneid_storage::format::{current_record, record_of, STORE_FORMAT};
use oneid_storage::keys::SM_FORMAT;
use oneid_storage::rocksdb::{Options, DB};
use oneid_storage::schema::{ALL_CFS, CF_SM_META};

/// Writes `value` as the stored format of a stopped node's data dir,
/// straight through RocksDB, as another build would.
fn set_stored_format(c: &Cluster, id: u64, value: &[u8]) {
    let db = DB::open_cf(&Options::default(), c.node(id).data_dir.join("db"), ALL_CFS)
        .expect("open the stopped node's db");
    let meta = db.cf_handle(CF_SM_META).expect("sm_meta");
    db.put_cf(meta, SM_FORMAT, value).expect("write");
    db.flush_wal(true).expect("sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_data_dir_of_a_newer_format_and_keeps_it_intact() {
    let (mut c, leader, victim, alice) =
        cluster_with_a_stopped_follower("f-1", "13700000001").await;

    let newer = record_of(STORE_FORMAT + 1).expect("encode");
    set_stored_format(&c, victim, &newer);
    c.spawn(victim);
    let status = c
        .exit_status_within(victim, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the node kept running\n{}", c.logs()));
    assert!(!status.success(), "exit {status:?}");
    let log = std::fs::read_to_string(&c.node(victim).log).expect("log");
    let said = format!("stored format {}", STORE_FORMAT + 1);
    assert!(
        log.contains(&said) && log.contains("newer build"),
        "the refusal names the format: {}",
        c.logs()
    );

    // The others went on; the refused node, once given a build that reads
    // its format (here: the marker this build writes), rejoins with
    // everything it had and catches up.
    register_retrying(&c, leader, register_req("f-2", &alice, "13700000002"))
        .await
        .expect("register while the node is down");
    set_stored_format(&c, victim, &current_record().expect("encode"));
    c.spawn(victim);
    let target = c.status(leader).await.expect("status").last_applied;
    c.wait_applied(victim, target).await;
    c.assert_replicas_agree(leader, &[1, 2, 3]).await;
    let r = c
        .registry(victim)
        .count_cards(count_req(&alice, "13700000001"))
        .await
        .expect("count on the node that came back")
        .into_inner();
    assert_eq!(r.total, 2);
}
