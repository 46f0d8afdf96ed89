//! mTLS and roles on a real 3-node cluster whose certificates come from
//! `oneid certs`: peers replicate over mTLS, only certified clients get in,
//! only node certificates reach the raft service, and every RPC answers
//! every role as the README's roles table says.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use oneid::cli::multiplex::Multiplexer;
use oneid::pb;
use oneid::pb::registry_client::RegistryClient;
use prost::bytes::{Buf, BufMut};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Code, Status};

const ROLES: [&str; 6] = [
    "carrier:CMCC",
    "carrier:CUCC",
    "query",
    "platform:wechat",
    "regulator",
    "admin",
];

/// A running TLS cluster with certificates for every role in [`ROLES`].
async fn tls_cluster() -> Cluster {
    let mut c = Cluster::unstarted(3, &[], false);
    // Node 4 has a certificate but is not a member.
    c.tls = Some(Tls::issue(c.dir.path(), 4, &ROLES));
    for id in 1..=3 {
        c.spawn(id);
    }
    // A leader agreed by all three means raft itself runs over mTLS.
    c.wait_leader(&[1, 2, 3]).await;
    c
}

fn tls_dir(c: &Cluster) -> std::path::PathBuf {
    c.tls.as_ref().expect("a TLS cluster").dir.clone()
}

/// The certificate file stem of a role (`carrier:CMCC` -> `client-carrier-CMCC`).
fn stem(role: &str) -> String {
    format!("client-{}", role.replace(':', "-"))
}

fn channel_as(c: &Cluster, node: u64, stem: &str) -> Channel {
    tls_channel(&c.node(node).addr, client_tls(&tls_dir(c), stem))
}

/// Retries while the cluster has no leader; any other answer is returned.
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        match call().await {
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

fn cmcc_card(request_id: &str, msisdn: &str, carrier: &str) -> pb::RegisterCardRequest {
    pb::RegisterCardRequest {
        carrier: carrier.into(),
        ..register_req(request_id, &resident_id("11010519491231002"), msisdn)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_clients_get_in_and_everyone_else_is_refused() {
    let c = tls_cluster().await;
    let addr = c.node(1).addr.clone();

    // A carrier registers its own card; the query service counts it.
    let mut carrier = RegistryClient::new(channel_as(&c, 1, &stem("carrier:CMCC")));
    let req = cmcc_card("tls-1", "13800000001", "CMCC");
    retrying(|| {
        let mut carrier = carrier.clone();
        let req = req.clone();
        async move { carrier.register_card(req).await }
    })
    .await
    .expect("a carrier registers its own card");
    let identity = resident_id("11010519491231002");
    let mut query = RegistryClient::new(channel_as(&c, 2, &stem("query")));
    let count = retrying(|| {
        let mut query = query.clone();
        let req = count_req(&identity, "13800000001");
        async move { query.count_cards(req).await }
    })
    .await
    .expect("the query service counts")
    .into_inner();
    assert_eq!(count.total, 1);

    // The replicated audit trail names the certified caller.
    let regulator =
        pb::regulator_client::RegulatorClient::new(channel_as(&c, 3, &stem("regulator")));
    let trail = retrying(|| {
        let mut regulator = regulator.clone();
        async move { regulator.list_audit(pb::ListAuditRequest::default()).await }
    })
    .await
    .expect("the regulator reads the audit trail")
    .into_inner();
    let register = trail
        .entries
        .iter()
        .find(|e| e.action == "register")
        .expect("a register record");
    assert_eq!(
        register.actor, "carrier:CMCC [CN=oneid client carrier:CMCC]",
        "{trail:?}"
    );

    // ... but may not register for another carrier.
    let err = carrier
        .register_card(cmcc_card("tls-2", "13800000002", "CUCC"))
        .await
        .expect_err("a carrier registered for another carrier");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(reason(&err), "PERMISSION_DENIED");

    // No client certificate: the handshake fails.
    let ca = std::fs::read(tls_dir(&c).join("ca.pem")).expect("ca");
    let anonymous = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    let err = RegistryClient::new(tls_channel(&addr, anonymous))
        .count_cards(count_req(&identity, "13800000001"))
        .await
        .expect_err("a client without a certificate got in");
    assert_ne!(err.code(), Code::Ok);

    // Plaintext: refused too.
    let err = RegistryClient::new(channel(&addr))
        .count_cards(count_req(&identity, "13800000001"))
        .await
        .expect_err("a plaintext client got in");
    assert_ne!(err.code(), Code::Ok);

    // A certificate from another CA, even one that trusts our nodes.
    let stranger_dir = c.dir.path().join("stranger");
    let stranger = Tls::issue(&stranger_dir, 1, &["query"]);
    let foreign = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .identity(tonic::transport::Identity::from_pem(
            std::fs::read(stranger.dir.join("client-query.pem")).expect("cert"),
            std::fs::read(stranger.dir.join("client-query.key")).expect("key"),
        ));
    let err = RegistryClient::new(tls_channel(&addr, foreign))
        .count_cards(count_req(&identity, "13800000001"))
        .await
        .expect_err("a certificate from another CA got in");
    assert_ne!(err.code(), Code::Ok);
    assert!(
        query
            .count_cards(count_req(&identity, "13800000001"))
            .await
            .is_ok(),
        "the cluster stopped answering certified clients"
    );

    // A client certificate, even the admin's, cannot speak raft.
    for path in [
        "/oneid.raft.v1.RaftService/AppendEntries",
        "/oneid.raft.v1.RaftService/Forward",
    ] {
        let err = raw_call(channel_as(&c, 1, "client-admin"), path, Vec::new())
            .await
            .expect_err("a client reached the raft service");
        assert_eq!(err.code(), Code::PermissionDenied, "{path}: {err:?}");
        assert_eq!(reason(&err), "WRONG_ROLE", "{path}");
        // Nor can a node certificate of a node outside the membership
        // (a removed node keeps its certificate).
        let err = raw_call(channel_as(&c, 1, "node-4"), path, Vec::new())
            .await
            .expect_err("a non-member node reached the raft service");
        assert_eq!(err.code(), Code::PermissionDenied, "{path}: {err:?}");
        assert!(err.message().contains("not a member"), "{path}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_needs_credentials_and_a_node_needs_tls_or_insecure() {
    let c = tls_cluster().await;
    let dir = tls_dir(&c);
    let file = |n: &str| dir.join(n).display().to_string();
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_oneid"))
            .args(args)
            .env_remove("ONEID_INSECURE")
            .env_remove("ONEID_CA")
            .env_remove("ONEID_CERT")
            .env_remove("ONEID_KEY")
            .output()
            .expect("run oneid")
    };
    let addr = c.node(1).addr.clone();
    let ok = cli(&[
        "status",
        "--endpoints",
        &addr,
        "--ca",
        &file("ca.pem"),
        "--cert",
        &file("client-regulator.pem"),
        "--key",
        &file("client-regulator.key"),
    ]);
    assert!(ok.status.success(), "{}", output_text(&ok));
    // An import of rows this carrier may not register stops at once with
    // the reason: retrying cannot change the answer.
    let creds = |role: &str| {
        let stem = stem(role);
        [
            "--ca".to_string(),
            file("ca.pem"),
            "--cert".to_string(),
            file(&format!("{stem}.pem")),
            "--key".to_string(),
            file(&format!("{stem}.key")),
        ]
    };
    let import = |rows: &[&str]| {
        let csv = c.dir.path().join(format!("import-{}.csv", rows.len()));
        let mut body =
            String::from("doc_type,number,msisdn,carrier,province,kind,channel,strict\n");
        let number = resident_id("11010519491231002").number;
        for row in rows {
            body.push_str(&format!(
                "RESIDENT_ID,{number},{row},11,personal,agent,false\n"
            ));
        }
        std::fs::write(&csv, body).expect("write import file");
        let path = csv.display().to_string();
        let mut args = vec![
            "import",
            &path,
            "--endpoints",
            &addr,
            "--batch",
            "1",
            "--retry-for-s",
            "1",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(creds("carrier:CMCC"));
        cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let refused = import(&["13800000011,CMCC", "13800000012,CUCC"]);
    let text = output_text(&refused);
    assert!(!refused.status.success(), "{text}");
    assert!(
        text.contains("refused a batch") && text.contains("PERMISSION_DENIED"),
        "{text}"
    );
    assert!(!text.contains("retrying"), "{text}");
    // Its own rows go in, several batches over one connection.
    let own = import(&["13800000021,CMCC", "13800000022,CMCC", "13800000023,CMCC"]);
    let text = output_text(&own);
    assert!(own.status.success(), "{text}");
    assert!(text.contains("3 cards registered"), "{text}");

    let bare = cli(&["status", "--endpoints", &addr]);
    assert!(!bare.status.success());
    assert!(
        output_text(&bare).contains("no TLS credentials"),
        "{}",
        output_text(&bare)
    );

    let data = c.dir.path().join("plain");
    let port = free_port().to_string();
    let serve = cli(&[
        "serve",
        "--node-id",
        "9",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ]);
    assert!(
        !serve.status.success(),
        "a node started with neither TLS nor --insecure"
    );
    assert!(
        output_text(&serve).contains("--insecure"),
        "{}",
        output_text(&serve)
    );
}

/// Revokes the certificate at `cert` with `oneid revoke`; what it printed.
fn revoke(dir: &std::path::Path, cert: &std::path::Path) -> String {
    let out = oneid_cli(&[
        "revoke",
        "--dir",
        &dir.display().to_string(),
        &cert.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    output_text(&out)
}

/// A running TLS cluster (with HTTP ports) whose CA key is kept, every node
/// checking the CA's revocation list, node 1 serving the HTTPS gateway at
/// `gateway` if given; and the certificate directory.
async fn revocable_cluster(gateway: Option<String>) -> (Cluster, std::path::PathBuf) {
    let mut c = Cluster::unstarted(3, &[], true);
    let tls = Tls::issue_revocable(c.dir.path(), 3, &ROLES);
    let dir = tls.dir.clone();
    c.extra.extend([
        "--crl".to_string(),
        dir.join("crl.pem").display().to_string(),
    ]);
    c.tls = Some(tls);
    c.nodes[0].gateway_addr = gateway;
    for id in 1..=3 {
        c.spawn(id);
    }
    c.wait_leader(&[1, 2, 3]).await;
    (c, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_on_its_open_connections_too() {
    let (mut c, dir) = revocable_cluster(None).await;
    let crl = dir.join("crl.pem");

    // CMCC is connected, over a unary channel and a batch stream, before
    // its certificate is revoked.
    let mut cmcc = RegistryClient::new(channel_as(&c, 1, &stem("carrier:CMCC")));
    retrying(|| {
        let mut cmcc = cmcc.clone();
        async move {
            cmcc.register_card(cmcc_card("rv-1", "13800000001", "CMCC"))
                .await
        }
    })
    .await
    .expect("CMCC registers before revocation");
    const REGISTER: &str = "/oneid.v1.Registry/RegisterCard";
    let cmcc_batch = Multiplexer::new(channel_as(&c, 2, &stem("carrier:CMCC")), WAIT);
    cmcc_batch
        .call::<_, pb::RegisterCardResponse>(REGISTER, &cmcc_card("rv-2", "13800000002", "CMCC"))
        .await
        .expect("CMCC registers in a batch before revocation");
    let mut cucc = RegistryClient::new(channel_as(&c, 2, &stem("carrier:CUCC")));

    let path = |p: &std::path::Path| p.display().to_string();
    let printed = revoke(&dir, &dir.join(format!("{}.pem", stem("carrier:CMCC"))));
    assert!(printed.contains("revoked serial"), "{printed}");

    // Every node re-reads the list within a second or so; the open
    // connection is refused from then on.
    let deadline = Instant::now() + WAIT;
    let err = loop {
        let answer = cmcc
            .register_card(cmcc_card("rv-3", "13800000003", "CMCC"))
            .await;
        match answer {
            Err(e) if e.code() == Code::Unauthenticated => break e,
            other if Instant::now() > deadline => panic!("still let in: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(err.message().contains("revoked"), "{err:?}");
    assert_eq!(reason(&err), "UNAUTHENTICATED");
    // Give the other nodes the same second to notice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let err = cmcc_batch
        .call::<_, pb::RegisterCardResponse>(REGISTER, &cmcc_card("rv-4", "13800000004", "CMCC"))
        .await
        .expect_err("a revoked certificate's open batch stream still registers");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("revoked"), "{err:?}");
    for node in 1..=3 {
        let err = RegistryClient::new(channel_as(&c, node, &stem("carrier:CMCC")))
            .register_card(cmcc_card("rv-5", "13800000005", "CMCC"))
            .await
            .expect_err("a revoked certificate got in on a new connection");
        assert_eq!(err.code(), Code::Unauthenticated, "node {node}: {err:?}");
    }
    // Everyone else, raft included, goes on.
    cucc.register_card(cmcc_card("rv-6", "13800000006", "CUCC"))
        .await
        .expect("CUCC registers after CMCC was revoked");

    // A revoked node certificate: its peers stop dialling it (their own
    // connections to it are dropped and verified again), so it hears of no
    // new entry, though its own server would still take them.
    revoke(&dir, &dir.join("node-3.pem"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let written = retrying(|| {
        let mut cucc = RegistryClient::new(channel_as(&c, 1, &stem("carrier:CUCC")));
        async move {
            cucc.register_card(cmcc_card("rv-9", "13800000009", "CUCC"))
                .await
        }
    })
    .await
    .expect("the two other nodes go on without node 3")
    .into_inner()
    .applied_index;
    c.wait_applied(1, written).await;
    c.wait_applied(2, written).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let behind = c.status(3).await.expect("node 3 answers its status");
    assert!(
        behind.last_applied < written,
        "node 3 applied {} after its certificate was revoked (entry {written})",
        behind.last_applied
    );

    // A list that does not verify is not taken: the one in force stays,
    // and the node says why.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .expect("garbage list");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = cmcc
        .register_card(cmcc_card("rv-7", "13800000007", "CMCC"))
        .await
        .expect_err("a bad list let a revoked certificate back in");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    cucc.register_card(cmcc_card("rv-8", "13800000008", "CUCC"))
        .await
        .expect("CUCC registers while the list on disk is bad");
    let log = std::fs::read_to_string(&c.node(1).log).expect("node log");
    assert!(log.contains("revocation lists not reloaded"), "{log}");
    let (_, metrics) = http_get(&c, 1, "/metrics").await.expect("metrics");
    for line in [
        "oneid_tls_revoked_certificates 2",
        "oneid_tls_revocation_list_stale 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }

    // ... and a node does not start on it.
    c.kill(3);
    let mut out = std::process::Command::new(env!("CARGO_BIN_EXE_oneid"))
        .args(["serve", "--node-id", "3", "--addr", &c.node(3).addr])
        .arg("--data-dir")
        .arg(&c.node(3).data_dir)
        .args(["--ca", &path(&dir.join("ca.pem"))])
        .args(["--cert", &path(&dir.join("node-3.pem"))])
        .args(["--key", &path(&dir.join("node-3.key"))])
        .args(["--crl", &path(&crl)])
        .env("ONEID_PEPPER", PEPPER)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run oneid serve");
    let deadline = Instant::now() + WAIT;
    while out.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = out.kill();
            panic!("a node started on a bad list");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = out.wait_with_output().expect("output");
    assert!(!out.status.success(), "a node started on a bad list");
    assert!(
        output_text(&out).contains("tls.crl"),
        "{}",
        output_text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_gateway_admits_each_request_by_its_certificate() {
    let gateway = format!("127.0.0.1:{}", free_port());
    let (c, dir) = revocable_cluster(Some(gateway.clone())).await;

    let number = resident_id("11010519491231002").number;
    let register = |request_id: &str, msisdn: &str, carrier: &str| {
        serde_json::json!({
            "requestId": request_id,
            "identity": { "docType": "RESIDENT_ID", "number": number },
            "msisdn": msisdn,
            "carrier": carrier,
            "province": "11",
            "kind": "PERSONAL",
            "channel": "AGENT",
        })
        .to_string()
    };
    let count = serde_json::json!({
        "identity": { "docType": "RESIDENT_ID", "number": number },
        "verifyMsisdn": "13800000001",
    })
    .to_string();
    let post = |stem: Option<String>, path: &'static str, body: String| {
        let (dir, gateway) = (dir.clone(), gateway.clone());
        async move { https_post(&dir, stem.as_deref(), &gateway, path, &body).await }
    };
    let json = |answer: Option<(u16, String)>| {
        let (status, text) = answer.expect("the gateway answered");
        let body: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("non-JSON answer {status} {text:?}: {e}"));
        (status, body)
    };

    // A carrier registers its own card (retried while there is no leader).
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        let answer = json(
            post(
                Some(stem("carrier:CMCC")),
                "/v1/cards",
                register("gw-1", "13800000001", "CMCC"),
            )
            .await,
        );
        if answer.0 != 503 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200, "{body}");
    // ... the query service counts it; neither may do the other's job, and
    // a carrier may not act for another.
    let (status, body) = json(post(Some(stem("query")), "/v1/cards:count", count.clone()).await);
    assert_eq!(
        (status, &body["total"]),
        (200, &serde_json::json!(1)),
        "{body}"
    );
    let refusals = [
        (
            "query",
            "/v1/cards",
            register("gw-2", "13800000002", "CMCC"),
            "WRONG_ROLE",
        ),
        (
            "carrier:CMCC",
            "/v1/Registry/CountCards",
            count.clone(),
            "WRONG_ROLE",
        ),
        (
            "carrier:CMCC",
            "/v1/cards",
            register("gw-3", "13800000003", "CUCC"),
            "PERMISSION_DENIED",
        ),
    ];
    for (role, path, request, why) in refusals {
        let (status, body) = json(post(Some(stem(role)), path, request).await);
        assert_eq!(
            (status, body["reason"].as_str()),
            (403, Some(why)),
            "{role} {path}: {body}"
        );
    }
    // No certificate: no connection.
    assert_eq!(post(None, "/v1/cards:count", count.clone()).await, None);

    // The replicated audit trail names the certificate's holder.
    let regulator =
        pb::regulator_client::RegulatorClient::new(channel_as(&c, 2, &stem("regulator")));
    let trail = retrying(|| {
        let mut regulator = regulator.clone();
        async move { regulator.list_audit(pb::ListAuditRequest::default()).await }
    })
    .await
    .expect("the regulator reads the audit trail")
    .into_inner();
    assert!(
        trail
            .entries
            .iter()
            .any(|e| e.action == "register"
                && e.actor == "carrier:CMCC [CN=oneid client carrier:CMCC]"),
        "{trail:?}"
    );

    // With TLS on, the plain HTTP port has no gateway.
    let plain = http_post(&c, 1, "/v1/cards:count", Some("application/json"), &count).await;
    assert_eq!(plain.map(|(status, _)| status), Some(404));

    // A revoked certificate is refused by the gateway too.
    revoke(&dir, &dir.join(format!("{}.pem", stem("query"))));
    let deadline = Instant::now() + WAIT;
    let (status, body) = loop {
        let answer = json(post(Some(stem("query")), "/v1/cards:count", count.clone()).await);
        if answer.0 == 401 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (status, &body["reason"]),
        (401, &serde_json::json!("UNAUTHENTICATED")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("revoked")),
        "{body}"
    );
}

/// Who may call what, written out independently of the server's table.
/// Roles are named as in `oneid certs`; "node" is a node certificate.
const MATRIX: &[(&str, &[&str])] = &[
    ("/oneid.v1.Registry/RegisterCard", &["carrier"]),
    ("/oneid.v1.Registry/CancelCard", &["carrier"]),
    ("/oneid.v1.Registry/CountCards", &["query"]),
    ("/oneid.v1.Registry/ImportCards", &["carrier"]),
    ("/oneid.v1.Registry/ListCarrierCards", &["carrier"]),
    ("/oneid.v1.Registry/ReportReverification", &["carrier"]),
    ("/oneid.v1.Registry/ReportRealNameMissing", &["carrier"]),
    ("/oneid.v1.Registry/ReportRealNameCompleted", &["carrier"]),
    ("/oneid.v1.Registry/RequestCountNotification", &["query"]),
    ("/oneid.v1.Notifications/ListOutbox", &["admin"]),
    ("/oneid.v1.Notifications/AckNotification", &["admin"]),
    ("/oneid.v1.Disputes/OpenDispute", &["query"]),
    ("/oneid.v1.Disputes/ResolveDispute", &["carrier"]),
    (
        "/oneid.v1.Disputes/GetDispute",
        &["query", "carrier", "regulator"],
    ),
    ("/oneid.v1.Regulator/FlagHighRisk", &["regulator"]),
    ("/oneid.v1.Regulator/Restrict", &["regulator"]),
    ("/oneid.v1.Regulator/Unrestrict", &["regulator"]),
    ("/oneid.v1.Regulator/GetRestriction", &["regulator"]),
    ("/oneid.v1.Regulator/SetPolicy", &["admin"]),
    ("/oneid.v1.Regulator/GetPolicy", &["admin", "regulator"]),
    ("/oneid.v1.Regulator/SetRules", &["admin"]),
    ("/oneid.v1.Regulator/NationalStatistics", &["regulator"]),
    ("/oneid.v1.Regulator/ListAudit", &["regulator"]),
    ("/oneid.v1.Linkage/LinkAccount", &["platform"]),
    ("/oneid.v1.Linkage/UnlinkAccount", &["platform"]),
    ("/oneid.v1.Linkage/CountLinkedAccounts", &["query"]),
    ("/oneid.v1.Linkage/ListReverify", &["platform"]),
    ("/oneid.v1.Linkage/AckReverify", &["platform"]),
    (
        "/oneid.v1.Cluster/Status",
        &["carrier", "query", "platform", "regulator", "admin", "node"],
    ),
    ("/oneid.v1.Cluster/AddLearner", &["admin"]),
    ("/oneid.v1.Cluster/ChangeVoters", &["admin"]),
    ("/oneid.v1.Cluster/TransferLeader", &["admin"]),
    ("/oneid.v1.Admin/SaveSnapshot", &["admin"]),
    ("/oneid.v1.Admin/StartRekey", &["admin"]),
    ("/oneid.v1.Admin/GetRekeyStatus", &["admin"]),
    ("/oneid.raft.v1.RaftService/AppendEntries", &["node"]),
    ("/oneid.raft.v1.RaftService/Vote", &["node"]),
    ("/oneid.raft.v1.RaftService/InstallSnapshot", &["node"]),
    ("/oneid.raft.v1.RaftService/Forward", &["node"]),
    ("/oneid.raft.v1.RaftService/ReadIndex", &["node"]),
    ("/oneid.raft.v1.RaftService/TimeoutNow", &["node"]),
    ("/oneid.raft.v1.RaftService/Capabilities", &["node"]),
];

/// A request that names the caller's own carrier or platform where the RPC
/// takes one, so an allowed role passes the ownership check too.
fn request_for(path: &str) -> Vec<u8> {
    let carrier = || "CMCC".to_string();
    match path.rsplit('/').next().unwrap_or_default() {
        "RegisterCard" => cmcc_card("m-1", "13800000009", "CMCC").encode_to_vec(),
        "ImportCards" => pb::ImportCardsRequest {
            cards: vec![cmcc_card("m-2", "13800000010", "CMCC")],
        }
        .encode_to_vec(),
        "CancelCard" => pb::CancelCardRequest {
            carrier: carrier(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListCarrierCards" => pb::ListCarrierCardsRequest {
            carrier: carrier(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ReportRealNameMissing" => pb::ReportRealNameMissingRequest {
            carrier: carrier(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ReportReverification" | "ReportRealNameCompleted" => pb::ReportReverificationRequest {
            carrier: carrier(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ResolveDispute" => pb::ResolveDisputeRequest {
            carrier: carrier(),
            ..Default::default()
        }
        .encode_to_vec(),
        "LinkAccount" | "UnlinkAccount" | "AckReverify" => pb::LinkAccountRequest {
            platform: "wechat".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        "ListReverify" => pb::ListReverifyRequest {
            platform: "wechat".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        // TransferLeader with no target would move leadership mid-test.
        "TransferLeader" => pb::TransferLeaderRequest { to: 999 }.encode_to_vec(),
        _ => Vec::new(),
    }
}

/// A refusal by the authorization layer or an ownership check.
fn refused(s: &Status) -> bool {
    matches!(
        reason(s).as_str(),
        "WRONG_ROLE" | "PERMISSION_DENIED" | "UNAUTHENTICATED"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_role_as_the_matrix_says() {
    let c = tls_cluster().await;

    // The matrix covers every client-facing RPC the server has.
    let covered: BTreeSet<String> = MATRIX.iter().map(|(p, _)| p.to_string()).collect();
    for rpc in oneid::gateway::methods::RPCS {
        let path = rpc.grpc_path();
        assert!(covered.contains(&path), "{path} is missing from the matrix");
    }

    let callers: Vec<(&str, String)> = [
        "carrier:CMCC",
        "query",
        "platform:wechat",
        "regulator",
        "admin",
    ]
    .iter()
    .map(|r| (r.split(':').next().unwrap_or(r), stem(r)))
    .chain([("node", "node-1".to_string())])
    .collect();
    let mut wrong = Vec::new();
    for (path, allowed) in MATRIX {
        for (kind, stem) in &callers {
            let answer = raw_call(channel_as(&c, 2, stem), path, request_for(path)).await;
            let was_refused = matches!(&answer, Err(s) if refused(s));
            if was_refused == allowed.contains(kind) {
                wrong.push(format!("{path} as {kind}: {answer:?}"));
            }
            if was_refused {
                let s = answer.as_ref().err().map(|s| s.code());
                assert_eq!(s, Some(Code::PermissionDenied), "{path} as {kind}");
            }
        }
    }
    assert!(wrong.is_empty(), "matrix violations:\n{}", wrong.join("\n"));

    // The same matrix through batch streams: each call in a stream is held
    // to its own method's rule, and what cannot be batched (cluster,
    // admin, raft, health) cannot be reached through one. A node may open
    // no stream at all.
    let batchable: BTreeSet<String> = oneid::gateway::methods::RPCS
        .iter()
        .map(|r| r.grpc_path())
        .collect();
    let mut wrong = Vec::new();
    for (kind, stem) in &callers {
        let batch = Multiplexer::new(channel_as(&c, 2, stem), WAIT);
        for (path, allowed) in MATRIX {
            let answer = batch.call_raw(path, request_for(path).into()).await;
            let was_refused = matches!(&answer, Err(s) if refused(s));
            let as_expected = if *kind == "node" {
                was_refused
            } else if batchable.contains(*path) {
                was_refused != allowed.contains(kind)
            } else {
                matches!(&answer, Err(s) if s.code() == Code::Unimplemented)
            };
            if !as_expected {
                wrong.push(format!("batched {path} as {kind}: {answer:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "matrix violations:\n{}", wrong.join("\n"));

    // A platform may not act for another platform, in a batch or not.
    let other = pb::LinkAccountRequest {
        platform: "alipay".into(),
        ..Default::default()
    };
    let err = raw_call(
        channel_as(&c, 1, &stem("platform:wechat")),
        "/oneid.v1.Linkage/LinkAccount",
        other.encode_to_vec(),
    )
    .await
    .expect_err("a platform linked for another platform");
    assert_eq!(reason(&err), "PERMISSION_DENIED");
    let err = Multiplexer::new(channel_as(&c, 1, &stem("platform:wechat")), WAIT)
        .call_raw(
            "/oneid.v1.Linkage/LinkAccount",
            other.encode_to_vec().into(),
        )
        .await
        .expect_err("a platform linked for another platform in a batch");
    assert_eq!(reason(&err), "PERMISSION_DENIED");
}

/// One unary call of `path` with an already encoded request.
async fn raw_call(ch: Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    grpc.unary(
        tonic::Request::new(body),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// Bytes in, bytes out: lets one helper call any RPC.
#[derive(Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}
