//! A tower layer around the whole tonic router that counts requests by
//! method and gRPC status and times them, and gives each request an id
//! (see [`super::request_id`]) carried by a tracing span around its handler
//! and echoed in the response's `x-request-id` header, so no handler needs
//! to know.
//!
//! The status of a unary call normally arrives in the trailers, after the
//! body; a handler error is sent "trailers-only", in the headers. The layer
//! therefore wraps the response body and records when the body finishes or
//! is dropped, whichever comes first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::metrics::MethodMetrics;
use super::request_id;
use crate::observe::Observer;

#[derive(Clone)]
pub struct GrpcMetricsLayer {
    obs: Arc<Observer>,
}

impl GrpcMetricsLayer {
    pub fn new(obs: Arc<Observer>) -> Self {
        GrpcMetricsLayer { obs }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            obs: self.obs.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    obs: Arc<Observer>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let id = request_id::pick(req.headers());
        let method = self.obs.metrics.method(req.uri().path());
        // Info level so that every info line of the request carries the id
        // under the default filter.
        let span = tracing::info_span!("request", request_id = %id, method = %method.label);
        let mut rec = Recorder {
            method,
            start: Instant::now(),
            code: None,
            finished: false,
            span: span.clone(),
        };
        let echo = request_id::header_value(&id);
        let response = span.in_scope(|| self.inner.call(req));
        Box::pin(
            async move {
                let resp = response.await?;
                rec.code = grpc_status(resp.headers());
                let (mut parts, body) = resp.into_parts();
                if let Some(echo) = echo {
                    parts.headers.insert(request_id::HEADER, echo);
                }
                Ok(http::Response::from_parts(
                    parts,
                    MeteredBody {
                        inner: Box::pin(body),
                        rec: Some(rec),
                    },
                ))
            }
            .instrument(span),
        )
    }
}

/// Records one request when dropped: the response body is dropped once sent
/// or when the client goes away, so every request is counted exactly once.
struct Recorder {
    method: Arc<MethodMetrics>,
    start: Instant,
    code: Option<i32>,
    /// The response body reached its end (or failed) rather than being
    /// abandoned.
    finished: bool,
    /// The request's span, for its closing debug line.
    span: tracing::Span,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let code = code_name(self.code, self.finished);
        let elapsed = self.start.elapsed();
        self.method.record(code, elapsed);
        // Debug: one line per request is too many for a busy node's default
        // log, and exactly what is wanted when chasing one request. Given
        // its span as parent rather than entering it: entering costs every
        // request, the line only the ones it is logged for.
        tracing::debug!(
            parent: &self.span,
            code,
            elapsed_us = micros(elapsed),
            "request done"
        );
    }
}

/// The response body, passed through unchanged, watching for the trailers.
pub struct MeteredBody<B> {
    // Boxed so the wrapper is Unpin whatever tonic's body is.
    inner: Pin<Box<B>>,
    rec: Option<Recorder>,
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(rec)) = (frame.trailers_ref(), self.rec.as_mut()) {
                    if let Some(code) = grpc_status(trailers) {
                        rec.code = Some(code);
                    }
                }
            }
            // The call is over: record now rather than when hyper gets
            // round to dropping the body.
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(mut rec) = self.rec.take() {
                    rec.finished = true;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

/// A call's time for its closing log line (`elapsed_us`), unary or batched.
pub(crate) fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Status names as other gRPC Prometheus exporters spell them ("OK",
/// "NotFound", ...), so existing dashboards fit.
pub(crate) fn code_name(code: Option<i32>, finished: bool) -> &'static str {
    use tonic::Code;
    let Some(code) = code else {
        // No grpc-status at all: abandoned midway (the client went away or
        // the server's timeout fired) or a response that ended without one.
        return if finished { "Unknown" } else { "Canceled" };
    };
    match Code::from_i32(code) {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_read_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(grpc_status(&h), Some(5));
        assert_eq!(code_name(Some(5), true), "NotFound");
        assert_eq!(code_name(Some(0), true), "OK");
        assert_eq!(code_name(None, true), "Unknown");
        assert_eq!(code_name(None, false), "Canceled");
    }
}
