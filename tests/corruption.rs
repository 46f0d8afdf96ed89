//! A corrupted stored value is reported, never served.

mod common;

use common::*;
use oneid_storage::keys::holder_key;
use oneid_storage::schema::{Tuning, CF_SM_DATA};
use oneid_storage::Db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_holder_record_is_refused_with_data_loss() {
    let (mut c, leader, victim, alice) =
        cluster_with_a_stopped_follower("r-1", "13700000001").await;

    // Flip one byte of alice's summary record on the victim's disk.
    {
        let db = Db::open(&c.node(victim).data_dir.join("db"), Tuning::default()).expect("open");
        let hasher = oneid::idkey::IdHasher::new(PEPPER.as_bytes()).expect("hasher");
        let identity =
            oneid::domain::Identity::parse(oneid::domain::DocType::ResidentId, &alice.number)
                .expect("identity");
        let key = holder_key(&hasher.id_key(&identity));
        let cf = db.cf(CF_SM_DATA).expect("cf");
        let mut value = db
            .raw()
            .get_cf(cf, &key)
            .expect("read")
            .expect("holder record exists");
        let mid = value.len() / 2;
        value[mid] ^= 0x01;
        db.raw().put_cf(cf, &key, &value).expect("write");
        db.sync_wal().expect("sync");
    }

    c.spawn(victim);
    let target = c.status(leader).await.expect("status").last_applied;
    c.wait_applied(victim, target).await;
    let err = c
        .registry(victim)
        .count_cards(count_req(&alice, "13700000001"))
        .await
        .expect_err("a corrupt record must not be served");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert_eq!(reason(&err), "DATA_CORRUPTION");

    // The healthy nodes still answer correctly.
    let r = c
        .registry(leader)
        .count_cards(count_req(&alice, "13700000001"))
        .await
        .expect("count on a healthy node")
        .into_inner();
    assert_eq!(r.total, 1);
}
