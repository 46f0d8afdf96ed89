//! Abuse limits on a real node: the per-caller query rate (RESOURCE_EXHAUSTED,
//! reason RATE_LIMITED, with RetryInfo; served again after the delay) shared
//! by every query RPC and by opening a dispute, and the configured import
//! batch bound.

mod common;

use std::time::Duration;

use common::*;
use oneid::pb;
use oneid::pb::disputes_client::DisputesClient;
use oneid::pb::linkage_client::LinkageClient;
use tonic::Code;
use tonic_types::StatusExt;

/// Queries before the first refusal are bounded by the burst plus what the
/// rate adds while they run; a loop this long must meet a refusal.
const MAX_ATTEMPTS: usize = 50;

#[tokio::test]
async fn a_burst_of_counts_is_rate_limited_until_the_retry_delay_passes() {
    // 0.2/s: a token every 5 s, so the burst is spent long before one comes
    // back, however slow the machine.
    let c = Cluster::start_with_http(
        1,
        &[
            "--queries-per-second",
            "0.2",
            "--query-burst",
            "3",
            "--max-import-batch",
            "5",
            // The test runs on the node's host, exempt by default.
            "--unlimited-callers",
            "",
        ],
    );
    c.wait_leader(&[1]).await;
    let id = resident_id("11010519491231002");
    register_retrying(&c, 1, register_req("abuse-1", &id, "13800138000"))
        .await
        .expect("register");

    let mut registry = c.registry(1);
    let mut served = 0;
    let refusal = loop {
        match registry.count_cards(count_req(&id, "13800138000")).await {
            Ok(r) => {
                assert_eq!(r.into_inner().total, 1);
                served += 1;
                assert!(served < MAX_ATTEMPTS, "never rate limited");
            }
            Err(s) => break s,
        }
    };
    assert!(served >= 3, "the burst of 3 was not served: {served}");
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert_eq!(reason(&refusal), "RATE_LIMITED");
    let delay = refusal
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo with a delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(5),
        "{delay:?}"
    );

    // The other queries draw on the same allowance.
    let mut linkage = LinkageClient::new(c.endpoint(1));
    let s = linkage
        .count_linked_accounts(pb::CountLinkedAccountsRequest {
            msisdn: "13800138000".into(),
            id_last6: "31002X".into(),
        })
        .await
        .expect_err("2.0 count while limited");
    assert_eq!(reason(&s), "RATE_LIMITED", "{s:?}");
    let s = registry
        .request_count_notification(pb::CountNotificationRequest {
            request_id: "abuse-sms-1".into(),
            identity: Some(id.clone()),
            verify_msisdn: "13800138000".into(),
        })
        .await
        .expect_err("count by SMS while limited");
    assert_eq!(reason(&s), "RATE_LIMITED", "{s:?}");
    // Opening a dispute says whether a number is held under an identity.
    let s = DisputesClient::new(c.endpoint(1))
        .open_dispute(pb::OpenDisputeRequest {
            request_id: "abuse-dispute-1".into(),
            identity: Some(id.clone()),
            msisdn: "13800138000".into(),
            contact_msisdn: String::new(),
        })
        .await
        .expect_err("dispute while limited");
    assert_eq!(reason(&s), "RATE_LIMITED", "{s:?}");
    // The HTTP gateway keys on the same peer address: 429.
    let body = serde_json::json!({
        "identity": { "docType": "RESIDENT_ID", "number": id.number },
        "verifyMsisdn": "13800138000",
    });
    let (status, text) = http_post(
        &c,
        1,
        "/v1/cards:count",
        Some("application/json"),
        &body.to_string(),
    )
    .await
    .expect("HTTP answer");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("RATE_LIMITED"), "{text}");
    // Writes are not queries: a registration still goes through.
    register_retrying(&c, 1, register_req("abuse-2", &id, "13800138001"))
        .await
        .expect("register while queries are limited");

    // After the delay the server named, the caller is served again; each
    // refusal in between names a fresh delay, followed the same way.
    let mut wait = delay;
    let mut tries = 0;
    let total = loop {
        tokio::time::sleep(wait).await;
        match registry.count_cards(count_req(&id, "13800138000")).await {
            Ok(r) => break r.into_inner().total,
            Err(s) => {
                assert_eq!(reason(&s), "RATE_LIMITED", "{s:?}");
                wait = s
                    .get_error_details()
                    .retry_info()
                    .and_then(|r| r.retry_delay)
                    .expect("RetryInfo");
                tries += 1;
                // The two refused queries above spent nothing, so at most
                // one more wait can be needed; bound it generously.
                assert!(tries < 5, "still limited after {tries} waits");
            }
        }
    };
    assert_eq!(total, 2);

    // The configured import batch bound is a clear INVALID_ARGUMENT.
    let cards = (0..6)
        .map(|i| register_req(&format!("abuse-imp-{i}"), &id, &format!("1390000000{i}")))
        .collect();
    let s = registry
        .import_cards(pb::ImportCardsRequest { cards })
        .await
        .expect_err("6 cards over a batch limit of 5");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(reason(&s), "INVALID_ARGUMENT");
    assert!(s.message().contains("at most 5"), "{}", s.message());

    // So is an oversized page token.
    let s = linkage
        .list_reverify(pb::ListReverifyRequest {
            platform: "wechat".into(),
            limit: 10,
            page_token: "0".repeat(600),
        })
        .await
        .expect_err("600-byte page token");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(reason(&s), "INVALID_ARGUMENT");
}

/// The server ends a call at the client's grpc-timeout, not its own, longer
/// bound: a leader whose followers are frozen cannot commit a write, and
/// with a 60 s raft timeout only the client's 1 s deadline stops it.
#[tokio::test]
async fn the_server_honours_the_client_deadline() {
    let c = Cluster::start(3, &["--request-timeout-ms", "60000"]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let id = resident_id("11010519491231002");
    register_retrying(&c, leader, register_req("deadline-1", &id, "13800138000"))
        .await
        .expect("register");
    // Stopped, not killed: a refused connection fails the barrier at once,
    // a frozen peer leaves it waiting.
    for other in (1..=3).filter(|n| *n != leader) {
        c.freeze(other);
    }
    let mut req = tonic::Request::new(register_req("deadline-2", &id, "13800138001"));
    // Only the grpc-timeout header: the tonic client does not enforce it
    // itself, so the answer comes from the server.
    req.set_timeout(Duration::from_secs(1));
    let s = c
        .registry(leader)
        .register_card(req)
        .await
        .expect_err("no quorum to commit the write");
    assert!(
        matches!(s.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{s:?}"
    );
    // tonic's server-side timeout says so (a client-side one would not).
    assert!(s.message().contains("Timeout expired"), "{s:?}");
}
