//! A count skips the unapplied log entries that cannot touch what it reads
//! (README → Design → Identity reads skip writes to other identities), but
//! never one that can. Here import batches of other identities keep every
//! node's apply busy while cards are registered one by one on the leader;
//! each is counted at once on a follower (whose apply lags the most) and
//! on the leader, and must be there. A footprint that missed the
//! registration's identity would let the follower's count skip it. A
//! linked-account count reads a number, then its holder: it must see a
//! number registered just before, and a lockout of its holder.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use oneid::pb::linkage_client::LinkageClient;
use tokio::task::JoinHandle;

use common::*;
use oneid::pb;

const IMPORT_BATCHES: u32 = 30;
const BATCH: u32 = 2_000;
const ROUNDS: u32 = 60;

/// The `n`-th identity in region `region`: valid birth dates from the
/// 10th to the 28th of each month of 1990, a thousand per day.
fn person(region: &str, n: u32) -> pb::Identity {
    let month = n / 19_000 + 1;
    let day = 10 + (n / 1_000) % 19;
    resident_id(&format!("{region}1990{month:02}{day:02}{:03}", n % 1_000))
}

fn imported(n: u32) -> pb::RegisterCardRequest {
    // Two cards per identity: under every limit.
    let id = person("330105", n / 2);
    register_req(&format!("bulk-{n}"), &id, &format!("135{n:08}"))
}

/// Import batches of other identities through the leader while a test
/// reads: the task returns how many batches went in.
struct Importing {
    done: Arc<AtomicBool>,
    task: JoinHandle<u32>,
}

impl Importing {
    async fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        let batches = self.task.await.expect("importer");
        assert!(batches > 0, "the import ran beside the counts");
    }
}

/// A 3-node cluster importing: it, its leader and a follower.
async fn cluster_importing() -> (Arc<Cluster>, u64, u64, Importing) {
    let c = Arc::new(Cluster::start(3, &[]));
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let done = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (c, done) = (c.clone(), done.clone());
        async move {
            for b in 0..IMPORT_BATCHES {
                if done.load(Ordering::Relaxed) {
                    return b;
                }
                import_all(
                    &c,
                    leader,
                    (b * BATCH..(b + 1) * BATCH).map(imported).collect(),
                )
                .await;
            }
            IMPORT_BATCHES
        }
    });
    (c, leader, follower, Importing { done, task })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_right_after_a_registration_sees_it_while_an_import_runs() {
    let (c, leader, follower, importing) = cluster_importing().await;
    for k in 0..ROUNDS {
        let id = person("220105", k);
        let msisdn = format!("137{k:08}");
        register_retrying(&c, leader, register_req(&format!("seen-{k}"), &id, &msisdn))
            .await
            .expect("register");
        for node in [follower, leader] {
            let r = c
                .registry(node)
                .count_cards(count_req(&id, &msisdn))
                .await
                .unwrap_or_else(|s| panic!("count {k} on node {node}: {s:?}"))
                .into_inner();
            assert_eq!(
                r.total, 1,
                "count {k} on node {node} right after its registration"
            );
        }
    }
    importing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_account_count_sees_its_number_and_its_holders_lockout_while_an_import_runs() {
    let (c, leader, follower, importing) = cluster_importing().await;

    for k in 0..ROUNDS / 2 {
        let id = person("230105", k);
        let msisdn = format!("139{k:08}");
        let count = pb::CountLinkedAccountsRequest {
            msisdn: msisdn.clone(),
            id_last6: id.number[id.number.len() - 6..].to_string(),
        };
        register_retrying(&c, leader, register_req(&format!("held-{k}"), &id, &msisdn))
            .await
            .expect("register");
        for node in [follower, leader] {
            let r = LinkageClient::new(c.endpoint(node))
                .count_linked_accounts(count.clone())
                .await
                .unwrap_or_else(|s| panic!("linked count {k} on node {node}: {s:?}"))
                .into_inner();
            assert_eq!(r.total, 0, "round {k} on node {node}");
        }
        // Three failed verifications on the leader lock the holder out;
        // the number's count must then be refused everywhere.
        let mut last = None;
        for _ in 0..3 {
            last = c
                .registry(leader)
                .count_cards(count_req(&id, "13000000000"))
                .await
                .err();
        }
        let last = last.expect("a wrong number fails");
        assert_eq!(reason(&last), "LOCKED_OUT", "round {k}: {last:?}");
        for node in [follower, leader] {
            let s = LinkageClient::new(c.endpoint(node))
                .count_linked_accounts(count.clone())
                .await
                .expect_err("the holder is locked out");
            assert_eq!(reason(&s), "LOCKED_OUT", "round {k} on node {node}: {s:?}");
        }
    }
    importing.stop().await;
}
