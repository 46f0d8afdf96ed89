//! The operator HTTP port: `/metrics`, `/ready` and `/live`, plus whatever
//! the node mounts beside them (the HTTP/JSON gateway).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use super::Observer;

pub fn router(obs: Arc<Observer>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/ready", get(ready))
        .route("/live", get(live))
        .with_state(obs)
}

/// Serves `router(obs)` merged with `extra` until `stop` resolves.
pub async fn serve(
    listener: TcpListener,
    obs: Arc<Observer>,
    extra: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address reaches the gateway's handlers, which key
    // per-caller limits on it.
    let app = router(obs)
        .merge(extra)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

async fn metrics(State(obs): State<Arc<Observer>>) -> Response {
    // RocksDB property reads take the DB mutex briefly; keep them off the
    // async workers that also carry raft traffic.
    let rendered = tokio::task::spawn_blocking(move || {
        let raft = obs.raft.metrics().borrow().clone();
        obs.metrics.observe_raft(&raft);
        let (holds, held) = obs.apply_backlog.holds();
        obs.metrics.observe_apply_holds(holds, held);
        let reads = &obs.read_counts;
        obs.metrics.observe_read_indexes(
            reads.lease.load(std::sync::atomic::Ordering::Relaxed),
            reads.round.load(std::sync::atomic::Ordering::Relaxed),
        );
        obs.metrics.observe_storage(&obs.db);
        if let Some(r) = &obs.revocations {
            obs.metrics.observe_revocations(r);
        }
        obs.metrics.render()
    })
    .await;
    match rendered {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("collecting metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn ready(State(obs): State<Arc<Observer>>) -> Response {
    let r = obs.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &r)
}

async fn live() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "live": true }))
}

/// axum's own JSON support is a feature this build leaves out (it would pull
/// more of the tree in for a few small bodies).
pub(crate) fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(mut text) => {
            text.push('\n');
            (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding json: {e}\n"),
        )
            .into_response(),
    }
}
