//! The `Batch` service: many unary calls over one stream (see
//! `proto/oneid/v1/batch.proto`). Each call goes through the same
//! in-process entry point as the HTTP gateway's ([`RPCS`]), after the
//! checks the gRPC server's layers make on a call of its own (the caller's
//! role for that method, the node's bound on calls in progress, the time
//! limit), and counts in that method's metrics. What it saves is per call:
//! an HTTP/2 stream with its headers and trailers, the server's task and
//! service stack, and a write to the socket; replies that finish together
//! go out in one message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::ApiError;
use crate::gateway::methods::{within, Call, RPCS};
use crate::gateway::Services;
use crate::limits::shed::ShedLayer;
use crate::observe::grpc::{code_name, micros};
use crate::observe::metrics::{MethodMetrics, Metrics};
use crate::pb;
use crate::security::authz;
use crate::security::revocation::CertStanding;
use crate::security::Principal;

/// Calls of one stream in progress (or answered and waiting to be sent)
/// at once. Past it the stream's next message is read only once a reply
/// has gone out, and HTTP/2 flow control holds the client back.
pub const MAX_STREAM_CALLS: usize = 4096;

/// Replies gathered into one message while the stream's previous message
/// is being sent: at most this many, and no more once they reach
/// [`MAX_REPLY_BYTES`].
const MAX_REPLIES: usize = 1024;
const MAX_REPLY_BYTES: usize = 1 << 20;

pub struct BatchApi {
    inner: Arc<Inner>,
}

struct Inner {
    services: Services,
    /// Every batchable method by its gRPC path, with the per-RPC metrics
    /// its unary calls count in.
    methods: HashMap<String, (Call, Arc<MethodMetrics>)>,
    shed: ShedLayer,
    timeout: Duration,
}

impl BatchApi {
    /// `shed` is the gRPC server's bound on calls in progress, which the
    /// calls of a stream share; `timeout` the limit it puts on a call.
    pub fn new(services: Services, shed: ShedLayer, metrics: &Metrics, timeout: Duration) -> Self {
        let methods = RPCS
            .iter()
            .map(|r| {
                let path = r.grpc_path();
                let counted = metrics.method(&path);
                (path, (r.call, counted))
            })
            .collect();
        BatchApi {
            inner: Arc::new(Inner {
                services,
                methods,
                shed,
                timeout,
            }),
        }
    }
}

/// One stream's caller, as the gRPC server's layers saw it.
struct Caller {
    api: Arc<Inner>,
    who: Principal,
    /// The stream's certificate, asked before each call whether the CA has
    /// revoked it since the stream opened (None: no revocation lists).
    standing: Option<CertStanding>,
    peer: Option<SocketAddr>,
    /// The stream's request span (with its request id), parent of each
    /// call's span, so a call's log lines name the stream it came on.
    span: tracing::Span,
}

impl Caller {
    async fn answer(&self, call: pb::BatchCall) -> pb::BatchReply {
        let found = self.api.methods.get(&call.method);
        // The label the method's metrics use: a path the client made up
        // must not reach the log as is.
        let label = found.map_or("unknown", |(_, counted)| counted.label.as_str());
        let span = tracing::info_span!(parent: &self.span, "call", id = call.id, method = %label);
        let start = Instant::now();
        let result = match found {
            Some((run, _)) => {
                self.checked(&call.method, *run, call.request)
                    .instrument(span.clone())
                    .await
            }
            None => Err(Status::unimplemented(format!(
                "{:?} is not a unary method of the client services",
                call.method
            ))),
        };
        let elapsed = start.elapsed();
        let code = result.as_ref().err().map_or(tonic::Code::Ok, Status::code);
        let code_name = code_name(Some(code as i32), true);
        if let Some((_, counted)) = found {
            counted.record(code_name, elapsed);
        }
        // Debug, like a unary call's closing line (observe::grpc); inside
        // the call's span so the line lists the stream's span (and its
        // request id) too.
        span.in_scope(|| {
            tracing::debug!(code = code_name, elapsed_us = micros(elapsed), "call done")
        });
        match result {
            Ok(response) => pb::BatchReply {
                id: call.id,
                code: code as i32,
                response: response.into(),
                ..Default::default()
            },
            Err(status) => pb::BatchReply {
                id: call.id,
                code: code as i32,
                response: Bytes::new(),
                message: status.message().to_string(),
                details: status.details().to_vec(),
            },
        }
    }

    /// Runs one call the way the gRPC server's layers would run it alone.
    async fn checked(&self, method: &str, call: Call, request: Bytes) -> Result<Vec<u8>, Status> {
        if let Some(why) = self.standing.as_ref().and_then(CertStanding::revoked) {
            tracing::warn!(method, "refused in a batch: {why}");
            return Err(ApiError::Unauthenticated(why).into());
        }
        if !authz::may_call(&self.who, method) {
            tracing::warn!(method, "refused in a batch: {} may not call it", self.who);
            return Err(ApiError::WrongRole(format!("{} may not call {method}", self.who)).into());
        }
        let _in_progress = self.api.shed.admit()?;
        let call = call(&self.api.services, request, self.peer, self.who.clone());
        within(self.api.timeout, call).await
    }
}

#[tonic::async_trait]
impl pb::batch_server::Batch for BatchApi {
    type CallsStream = ReceiverStream<Result<pb::BatchReplies, Status>>;

    async fn calls(
        &self,
        req: Request<Streaming<pb::BatchCalls>>,
    ) -> Result<Response<Self::CallsStream>, Status> {
        let caller = Arc::new(Caller {
            api: self.inner.clone(),
            who: authz::caller(&req)?.clone(),
            standing: req.extensions().get::<CertStanding>().cloned(),
            peer: req.remote_addr(),
            span: tracing::Span::current(),
        });
        let (answered, replies) = mpsc::unbounded_channel();
        let (out, stream) = mpsc::channel(4);
        tokio::spawn(read_calls(req.into_inner(), caller, answered, out.clone()));
        tokio::spawn(send_replies(replies, out));
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

/// A reply and the stream slot its call holds until the reply is sent.
type Answered = (pb::BatchReply, OwnedSemaphorePermit);

/// Runs every call the client sends, each in its own task, until the
/// client closes its side (the calls still running finish and are
/// answered) or the stream breaks: the calls still running finish, and
/// the stream ends with the error (a message over the size limit, a reset),
/// so their replies are lost, as a unary call's would be with its
/// connection.
async fn read_calls(
    mut inbound: Streaming<pb::BatchCalls>,
    caller: Arc<Caller>,
    answered: mpsc::UnboundedSender<Answered>,
    out: mpsc::Sender<Result<pb::BatchReplies, Status>>,
) {
    let slots = Arc::new(Semaphore::new(MAX_STREAM_CALLS));
    loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => return,
            Err(broken) => {
                let _ = out.send(Err(broken)).await;
                return;
            }
        };
        for call in message.calls {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (caller, answered) = (caller.clone(), answered.clone());
            tokio::spawn(async move {
                let reply = caller.answer(call).await;
                let _ = answered.send((reply, slot));
            });
        }
    }
}

/// Sends replies as calls finish, each message carrying every reply that
/// finished while the previous one was being sent. Ends once every call
/// has been answered and the client sends no more.
async fn send_replies(
    mut answered: mpsc::UnboundedReceiver<Answered>,
    out: mpsc::Sender<Result<pb::BatchReplies, Status>>,
) {
    while let Some(first) = answered.recv().await {
        let mut bytes = reply_bytes(&first.0);
        let mut replies = vec![first.0];
        let mut slots = vec![first.1];
        while replies.len() < MAX_REPLIES && bytes < MAX_REPLY_BYTES {
            let Ok((reply, slot)) = answered.try_recv() else {
                break;
            };
            bytes += reply_bytes(&reply);
            replies.push(reply);
            slots.push(slot);
        }
        if out.send(Ok(pb::BatchReplies { replies })).await.is_err() {
            return;
        }
        drop(slots);
    }
}

fn reply_bytes(r: &pb::BatchReply) -> usize {
    r.response.len() + r.message.len() + r.details.len()
}
