//! Client commands for a card's life after registration: the carrier's card
//! list, disputes, high-risk re-verification, restrictions and linked
//! accounts. Each prints the answer, or the rejection reason with exit code 1.

use clap::{Args, Subcommand, ValueEnum};

use super::client::{connect, explain, fresh_request_id, IdentityArgs, Target};
use crate::pb;
use crate::pb::disputes_client::DisputesClient;
use crate::pb::linkage_client::LinkageClient;
use crate::pb::notifications_client::NotificationsClient;
use crate::pb::registry_client::RegistryClient;
use crate::pb::regulator_client::RegulatorClient;

#[derive(Args, Debug)]
pub struct CardsArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Only this carrier's cards are shown (a carrier sees its own).
    #[arg(long)]
    pub carrier: String,
}

#[derive(Args, Debug)]
pub struct DisputeArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: DisputeCmd,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum OutcomeArg {
    Confirmed,
    Stripped,
    Suspended,
    Cancelled,
}

#[derive(Subcommand, Debug)]
pub enum DisputeCmd {
    /// A person disputes a card registered under their identity.
    Open {
        #[command(flatten)]
        identity: IdentityArgs,
        #[arg(long)]
        msisdn: String,
        /// An active card of the person's, to receive the outcome by SMS.
        #[arg(long, default_value = "")]
        contact: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// The card's carrier resolves a dispute.
    Resolve {
        dispute_id: u64,
        #[arg(long)]
        carrier: String,
        #[arg(long, value_enum)]
        outcome: OutcomeArg,
        /// Staff id recorded with the resolution.
        #[arg(long)]
        operator: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Shows one dispute.
    Show { dispute_id: u64 },
}

#[derive(Args, Debug)]
pub struct RiskArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: RiskCmd,
}

#[derive(Subcommand, Debug)]
pub enum RiskCmd {
    /// Regulator: flag a card high-risk; it must be re-verified in time.
    Flag {
        #[arg(long)]
        msisdn: String,
        /// Seconds allowed for re-verification (default: policy, 24 h).
        #[arg(long, default_value_t = 0)]
        within_secs: u32,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Carrier: the holder passed in-person re-verification.
    Reverified(CardReport),
    /// Carrier: the holder never completed real-name registration; the card
    /// is suspended, and terminated when the window ends without it.
    RealNameMissing {
        #[arg(long)]
        msisdn: String,
        #[arg(long)]
        carrier: String,
        /// Seconds the holder has to complete real-name registration.
        #[arg(long)]
        within_secs: u64,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Carrier: the holder completed real-name registration.
    RealNameCompleted(CardReport),
}

/// A carrier's report about one of its cards.
#[derive(Args, Debug)]
pub struct CardReport {
    #[arg(long)]
    msisdn: String,
    #[arg(long)]
    carrier: String,
    #[arg(long)]
    request_id: Option<String>,
}

impl CardReport {
    fn request(self) -> pb::ReportReverificationRequest {
        pb::ReportReverificationRequest {
            request_id: self.request_id.unwrap_or_else(fresh_request_id),
            msisdn: self.msisdn,
            carrier: self.carrier,
        }
    }
}

#[derive(Args, Debug)]
pub struct RestrictArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: RestrictCmd,
}

#[derive(Subcommand, Debug)]
pub enum RestrictCmd {
    /// Bar an identity from new cards.
    Add {
        #[command(flatten)]
        identity: IdentityArgs,
        #[arg(long)]
        reason: String,
        /// Hours until it lapses (default: until lifted).
        #[arg(long, default_value_t = 0)]
        hours: u32,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Lift a restriction.
    Remove {
        #[command(flatten)]
        identity: IdentityArgs,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Show whether an identity is restricted.
    Show {
        #[command(flatten)]
        identity: IdentityArgs,
    },
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: PolicyCmd,
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Show the policy in force.
    Get,
    /// Replace the policy (every value; unspecified ones take the defaults).
    Set {
        #[arg(long, default_value_t = 5)]
        own_hall_threshold: u32,
        #[arg(long, default_value_t = 86_400)]
        reverify_window_secs: u64,
        /// 0: no national per-carrier limit.
        #[arg(long, default_value_t = 0)]
        max_per_carrier: u32,
        /// 0: no national total limit.
        #[arg(long, default_value_t = 0)]
        max_total: u32,
        #[arg(long, default_value_t = 3)]
        max_failed_verifications: u32,
        #[arg(long, default_value_t = 86_400)]
        lockout_secs: u64,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Move the cluster to a newer revision of the rules (forward only; every
    /// member's build must apply it). `oneid status` shows the revision in
    /// force and the newest each node's build applies.
    Rules {
        /// 2: an MVNO's cards count in all provinces for the own-hall
        /// threshold (1: per province, as first built); 3: carriers may
        /// report cards lacking real-name registration.
        version: u32,
        #[arg(long)]
        request_id: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// From the previous page's output; empty for the start of the trail.
    #[arg(long, default_value = "")]
    pub page_token: String,
    /// The queries this node served, instead of the replicated write trail.
    #[arg(long)]
    pub queries: bool,
}

#[derive(Args, Debug)]
pub struct OutboxArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: OutboxCmd,
}

#[derive(Subcommand, Debug)]
pub enum OutboxCmd {
    /// Person: have the count sent by SMS to the verify phone (like 一证通查).
    Request {
        #[command(flatten)]
        identity: IdentityArgs,
        #[arg(long)]
        verify_msisdn: String,
        #[arg(long)]
        request_id: Option<String>,
    },
    /// SMS gateway: notifications waiting to be sent.
    List {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// SMS gateway: a notification was sent.
    Ack {
        notification_id: u64,
        #[arg(long)]
        request_id: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct LinkArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub cmd: LinkCmd,
}

#[derive(Args, Debug)]
pub struct AccountArgs {
    #[arg(long)]
    pub msisdn: String,
    #[arg(long)]
    pub platform: String,
    #[arg(long)]
    pub account: String,
    #[arg(long)]
    pub request_id: Option<String>,
}

impl AccountArgs {
    fn proto(self) -> pb::LinkAccountRequest {
        pb::LinkAccountRequest {
            request_id: self.request_id.unwrap_or_else(fresh_request_id),
            msisdn: self.msisdn,
            platform: self.platform,
            account_id: self.account,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum LinkCmd {
    /// Platform: link an account to a number.
    Add(AccountArgs),
    /// Platform: unlink an account.
    Remove(AccountArgs),
    /// Person: count accounts linked to a number (proved by ID last 6).
    Count {
        #[arg(long)]
        msisdn: String,
        #[arg(long)]
        id_last6: String,
    },
    /// Platform: accounts to re-verify.
    Pending {
        #[arg(long)]
        platform: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Platform: an account was re-verified.
    Ack(AccountArgs),
}

fn state_text(s: Option<&pb::CardState>) -> String {
    let Some(s) = s else {
        return "unknown".into();
    };
    let name = pb::CardStatus::try_from(s.status)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("CARD_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("status {}", s.status));
    match (s.suspend_reason.as_str(), s.reverify_deadline_ms) {
        ("", 0) => name,
        ("", d) => format!("{name} (re-verify by {d} ms)"),
        (r, _) if s.terminate_at_ms > 0 => {
            format!("{name} ({r}, terminated at {} ms)", s.terminate_at_ms)
        }
        (r, _) => format!("{name} ({r})"),
    }
}

fn print_write(what: &str, index: u64, replayed: bool) {
    println!(
        "{what} at index {index}{}",
        if replayed { " (replayed)" } else { "" }
    );
}

fn print_status(what: &str, r: pb::CardStatusResponse) {
    print_write(
        &format!("{what}: card is {}", state_text(r.state.as_ref())),
        r.applied_index,
        r.replayed,
    );
}

pub async fn cards(a: CardsArgs) -> anyhow::Result<()> {
    let mut client = RegistryClient::new(connect(&a.target).await?);
    let r = client
        .list_carrier_cards(pb::ListCarrierCardsRequest {
            identity: Some(a.identity.proto()),
            carrier: a.carrier,
        })
        .await
        .map_err(explain)?
        .into_inner();
    println!("{} card(s)", r.cards.len());
    for c in r.cards {
        let dispute = match c.open_dispute_id {
            0 => String::new(),
            d => format!("  dispute {d} open"),
        };
        println!(
            "{}  province {}  {}  registered {} ms{dispute}",
            c.masked_msisdn,
            c.province,
            state_text(c.state.as_ref()),
            c.registered_at_ms
        );
    }
    Ok(())
}

pub async fn dispute(a: DisputeArgs) -> anyhow::Result<()> {
    let mut client = DisputesClient::new(connect(&a.target).await?);
    match a.cmd {
        DisputeCmd::Open {
            identity,
            msisdn,
            contact,
            request_id,
        } => {
            let r = client
                .open_dispute(pb::OpenDisputeRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    identity: Some(identity.proto()),
                    msisdn,
                    contact_msisdn: contact,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_write(
                &format!("dispute {} opened", r.dispute_id),
                r.applied_index,
                r.replayed,
            );
        }
        DisputeCmd::Resolve {
            dispute_id,
            carrier,
            outcome,
            operator,
            request_id,
        } => {
            let outcome = match outcome {
                OutcomeArg::Confirmed => pb::DisputeOutcome::DisputeConfirmed,
                OutcomeArg::Stripped => pb::DisputeOutcome::DisputeStripped,
                OutcomeArg::Suspended => pb::DisputeOutcome::DisputeSuspended,
                OutcomeArg::Cancelled => pb::DisputeOutcome::DisputeCancelled,
            };
            let r = client
                .resolve_dispute(pb::ResolveDisputeRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    dispute_id,
                    carrier,
                    outcome: outcome as i32,
                    operator,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_status(&format!("dispute {dispute_id} resolved"), r);
        }
        DisputeCmd::Show { dispute_id } => {
            let d = client
                .get_dispute(pb::GetDisputeRequest { dispute_id })
                .await
                .map_err(explain)?
                .into_inner();
            let outcome = pb::DisputeOutcome::try_from(d.outcome)
                .map(|o| {
                    o.as_str_name()
                        .trim_start_matches("DISPUTE_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            if d.open {
                println!(
                    "dispute {}: {} at {}, open since {} ms",
                    d.dispute_id, d.masked_msisdn, d.carrier, d.opened_at_ms
                );
            } else {
                println!(
                    "dispute {}: {} at {}, {outcome} by {} at {} ms",
                    d.dispute_id, d.masked_msisdn, d.carrier, d.resolved_by, d.resolved_at_ms
                );
            }
        }
    }
    Ok(())
}

pub async fn risk(a: RiskArgs) -> anyhow::Result<()> {
    let channel = connect(&a.target).await?;
    match a.cmd {
        RiskCmd::Flag {
            msisdn,
            within_secs,
            request_id,
        } => {
            let r = RegulatorClient::new(channel)
                .flag_high_risk(pb::FlagHighRiskRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    msisdn,
                    reverify_within_seconds: within_secs,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_status("flagged", r);
        }
        RiskCmd::Reverified(report) => {
            let r = RegistryClient::new(channel)
                .report_reverification(report.request())
                .await
                .map_err(explain)?
                .into_inner();
            print_status("re-verified", r);
        }
        RiskCmd::RealNameMissing {
            msisdn,
            carrier,
            within_secs,
            request_id,
        } => {
            let r = RegistryClient::new(channel)
                .report_real_name_missing(pb::ReportRealNameMissingRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    msisdn,
                    carrier,
                    window_seconds: within_secs,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_status("real-name missing", r);
        }
        RiskCmd::RealNameCompleted(report) => {
            let r = RegistryClient::new(channel)
                .report_real_name_completed(report.request())
                .await
                .map_err(explain)?
                .into_inner();
            print_status("real-name completed", r);
        }
    }
    Ok(())
}

pub async fn restrict(a: RestrictArgs) -> anyhow::Result<()> {
    let mut client = RegulatorClient::new(connect(&a.target).await?);
    match a.cmd {
        RestrictCmd::Add {
            identity,
            reason,
            hours,
            request_id,
        } => {
            let r = client
                .restrict(pb::RestrictRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    identity: Some(identity.proto()),
                    reason,
                    duration_hours: hours,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_write("restricted", r.applied_index, r.replayed);
        }
        RestrictCmd::Remove {
            identity,
            request_id,
        } => {
            let r = client
                .unrestrict(pb::UnrestrictRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    identity: Some(identity.proto()),
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_write("restriction lifted", r.applied_index, r.replayed);
        }
        RestrictCmd::Show { identity } => {
            let r = client
                .get_restriction(pb::GetRestrictionRequest {
                    identity: Some(identity.proto()),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if !r.restricted {
                println!("not restricted");
            } else if r.expires_at_ms == 0 {
                println!("restricted ({}) until lifted", r.reason);
            } else {
                println!("restricted ({}) until {} ms", r.reason, r.expires_at_ms);
            }
        }
    }
    Ok(())
}

pub async fn link(a: LinkArgs) -> anyhow::Result<()> {
    let mut client = LinkageClient::new(connect(&a.target).await?);
    match a.cmd {
        LinkCmd::Add(acc) => {
            let r = client
                .link_account(acc.proto())
                .await
                .map_err(explain)?
                .into_inner();
            print_write("linked", r.applied_index, r.replayed);
        }
        LinkCmd::Remove(acc) => {
            let r = client
                .unlink_account(acc.proto())
                .await
                .map_err(explain)?
                .into_inner();
            print_write("unlinked", r.applied_index, r.replayed);
        }
        LinkCmd::Ack(acc) => {
            let r = client
                .ack_reverify(acc.proto())
                .await
                .map_err(explain)?
                .into_inner();
            print_write("acknowledged", r.applied_index, r.replayed);
        }
        LinkCmd::Count { msisdn, id_last6 } => {
            let r = client
                .count_linked_accounts(pb::CountLinkedAccountsRequest { msisdn, id_last6 })
                .await
                .map_err(explain)?
                .into_inner();
            let parts: Vec<String> = r
                .by_platform
                .iter()
                .map(|p| match p.needs_reverify {
                    0 => format!("{} {}", p.platform, p.accounts),
                    n => format!("{} {} ({n} to re-verify)", p.platform, p.accounts),
                })
                .collect();
            println!("{} linked account(s): {}", r.total, parts.join(", "));
        }
        LinkCmd::Pending {
            platform,
            limit,
            page_token,
        } => {
            let r = client
                .list_reverify(pb::ListReverifyRequest {
                    platform,
                    limit,
                    page_token,
                })
                .await
                .map_err(explain)?
                .into_inner();
            for i in &r.items {
                println!("{} {} ({})", i.msisdn, i.account_id, i.cause);
            }
            if !r.next_page_token.is_empty() {
                println!("next page: --page-token {}", r.next_page_token);
            }
        }
    }
    Ok(())
}

pub async fn policy(a: PolicyArgs) -> anyhow::Result<()> {
    let mut client = RegulatorClient::new(connect(&a.target).await?);
    match a.cmd {
        PolicyCmd::Get => {
            let p = client
                .get_policy(pb::GetPolicyRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            println!(
                "own_hall_threshold {}  reverify_window {} s  max_per_carrier {}  max_total {}  max_failed_verifications {}  lockout {} s",
                p.own_hall_threshold,
                p.reverify_window_seconds,
                p.max_cards_per_carrier,
                p.max_cards_total,
                p.max_failed_verifications,
                p.lockout_seconds
            );
        }
        PolicyCmd::Set {
            own_hall_threshold,
            reverify_window_secs,
            max_per_carrier,
            max_total,
            max_failed_verifications,
            lockout_secs,
            request_id,
        } => {
            let r = client
                .set_policy(pb::SetPolicyRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    policy: Some(pb::Policy {
                        own_hall_threshold,
                        reverify_window_seconds: reverify_window_secs,
                        max_cards_per_carrier: max_per_carrier,
                        max_cards_total: max_total,
                        max_failed_verifications,
                        lockout_seconds: lockout_secs,
                    }),
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_write("policy set", r.applied_index, r.replayed);
        }
        PolicyCmd::Rules {
            version,
            request_id,
        } => {
            let r = client
                .set_rules(pb::SetRulesRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    version,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_write(
                &format!("rules version {version} in force"),
                r.applied_index,
                r.replayed,
            );
        }
    }
    Ok(())
}

pub async fn stats(a: StatsArgs) -> anyhow::Result<()> {
    let mut client = RegulatorClient::new(connect(&a.target).await?);
    let s = client
        .national_statistics(pb::StatisticsRequest {})
        .await
        .map_err(explain)?
        .into_inner();
    let outcome_name = |o: i32| {
        pb::DisputeOutcome::try_from(o)
            .map(|o| {
                o.as_str_name()
                    .trim_start_matches("DISPUTE_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| o.to_string())
    };
    if a.json {
        let held: Vec<serde_json::Value> = s
            .held
            .iter()
            .map(|h| serde_json::json!({"carrier": h.carrier, "province": h.province, "cards": h.cards}))
            .collect();
        let resolved: serde_json::Map<String, serde_json::Value> = s
            .disputes_resolved
            .iter()
            .map(|o| (outcome_name(o.outcome), serde_json::json!(o.disputes)))
            .collect();
        let v = serde_json::json!({
            "total_held": s.total_held, "held": held,
            "high_risk_flagged": s.high_risk_flagged, "reverified": s.reverified,
            "high_risk_suspended": s.high_risk_suspended,
            "disputes_opened": s.disputes_opened, "disputes_resolved": resolved,
            "lockouts": s.lockouts, "applied_index": s.applied_index,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{} card(s) held (as of index {})",
        s.total_held, s.applied_index
    );
    let mut by_carrier: std::collections::BTreeMap<&str, u64> = Default::default();
    for h in &s.held {
        *by_carrier.entry(h.carrier.as_str()).or_default() += h.cards;
    }
    for (carrier, n) in by_carrier {
        println!("  {carrier} {n}");
    }
    println!(
        "high-risk: {} flagged, {} suspended unverified; {} re-verified",
        s.high_risk_flagged, s.high_risk_suspended, s.reverified
    );
    let resolved: Vec<String> = s
        .disputes_resolved
        .iter()
        .map(|o| format!("{} {}", outcome_name(o.outcome), o.disputes))
        .collect();
    println!(
        "disputes: {} opened; resolved: {}",
        s.disputes_opened,
        if resolved.is_empty() {
            "none".into()
        } else {
            resolved.join(", ")
        }
    );
    println!("lockouts: {}", s.lockouts);
    Ok(())
}

pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let mut client = RegulatorClient::new(connect(&a.target).await?);
    let r = client
        .list_audit(pb::ListAuditRequest {
            limit: a.limit,
            page_token: a.page_token,
            queries: a.queries,
        })
        .await
        .map_err(explain)?
        .into_inner();
    for e in &r.entries {
        println!(
            "{}.{}  {} ms  {}  {}  {}  {}  {}",
            e.log_index, e.position, e.at_ms, e.actor, e.action, e.subject, e.outcome, e.request_id
        );
    }
    if !r.next_page_token.is_empty() {
        println!("next page: --page-token {}", r.next_page_token);
    }
    Ok(())
}

pub async fn outbox(a: OutboxArgs) -> anyhow::Result<()> {
    let channel = connect(&a.target).await?;
    match a.cmd {
        OutboxCmd::Request {
            identity,
            verify_msisdn,
            request_id,
        } => {
            let r = RegistryClient::new(channel)
                .request_count_notification(pb::CountNotificationRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    identity: Some(identity.proto()),
                    verify_msisdn,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_write(
                &format!("notification {} queued", r.notification_id),
                r.applied_index,
                r.replayed,
            );
        }
        OutboxCmd::List { after, limit } => {
            let r = NotificationsClient::new(channel)
                .list_outbox(pb::ListOutboxRequest {
                    after_id: after,
                    limit,
                })
                .await
                .map_err(explain)?
                .into_inner();
            for n in r.notifications {
                println!("{}  to {}  {}  {}", n.notification_id, n.to, n.kind, n.text);
            }
        }
        OutboxCmd::Ack {
            notification_id,
            request_id,
        } => {
            let r = NotificationsClient::new(channel)
                .ack_notification(pb::AckNotificationRequest {
                    request_id: request_id.unwrap_or_else(fresh_request_id),
                    notification_id,
                })
                .await
                .map_err(explain)?
                .into_inner();
            print_write("acknowledged", r.applied_index, r.replayed);
        }
    }
    Ok(())
}
