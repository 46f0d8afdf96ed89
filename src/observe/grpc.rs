//! A tower layer around the whole tonic router that counts requests by
//! method and gRPC status and times them, so no handler needs to know.
//!
//! The status of a unary call normally arrives in the trailers, after the
//! body; a handler error is sent "trailers-only", in the headers. The layer
//! therefore wraps the response body and records when the body finishes or
//! is dropped, whichever comes first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tower_layer::Layer;
use tower_service::Service;

use super::Metrics;
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
        let mut rec = Recorder {
            method: self.obs.metrics.method_label(req.uri().path()),
            start: Instant::now(),
            code: None,
            finished: false,
            obs: self.obs.clone(),
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let resp = response.await?;
            rec.code = grpc_status(resp.headers());
            let (parts, body) = resp.into_parts();
            Ok(http::Response::from_parts(
                parts,
                MeteredBody {
                    inner: Box::pin(body),
                    rec: Some(rec),
                },
            ))
        })
    }
}

/// Records one request when dropped: the response body is dropped once sent
/// or when the client goes away, so every request is counted exactly once.
struct Recorder {
    method: String,
    start: Instant,
    code: Option<i32>,
    /// The response body reached its end (or failed) rather than being
    /// abandoned.
    finished: bool,
    obs: Arc<Observer>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let m: &Metrics = &self.obs.metrics;
        m.grpc_requests
            .with_label_values(&[self.method.as_str(), code_name(self.code, self.finished)])
            .inc();
        m.grpc_duration
            .with_label_values(&[self.method.as_str()])
            .observe(self.start.elapsed().as_secs_f64());
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

/// Status names as other gRPC Prometheus exporters spell them ("OK",
/// "NotFound", ...), so existing dashboards fit.
fn code_name(code: Option<i32>, finished: bool) -> &'static str {
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
