//! The RPCs the gateway exposes and how each is called in-process, on the
//! very service objects the gRPC server holds: validation, audit, read
//! barriers and errors are those of the gRPC call, not a copy of them.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use prost::Message;
use tonic::{Request, Status};

use crate::api::disputes::DisputesApi;
use crate::api::linkage::LinkageApi;
use crate::api::notifications::NotificationsApi;
use crate::api::registry::RegistryApi;
use crate::api::regulator::RegulatorApi;
use crate::api::writer::invalid;
use crate::pb::disputes_server::Disputes;
use crate::pb::linkage_server::Linkage;
use crate::pb::notifications_server::Notifications;
use crate::pb::registry_server::Registry;
use crate::pb::regulator_server::Regulator;
use crate::security::authz::as_caller;
use crate::security::Principal;

/// The client-facing services, shared with the gRPC server.
#[derive(Clone)]
pub struct Services {
    pub registry: Arc<RegistryApi>,
    pub disputes: Arc<DisputesApi>,
    pub regulator: Arc<RegulatorApi>,
    pub linkage: Arc<LinkageApi>,
    pub notifications: Arc<NotificationsApi>,
}

/// Protobuf request, the caller's peer address (when known) and principal
/// in, protobuf response out.
pub type Call = fn(
    &Services,
    Bytes,
    Option<std::net::SocketAddr>,
    Principal,
) -> BoxFuture<'static, Result<Vec<u8>, Status>>;

/// Runs a call under the bound the gRPC server puts on one.
pub async fn within(
    timeout: std::time::Duration,
    call: BoxFuture<'static, Result<Vec<u8>, Status>>,
) -> Result<Vec<u8>, Status> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Status::deadline_exceeded(format!("no answer within {timeout:?}")))?
}

pub struct Rpc {
    /// The service's name in package `oneid.v1`, e.g. "Registry".
    pub service: &'static str,
    /// The method's name in the proto, e.g. "RegisterCard".
    pub method: &'static str,
    /// The short resource-style path, e.g. "/v1/cards:count".
    pub alias: &'static str,
    pub call: Call,
}

impl Rpc {
    /// `/v1/{Service}/{Method}`: every RPC answers here too.
    pub fn canonical_path(&self) -> String {
        format!("/v1/{}/{}", self.service, self.method)
    }

    /// `/oneid.v1.{Service}/{Method}`: the RPC's gRPC path, under which a
    /// batch stream's calls name it.
    pub fn grpc_path(&self) -> String {
        format!("/oneid.v1.{}/{}", self.service, self.method)
    }
}

macro_rules! rpc {
    ($service:literal, $method:literal, $alias:literal, $api:ident, $trait:ident :: $fn:ident) => {
        Rpc {
            service: $service,
            method: $method,
            alias: $alias,
            call: |services, body, peer, who| {
                let api = services.$api.clone();
                Box::pin(async move {
                    let req = Message::decode(body).map_err(|e| {
                        invalid(format!(
                            "the request is not a {}.{} request: {e}",
                            $service, $method
                        ))
                    })?;
                    let mut req = crate::limits::caller::with_peer(Request::new(req), peer);
                    req.extensions_mut().insert(who.clone());
                    let resp = as_caller(who, $trait::$fn(&*api, req)).await?;
                    Ok(resp.into_inner().encode_to_vec())
                })
            },
        }
    };
}

/// Every unary RPC of the client-facing services, in proto order. Cluster
/// and Admin (membership, streamed backups) stay gRPC-only.
pub static RPCS: &[Rpc] = &[
    rpc!(
        "Registry",
        "RegisterCard",
        "/v1/cards",
        registry,
        Registry::register_card
    ),
    rpc!(
        "Registry",
        "CancelCard",
        "/v1/cards:cancel",
        registry,
        Registry::cancel_card
    ),
    rpc!(
        "Registry",
        "CountCards",
        "/v1/cards:count",
        registry,
        Registry::count_cards
    ),
    rpc!(
        "Registry",
        "ImportCards",
        "/v1/cards:import",
        registry,
        Registry::import_cards
    ),
    rpc!(
        "Registry",
        "ListCarrierCards",
        "/v1/cards:list",
        registry,
        Registry::list_carrier_cards
    ),
    rpc!(
        "Registry",
        "ReportReverification",
        "/v1/cards:reverified",
        registry,
        Registry::report_reverification
    ),
    rpc!(
        "Registry",
        "ReportRealNameMissing",
        "/v1/cards:realNameMissing",
        registry,
        Registry::report_real_name_missing
    ),
    rpc!(
        "Registry",
        "ReportRealNameCompleted",
        "/v1/cards:realNameCompleted",
        registry,
        Registry::report_real_name_completed
    ),
    rpc!(
        "Registry",
        "RequestCountNotification",
        "/v1/cards:countBySms",
        registry,
        Registry::request_count_notification
    ),
    rpc!(
        "Notifications",
        "ListOutbox",
        "/v1/outbox",
        notifications,
        Notifications::list_outbox
    ),
    rpc!(
        "Notifications",
        "AckNotification",
        "/v1/outbox:ack",
        notifications,
        Notifications::ack_notification
    ),
    rpc!(
        "Disputes",
        "OpenDispute",
        "/v1/disputes",
        disputes,
        Disputes::open_dispute
    ),
    rpc!(
        "Disputes",
        "ResolveDispute",
        "/v1/disputes:resolve",
        disputes,
        Disputes::resolve_dispute
    ),
    rpc!(
        "Disputes",
        "GetDispute",
        "/v1/disputes:get",
        disputes,
        Disputes::get_dispute
    ),
    rpc!(
        "Regulator",
        "FlagHighRisk",
        "/v1/cards:flagHighRisk",
        regulator,
        Regulator::flag_high_risk
    ),
    rpc!(
        "Regulator",
        "Restrict",
        "/v1/restrictions",
        regulator,
        Regulator::restrict
    ),
    rpc!(
        "Regulator",
        "Unrestrict",
        "/v1/restrictions:lift",
        regulator,
        Regulator::unrestrict
    ),
    rpc!(
        "Regulator",
        "GetRestriction",
        "/v1/restrictions:get",
        regulator,
        Regulator::get_restriction
    ),
    rpc!(
        "Regulator",
        "SetPolicy",
        "/v1/policy",
        regulator,
        Regulator::set_policy
    ),
    rpc!(
        "Regulator",
        "SetRules",
        "/v1/rules",
        regulator,
        Regulator::set_rules
    ),
    rpc!(
        "Regulator",
        "GetPolicy",
        "/v1/policy:get",
        regulator,
        Regulator::get_policy
    ),
    rpc!(
        "Regulator",
        "NationalStatistics",
        "/v1/statistics",
        regulator,
        Regulator::national_statistics
    ),
    rpc!(
        "Regulator",
        "ListAudit",
        "/v1/audit",
        regulator,
        Regulator::list_audit
    ),
    rpc!(
        "Linkage",
        "LinkAccount",
        "/v1/links",
        linkage,
        Linkage::link_account
    ),
    rpc!(
        "Linkage",
        "UnlinkAccount",
        "/v1/links:unlink",
        linkage,
        Linkage::unlink_account
    ),
    rpc!(
        "Linkage",
        "CountLinkedAccounts",
        "/v1/links:count",
        linkage,
        Linkage::count_linked_accounts
    ),
    rpc!(
        "Linkage",
        "ListReverify",
        "/v1/links:reverify",
        linkage,
        Linkage::list_reverify
    ),
    rpc!(
        "Linkage",
        "AckReverify",
        "/v1/links:ackReverify",
        linkage,
        Linkage::ack_reverify
    ),
];
