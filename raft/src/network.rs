//! The raft transport: one lazily connected, reused tonic channel per peer
//! address, and a deadline on every RPC. Over TLS the node dials with its
//! own [`PeerTls`] settings, so it can check a peer's certificate against
//! revocation lists that change while it runs.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Snapshot, SnapshotMeta, Vote};
use prost::bytes::Bytes;
use tokio::io::AsyncReadExt;
use tonic::transport::{Channel, Endpoint};

use crate::lease::Lease;
use crate::pb::raft_service_client::RaftServiceClient;
use crate::pb::{Blob, SnapshotChunk};
use crate::types::{NodeId, TypeConfig};
use crate::wire;

/// Bytes per snapshot chunk on the wire.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Header of a streamed snapshot: the leader's vote and the snapshot meta.
pub type SnapshotHeader = (Vote<NodeId>, SnapshotMeta<NodeId, BasicNode>);

/// How a node dials its peers over TLS: the cluster CA, its own
/// certificate, and what the peer's certificate is checked against.
pub trait PeerTls: Send + Sync + std::fmt::Debug + 'static {
    /// The settings for a new connection (asked at every one).
    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String>;
    /// Changes when the settings do (new revocation lists): the node then
    /// drops its connections, so every peer is verified again.
    fn generation(&self) -> u64;
}

/// Channels to peers, keyed by address; shared by raft replication and by
/// request forwarding so each peer has exactly one HTTP/2 connection.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<Cached>>,
    /// None is plaintext.
    tls: Option<Arc<dyn PeerTls>>,
}

#[derive(Default)]
struct Cached {
    /// The [`PeerTls::generation`] the channels were made under.
    generation: u64,
    channels: HashMap<String, Channel>,
}

impl Channels {
    pub fn new(tls: Option<Arc<dyn PeerTls>>) -> Self {
        Channels {
            inner: Arc::default(),
            tls,
        }
    }

    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut cached = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.tls.as_ref().map_or(0, |t| t.generation());
        if cached.generation != generation {
            // Connections verified under the old settings close once the
            // calls on them finish.
            cached.channels.clear();
            cached.generation = generation;
        }
        if let Some(c) = cached.channels.get(addr) {
            return Ok(c.clone());
        }
        // TLS is ours (TlsDialer), so tonic sees plain HTTP/2 either way.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = match &self.tls {
            Some(tls) => endpoint.connect_with_connector_lazy(TlsDialer(tls.clone())),
            None => endpoint.connect_lazy(),
        };
        cached.channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Opens a peer connection: TCP, then TLS with the node's current
/// [`PeerTls`] settings, the peer's certificate checked against the
/// address dialled.
#[derive(Clone)]
struct TlsDialer(Arc<dyn PeerTls>);

type Dialled = TokioIo<TlsStream<TcpStream>>;

impl tower_service::Service<Uri> for TlsDialer {
    type Response = Dialled;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Dialled>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.0.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other(format!("no host in {uri}")))?
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| std::io::Error::other(format!("no port in {uri}")))?;
            let config = tls.client_config().map_err(std::io::Error::other)?;
            let name = ServerName::try_from(host.clone()).map_err(std::io::Error::other)?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// Creates one [`PeerClient`] per replication target.
#[derive(Clone)]
pub struct Network {
    pub channels: Channels,
    /// Told of every AppendEntries a peer accepted.
    pub lease: Arc<Lease>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            channels: self.channels.clone(),
            lease: self.lease.clone(),
        }
    }
}

/// Looks its channel up on every call rather than keeping one, so a
/// replication stream moves to a new connection when the node drops its
/// connections (new revocation lists).
pub struct PeerClient {
    target: NodeId,
    addr: String,
    channels: Channels,
    lease: Arc<Lease>,
}

enum Method {
    AppendEntries,
    Vote,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

/// Maps a transport failure: a peer we cannot reach at all gets openraft's
/// backoff; anything else is retried at the next heartbeat.
///
/// A call that ran out of time (openraft gives AppendEntries one heartbeat
/// interval) reached a peer that is merely slow: a busy machine, a big
/// entry. Treated as unreachable, it stopped all traffic to that peer for
/// the backoff, the peer heard no heartbeat for longer than its election
/// timeout and campaigned: 1–3 needless elections (with ~0.6–0.9 s write
/// gaps) per 15 s of 64 registering clients on 2 busy cores.
fn transport_error(status: &tonic::Status) -> (bool, TransportError) {
    let unreachable = status.code() == tonic::Code::Unavailable;
    (unreachable, TransportError(status.to_string()))
}

/// How long replication to an unreachable peer pauses before trying again:
/// well inside an election timeout, so a peer that was unreachable only for
/// a moment (a refused connection while it restarts) hears from the leader
/// before it would campaign; a peer that stays down costs one failed
/// connect per interval.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);

impl PeerClient {
    fn client(&self) -> Result<RaftServiceClient<Channel>, TransportError> {
        self.channels
            .get(&self.addr)
            .map(RaftServiceClient::new)
            .map_err(|e| TransportError(e.to_string()))
    }

    async fn unary<Req, Resp>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        method: Method,
    ) -> Result<(Resp, Duration), RPCError<NodeId, BasicNode, RaftError<NodeId>>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let client = self
            .client()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let data = wire::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(Blob {
            data: data.into(),
            vote_window_ms: 0,
        });
        request.set_timeout(option.hard_ttl());
        let mut client = client;
        let reply = match method {
            Method::AppendEntries => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let (unreachable, e) = transport_error(&status);
                return Err(if unreachable {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                });
            }
        };
        let result: Result<Resp, RaftError<NodeId>> =
            wire::decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let window = Duration::from_millis(reply.vote_window_ms);
        result
            .map(|r| (r, window))
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        // Taken before sending: the peer accepted the request after this.
        let sent = Instant::now();
        let (resp, window) = self.unary(&rpc, &option, Method::AppendEntries).await?;
        // A conflict still means the peer took this leadership as its own.
        if !matches!(resp, AppendEntriesResponse::HigherVote(_)) {
            self.lease.acked(self.target, &rpc.vote, sent, window);
        }
        Ok(resp)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.unary(&rpc, &option, Method::Vote)
            .await
            .map(|(resp, _)| resp)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let net = |e: &dyn std::fmt::Display| {
            StreamingError::Network(NetworkError::new(&TransportError(e.to_string())))
        };
        let mut client = self
            .client()
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let header: SnapshotHeader = (vote, snapshot.meta.clone());
        let header = wire::encode(&header).map_err(|e| net(&e))?;
        let stream = snapshot_stream(&snapshot.snapshot.path, header)
            .await
            .map_err(|e| net(&e))?;
        let send = client.install_snapshot(tonic::Request::new(stream));
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r,
        };
        let reply = reply.map_err(|s| {
            let (unreachable, e) = transport_error(&s);
            if unreachable {
                StreamingError::Unreachable(Unreachable::new(&e))
            } else {
                StreamingError::Network(NetworkError::new(&e))
            }
        })?;
        let result: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            wire::decode(&reply.into_inner().data).map_err(|e| net(&e))?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Streams a snapshot file as chunks, the first carrying the header. Reads
/// happen as the peer accepts data, so memory stays at a few chunks.
async fn snapshot_stream(
    path: &Path,
    header: Vec<u8>,
) -> std::io::Result<impl futures::Stream<Item = SnapshotChunk>> {
    let file = tokio::fs::File::open(path).await?;
    let state = (Some(header), Some(file));
    Ok(futures::stream::unfold(
        state,
        |(header, file)| async move {
            let mut file = file?;
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        // Ending the stream early makes the receiver reject the
                        // snapshot (its trailer check fails); openraft retries.
                        tracing::warn!("reading snapshot for send: {e}");
                        return None;
                    }
                }
            }
            if filled == 0 && header.is_none() {
                return None;
            }
            buf.truncate(filled);
            let chunk = SnapshotChunk {
                header: header.map(Bytes::from).unwrap_or_default(),
                data: Bytes::from(buf),
            };
            Some((chunk, (None, Some(file))))
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_peer_we_cannot_reach_is_unreachable_a_slow_one_is_not() {
        let unreachable = |code| transport_error(&tonic::Status::new(code, "x")).0;
        assert!(unreachable(tonic::Code::Unavailable));
        // Timeouts: the peer answered too late, not never; backing off from
        // it would starve it of heartbeats and make it campaign.
        assert!(!unreachable(tonic::Code::DeadlineExceeded));
        assert!(!unreachable(tonic::Code::Cancelled));
        assert!(!unreachable(tonic::Code::Internal));
        assert!(UNREACHABLE_BACKOFF < Duration::from_millis(150));
    }
}
