//! Who may call what: one table from every gRPC method to the roles allowed
//! to call it ([`rule`]), a tower layer that enforces it before any handler
//! runs ([`AuthzLayer`]), and the "own carrier / own platform" checks the
//! handlers make against fields of the request ([`own_carrier`],
//! [`own_platform`]).
//!
//! A refusal is PERMISSION_DENIED (reason WRONG_ROLE or PERMISSION_DENIED)
//! and a `warn` line naming the caller, the method and why. It goes to the
//! log rather than the replicated audit trail: a refused call changes
//! nothing, and letting any authenticated caller append to the replicated
//! trail would let it flood raft.
//!
//! A certificate the CA has revoked ([`Revocations`]) is refused
//! UNAUTHENTICATED on every request, on connections opened before it was
//! revoked too; a batch stream checks again before each of its calls
//! ([`CertStanding`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_layer::Layer;
use tower_service::Service;

use super::principal::Certified;
use super::revocation::{revoked_message, CertStanding, Revocations};
use super::{Principal, Role};
use crate::api::ApiError;

/// A class of callers, as the table names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Carrier,
    Query,
    Platform,
    Regulator,
    Admin,
}

impl Kind {
    pub fn of(role: &Role) -> Kind {
        match role {
            Role::Carrier(_) => Kind::Carrier,
            Role::Query => Kind::Query,
            Role::Platform(_) => Kind::Platform,
            Role::Regulator => Kind::Regulator,
            Role::Admin => Kind::Admin,
        }
    }
}

/// Who may call one method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Any authenticated caller, node or client (status, health, reflection).
    Anyone,
    /// Cluster members only: the raft service.
    Nodes,
    /// Clients holding one of these roles.
    Roles(&'static [Kind]),
}

use Kind::*;

/// The rule of a gRPC path (`/package.Service/Method`); none for a path
/// nobody may call.
pub fn rule(path: &str) -> Option<Rule> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let roles = |r: &'static [Kind]| Some(Rule::Roles(r));
    match (service, method) {
        ("oneid.raft.v1.RaftService", _) => Some(Rule::Nodes),
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _)
        | ("oneid.v1.Cluster", "Status") => Some(Rule::Anyone),
        ("oneid.v1.Cluster", "AddLearner" | "ChangeVoters" | "TransferLeader")
        | ("oneid.v1.Admin", "SaveSnapshot" | "StartRekey" | "GetRekeyStatus") => roles(&[Admin]),
        (
            "oneid.v1.Registry",
            "RegisterCard"
            | "CancelCard"
            | "ImportCards"
            | "ListCarrierCards"
            | "ReportReverification"
            | "ReportRealNameMissing"
            | "ReportRealNameCompleted",
        ) => roles(&[Carrier]),
        ("oneid.v1.Registry", "CountCards" | "RequestCountNotification") => roles(&[Query]),
        // The SMS gateway that delivers count notifications is run by the
        // operator.
        ("oneid.v1.Notifications", "ListOutbox" | "AckNotification") => roles(&[Admin]),
        // The holder opens a dispute through the query service; the
        // carrier holding the card resolves it; both and the regulator
        // follow it.
        ("oneid.v1.Disputes", "OpenDispute") => roles(&[Query]),
        ("oneid.v1.Disputes", "ResolveDispute") => roles(&[Carrier]),
        ("oneid.v1.Disputes", "GetDispute") => roles(&[Query, Carrier, Regulator]),
        (
            "oneid.v1.Regulator",
            "FlagHighRisk" | "Restrict" | "Unrestrict" | "GetRestriction" | "NationalStatistics"
            | "ListAudit",
        ) => roles(&[Regulator]),
        ("oneid.v1.Regulator", "SetPolicy") => roles(&[Admin]),
        ("oneid.v1.Regulator", "SetRules") => roles(&[Admin]),
        ("oneid.v1.Regulator", "GetPolicy") => roles(&[Admin, Regulator]),
        ("oneid.v1.Linkage", "LinkAccount" | "UnlinkAccount" | "ListReverify" | "AckReverify") => {
            roles(&[Platform])
        }
        ("oneid.v1.Linkage", "CountLinkedAccounts") => roles(&[Query]),
        // Any client may open a stream; each call in it is then checked
        // against its own method's rule (see [`may_call`]).
        ("oneid.v1.Batch", "Calls") => roles(&[Carrier, Query, Platform, Regulator, Admin]),
        _ => None,
    }
}

/// Whether `who` may call the method `rule` guards.
pub fn permits(rule: Rule, who: &Principal) -> bool {
    match (who, rule) {
        (Principal::Operator, _) | (_, Rule::Anyone) => true,
        (Principal::Node(_), r) => r == Rule::Nodes,
        (Principal::Client { role, .. }, Rule::Roles(kinds)) => kinds.contains(&Kind::of(role)),
        (Principal::Client { .. }, Rule::Nodes) => false,
    }
}

/// The verified certificate of a gRPC request's caller.
fn certificate_of<B>(req: &http::Request<B>) -> Result<Certified, ApiError> {
    let cert = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|certs| certs.first().cloned())
        .ok_or_else(|| ApiError::Unauthenticated("no client certificate".into()))?;
    Certified::from_der(&cert).map_err(ApiError::Unauthenticated)
}

/// How a node tells who is calling.
#[derive(Clone)]
pub enum Callers {
    /// No TLS: every caller is the operator.
    Insecure,
    /// Callers are named by their certificates, refused once the CA
    /// revoked them when the node has revocation lists.
    Certified(Option<Revocations>),
}

/// Whether a node id is in this node's current membership (voter or
/// learner). A node with no membership yet (new, waiting to be added or to
/// hear from the founders) says yes to every node certificate.
pub type MemberCheck = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// Who may come in: the one decision the gRPC server ([`AuthzLayer`]) and
/// the HTTP/JSON gateway both make before a call runs.
#[derive(Clone)]
pub struct Admission {
    pub callers: Callers,
    pub is_member: MemberCheck,
}

impl Admission {
    /// Decides one call of the method at (gRPC) `path`: the principal to
    /// hand to the handler (with the standing of its certificate when
    /// revocations are checked), or the refusal to send back. `cert` gives
    /// the caller's verified certificate; it is not asked in insecure mode.
    pub fn admit(
        &self,
        path: &str,
        cert: impl FnOnce() -> Result<Certified, ApiError>,
    ) -> Result<(Principal, Option<CertStanding>), ApiError> {
        let (who, standing) = match &self.callers {
            Callers::Insecure => (Principal::Operator, None),
            Callers::Certified(revocations) => {
                let cert = cert()?;
                let standing = match revocations {
                    Some(r) if r.is_revoked(&cert.serial) => {
                        return Err(ApiError::Unauthenticated(format!(
                            "{} of {}",
                            revoked_message(&cert.serial),
                            cert.who
                        )))
                    }
                    Some(r) => Some(CertStanding::new(&cert.serial, r.clone())),
                    None => None,
                };
                (cert.who, standing)
            }
        };
        // A certificate from the cluster's CA is not enough for raft
        // traffic: a node removed from the cluster (or never added) keeps
        // its certificate, and must not vote or append.
        if let Principal::Node(id) = who {
            if rule(path) == Some(Rule::Nodes) && !(self.is_member)(id) {
                return Err(ApiError::WrongRole(format!(
                    "{who} is not a member of this cluster and may not call {path}"
                )));
            }
        }
        if may_call(&who, path) {
            Ok((who, standing))
        } else {
            Err(ApiError::WrongRole(format!("{who} may not call {path}")))
        }
    }
}

/// Whether `who` may call the method at `path`. A method missing from the
/// table is refused to every certified caller, so a service added later is
/// closed until someone decides who may call it; the insecure operator
/// still gets UNIMPLEMENTED for typos.
pub fn may_call(who: &Principal, path: &str) -> bool {
    *who == Principal::Operator || rule(path).is_some_and(|r| permits(r, who))
}

/// Refuses, before the handler runs, every call the table does not allow,
/// and hands the caller's [`Principal`] to the handlers in the request
/// extensions.
#[derive(Clone)]
pub struct AuthzLayer {
    admission: Admission,
}

impl AuthzLayer {
    pub fn new(admission: Admission) -> Self {
        AuthzLayer { admission }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            admission: self.admission.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    admission: Admission,
}

tokio::task_local! {
    /// The caller of the request being handled. The writer stamps it on
    /// the commands it proposes, so the replicated audit trail names the
    /// verified caller without every handler passing it along.
    static CALLER: Principal;
}

/// The audit name of the current request's certified client; empty for
/// the operator of an insecure node, a node, or no request at all, so the
/// command's own actor stands.
pub fn current_actor() -> String {
    CALLER
        .try_with(|p| match p {
            Principal::Client { .. } => p.actor(),
            Principal::Operator | Principal::Node(_) => String::new(),
        })
        .unwrap_or_default()
}

/// Runs `call` as a request of `who`, for calls made in-process on a
/// caller's behalf (the calls of a batch stream), so [`current_actor`]
/// names the same caller as on a gRPC call of its own.
pub async fn as_caller<F: Future>(who: Principal, call: F) -> F::Output {
    CALLER.scope(who, call).await
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authz<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        match self
            .admission
            .admit(req.uri().path(), || certificate_of(&req))
        {
            Ok((who, standing)) => {
                req.extensions_mut().insert(who.clone());
                if let Some(standing) = standing {
                    req.extensions_mut().insert(standing);
                }
                Box::pin(CALLER.scope(who, self.inner.call(req)))
            }
            Err(e) => {
                tracing::warn!(method = req.uri().path(), "refused: {e}");
                let status: tonic::Status = e.into();
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

/// The principal the layer attached to `req`. A request without one did
/// not come through the gRPC server (the HTTP gateway attaches its own).
pub fn caller<T>(req: &tonic::Request<T>) -> Result<&Principal, ApiError> {
    req.extensions()
        .get::<Principal>()
        .ok_or_else(|| ApiError::Unauthenticated("the request names no caller".into()))
}

/// Refuses a carrier acting for another carrier's cards.
pub fn own_carrier<T>(req: &tonic::Request<T>, carrier: &str) -> Result<(), ApiError> {
    match caller(req)? {
        Principal::Client {
            role: Role::Carrier(own),
            ..
        } if !own.eq_ignore_ascii_case(carrier) => refuse(
            req,
            format!("carrier {own} may not act for carrier {carrier}"),
        ),
        _ => Ok(()),
    }
}

/// Refuses a platform acting for another platform's accounts.
pub fn own_platform<T>(req: &tonic::Request<T>, platform: &str) -> Result<(), ApiError> {
    match caller(req)? {
        Principal::Client {
            role: Role::Platform(own),
            ..
        } if own != platform => refuse(
            req,
            format!("platform {own} may not act for platform {platform}"),
        ),
        _ => Ok(()),
    }
}

fn refuse<T>(req: &tonic::Request<T>, why: String) -> Result<(), ApiError> {
    let who = caller(req).map(|p| p.actor()).unwrap_or_default();
    tracing::warn!(caller = %who, "refused: {why}");
    Err(ApiError::NotYours(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(role: &str) -> Principal {
        Principal::Client {
            role: Role::parse(role).expect("role"),
            subject: "CN=test".into(),
        }
    }

    #[test]
    fn nodes_reach_raft_and_status_only() {
        let raft = rule("/oneid.raft.v1.RaftService/AppendEntries").expect("rule");
        assert!(permits(raft, &Principal::Node(1)));
        assert!(!permits(raft, &client("admin")));
        let register = rule("/oneid.v1.Registry/RegisterCard").expect("rule");
        assert!(!permits(register, &Principal::Node(1)));
        let status = rule("/oneid.v1.Cluster/Status").expect("rule");
        assert!(permits(status, &Principal::Node(1)));
        assert!(permits(status, &client("query")));
    }

    #[test]
    fn unknown_methods_have_no_rule() {
        assert_eq!(rule("/oneid.v1.Registry/DropEverything"), None);
        assert_eq!(rule("no-slash"), None);
    }
}
