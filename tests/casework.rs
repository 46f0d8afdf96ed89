//! A card's life after registration, end to end over a real 3-node cluster:
//! carrier card lists, disputes (strip), high-risk flag with the leader's
//! deadline sweep and re-verification, restrictions, linked accounts and the
//! platform re-verification queue — plus bad input for each new field.

mod common;

use std::time::{Duration, Instant};

use common::*;
use oneid::pb;
use oneid::pb::disputes_client::DisputesClient;
use oneid::pb::linkage_client::LinkageClient;
use oneid::pb::notifications_client::NotificationsClient;
use oneid::pb::regulator_client::RegulatorClient;
use tonic::Code;

fn link_req(rid: &str, msisdn: &str, platform: &str, account: &str) -> pb::LinkAccountRequest {
    pb::LinkAccountRequest {
        request_id: rid.into(),
        msisdn: msisdn.into(),
        platform: platform.into(),
        account_id: account.into(),
    }
}

fn status_of(r: &pb::CardStatusResponse) -> pb::CardStatus {
    pb::CardStatus::try_from(r.state.as_ref().map(|s| s.status).unwrap_or(0))
        .unwrap_or(pb::CardStatus::Unspecified)
}

async fn carrier_cards(
    c: &Cluster,
    node: u64,
    id: &pb::Identity,
    carrier: &str,
) -> Vec<pb::CarrierCard> {
    c.registry(node)
        .list_carrier_cards(pb::ListCarrierCardsRequest {
            identity: Some(id.clone()),
            carrier: carrier.into(),
        })
        .await
        .expect("list carrier cards")
        .into_inner()
        .cards
}

fn expect_reason<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, why: &str) {
    let s = r.expect_err(why);
    assert_eq!(s.code(), code, "{why}: {s:?}");
    assert!(!reason(&s).is_empty(), "{why}: no reason in {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disputes_high_risk_restrictions_and_links() {
    let c = Cluster::start(3, &[]);
    let leader = c.wait_leader(&[1, 2, 3]).await;
    let follower = [1u64, 2, 3].into_iter().find(|n| *n != leader).unwrap();
    let a = resident_id("11010519491231002");
    let b = resident_id("44030619800101123");
    for (rid, m) in [("c-1", "13800000001"), ("c-2", "13800000002")] {
        register_retrying(&c, leader, register_req(rid, &a, m))
            .await
            .expect("register");
    }
    let mut other = register_req("c-3", &a, "13900000003");
    other.carrier = "CUCC".into();
    register_retrying(&c, leader, other)
        .await
        .expect("register CUCC");

    // A carrier sees only its own cards, masked; any node answers.
    let cmcc = carrier_cards(&c, follower, &a, "CMCC").await;
    assert_eq!(cmcc.len(), 2);
    assert!(cmcc.iter().all(|x| x.masked_msisdn.contains("****")));
    assert!(cmcc.iter().all(|x| !x.masked_msisdn.starts_with("139")));
    assert_eq!(carrier_cards(&c, follower, &a, "CUCC").await.len(), 1);
    assert_eq!(carrier_cards(&c, follower, &b, "CMCC").await.len(), 0);

    // --- Disputes: open, refuse a second one, strip. ---
    let mut disputes = DisputesClient::new(c.endpoint(follower));
    let open = |rid: &str, id: &pb::Identity, m: &str| pb::OpenDisputeRequest {
        request_id: rid.into(),
        identity: Some(id.clone()),
        msisdn: m.into(),
        contact_msisdn: "13800000001".into(),
    };
    let d = disputes
        .open_dispute(open("d-1", &a, "13800000002"))
        .await
        .expect("open dispute")
        .into_inner()
        .dispute_id;
    assert!(d > 0);
    expect_reason(
        disputes.open_dispute(open("d-2", &a, "13800000002")).await,
        Code::AlreadyExists,
        "second open dispute",
    );
    expect_reason(
        disputes.open_dispute(open("d-3", &b, "13800000002")).await,
        Code::NotFound,
        "dispute on someone else's card",
    );
    let resolve =
        |rid: &str, carrier: &str, outcome: pb::DisputeOutcome| pb::ResolveDisputeRequest {
            request_id: rid.into(),
            dispute_id: d,
            carrier: carrier.into(),
            outcome: outcome as i32,
            operator: "clerk-7".into(),
        };
    expect_reason(
        disputes
            .resolve_dispute(resolve("r-0", "CUCC", pb::DisputeOutcome::DisputeStripped))
            .await,
        Code::PermissionDenied,
        "another carrier resolves",
    );
    let stripped = disputes
        .resolve_dispute(resolve("r-1", "CMCC", pb::DisputeOutcome::DisputeStripped))
        .await
        .expect("strip")
        .into_inner();
    assert_eq!(status_of(&stripped), pb::CardStatus::CardStripped);
    let again = disputes
        .resolve_dispute(resolve("r-1", "CMCC", pb::DisputeOutcome::DisputeStripped))
        .await
        .expect("retry")
        .into_inner();
    assert!(again.replayed);
    expect_reason(
        disputes
            .resolve_dispute(resolve("r-2", "CMCC", pb::DisputeOutcome::DisputeCancelled))
            .await,
        Code::FailedPrecondition,
        "resolving twice",
    );
    let shown = disputes
        .get_dispute(pb::GetDisputeRequest { dispute_id: d })
        .await
        .expect("get dispute")
        .into_inner();
    assert!(!shown.open);
    assert_eq!(shown.outcome, pb::DisputeOutcome::DisputeStripped as i32);
    assert_eq!(shown.resolved_by, "clerk-7");
    let cli = oneid_cli(&[
        "dispute",
        "show",
        &d.to_string(),
        "--endpoints",
        &c.node(leader).addr,
    ]);
    assert!(cli.status.success(), "{}", output_text(&cli));
    assert!(
        output_text(&cli).contains("stripped by clerk-7"),
        "{}",
        output_text(&cli)
    );

    // The stripped card no longer counts, and its number is free again.
    let n = c
        .registry(follower)
        .count_cards(count_req(&a, "13800000001"))
        .await
        .expect("count")
        .into_inner()
        .total;
    assert_eq!(n, 2);
    register_retrying(&c, follower, register_req("c-4", &b, "13800000002"))
        .await
        .expect("stripped number re-registered by its real owner");

    // --- Linked accounts (一证通查 2.0). ---
    let mut links = LinkageClient::new(c.endpoint(follower));
    for (rid, p, acct) in [
        ("l-1", "wechat", "wx-1"),
        ("l-2", "alipay", "ali-1"),
        ("l-3", "wechat", "wx-2"),
    ] {
        links
            .link_account(link_req(rid, "13800000001", p, acct))
            .await
            .expect("link");
    }
    let a_last6 = a.number[a.number.len() - 6..].to_string();
    let counted = links
        .count_linked_accounts(pb::CountLinkedAccountsRequest {
            msisdn: "13800000001".into(),
            id_last6: a_last6.clone(),
        })
        .await
        .expect("count links")
        .into_inner();
    assert_eq!(counted.total, 3);
    assert_eq!(counted.by_platform.len(), 2);
    expect_reason(
        links
            .count_linked_accounts(pb::CountLinkedAccountsRequest {
                msisdn: "13800000001".into(),
                id_last6: "000000".into(),
            })
            .await,
        Code::PermissionDenied,
        "wrong last 6",
    );
    links
        .unlink_account(link_req("l-4", "13800000001", "wechat", "wx-2"))
        .await
        .expect("unlink");
    expect_reason(
        links
            .link_account(link_req("l-5", "13800000002", "we chat", "x"))
            .await,
        Code::InvalidArgument,
        "bad platform",
    );
    expect_reason(
        links
            .link_account(link_req("l-6", "13700000009", "wechat", "x"))
            .await,
        Code::NotFound,
        "link to an unregistered number",
    );

    // --- High risk: flag with a 1 s window; the leader's sweep suspends it. ---
    let mut regulator = RegulatorClient::new(c.endpoint(follower));
    let flagged = regulator
        .flag_high_risk(pb::FlagHighRiskRequest {
            request_id: "h-1".into(),
            msisdn: "13800000001".into(),
            reverify_within_seconds: 1,
        })
        .await
        .expect("flag")
        .into_inner();
    assert_eq!(status_of(&flagged), pb::CardStatus::CardPendingReverify);
    // A card pending re-verification proves nothing in a count query.
    expect_reason(
        c.registry(follower)
            .count_cards(count_req(&a, "13800000001"))
            .await,
        Code::PermissionDenied,
        "verify with a pending card",
    );
    let queue = links
        .list_reverify(pb::ListReverifyRequest {
            platform: "wechat".into(),
            limit: 0,
            page_token: String::new(),
        })
        .await
        .expect("list reverify")
        .into_inner();
    assert_eq!(queue.items.len(), 1, "{queue:?}");
    assert_eq!(queue.items[0].account_id, "wx-1");
    assert_eq!(queue.items[0].cause, "pending_reverify");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cards = carrier_cards(&c, follower, &a, "CMCC").await;
        let state = cards
            .iter()
            .find(|x| x.masked_msisdn == "138****0001")
            .and_then(|x| x.state.clone())
            .expect("card listed");
        if state.status == pb::CardStatus::CardSuspended as i32 {
            assert_eq!(state.suspend_reason, "high_risk_unverified");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not suspended after its deadline: {state:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    expect_reason(
        c.registry(follower)
            .report_reverification(pb::ReportReverificationRequest {
                request_id: "v-0".into(),
                msisdn: "13800000001".into(),
                carrier: "CUCC".into(),
            })
            .await,
        Code::PermissionDenied,
        "another carrier re-verifies",
    );
    let restored = c
        .registry(follower)
        .report_reverification(pb::ReportReverificationRequest {
            request_id: "v-1".into(),
            msisdn: "13800000001".into(),
            carrier: "CMCC".into(),
        })
        .await
        .expect("reverified")
        .into_inner();
    assert_eq!(status_of(&restored), pb::CardStatus::CardActive);
    links
        .ack_reverify(link_req("a-1", "13800000001", "wechat", "wx-1"))
        .await
        .expect("ack");
    expect_reason(
        links
            .ack_reverify(link_req("a-2", "13800000001", "wechat", "wx-1"))
            .await,
        Code::NotFound,
        "ack twice",
    );

    // --- Restrictions (限制入网). ---
    regulator
        .restrict(pb::RestrictRequest {
            request_id: "x-1".into(),
            identity: Some(a.clone()),
            reason: "card trading".into(),
            duration_hours: 0,
        })
        .await
        .expect("restrict");
    let refused = register_retrying(&c, follower, register_req("c-5", &a, "13800000005")).await;
    let s = refused.expect_err("restricted identity registers");
    assert_eq!(reason(&s), "RESTRICTED", "{s:?}");
    let shown = regulator
        .get_restriction(pb::GetRestrictionRequest {
            identity: Some(a.clone()),
        })
        .await
        .expect("get restriction")
        .into_inner();
    assert!(shown.restricted && shown.reason == "card trading");
    regulator
        .unrestrict(pb::UnrestrictRequest {
            request_id: "x-2".into(),
            identity: Some(a.clone()),
        })
        .await
        .expect("unrestrict");
    register_retrying(&c, follower, register_req("c-6", &a, "13800000005"))
        .await
        .expect("registers once lifted");

    // --- Bad input gets INVALID_ARGUMENT with a reason, and changes nothing. ---
    expect_reason(
        disputes
            .resolve_dispute(resolve("r-9", "CMCC", pb::DisputeOutcome::Unspecified))
            .await,
        Code::InvalidArgument,
        "no outcome",
    );
    expect_reason(
        regulator
            .restrict(pb::RestrictRequest {
                request_id: "x-9".into(),
                identity: Some(b.clone()),
                reason: " ".into(),
                duration_hours: 1,
            })
            .await,
        Code::InvalidArgument,
        "empty reason",
    );
    expect_reason(
        links
            .count_linked_accounts(pb::CountLinkedAccountsRequest {
                msisdn: "13800000001".into(),
                id_last6: "12".into(),
            })
            .await,
        Code::InvalidArgument,
        "short last 6",
    );
    expect_reason(
        links
            .list_reverify(pb::ListReverifyRequest {
                platform: "wechat".into(),
                limit: 5000,
                page_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "page too big",
    );
    expect_reason(
        regulator
            .flag_high_risk(pb::FlagHighRiskRequest {
                request_id: String::new(),
                msisdn: "13800000001".into(),
                reverify_within_seconds: 0,
            })
            .await,
        Code::InvalidArgument,
        "no request id",
    );
    every_field_is_checked(&c, follower, &a).await;
    let bad_cli = oneid_cli(&[
        "risk",
        "flag",
        "--msisdn",
        "12",
        "--endpoints",
        &c.node(leader).addr,
    ]);
    assert!(!bad_cli.status.success());
    assert!(
        output_text(&bad_cli).contains("INVALID_MSISDN"),
        "{}",
        output_text(&bad_cli)
    );

    // --- IoT cards: a responsible unit is required; counted apart. ---
    let mut iot = register_req("c-9", &b, "1440000000001");
    iot.kind = pb::CardKind::Iot as i32;
    let s = c
        .registry(follower)
        .register_card(iot.clone())
        .await
        .expect_err("IoT card without a unit");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    iot.responsible_unit = Some(pb::Identity {
        doc_type: pb::DocType::UnifiedSocialCreditCode as i32,
        number: oneid::cli::sample::SampleGen::new(7)
            .unit()
            .number()
            .to_string(),
    });
    register_retrying(&c, follower, iot)
        .await
        .expect("IoT card");
    let counted = c
        .registry(leader)
        .count_cards(count_req(&b, "13800000002"))
        .await
        .expect("count b")
        .into_inner();
    assert_eq!((counted.total, counted.iot_total), (1, 1), "{counted:?}");

    // --- Lockout: 3 failed verifications lock the identity out. ---
    let victim = resident_id("31010419751003456");
    register_retrying(&c, leader, register_req("c-7", &victim, "13600000007"))
        .await
        .expect("register victim");
    for i in 0..2 {
        let s = c
            .registry(1 + (i % 3))
            .count_cards(count_req(&victim, "13600000008"))
            .await
            .expect_err("wrong verify number");
        assert_eq!(reason(&s), "VERIFICATION_FAILED", "{s:?}");
    }
    let s = c
        .registry(3)
        .count_cards(count_req(&victim, "13600000008"))
        .await
        .expect_err("third failure");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert_eq!(reason(&s), "LOCKED_OUT");
    let s = c
        .registry(follower)
        .count_cards(count_req(&victim, "13600000007"))
        .await
        .expect_err("locked out even with the right number");
    assert_eq!(reason(&s), "LOCKED_OUT", "{s:?}");

    // --- Policy: a national total limit binds even the own hall. ---
    regulator
        .set_policy(pb::SetPolicyRequest {
            request_id: "p-1".into(),
            policy: Some(pb::Policy {
                own_hall_threshold: 5,
                reverify_window_seconds: 86_400,
                max_cards_per_carrier: 0,
                max_cards_total: 3,
                max_failed_verifications: 3,
                lockout_seconds: 86_400,
            }),
        })
        .await
        .expect("set policy");
    let mut strict = register_req("c-8", &a, "13800000008");
    strict.channel = pb::Channel::OwnHall as i32;
    strict.strict_verification = true;
    let s = register_retrying(&c, follower, strict)
        .await
        .expect_err("over the national total");
    assert_eq!(reason(&s), "LIMIT_EXCEEDED", "{s:?}");
    let got = regulator
        .get_policy(pb::GetPolicyRequest {})
        .await
        .expect("get policy")
        .into_inner();
    assert_eq!(got.max_cards_total, 3);
    expect_reason(
        regulator
            .set_policy(pb::SetPolicyRequest {
                request_id: "p-2".into(),
                policy: Some(pb::Policy::default()),
            })
            .await,
        Code::InvalidArgument,
        "a zero threshold",
    );

    // --- National statistics agree with what happened above. ---
    let stats = regulator
        .national_statistics(pb::StatisticsRequest {})
        .await
        .expect("statistics")
        .into_inner();
    // a: 0001, 0003 (CUCC), 0005; b: 0002 and an IoT card; victim: 0007.
    assert_eq!(stats.total_held, 6, "{stats:?}");
    assert_eq!(stats.high_risk_flagged, 1);
    assert_eq!(stats.high_risk_suspended, 1);
    assert_eq!(stats.reverified, 1);
    assert_eq!(stats.disputes_opened, 1);
    assert_eq!(
        stats.disputes_resolved,
        vec![pb::OutcomeCount {
            outcome: pb::DisputeOutcome::DisputeStripped as i32,
            disputes: 1
        }]
    );
    assert_eq!(stats.lockouts, 1);
    let cli = oneid_cli(&["stats", "--endpoints", &c.node(leader).addr]);
    assert!(
        output_text(&cli).contains("6 card(s) held"),
        "{}",
        output_text(&cli)
    );

    // --- The outbox: count results and dispute outcomes, acked once. ---
    let queued = c
        .registry(follower)
        .request_count_notification(pb::CountNotificationRequest {
            request_id: "n-1".into(),
            identity: Some(a.clone()),
            verify_msisdn: "13800000001".into(),
        })
        .await
        .expect("count by SMS")
        .into_inner();
    // A retry replays the first answer, even once the number given would
    // no longer pass the possession check (here: one the identity never
    // held), and counts no failed verification: as many retries as lock an
    // identity out (3) leave it free to count.
    for _ in 0..3 {
        let retried = c
            .registry(leader)
            .request_count_notification(pb::CountNotificationRequest {
                request_id: "n-1".into(),
                identity: Some(a.clone()),
                verify_msisdn: "13800000099".into(),
            })
            .await
            .expect("count by SMS, retried")
            .into_inner();
        assert!(retried.replayed);
        assert_eq!(retried.notification_id, queued.notification_id);
    }
    c.registry(leader)
        .count_cards(count_req(&a, "13800000001"))
        .await
        .expect("no failed verification was counted");
    let mut gateway = NotificationsClient::new(c.endpoint(leader));
    let outbox = gateway
        .list_outbox(pb::ListOutboxRequest {
            after_id: 0,
            limit: 0,
        })
        .await
        .expect("list outbox")
        .into_inner()
        .notifications;
    let outcome = outbox
        .iter()
        .find(|n| n.kind == "dispute_outcome")
        .expect("dispute outcome queued");
    assert_eq!(outcome.to, "13800000001");
    assert!(outcome.text.contains("stripped"), "{outcome:?}");
    let count = outbox
        .iter()
        .find(|n| n.notification_id == queued.notification_id)
        .expect("count result queued");
    assert!(count.text.contains("3 card(s)"), "{count:?}");
    let ack = |rid: &str, id: u64| pb::AckNotificationRequest {
        request_id: rid.into(),
        notification_id: id,
    };
    gateway
        .ack_notification(ack("k-1", count.notification_id))
        .await
        .expect("ack");
    assert!(
        gateway
            .ack_notification(ack("k-1", count.notification_id))
            .await
            .expect("ack retry")
            .into_inner()
            .replayed
    );
    expect_reason(
        gateway
            .ack_notification(ack("k-2", count.notification_id))
            .await,
        Code::NotFound,
        "a second acknowledgement",
    );
    expect_reason(
        c.registry(follower)
            .request_count_notification(pb::CountNotificationRequest {
                request_id: "n-2".into(),
                identity: Some(b.clone()),
                verify_msisdn: "13800000001".into(),
            })
            .await,
        Code::PermissionDenied,
        "count by SMS with someone else's number",
    );

    // --- The audit trail: every write, accepted or refused, in log order. ---
    let mut trail = Vec::new();
    let mut token = String::new();
    loop {
        let page = regulator
            .list_audit(pb::ListAuditRequest {
                limit: 7,
                page_token: token.clone(),
                queries: false,
            })
            .await
            .expect("audit page")
            .into_inner();
        assert!(page.entries.len() <= 7);
        trail.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(trail
        .windows(2)
        .all(|w| (w[0].log_index, w[0].position) < (w[1].log_index, w[1].position)));
    let find = |action: &str, outcome: &str| {
        trail
            .iter()
            .find(|e| e.action == action && e.outcome == outcome)
            .unwrap_or_else(|| panic!("no {action}/{outcome} in the trail"))
    };
    assert_eq!(find("resolve_dispute", "ok").actor, "CMCC/clerk-7");
    assert_eq!(find("open_dispute", "DISPUTE_OPEN").subject, "138****0002");
    assert_eq!(find("restrict", "ok").actor, "regulator");
    assert_eq!(find("register", "RESTRICTED").request_id, "c-5");
    for e in &trail {
        for secret in [&a.number, &b.number] {
            assert!(
                !format!("{e:?}").contains(secret.as_str()),
                "plaintext ID in {e:?}"
            );
        }
    }
    // Queries are audited by the node that answered them.
    let served = RegulatorClient::new(c.endpoint(3))
        .list_audit(pb::ListAuditRequest {
            limit: 1000,
            page_token: String::new(),
            queries: true,
        })
        .await
        .expect("query trail")
        .into_inner()
        .entries;
    assert!(
        served
            .iter()
            .any(|e| e.action == "count_cards" && e.outcome == "LOCKED_OUT"),
        "{served:?}"
    );
    for e in &served {
        assert!(
            !format!("{e:?}").contains(victim.number.as_str()),
            "plaintext ID in {e:?}"
        );
    }
    let cli = oneid_cli(&["audit", "--limit", "3", "--endpoints", &c.node(leader).addr]);
    assert!(
        output_text(&cli).contains("next page: --page-token"),
        "{}",
        output_text(&cli)
    );

    // Every replica applied the same commands to the same state.
    c.assert_replicas_agree(leader, &[1, 2, 3]).await;
}

/// One bad value per field of every casework RPC: each is INVALID_ARGUMENT
/// (or INVALID_ID / INVALID_MSISDN / INVALID_CARRIER, all that code) with a
/// reason, before anything is proposed.
async fn every_field_is_checked(c: &Cluster, node: u64, good: &pb::Identity) {
    let bad_id = pb::Identity {
        doc_type: pb::DocType::ResidentId as i32,
        number: "110105194912310021".into(),
    };
    let ch = c.endpoint(node);
    let mut reg = c.registry(node);
    let mut dis = DisputesClient::new(ch.clone());
    let mut rgl = RegulatorClient::new(ch.clone());
    let mut lnk = LinkageClient::new(ch.clone());
    let mut ntf = NotificationsClient::new(ch);
    let inv = Code::InvalidArgument;
    macro_rules! bad {
        ($call:expr, $why:expr) => {
            expect_reason($call.await, inv, $why)
        };
    }
    bad!(
        reg.list_carrier_cards(pb::ListCarrierCardsRequest {
            identity: None,
            carrier: "CMCC".into()
        }),
        "cards: no identity"
    );
    bad!(
        reg.list_carrier_cards(pb::ListCarrierCardsRequest {
            identity: Some(good.clone()),
            carrier: "C M".into()
        }),
        "cards: carrier"
    );
    bad!(
        reg.report_reverification(pb::ReportReverificationRequest {
            request_id: "b-1".into(),
            msisdn: "13800000001".into(),
            carrier: "".into()
        }),
        "reverify: carrier"
    );
    bad!(
        reg.report_reverification(pb::ReportReverificationRequest {
            request_id: "b-2".into(),
            msisdn: "1".into(),
            carrier: "CMCC".into()
        }),
        "reverify: msisdn"
    );
    bad!(
        reg.request_count_notification(pb::CountNotificationRequest {
            request_id: "b-3".into(),
            identity: Some(bad_id.clone()),
            verify_msisdn: "13800000001".into()
        }),
        "sms: identity"
    );
    bad!(
        reg.request_count_notification(pb::CountNotificationRequest {
            request_id: "b-4".into(),
            identity: Some(good.clone()),
            verify_msisdn: "x".into()
        }),
        "sms: verify"
    );
    // Malformed before the possession check, which would count a number
    // the identity does not hold toward its lockout.
    bad!(
        reg.request_count_notification(pb::CountNotificationRequest {
            request_id: String::new(),
            identity: Some(good.clone()),
            verify_msisdn: "13999999999".into()
        }),
        "sms: request id"
    );
    let open =
        |rid: &str, id: Option<pb::Identity>, m: &str, contact: &str| pb::OpenDisputeRequest {
            request_id: rid.into(),
            identity: id,
            msisdn: m.into(),
            contact_msisdn: contact.into(),
        };
    bad!(
        dis.open_dispute(open("b-5", None, "13800000001", "")),
        "open: identity"
    );
    bad!(
        dis.open_dispute(open("b-6", Some(good.clone()), "123", "")),
        "open: msisdn"
    );
    bad!(
        dis.open_dispute(open("b-7", Some(good.clone()), "13800000001", "99")),
        "open: contact"
    );
    bad!(
        dis.open_dispute(open("", Some(good.clone()), "13800000001", "")),
        "open: request id"
    );
    let resolve = |id: u64, carrier: &str, op: &str| pb::ResolveDisputeRequest {
        request_id: "b-8".into(),
        dispute_id: id,
        carrier: carrier.into(),
        outcome: pb::DisputeOutcome::DisputeConfirmed as i32,
        operator: op.into(),
    };
    bad!(
        dis.resolve_dispute(resolve(0, "CMCC", "op")),
        "resolve: dispute id"
    );
    bad!(
        dis.resolve_dispute(resolve(1, "!", "op")),
        "resolve: carrier"
    );
    bad!(
        dis.resolve_dispute(resolve(1, "CMCC", "")),
        "resolve: operator"
    );
    bad!(
        dis.resolve_dispute(resolve(1, "CMCC", &"o".repeat(65))),
        "resolve: long operator"
    );
    bad!(
        rgl.flag_high_risk(pb::FlagHighRiskRequest {
            request_id: "b-9".into(),
            msisdn: "abc".into(),
            reverify_within_seconds: 0
        }),
        "flag: msisdn"
    );
    bad!(
        rgl.restrict(pb::RestrictRequest {
            request_id: "b-10".into(),
            identity: None,
            reason: "r".into(),
            duration_hours: 0
        }),
        "restrict: identity"
    );
    bad!(
        rgl.restrict(pb::RestrictRequest {
            request_id: "b-11".into(),
            identity: Some(good.clone()),
            reason: "r".repeat(201),
            duration_hours: 0
        }),
        "restrict: long reason"
    );
    bad!(
        rgl.unrestrict(pb::UnrestrictRequest {
            request_id: "b-12".into(),
            identity: Some(bad_id.clone())
        }),
        "unrestrict: identity"
    );
    bad!(
        rgl.get_restriction(pb::GetRestrictionRequest {
            identity: Some(bad_id)
        }),
        "get restriction: identity"
    );
    bad!(
        rgl.set_policy(pb::SetPolicyRequest {
            request_id: "b-13".into(),
            policy: None
        }),
        "policy: missing"
    );
    bad!(
        rgl.set_policy(pb::SetPolicyRequest {
            request_id: "b-13b".into(),
            policy: Some(pb::Policy {
                own_hall_threshold: 5,
                reverify_window_seconds: 86_400,
                max_cards_per_carrier: 0,
                max_cards_total: 0,
                max_failed_verifications: 3,
                // Saturated to u64::MAX ms once: a lockout that never ends.
                lockout_seconds: u64::MAX / 100,
            })
        }),
        "policy: lockout beyond ten years"
    );
    bad!(
        rgl.list_audit(pb::ListAuditRequest {
            limit: 5000,
            page_token: String::new(),
            queries: false
        }),
        "audit: limit"
    );
    bad!(
        rgl.list_audit(pb::ListAuditRequest {
            limit: 0,
            page_token: "zz".into(),
            queries: false
        }),
        "audit: page token"
    );
    let link = |m: &str, p: &str, a: &str| link_req("b-14", m, p, a);
    bad!(
        lnk.link_account(link("1380000000", "wechat", "x")),
        "link: msisdn"
    );
    bad!(
        lnk.link_account(link("13800000001", "wechat", "a b")),
        "link: account"
    );
    bad!(
        lnk.unlink_account(link("13800000001", "", "x")),
        "unlink: platform"
    );
    bad!(
        lnk.ack_reverify(link("13800000001", "wechat", &"a".repeat(65))),
        "ack: account"
    );
    bad!(
        lnk.count_linked_accounts(pb::CountLinkedAccountsRequest {
            msisdn: "0".into(),
            id_last6: "123456".into()
        }),
        "count links: msisdn"
    );
    bad!(
        lnk.list_reverify(pb::ListReverifyRequest {
            platform: "we/chat".into(),
            limit: 0,
            page_token: String::new()
        }),
        "reverify list: platform"
    );
    bad!(
        lnk.list_reverify(pb::ListReverifyRequest {
            platform: "wechat".into(),
            limit: 0,
            page_token: "zz".into()
        }),
        "reverify list: page token"
    );
    bad!(
        ntf.list_outbox(pb::ListOutboxRequest {
            after_id: 0,
            limit: 5000
        }),
        "outbox: limit"
    );
    bad!(
        ntf.ack_notification(pb::AckNotificationRequest {
            request_id: "b-15".into(),
            notification_id: 0
        }),
        "ack notification: id"
    );
}
