//! Certificate revocation: the CA's revocation lists (CRLs, `tls.crl`),
//! checked on every request rather than once at the TLS handshake. HTTP/2
//! connections and batch streams live for hours, so a certificate revoked
//! while its holder stays connected must be refused from its next call on,
//! not from its next connection. The file is re-read when it changes; a
//! list that does not verify against the CA is refused (at start the node
//! does not start, later the lists in force stay).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::RootCertStore;
use tokio::sync::watch;
use x509_parser::certificate::X509Certificate;
use x509_parser::pem::Pem;
use x509_parser::revocation_list::CertificateRevocationList;

use super::tls::TlsError;

/// How often the node looks at the CRL file for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The serial numbers the CA's lists revoke.
#[derive(Debug, Default)]
pub struct RevokedSerials {
    serials: HashSet<Vec<u8>>,
    /// The lists themselves (DER), for checking peers' certificates when
    /// this node dials them (see [`super::tls::NodeTls`]).
    ders: Vec<Vec<u8>>,
}

impl RevokedSerials {
    /// Parses every `X509 CRL` block of `crl_pem` (or one DER list), and
    /// refuses the file unless each list is issued and signed by the CA in
    /// `ca_pem`. An expired list (past its next update) still counts: the
    /// certificates it names stay revoked, and refusing every caller for a
    /// late list would take the registry down.
    pub fn parse(crl_pem: &[u8], ca_pem: &[u8]) -> Result<RevokedSerials, String> {
        let ca_der = pem_blocks(ca_pem, "CERTIFICATE")?
            .into_iter()
            .next()
            .ok_or("the CA file holds no CERTIFICATE block")?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der)
            .map_err(|e| format!("unparsable CA certificate: {e}"))?;
        let lists = if crl_pem.starts_with(b"-----") || crl_pem.trim_ascii().is_empty() {
            pem_blocks(crl_pem, "X509 CRL")?
        } else {
            vec![crl_pem.to_vec()]
        };
        if lists.is_empty() {
            return Err("holds no X509 CRL block".into());
        }
        let mut revoked = RevokedSerials {
            serials: HashSet::new(),
            ders: Vec::new(),
        };
        for (i, der) in lists.iter().enumerate() {
            let (rest, crl) = x509_parser::parse_x509_crl(der)
                .map_err(|e| format!("list {}: unparsable: {e}", i + 1))?;
            if !rest.is_empty() {
                return Err(format!("list {}: trailing bytes after the list", i + 1));
            }
            check_issued_by(&crl, &ca).map_err(|e| format!("list {}: {e}", i + 1))?;
            revoked.serials.extend(
                crl.iter_revoked_certificates()
                    .map(|r| normal_serial(r.raw_serial()).to_vec()),
            );
        }
        usable_by_rustls(&ca_der, &lists)?;
        revoked.ders = lists;
        Ok(revoked)
    }

    pub fn contains(&self, serial: &[u8]) -> bool {
        self.serials.contains(normal_serial(serial))
    }

    pub fn len(&self) -> usize {
        self.serials.len()
    }

    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }

    /// The lists, DER encoded.
    pub fn lists(&self) -> &[Vec<u8>] {
        &self.ders
    }
}

fn check_issued_by(crl: &CertificateRevocationList, ca: &X509Certificate) -> Result<(), String> {
    if crl.issuer().as_raw() != ca.subject().as_raw() {
        return Err(format!(
            "issued by '{}', not by the CA '{}'",
            crl.issuer(),
            ca.subject()
        ));
    }
    crl.verify_signature(ca.public_key())
        .map_err(|e| format!("its signature does not verify with the CA's key: {e}"))
}

/// The verifier this node checks a peer's certificate with when it dials
/// it (see [`super::tls::NodeTls`]): the CA, and the lists in force. The
/// lists come from the CA and name end-entity certificates; a late one
/// still counts, as on the server side. [`RevokedSerials::parse`] builds
/// it too, so a list rustls cannot use is refused when it is read, and
/// peer connections never fail over a list.
pub fn peer_verifier(
    roots: Arc<RootCertStore>,
    lists: &[Vec<u8>],
) -> Result<Arc<WebPkiServerVerifier>, VerifierBuilderError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    WebPkiServerVerifier::builder_with_provider(roots, provider)
        .with_crls(
            lists
                .iter()
                .map(|der| CertificateRevocationListDer::from(der.clone())),
        )
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
}

fn usable_by_rustls(ca_der: &[u8], lists: &[Vec<u8>]) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .map_err(|e| format!("the CA certificate: {e}"))?;
    peer_verifier(Arc::new(roots), lists)
        .map(|_| ())
        .map_err(|e| format!("rustls cannot use the lists: {e}"))
}

/// The DER contents of every PEM block labelled `label`.
fn pem_blocks(text: &[u8], label: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(text) {
        let block = block.map_err(|e| format!("bad PEM: {e}"))?;
        if block.label == label {
            out.push(block.contents);
        }
    }
    Ok(out)
}

/// A serial number's bytes without the sign padding DER may put in front,
/// so the same number read from a certificate and from a list compares
/// equal.
fn normal_serial(serial: &[u8]) -> &[u8] {
    let zeros = serial.iter().take_while(|b| **b == 0).count();
    &serial[zeros.min(serial.len().saturating_sub(1))..]
}

/// Whether two serial numbers are the same number.
pub fn same_serial(a: &[u8], b: &[u8]) -> bool {
    normal_serial(a) == normal_serial(b)
}

/// Lower-case hex of a serial number, as `openssl x509 -serial` prints it.
pub fn serial_hex(serial: &[u8]) -> String {
    normal_serial(serial)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The revocation lists in force on this node, re-read when the file
/// changes. Cloning shares them.
#[derive(Clone)]
pub struct Revocations {
    shared: Arc<Shared>,
}

struct Shared {
    crl: PathBuf,
    ca: PathBuf,
    current: RwLock<Arc<RevokedSerials>>,
    /// What the file looked like when last read.
    stamp: Mutex<Option<Stamp>>,
    /// The file as it now is failed to load: older lists are in force.
    stale: AtomicBool,
    /// Counts the lists taken since start (0: the first ones).
    generation: AtomicU64,
}

/// Enough of a file's metadata to notice it was rewritten or replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&m),
        })
    }
}

impl Revocations {
    /// Reads the lists in `crl`, checked against the CA in `ca`.
    pub fn load(crl: &Path, ca: &Path) -> Result<Revocations, TlsError> {
        let stamp = Stamp::of(crl).map_err(|source| TlsError::Read {
            what: "revocation list",
            path: crl.to_path_buf(),
            source,
        })?;
        let revoked = read(crl, ca)?;
        tracing::info!(
            path = %crl.display(),
            lists = revoked.ders.len(),
            revoked = revoked.len(),
            "revocation lists loaded"
        );
        Ok(Revocations {
            shared: Arc::new(Shared {
                crl: crl.to_path_buf(),
                ca: ca.to_path_buf(),
                current: RwLock::new(Arc::new(revoked)),
                stamp: Mutex::new(Some(stamp)),
                stale: AtomicBool::new(false),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Whether the certificate with this serial number is revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.current().contains(serial)
    }

    /// How many certificates the lists in force revoke.
    pub fn revoked(&self) -> usize {
        self.current().len()
    }

    /// Whether the file as it now is failed to load, so older lists are in
    /// force.
    pub fn stale(&self) -> bool {
        self.shared.stale.load(Ordering::Relaxed)
    }

    /// Counts the lists taken since start; changes with every reload.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// The lists in force.
    pub fn current(&self) -> Arc<RevokedSerials> {
        match self.shared.current.read() {
            Ok(c) => c.clone(),
            // A panic while swapping in a new set cannot leave a torn one:
            // the write is one pointer.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the file if it changed since it was last read. `Ok(true)`:
    /// new lists are in force; an error leaves the old ones in force and is
    /// not repeated until the file changes again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let s = &self.shared;
        let now = Stamp::of(&s.crl).ok();
        {
            let mut seen = s.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let revoked =
            read(&s.crl, &s.ca).inspect_err(|_| s.stale.store(true, Ordering::Relaxed))?;
        s.stale.store(false, Ordering::Relaxed);
        let (lists, count) = (revoked.ders.len(), revoked.len());
        *s.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(revoked);
        s.generation.fetch_add(1, Ordering::Release);
        tracing::info!(path = %s.crl.display(), lists, revoked = count, "revocation lists reloaded");
        Ok(true)
    }

    /// Looks at the file every [`RELOAD_EVERY`] until `stop` turns true.
    pub async fn watch(self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.reload_if_changed()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(
                    error = %error_chain(&e),
                    "revocation lists not reloaded; the previous ones stay in force"
                ),
                Err(e) => tracing::error!(error = %e, "revocation list reload failed"),
            }
        }
    }
}

fn read(crl: &Path, ca: &Path) -> Result<RevokedSerials, TlsError> {
    let file = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let crl_text = file("revocation list", crl)?;
    let ca_text = file("CA certificate", ca)?;
    RevokedSerials::parse(&crl_text, &ca_text).map_err(|reason| TlsError::Revocations {
        path: crl.to_path_buf(),
        reason,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// A request's certificate, kept with the request so a call made later on
/// the same stream can ask whether it has been revoked since.
#[derive(Clone)]
pub struct CertStanding {
    serial: Arc<[u8]>,
    revocations: Revocations,
}

impl CertStanding {
    pub fn new(serial: &[u8], revocations: Revocations) -> CertStanding {
        CertStanding {
            serial: serial.into(),
            revocations,
        }
    }

    /// Why the certificate may no longer be used, if it may not.
    pub fn revoked(&self) -> Option<String> {
        self.revocations
            .is_revoked(&self.serial)
            .then(|| revoked_message(&self.serial))
    }
}

/// The refusal a revoked certificate gets.
pub fn revoked_message(serial: &[u8]) -> String {
    format!(
        "the client certificate (serial {}) has been revoked",
        serial_hex(serial)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::certs::tests::{revocation_list, test_ca};

    #[test]
    fn serials_compare_without_sign_padding() {
        assert_eq!(normal_serial(&[0, 0x80, 1]), &[0x80, 1]);
        assert_eq!(normal_serial(&[0]), &[0]);
        assert_eq!(normal_serial(&[]), &[] as &[u8]);
        assert_eq!(serial_hex(&[0, 0xab, 0x01]), "ab01");
    }

    #[test]
    fn a_list_from_the_ca_revokes_what_it_names() {
        let ca = test_ca();
        let crl = revocation_list(&ca, &[&[0x01, 0x02], &[0x7f]]);
        let revoked = RevokedSerials::parse(crl.as_bytes(), ca.cert_pem.as_bytes())
            .expect("the CA's own list");
        assert!(revoked.contains(&[0x01, 0x02]));
        assert!(revoked.contains(&[0x00, 0x7f]));
        assert!(!revoked.contains(&[0x01]));
        assert_eq!(revoked.len(), 2);
    }

    #[test]
    fn a_list_from_another_ca_or_altered_is_refused() {
        let ca = test_ca();
        let other = test_ca();
        let theirs = revocation_list(&other, &[&[0x05]]);
        let err = RevokedSerials::parse(theirs.as_bytes(), ca.cert_pem.as_bytes())
            .expect_err("another CA's list");
        // Both test CAs have the same name, so only the signature tells.
        assert!(err.contains("signature"), "{err}");

        let ours = revocation_list(&ca, &[&[0x05]]);
        let der = pem_blocks(ours.as_bytes(), "X509 CRL").expect("pem")[0].clone();
        let serial_at = der
            .windows(3)
            .position(|w| w == [0x02, 0x01, 0x05])
            .expect("the revoked serial's DER")
            + 2;
        let mut altered = der.clone();
        altered[serial_at] = 0x06;
        let err =
            RevokedSerials::parse(&altered, ca.cert_pem.as_bytes()).expect_err("an altered list");
        assert!(err.contains("signature"), "{err}");
        // The same bytes unaltered, as DER, are accepted.
        assert!(RevokedSerials::parse(&der, ca.cert_pem.as_bytes()).is_ok());
    }

    #[test]
    fn files_without_a_list_are_refused() {
        let ca = test_ca();
        for text in ["", "   \n", "not a list", &ca.cert_pem] {
            assert!(
                RevokedSerials::parse(text.as_bytes(), ca.cert_pem.as_bytes()).is_err(),
                "{text:?} accepted"
            );
        }
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_bad_one_keeps_the_old_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = test_ca();
        let (ca_path, crl_path) = (dir.path().join("ca.pem"), dir.path().join("crl.pem"));
        std::fs::write(&ca_path, &ca.cert_pem).expect("ca");
        std::fs::write(&crl_path, revocation_list(&ca, &[])).expect("crl");
        let r = Revocations::load(&crl_path, &ca_path).expect("load");
        assert!(!r.is_revoked(&[9]));
        assert!(!r.reload_if_changed().expect("unchanged"));

        // Replaced by rename, as `oneid revoke` does.
        let next = dir.path().join("crl.new");
        std::fs::write(&next, revocation_list(&ca, &[&[9]])).expect("crl");
        std::fs::rename(&next, &crl_path).expect("rename");
        assert!(r.reload_if_changed().expect("changed"));
        assert!(r.is_revoked(&[9]));

        std::fs::write(&crl_path, "garbage").expect("garbage");
        assert!(!r.stale());
        assert!(r.reload_if_changed().is_err());
        assert!(r.is_revoked(&[9]), "the lists in force stay");
        assert!(r.stale());
        // Reported once, not on every look.
        assert!(!r.reload_if_changed().expect("same garbage"));
        std::fs::remove_file(&crl_path).expect("remove");
        assert!(r.reload_if_changed().is_err());
        assert!(r.is_revoked(&[9]));
    }
}
