//! TLS material on disk and the tonic configurations built from it. One set
//! of files (CA, certificate, key) serves a node both as a server and as a
//! client of its peers, and serves a client command as a client.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oneid_raft::network::PeerTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::revocation::{self, Revocations, RevokedSerials};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// A revocation list file that does not verify (see
    /// [`super::revocation`]).
    #[error("{path}: {reason}")]
    Revocations { path: PathBuf, reason: String },
}

/// Paths of the CA certificate that signs every party, and of this party's
/// own certificate and private key (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA's revocation lists, checked on every call a server takes
    /// (see [`super::revocation`]); clients leave it out.
    pub crl: Option<PathBuf>,
}

/// The loaded PEM texts, for tonic and for rustls (the HTTPS gateway and
/// peer connections).
#[derive(Clone)]
pub struct TlsMaterial {
    pem: Arc<Pems>,
}

struct Pems {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl TlsFiles {
    pub fn load(&self) -> Result<TlsMaterial, TlsError> {
        let ca = read("CA certificate", &self.ca)?;
        let cert = read("certificate", &self.cert)?;
        let key = read("private key", &self.key)?;
        Ok(TlsMaterial {
            pem: Arc::new(Pems { ca, cert, key }),
        })
    }
}

/// rustls's provider here: ring, as tonic's.
fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> TlsError {
    move |e| TlsError::Invalid {
        what,
        reason: e.to_string(),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl TlsMaterial {
    /// Every caller must present a certificate signed by the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.pem.ca))
    }

    /// The HTTPS gateway's settings: the same rules as [`Self::server`]
    /// (every caller presents a certificate signed by the CA), HTTP/2 or
    /// HTTP/1.1.
    pub fn https_server(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = ring();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(invalid("CA certificate"))?;
        let (chain, key) = self.own()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(invalid("TLS versions"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(invalid("certificate and key"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The CA, as rustls trusts it.
    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.pem.ca) {
            roots
                .add(ca.map_err(invalid("CA certificate"))?)
                .map_err(invalid("CA certificate"))?;
        }
        Ok(Arc::new(roots))
    }

    /// This party's certificate chain and private key, as rustls takes them.
    fn own(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = CertificateDer::pem_slice_iter(&self.pem.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid("certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(&self.pem.key).map_err(invalid("private key"))?;
        Ok((chain, key))
    }

    /// Trusts only servers signed by the CA, and presents our certificate.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.pem.ca))
            .identity(self.identity())
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.pem.cert, &self.pem.key)
    }
}

/// This node as a client of its peers: its certificate, the CA, and, with
/// `tls.crl`, the revocation lists in force, which each peer's certificate
/// is checked against when the node dials it. Built again when the lists
/// change; the raft transport then reconnects (see `oneid_raft::network`).
pub struct NodeTls {
    material: TlsMaterial,
    revocations: Option<Revocations>,
    /// The settings last built, and the lists' generation they were built
    /// from.
    built: Mutex<Option<(u64, Arc<rustls::ClientConfig>)>>,
}

impl NodeTls {
    /// Fails now, at start, on material rustls cannot use.
    pub fn new(
        material: TlsMaterial,
        revocations: Option<Revocations>,
    ) -> Result<Arc<NodeTls>, TlsError> {
        let tls = NodeTls {
            material,
            revocations,
            built: Mutex::new(None),
        };
        tls.build()?;
        Ok(Arc::new(tls))
    }

    fn build(&self) -> Result<rustls::ClientConfig, TlsError> {
        let lists = self.revocations.as_ref().map(Revocations::current);
        let lists = lists.as_deref().map_or(&[][..], RevokedSerials::lists);
        let verifier = revocation::peer_verifier(self.material.roots()?, lists)
            .map_err(invalid("revocation lists"))?;
        let provider = ring();
        let (chain, key) = self.material.own()?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(invalid("TLS versions"))?
            .with_webpki_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(invalid("certificate and key"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

impl PeerTls for NodeTls {
    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let generation = self.generation();
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((g, config)) = &*built {
            if *g == generation {
                return Ok(config.clone());
            }
        }
        match self.build() {
            Ok(config) => {
                let config = Arc::new(config);
                *built = Some((generation, config.clone()));
                Ok(config)
            }
            // The lists were checked with rustls when they were read, so
            // this is not expected; dialling on with the settings that
            // worked beats losing every peer.
            Err(e) => match &*built {
                Some((_, old)) => {
                    tracing::error!(error = %e, "peer TLS settings not rebuilt; the previous ones stay");
                    Ok(old.clone())
                }
                None => Err(e.to_string()),
            },
        }
    }

    fn generation(&self) -> u64 {
        self.revocations.as_ref().map_or(0, Revocations::generation)
    }
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("revocation_lists", &self.revocations.is_some())
            .finish_non_exhaustive()
    }
}
