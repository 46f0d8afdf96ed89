//! The HTTP/JSON gateway of real `oneid serve` processes: registrations and
//! counts over JSON agree with gRPC, every error class has its HTTP status
//! and reason, the OpenAPI document lists every path, and a count through a
//! follower's gateway sees a write just made through another node.

mod common;

use std::time::{Duration, Instant};

use common::*;
use oneid::gateway::methods::RPCS;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// POSTs `body` as JSON; retries while the node is not up or has no leader
/// yet (503), as a client would (every write carries a request id).
async fn post(c: &Cluster, id: u64, path: &str, body: &Value) -> (u16, Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = http_post(c, id, path, Some("application/json"), &body.to_string()).await;
        match answer {
            Some((503, _)) | None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some((status, text)) => return json(status, &text),
            None => panic!("node {id} never answered {path}\n{}", c.logs()),
        }
    }
}

/// An answer's status and JSON body; a body that is not JSON fails the test.
fn json(status: u16, text: &str) -> (u16, Value) {
    let body = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("non-JSON answer {status} {text:?}: {e}"));
    (status, body)
}

/// Asserts an error answer: HTTP status, gRPC code name and reason.
#[track_caller]
fn assert_error(answer: &(u16, Value), status: u16, code: &str, reason: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn registration(request_id: &str, number: &str, msisdn: &str, carrier: &str) -> Value {
    json!({
        "requestId": request_id,
        "identity": { "docType": "RESIDENT_ID", "number": number },
        "msisdn": msisdn,
        "carrier": carrier,
        "province": "11",
        "kind": "PERSONAL",
        "channel": "AGENT",
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_gateway_maps_the_grpc_api() {
    let c = Cluster::start_with_http(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let alice = resident_id("11010519491231002");

    // Register through a follower's gateway (it forwards, as over gRPC).
    let (status, first) = post(
        &c,
        follower,
        "/v1/cards",
        &registration("gw-1", &alice.number, "13800000001", "CMCC"),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["activeAtCarrierProvince"], 1, "{first}");
    assert_eq!(first["replayed"], false, "{first}");
    let applied: u64 = first["appliedIndex"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("64-bit index as a decimal string: {first}"));
    assert!(applied > 0);

    // The proto's field names and enum numbers parse too, on the canonical path.
    let snake = json!({
        "request_id": "gw-2",
        "identity": { "doc_type": 1, "number": alice.number },
        "msisdn": "13800000002",
        "carrier": "CUCC",
        "province": "11",
        "kind": 1,
        "channel": 2,
    });
    let (status, second) = post(&c, leader, "/v1/Registry/RegisterCard", &snake).await;
    assert_eq!(status, 200, "{second}");

    // Retrying a request id replays its first outcome.
    let (status, again) = post(
        &c,
        leader,
        "/v1/cards",
        &registration("gw-1", &alice.number, "13800000001", "CMCC"),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["replayed"], true);
    assert_eq!(
        again["activeAtCarrierProvince"],
        first["activeAtCarrierProvince"]
    );

    // A count over JSON, on every node and both paths, equals the gRPC count.
    let grpc = c
        .registry(leader)
        .count_cards(count_req(&alice, "13800000001"))
        .await
        .expect("gRPC count")
        .into_inner();
    assert_eq!(grpc.total, 2);
    let count = json!({
        "identity": { "docType": "RESIDENT_ID", "number": alice.number },
        "verifyMsisdn": "13800000001",
    });
    for id in 1..=3 {
        for path in ["/v1/cards:count", "/v1/Registry/CountCards"] {
            let (status, body) = post(&c, id, path, &count).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["total"], grpc.total, "node {id} {path}: {body}");
            assert_eq!(body["iotTotal"], grpc.iot_total, "{body}");
            let by_carrier: Vec<(String, u64)> = body["byCarrier"]
                .as_array()
                .unwrap_or_else(|| panic!("byCarrier: {body}"))
                .iter()
                .map(|e| {
                    (
                        e["carrier"].as_str().unwrap_or_default().to_string(),
                        e["count"].as_u64().unwrap_or_default(),
                    )
                })
                .collect();
            let want: Vec<(String, u64)> = grpc
                .by_carrier
                .iter()
                .map(|e| (e.carrier.clone(), u64::from(e.count)))
                .collect();
            assert_eq!(by_carrier, want, "node {id} {path}");
        }
    }

    // The other services answer too: policy defaults and statistics.
    let (status, policy) = post(&c, follower, "/v1/policy:get", &json!({})).await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["ownHallThreshold"], 5, "{policy}");
    let (status, stats) = post(&c, follower, "/v1/Regulator/NationalStatistics", &json!({})).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["totalHeld"], "2", "{stats}");

    // Linearizable: a count through a follower's gateway right after a write
    // through another node's gateway includes it, every time.
    let carriers = ["CTCC", "CBN", "CMCC", "CUCC", "CTCC", "CBN"];
    for (round, carrier) in carriers.iter().enumerate() {
        let writer = [leader, follower][round % 2];
        let reader = (1..=3).find(|i| *i != writer).unwrap_or(leader);
        let msisdn = format!("1390000000{round}");
        let (status, body) = post(
            &c,
            writer,
            "/v1/cards",
            &registration(&format!("gw-lin-{round}"), &alice.number, &msisdn, carrier),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = post(&c, reader, "/v1/cards:count", &count).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["total"],
            3 + round as u64,
            "count via node {reader} after a write via node {writer}: {body}"
        );
    }

    // Every error class: the service's own rejections keep code and reason.
    let bad_id = registration("gw-bad-id", "11010519491231002Y", "13800000009", "CMCC");
    assert_error(
        &post(&c, follower, "/v1/cards", &bad_id).await,
        400,
        "INVALID_ARGUMENT",
        "INVALID_ID",
    );
    let bob = resident_id("44030619800101001");
    let taken = registration("gw-dup", &bob.number, "13800000001", "CMCC");
    assert_error(
        &post(&c, leader, "/v1/cards", &taken).await,
        409,
        "ALREADY_EXISTS",
        "NUMBER_IN_USE",
    );
    let wrong_verify = json!({
        "identity": { "docType": "RESIDENT_ID", "number": alice.number },
        "verifyMsisdn": "13700000000",
    });
    assert_error(
        &post(&c, follower, "/v1/cards:count", &wrong_verify).await,
        403,
        "PERMISSION_DENIED",
        "VERIFICATION_FAILED",
    );
    assert_error(
        &post(
            &c,
            follower,
            "/v1/disputes:get",
            &json!({ "disputeId": "999" }),
        )
        .await,
        404,
        "NOT_FOUND",
        "NOT_FOUND",
    );

    // The gateway's own refusals, in the same shape.
    for malformed in [r#"{"requestId": "#, r#"{"requestId":"x","bogus":1}"#, "[1]"] {
        let (status, text) =
            http_post(&c, leader, "/v1/cards", Some("application/json"), malformed)
                .await
                .expect("answer");
        assert_error(
            &json(status, &text),
            400,
            "INVALID_ARGUMENT",
            "INVALID_JSON",
        );
    }
    for unknown in [
        "/v1/Registry/NoSuchMethod",
        "/v1/Cluster/Status",
        "/v1/nothing",
    ] {
        let (status, text) = http_post(&c, leader, unknown, Some("application/json"), "{}")
            .await
            .expect("answer");
        assert_error(&json(status, &text), 404, "NOT_FOUND", "UNKNOWN_METHOD");
    }
    let (status, text) = http_post(&c, leader, "/v1/cards:count", Some("text/plain"), "{}")
        .await
        .expect("answer");
    assert_error(
        &json(status, &text),
        415,
        "INVALID_ARGUMENT",
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let (status, text) = http_get(&c, leader, "/v1/cards:count")
        .await
        .expect("answer");
    assert_error(
        &json(status, &text),
        405,
        "UNIMPLEMENTED",
        "METHOD_NOT_ALLOWED",
    );
    let (status, text) = http_exchange(&c, leader, |addr| {
        // Declared over the limit: refused before the body is read.
        format!(
            "POST /v1/cards HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            oneid::node::MAX_CLIENT_MESSAGE + 1
        )
        .into_bytes()
    })
    .await
    .expect("answer");
    assert_error(
        &json(status, &text),
        413,
        "RESOURCE_EXHAUSTED",
        "BODY_TOO_LARGE",
    );

    // The OpenAPI document: served, valid JSON, every path of every exposed
    // RPC, and the same document `oneid openapi` prints.
    let (status, text) = http_get(&c, follower, "/v1/openapi.json")
        .await
        .expect("answer");
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    assert_eq!(served["openapi"], "3.0.3");
    for rpc in RPCS {
        for path in [rpc.alias.to_string(), rpc.canonical_path()] {
            assert!(
                served["paths"][&path]["post"]["requestBody"].is_object(),
                "{path} is not in openapi.json"
            );
        }
    }
    assert!(served["components"]["schemas"]["oneid.v1.CountCardsResponse"].is_object());
    let printed = oneid_cli(&["openapi"]);
    assert!(printed.status.success(), "{}", output_text(&printed));
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("printed JSON");
    assert_eq!(printed, served);

    // gRPC and JSON wrote the same state on every replica.
    c.assert_replicas_agree(leader, &[1, 2, 3]).await;
}

/// The status and JSON body of an answer that must have come.
fn json_answer(answer: Option<(u16, String)>) -> (u16, Value) {
    let (status, text) = answer.expect("an answer");
    json(status, &text)
}

/// The node's last log index, from its `/metrics` (served outside the
/// bound on client requests, so readable while the bound is taken).
async fn last_log_index(c: &Cluster, id: u64) -> Option<u64> {
    let index = *scrape(c, id).await?.get("oneid_raft_last_log_index")?;
    Some(index as u64)
}

/// Waits until the leader has appended an entry past `index`: the held
/// write is in its log, so it took its permit first.
async fn appended_past(c: &Cluster, leader: u64, index: u64) {
    let deadline = Instant::now() + WAIT;
    while last_log_index(c, leader).await.unwrap_or(0) <= index {
        assert!(
            Instant::now() < deadline,
            "the held write never reached the log\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `limits.max_concurrent_requests` bounds gRPC calls and gateway requests
/// together. With a bound of one, a write held in progress over either
/// (its leader has lost both followers, so it cannot commit) makes the
/// other protocol's next request OVERLOADED at once, and the permit comes
/// back when the held write answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_and_gateway_requests_share_one_bound() {
    let mut c = Cluster::start_with_http(3, &["--max-concurrent-requests", "1"]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let followers: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let number = |i: u32| format!("110105194912310{i:02}");
    let msisdn = |i: u32| format!("139000000{i:02}");
    register_retrying(
        &c,
        leader,
        register_req("shed-0", &resident_id(&number(10)), &msisdn(0)),
    )
    .await
    .expect("a write before the test");
    // A gateway registration, as a future that borrows nothing (one runs
    // while the test stops and starts nodes).
    let addr = c.node(leader).http_addr.clone().expect("HTTP port");
    let card = |i: u32| {
        let holder = resident_id(&number(10 + i)).number;
        let body = registration(&format!("shed-{i}"), &holder, &msisdn(i), "CMCC").to_string();
        let req = post_request(&addr, "/v1/cards", Some("application/json"), &body);
        http_exchange_at(addr.clone(), req)
    };

    // A gRPC write holds the one permit; the gateway is refused.
    for f in &followers {
        c.kill(*f);
    }
    let before = last_log_index(&c, leader).await.expect("metrics");
    let mut grpc = c.registry(leader);
    let held = tokio::spawn(async move {
        grpc.register_card(register_req(
            "shed-1",
            &resident_id(&number(11)),
            &msisdn(1),
        ))
        .await
    });
    appended_past(&c, leader, before).await;
    let refused = json_answer(card(2).await);
    assert_error(&refused, 429, "RESOURCE_EXHAUSTED", "OVERLOADED");
    for f in &followers {
        c.spawn(*f);
    }
    held.await
        .expect("task")
        .expect("the held gRPC write commits once the followers are back");

    // A gateway write holds it; gRPC is refused.
    for f in &followers {
        c.kill(*f);
    }
    let before = last_log_index(&c, leader).await.expect("metrics");
    let held = tokio::spawn(card(3));
    appended_past(&c, leader, before).await;
    let refused = c
        .registry(leader)
        .register_card(register_req(
            "shed-4",
            &resident_id(&number(14)),
            &msisdn(4),
        ))
        .await
        .expect_err("no permit left");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(reason(&refused), "OVERLOADED");
    for f in &followers {
        c.spawn(*f);
    }
    let (status, body) = json_answer(held.await.expect("task"));
    assert_eq!(status, 200, "the held gateway write commits: {body}");

    // Both answered, so the permit is free again.
    let (status, body) = json_answer(card(5).await);
    assert_eq!(status, 200, "{body}");
}
