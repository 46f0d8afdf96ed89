//! Metrics, readiness, gRPC health and reflection of real `oneid serve`
//! processes, including a node that loses its quorum.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{
    eventually, eventually_within, http_get, register_req, register_retrying, resident_id, scrape,
    Cluster,
};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

async fn health(c: &Cluster, id: u64, service: &str) -> Option<ServingStatus> {
    let resp = HealthClient::new(c.endpoint(id))
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(resp.into_inner().status).ok()
}

async fn reflected_services(c: &Cluster, id: u64) -> Vec<String> {
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(c.endpoint(id))
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection call")
        .into_inner();
    let resp = stream
        .message()
        .await
        .expect("reflection response")
        .expect("one response");
    match resp.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_health_and_reflection() {
    let mut c = Cluster::start_with_http(3, &[]);
    let all = [1, 2, 3];
    c.wait_leader(&all).await;

    // A write through node 1, so the gRPC and storage metrics have something
    // to show, applied everywhere.
    let who = resident_id("11010519491231002");
    register_retrying(&c, 1, register_req("obs-1", &who, "13800000001"))
        .await
        .expect("register");
    let leader_now = c.wait_leader(&all).await;
    let applied = c
        .status(leader_now)
        .await
        .expect("leader status")
        .last_applied;
    for id in all {
        c.wait_applied(id, applied).await;
    }

    for id in all {
        let body = eventually(&c, &format!("/ready of node {id} is 200"), || async {
            match http_get(&c, id, "/ready").await {
                Some((200, body)) => Ok(body),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(body.contains("\"ready\":true"), "{body}");
        let live = http_get(&c, id, "/live").await;
        assert!(matches!(live, Some((200, _))), "{live:?}");
    }

    // Exactly one node calls itself leader and all agree on who. Polled:
    // an election on a loaded machine may briefly disagree.
    let (leader, scraped) = eventually(&c, "one agreed leader in /metrics", || async {
        let mut scraped = BTreeMap::new();
        for id in all {
            scraped.insert(id, scrape(&c, id).await.ok_or(format!("node {id} scrape"))?);
        }
        let leaders: Vec<u64> = all
            .iter()
            .copied()
            .filter(|id| scraped[id].get("oneid_raft_is_leader") == Some(&1.0))
            .collect();
        let [leader] = leaders[..] else {
            return Err(format!("is_leader=1 on {leaders:?}"));
        };
        for id in all {
            let seen = scraped[&id].get("oneid_raft_leader_id").copied();
            if seen != Some(leader as f64) {
                return Err(format!("node {id} reports leader {seen:?}, not {leader}"));
            }
        }
        Ok((leader, scraped))
    })
    .await;

    for id in all {
        let m = &scraped[&id];
        for name in [
            "oneid_node_id",
            "oneid_raft_term",
            "oneid_raft_last_log_index",
            "oneid_raft_last_applied_index",
            "oneid_raft_committed_index",
            "oneid_raft_snapshot_index",
            "oneid_raft_leader_changes_total",
            "oneid_raft_apply_holds_total",
            "oneid_raft_apply_held_seconds_total",
            "oneid_raft_voters",
            "oneid_ready",
            "process_resident_memory_bytes",
            "oneid_rocksdb_estimate_num_keys{cf=\"sm_data\"}",
            "oneid_rocksdb_total_sst_files_size_bytes{cf=\"raft_log\"}",
            "oneid_rocksdb_cur_size_all_mem_tables_bytes{cf=\"sm_data\"}",
        ] {
            assert!(m.contains_key(name), "node {id} lacks {name}: {m:?}");
        }
        assert_eq!(m["oneid_node_id"], id as f64);
        assert_eq!(m["oneid_raft_voters"], 3.0);
        assert!(m["oneid_raft_term"] >= 1.0);
        assert!(m["oneid_raft_leader_changes_total"] >= 1.0);
        // A few writes never put a follower thousands of commands behind.
        assert_eq!(m["oneid_raft_apply_holds_total"], 0.0, "node {id}");
        assert_eq!(m["oneid_raft_apply_held_seconds_total"], 0.0, "node {id}");
        assert!(m["oneid_raft_last_applied_index"] >= applied as f64);
        assert!(m["oneid_rocksdb_cur_size_all_mem_tables_bytes{cf=\"sm_data\"}"] > 0.0);
        let is_leader = if id == leader { 1.0 } else { 0.0 };
        assert_eq!(m["oneid_raft_is_leader"], is_leader, "node {id}");
        assert_eq!(m["oneid_raft_role{role=\"leader\"}"], is_leader);
        // wait_leader asked every node for its status.
        let status_ok =
            "oneid_grpc_requests_total{code=\"OK\",method=\"/oneid.v1.Cluster/Status\"}";
        assert!(
            m.get(status_ok).is_some_and(|v| *v >= 1.0),
            "node {id}: {m:?}"
        );
        assert!(
            m.contains_key(
                "oneid_grpc_request_duration_seconds_count{method=\"/oneid.v1.Cluster/Status\"}"
            ),
            "node {id}: {m:?}"
        );
    }
    let register_ok =
        "oneid_grpc_requests_total{code=\"OK\",method=\"/oneid.v1.Registry/RegisterCard\"}";
    assert!(
        scraped[&1].get(register_ok).is_some_and(|v| *v >= 1.0),
        "{:?}",
        scraped[&1]
    );

    for id in all {
        for service in ["", "oneid.v1.Registry", "oneid.v1.Cluster"] {
            eventually(&c, &format!("node {id} health '{service}'"), || async {
                match health(&c, id, service).await {
                    Some(ServingStatus::Serving) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
    }

    let services = reflected_services(&c, leader).await;
    for want in [
        "oneid.v1.Registry",
        "oneid.v1.Cluster",
        "grpc.health.v1.Health",
    ] {
        assert!(services.iter().any(|s| s == want), "{services:?}");
    }

    // The leader alone: it keeps calling itself leader, but without a quorum
    // it must stop reporting ready.
    for id in all.into_iter().filter(|id| *id != leader) {
        c.kill(id);
    }
    // A leader is allowed a few election timeouts without a quorum before it
    // gives up readiness; 15 s is far beyond that even on a loaded machine.
    let lone = Duration::from_secs(15);
    let body = eventually_within(&c, "lone node's /ready turns 503", lone, || async {
        match http_get(&c, leader, "/ready").await {
            Some((503, body)) => Ok(body),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(body.contains("\"ready\":false"), "{body}");
    assert!(body.contains("\"reason\""), "{body}");
    eventually(&c, "lone node's health is NOT_SERVING", || async {
        match health(&c, leader, "").await {
            Some(ServingStatus::NotServing) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let live = http_get(&c, leader, "/live").await;
    assert!(matches!(live, Some((200, _))), "{live:?}");
    let m = scrape(&c, leader).await.expect("scrape the lone node");
    assert_eq!(m.get("oneid_ready"), Some(&0.0));
}
