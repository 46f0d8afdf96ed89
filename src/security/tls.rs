//! TLS material on disk and the tonic configurations built from it. One set
//! of files (CA, certificate, key) serves a node both as a server and as a
//! client of its peers, and serves a client command as a client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
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

/// The loaded PEM texts.
#[derive(Clone)]
pub struct TlsMaterial {
    ca: Certificate,
    identity: Identity,
    /// The same texts for rustls, which the HTTPS gateway uses directly.
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
            ca: Certificate::from_pem(&ca),
            identity: Identity::from_pem(&cert, &key),
            pem: Arc::new(Pems { ca, cert, key }),
        })
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
            .identity(self.identity.clone())
            .client_ca_root(self.ca.clone())
    }

    /// The HTTPS gateway's settings: the same rules as [`Self::server`]
    /// (every caller presents a certificate signed by the CA), HTTP/2 or
    /// HTTP/1.1.
    pub fn https_server(&self) -> Result<rustls::ServerConfig, TlsError> {
        let invalid = |what| {
            move |e: &dyn std::fmt::Display| TlsError::Invalid {
                what,
                reason: e.to_string(),
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.pem.ca) {
            let ca = ca.map_err(|e| invalid("CA certificate")(&e))?;
            roots.add(ca).map_err(|e| invalid("CA certificate")(&e))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| invalid("CA certificate")(&e))?;
        let chain = CertificateDer::pem_slice_iter(&self.pem.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("certificate")(&e))?;
        let key =
            PrivateKeyDer::from_pem_slice(&self.pem.key).map_err(|e| invalid("private key")(&e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS versions")(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| invalid("certificate and key")(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Trusts only servers signed by the CA, and presents our certificate.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }
}
