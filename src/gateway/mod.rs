//! The HTTP/JSON gateway on the operator HTTP port: the client-facing gRPC
//! API mapped to proto3 JSON, for query services and carriers that do not
//! speak gRPC. Each request is turned into the RPC's protobuf message and
//! handed to the same service object the gRPC server calls, so validation,
//! audit, read barriers and errors are shared rather than reimplemented.
//! Who may call what is the gRPC server's decision too ([`Admission`]):
//! in insecure mode every caller is
//! the operator (the plain HTTP port); with TLS the gateway is served over
//! HTTPS with client certificates ([`https`]) and each request is admitted
//! by its certificate's role, revocation included.
//!
//! Paths: every RPC is `POST /v1/{Service}/{Method}` and also a short
//! resource path such as `POST /v1/cards:count` ([`methods::RPCS`]);
//! `GET /v1/openapi.json` describes them all.

pub mod error;
pub mod https;
pub mod json;
pub mod methods;
pub mod openapi;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost_reflect::MessageDescriptor;

pub use error::GatewayError;
pub use methods::Services;

use crate::api::ApiError;
use crate::limits::shed::ShedLayer;
use crate::node::MAX_CLIENT_MESSAGE;
use crate::security::authz::Admission;
use crate::security::principal::Certified;

/// The certificate the caller presented on its HTTPS connection, as read
/// (or why it names nobody), for [`Admission`] to judge on each request.
#[derive(Clone)]
pub struct PeerCertificate(pub Result<Certified, String>);

struct Route {
    call: methods::Call,
    /// The gRPC method's path, which the authorization table is keyed on.
    grpc_path: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
}

pub struct Gateway {
    services: Services,
    routes: HashMap<String, Route>,
    openapi: String,
    /// The same bound the gRPC server puts on a call.
    timeout: Duration,
    admission: Admission,
    /// The node's bound on client calls in progress, shared with gRPC.
    shed: ShedLayer,
}

impl Gateway {
    pub fn new(
        services: Services,
        timeout: Duration,
        admission: Admission,
        shed: ShedLayer,
    ) -> anyhow::Result<Arc<Self>> {
        let catalog = json::catalog()?;
        let mut routes = HashMap::new();
        for b in &catalog {
            for path in [b.rpc.alias.to_string(), b.rpc.canonical_path()] {
                routes.insert(
                    path,
                    Route {
                        call: b.rpc.call,
                        grpc_path: b.rpc.grpc_path(),
                        input: b.method.input(),
                        output: b.method.output(),
                    },
                );
            }
        }
        let openapi = openapi::render(&catalog)?;
        Ok(Arc::new(Gateway {
            services,
            routes,
            openapi,
            timeout,
            admission,
            shed,
        }))
    }
}

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/{*rpc}", any(call))
        .with_state(gw)
}

async fn openapi_json(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        gw.openapi.clone(),
    )
        .into_response()
}

async fn call(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    match answer(&gw, req).await {
        Ok(json) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(gw: &Gateway, req: Request) -> Result<Vec<u8>, GatewayError> {
    let path = req.uri().path();
    let route = gw
        .routes
        .get(path)
        .ok_or_else(|| GatewayError::UnknownPath(path.to_string()))?;
    if req.method() != Method::POST {
        return Err(GatewayError::MethodNotAllowed(req.method().clone()));
    }
    let (parts, body) = req.into_parts();
    // Per-caller limits key on the peer, as on gRPC.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let (who, _) = gw
        .admission
        .admit(&route.grpc_path, || {
            match parts.extensions.get::<PeerCertificate>() {
                Some(PeerCertificate(cert)) => cert.clone().map_err(ApiError::Unauthenticated),
                None => Err(ApiError::Unauthenticated("no client certificate".into())),
            }
        })
        .map_err(|e| {
            tracing::warn!(method = %route.grpc_path, "refused: {e}");
            GatewayError::Rpc(e.into())
        })?;
    let _in_progress = gw.shed.admit().map_err(|e| GatewayError::Rpc(e.into()))?;
    let body = read_body(&parts.headers, body).await?;
    let proto = json::request_to_proto(&route.input, &body)?;
    let call = (route.call)(&gw.services, proto.into(), peer, who);
    let answer = methods::within(gw.timeout, call).await?;
    json::response_to_json(&route.output, &answer)
        .map_err(|e| GatewayError::Rpc(ApiError::Internal(format!("{e:#}")).into()))
}

/// The body, at most [`MAX_CLIENT_MESSAGE`] bytes (as on gRPC), of a JSON
/// request; a body-less request may omit the content type.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_CLIENT_MESSAGE) {
        return Err(GatewayError::TooLarge(MAX_CLIENT_MESSAGE));
    }
    let bytes = Limited::new(body, MAX_CLIENT_MESSAGE)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                GatewayError::TooLarge(MAX_CLIENT_MESSAGE)
            } else {
                GatewayError::Body(e.to_string())
            }
        })?
        .to_bytes();
    match headers.get(header::CONTENT_TYPE) {
        None if bytes.is_empty() => Ok(bytes),
        Some(ct) if is_json(ct.to_str().unwrap_or_default()) => Ok(bytes),
        other => Err(GatewayError::UnsupportedMediaType(
            other
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
        )),
    }
}

/// `application/json`, with any parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(header::CONTENT_TYPE, ct.parse().expect("header value"));
        }
        h
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_even_without_a_declared_length() {
        let json = headers(Some("application/json"));
        let over = read_body(&json, Body::from(vec![b' '; MAX_CLIENT_MESSAGE + 1])).await;
        assert!(matches!(over, Err(GatewayError::TooLarge(_))), "{over:?}");
        let at = read_body(&json, Body::from(vec![b' '; MAX_CLIENT_MESSAGE])).await;
        assert_eq!(at.map(|b| b.len()).ok(), Some(MAX_CLIENT_MESSAGE));
    }

    #[tokio::test]
    async fn content_type_must_be_json_unless_the_body_is_empty() {
        for ct in ["application/json", "Application/JSON; charset=utf-8"] {
            assert!(
                read_body(&headers(Some(ct)), Body::from("{}"))
                    .await
                    .is_ok(),
                "{ct}"
            );
        }
        assert!(read_body(&headers(None), Body::empty()).await.is_ok());
        for ct in [Some("text/plain"), Some("application/jsonx"), None] {
            let refused = read_body(&headers(ct), Body::from("{}")).await;
            assert!(
                matches!(refused, Err(GatewayError::UnsupportedMediaType(_))),
                "{ct:?}: {refused:?}"
            );
        }
    }
}
