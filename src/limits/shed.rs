//! A bound on client requests in progress on a node. Past it a request is
//! refused at once with RESOURCE_EXHAUSTED (reason OVERLOADED) rather than
//! queued, so a flood costs a refusal each instead of growing memory.
//! Node-to-node raft traffic is exempt: shedding it would turn client load
//! into elections.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::api::ApiError;

/// The path prefix of the client-facing services (package `oneid.v1`).
const CLIENT_PREFIX: &str = "/oneid.v1.";

/// A batch stream is not a request in progress itself: each call it
/// carries takes its own permit ([`ShedLayer::admit`]), so the bound counts
/// calls the same however they arrive.
const BATCH_STREAM: &str = "/oneid.v1.Batch/Calls";

#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ShedLayer {
    pub fn new(max_concurrent: usize) -> ShedLayer {
        ShedLayer {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max: max_concurrent,
        }
    }

    /// A permit for one client call, held until the call has answered;
    /// OVERLOADED when every permit is taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded(self.max))
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Shed<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        if !path.starts_with(CLIENT_PREFIX) || path == BATCH_STREAM {
            return Box::pin(self.inner.call(req));
        }
        match self.layer.admit() {
            Ok(permit) => {
                let fut = self.inner.call(req);
                Box::pin(async move {
                    let res = fut.await;
                    drop(permit);
                    res
                })
            }
            Err(e) => {
                let status: Status = e.into();
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tokio::sync::oneshot;

    /// A service whose responses wait until the test releases them.
    #[derive(Clone)]
    struct Held(Arc<std::sync::Mutex<Vec<oneshot::Sender<()>>>>);

    impl Service<http::Request<()>> for Held {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = BoxFuture<Result<http::Response<String>, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let (tx, rx) = oneshot::channel();
            self.0.lock().expect("lock").push(tx);
            Box::pin(async move {
                let _ = rx.await;
                Ok(http::Response::new("ok".to_string()))
            })
        }
    }

    fn req(path: &str) -> http::Request<()> {
        http::Request::builder()
            .uri(path)
            .body(())
            .expect("request")
    }

    fn grpc_status(res: &http::Response<String>) -> Option<String> {
        res.headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }

    #[tokio::test]
    async fn client_calls_past_the_bound_are_refused_and_raft_is_exempt() {
        let held = Held(Default::default());
        let mut svc = ShedLayer::new(2).layer(held.clone());
        let a = tokio::spawn(svc.call(req("/oneid.v1.Registry/CountCards")));
        let b = tokio::spawn(svc.call(req("/oneid.v1.Registry/CountCards")));
        let refused = svc
            .call(req("/oneid.v1.Registry/CountCards"))
            .await
            .expect("infallible");
        assert_eq!(
            grpc_status(&refused).as_deref(),
            Some((tonic::Code::ResourceExhausted as i32).to_string().as_str())
        );
        // Raft traffic passes even with every permit taken.
        let raft = tokio::spawn(svc.call(req("/oneid.raft.v1.RaftService/Append")));
        // Once the held calls finish, their permits come back (`call`
        // registers each held response before returning).
        assert_eq!(held.0.lock().expect("lock").len(), 3);
        for tx in held.0.lock().expect("lock").drain(..) {
            let _ = tx.send(());
        }
        for t in [a, b, raft] {
            let res = t.await.expect("join").expect("infallible");
            assert_eq!(grpc_status(&res), None);
        }
        let again = tokio::spawn(svc.call(req("/oneid.v1.Registry/CountCards")));
        assert_eq!(held.0.lock().expect("lock").len(), 1);
        for tx in held.0.lock().expect("lock").drain(..) {
            let _ = tx.send(());
        }
        let res = again.await.expect("join").expect("infallible");
        assert_eq!(grpc_status(&res), None);
    }
}
