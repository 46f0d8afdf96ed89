//! Bad input gets INVALID_ARGUMENT with a reason, and nothing is stored.

mod common;

use common::*;
use oneid::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_change_nothing() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let good = resident_id("11010519491231002");
    register_retrying(&c, leader, register_req("ok-1", &good, "13900000001"))
        .await
        .expect("a good registration");
    let before = c.digest(leader).await;

    let mut bad_check = good.clone();
    bad_check.number = "110105194912310021".into();
    let unknown_doc = pb::Identity {
        doc_type: 42,
        number: "X".into(),
    };
    let cases: Vec<(&str, pb::RegisterCardRequest, &str)> = vec![
        (
            "bad check digit",
            register_req("b-1", &bad_check, "13900000002"),
            "INVALID_ID",
        ),
        (
            "unknown doc type",
            register_req("b-2", &unknown_doc, "13900000002"),
            "INVALID_ID",
        ),
        (
            "empty msisdn",
            register_req("b-3", &good, ""),
            "INVALID_MSISDN",
        ),
        (
            "overlong msisdn",
            register_req("b-4", &good, &"1".repeat(40)),
            "INVALID_MSISDN",
        ),
        (
            "letters in msisdn",
            register_req("b-5", &good, "1390000000a"),
            "INVALID_MSISDN",
        ),
        (
            "empty request id",
            register_req("", &good, "13900000002"),
            "INVALID_ARGUMENT",
        ),
        (
            "oversized request id",
            register_req(&"r".repeat(100_000), &good, "13900000002"),
            "INVALID_ARGUMENT",
        ),
        (
            "bad province",
            pb::RegisterCardRequest {
                province: "99".into(),
                ..register_req("b-6", &good, "13900000002")
            },
            "INVALID_PROVINCE",
        ),
        (
            "bad carrier",
            pb::RegisterCardRequest {
                carrier: "c m".into(),
                ..register_req("b-7", &good, "13900000002")
            },
            "INVALID_CARRIER",
        ),
        (
            "no channel",
            pb::RegisterCardRequest {
                channel: 0,
                ..register_req("b-8", &good, "13900000002")
            },
            "INVALID_ARGUMENT",
        ),
        (
            "no identity",
            pb::RegisterCardRequest {
                identity: None,
                ..register_req("b-9", &good, "13900000002")
            },
            "INVALID_ARGUMENT",
        ),
    ];
    for (what, req, want) in cases {
        let err = c.registry(leader).register_card(req).await.expect_err(what);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{what}: {err:?}");
        assert_eq!(reason(&err), want, "{what}: {err:?}");
        assert!(!err.message().is_empty(), "{what} has a message");
    }

    // A request over the message size limit is refused by the transport.
    let huge = register_req("b-10", &good, &"1".repeat(2 << 20));
    let err = c
        .registry(leader)
        .register_card(huge)
        .await
        .expect_err("huge");
    assert_ne!(err.code(), tonic::Code::Ok);

    // Counts validate too.
    let err = c
        .registry(leader)
        .count_cards(count_req(&bad_check, "13900000001"))
        .await
        .expect_err("bad id count");
    assert_eq!(reason(&err), "INVALID_ID");

    assert_eq!(c.digest(leader).await, before, "nothing was stored");
    let r = c
        .registry(leader)
        .count_cards(count_req(&good, "13900000001"))
        .await
        .expect("count")
        .into_inner();
    assert_eq!(r.total, 1);
}
