//! A development PKI for `oneid certs`, `oneid demo` and the tests: one CA,
//! a certificate per node (`oneid://node/<id>`, valid for the given hosts,
//! as server and as client) and one per client role
//! (`oneid://role/...`). Production brings its own certificates.
//!
//! With the CA key kept (`--keep-ca-key`), it also issues the CA's
//! revocation list (`crl.pem`), empty at first, and [`revoke`] adds to it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::pem::Pem;

use super::principal::{Role, NODE_URI};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0} already exists; pick an empty directory so old and new certificates do not mix")]
    Exists(PathBuf),
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to issue.
pub struct Plan<'a> {
    pub nodes: &'a [u64],
    pub clients: &'a [Role],
    /// DNS names and IP addresses the node certificates are valid for.
    pub hosts: &'a [String],
    /// Write the CA's private key (`ca.key`) and an empty revocation list
    /// (`crl.pem`), so certificates can be revoked later. Without it the
    /// key is dropped once every certificate is signed.
    pub keep_ca_key: bool,
}

/// File names inside an output directory.
pub fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// The CA's private key, written only with [`Plan::keep_ca_key`].
pub fn ca_key_file(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// The CA's revocation list, written only with [`Plan::keep_ca_key`].
pub fn crl_file(dir: &Path) -> PathBuf {
    dir.join("crl.pem")
}

/// How long a list issued here is current (its next update); the node
/// keeps honouring a list past it.
const CRL_VALID_FOR: time::Duration = time::Duration::days(365);

/// (certificate, key) of node `id`.
pub fn node_files(dir: &Path, id: u64) -> (PathBuf, PathBuf) {
    pair(dir, &format!("node-{id}"))
}

/// (certificate, key) of a client with `role`: `client-carrier-CMCC.pem`.
pub fn client_files(dir: &Path, role: &Role) -> (PathBuf, PathBuf) {
    pair(
        dir,
        &format!("client-{}", role.to_string().replace(':', "-")),
    )
}

fn pair(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    )
}

/// Issues a fresh CA and every certificate of `plan` into `dir` (created if
/// missing). Returns the files written.
pub fn generate(dir: &Path, plan: &Plan) -> Result<Vec<PathBuf>, CertError> {
    let ca_path = ca_file(dir);
    if ca_path.exists() {
        return Err(CertError::Exists(ca_path));
    }
    std::fs::create_dir_all(dir).map_err(|source| CertError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "oneid development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    // The key leaves memory only when asked to be kept.
    let ca_key_pem = plan.keep_ca_key.then(|| ca_key.serialize_pem());
    let issuer = Issuer::new(ca_params, ca_key);

    let mut written = vec![write(&ca_path, &ca_cert.pem())?];
    if let Some(ca_key_pem) = ca_key_pem {
        written.push(write_private(&ca_key_file(dir), &ca_key_pem)?);
        let empty = sign_list(&issuer, 1, Vec::new())?;
        written.push(write(&crl_file(dir), &empty)?);
    }
    for &id in plan.nodes {
        let mut params = CertificateParams::new(plan.hosts.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("oneid node {id}"));
        params
            .subject_alt_names
            .push(SanType::URI(format!("{NODE_URI}{id}").try_into()?));
        // Peers dial each other with this certificate too.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert, key) = node_files(dir, id);
        written.extend(issue(params, &issuer, &cert, &key)?);
    }
    for role in plan.clients {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("oneid client {role}"));
        params
            .subject_alt_names
            .push(SanType::URI(role.uri().try_into()?));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = client_files(dir, role);
        written.extend(issue(params, &issuer, &cert, &key)?);
    }
    Ok(written)
}

/// What [`revoke`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The new list's number.
    pub number: u64,
    /// Serial numbers (hex) newly listed.
    pub added: Vec<String>,
    /// Serial numbers (hex) of the given certificates that were listed
    /// already.
    pub already: Vec<String>,
    /// Certificates on the new list.
    pub total: usize,
}

/// Issues a new revocation list into `dir/crl.pem`: what the current one
/// lists, plus each certificate in `certs` (which must be issued by this
/// CA). The list is replaced by rename, so a node never reads half of it.
pub fn revoke(dir: &Path, certs: &[PathBuf]) -> Result<Revoked, CertError> {
    let ca_pem = read_text(&ca_file(dir))?;
    let key_path = ca_key_file(dir);
    let key = KeyPair::from_pem(&read_text(&key_path)?).map_err(|e| CertError::Invalid {
        path: key_path.clone(),
        reason: format!("not a private key: {e}"),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key)?;
    let ca_der = one_block(&ca_file(dir), &ca_pem, "CERTIFICATE")?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).map_err(|e| CertError::Invalid {
        path: ca_file(dir),
        reason: format!("unparsable: {e}"),
    })?;

    let crl_path = crl_file(dir);
    let (mut entries, number) = match std::fs::read_to_string(&crl_path) {
        Ok(text) => listed(&crl_path, &text, &ca)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(source) => {
            return Err(CertError::Read {
                path: crl_path,
                source,
            })
        }
    };
    let now = OffsetDateTime::now_utc();
    let (mut added, mut already) = (Vec::new(), Vec::new());
    for path in certs {
        let text = read_text(path)?;
        let der = one_block(path, &text, "CERTIFICATE")?;
        let (_, cert) =
            x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Invalid {
                path: path.clone(),
                reason: format!("unparsable certificate: {e}"),
            })?;
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| CertError::Invalid {
                path: path.clone(),
                reason: "not issued by this CA".into(),
            })?;
        let serial = cert.raw_serial().to_vec();
        let hex = super::revocation::serial_hex(&serial);
        if entries
            .iter()
            .any(|(s, _)| super::revocation::same_serial(s, &serial))
        {
            already.push(hex);
        } else {
            entries.push((serial, now));
            added.push(hex);
        }
    }
    let number = number + 1;
    let total = entries.len();
    let pem = sign_list(&issuer, number, entries)?;
    let staged = dir.join("crl.pem.new");
    write(&staged, &pem)?;
    std::fs::rename(&staged, &crl_path).map_err(|source| CertError::Write {
        path: crl_path,
        source,
    })?;
    Ok(Revoked {
        number,
        added,
        already,
        total,
    })
}

/// The entries (serial, revocation time) and number of the CA's current
/// list in `text`, which must verify against the CA.
#[allow(clippy::type_complexity)]
fn listed(
    path: &Path,
    text: &str,
    ca: &x509_parser::certificate::X509Certificate,
) -> Result<(Vec<(Vec<u8>, OffsetDateTime)>, u64), CertError> {
    let invalid = |reason: String| CertError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let der = one_block(path, text, "X509 CRL")?;
    let (_, crl) =
        x509_parser::parse_x509_crl(&der).map_err(|e| invalid(format!("unparsable: {e}")))?;
    crl.verify_signature(ca.public_key())
        .map_err(|_| invalid("not signed by this CA".into()))?;
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0);
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| (r.raw_serial().to_vec(), r.revocation_date.to_datetime()))
        .collect();
    Ok((entries, number))
}

/// The DER contents of the first PEM block labelled `label` in `text`.
fn one_block(path: &Path, text: &str, label: &str) -> Result<Vec<u8>, CertError> {
    Pem::iter_from_buffer(text.as_bytes())
        .filter_map(Result::ok)
        .find(|b| b.label == label)
        .map(|b| b.contents)
        .ok_or_else(|| CertError::Invalid {
            path: path.to_path_buf(),
            reason: format!("holds no {label} block"),
        })
}

fn read_text(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A revocation list numbered `number`, listing `entries`, signed by the CA.
fn sign_list(
    issuer: &Issuer<'_, KeyPair>,
    number: u64,
    entries: Vec<(Vec<u8>, OffsetDateTime)>,
) -> Result<String, CertError> {
    let now = OffsetDateTime::now_utc();
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_VALID_FOR,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: entries
            .into_iter()
            .map(|(serial, at)| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at,
                reason_code: None,
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer)?.pem()?)
}

fn issue(
    params: CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<[PathBuf; 2], CertError> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok([
        write(cert_path, &cert.pem())?,
        write_private(key_path, &key.serialize_pem())?,
    ])
}

fn write(path: &Path, text: &str) -> Result<PathBuf, CertError> {
    std::fs::write(path, text).map_err(|source| CertError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

/// Private keys are readable by their owner only.
fn write_private(path: &Path, text: &str) -> Result<PathBuf, CertError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| CertError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A CA for unit tests, with its certificate and signing key.
    pub(crate) struct TestCa {
        pub cert_pem: String,
        pub issuer: Issuer<'static, KeyPair>,
    }

    pub(crate) fn test_ca() -> TestCa {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "oneid test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// `ca`'s list revoking `serials`.
    pub(crate) fn revocation_list(ca: &TestCa, serials: &[&[u8]]) -> String {
        let now = OffsetDateTime::now_utc();
        let entries = serials.iter().map(|s| (s.to_vec(), now)).collect();
        sign_list(&ca.issuer, 1, entries).expect("list")
    }

    fn plan<'a>(keep_ca_key: bool, clients: &'a [Role], hosts: &'a [String]) -> Plan<'a> {
        Plan {
            nodes: &[1],
            clients,
            hosts,
            keep_ca_key,
        }
    }

    #[test]
    fn revoking_adds_to_the_list_and_is_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roles = [Role::Query, Role::Admin];
        let hosts = ["localhost".to_string()];
        generate(dir.path(), &plan(true, &roles, &hosts)).expect("generate");
        let ca_pem = std::fs::read(ca_file(dir.path())).expect("ca");
        let serials = |dir: &Path| {
            let crl = std::fs::read(crl_file(dir)).expect("crl");
            super::super::revocation::RevokedSerials::parse(&crl, &ca_pem).expect("valid list")
        };
        assert!(serials(dir.path()).is_empty());

        let (query, _) = client_files(dir.path(), &Role::Query);
        let first = revoke(dir.path(), std::slice::from_ref(&query)).expect("revoke");
        assert_eq!((first.number, first.added.len(), first.total), (2, 1, 1));
        let again = revoke(dir.path(), std::slice::from_ref(&query)).expect("again");
        assert_eq!(again.already, first.added);
        assert_eq!((again.number, again.total), (3, 1));

        let (admin, _) = client_files(dir.path(), &Role::Admin);
        revoke(dir.path(), &[admin]).expect("second certificate");
        assert_eq!(serials(dir.path()).len(), 2);
    }

    #[test]
    fn revoking_refuses_another_cas_certificate_and_needs_the_key() {
        let (mine, theirs) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let roles = [Role::Query];
        let hosts = ["localhost".to_string()];
        generate(mine.path(), &plan(true, &roles, &hosts)).expect("mine");
        generate(theirs.path(), &plan(false, &roles, &hosts)).expect("theirs");
        let (foreign, _) = client_files(theirs.path(), &Role::Query);
        let err = revoke(mine.path(), &[foreign]).expect_err("foreign certificate");
        assert!(err.to_string().contains("not issued by this CA"), "{err}");
        let before = std::fs::read(crl_file(mine.path())).expect("crl");
        assert_eq!(std::fs::read(crl_file(mine.path())).expect("crl"), before);

        assert!(!ca_key_file(theirs.path()).exists());
        assert!(!crl_file(theirs.path()).exists());
        let (own, _) = client_files(theirs.path(), &Role::Query);
        let err = revoke(theirs.path(), &[own]).expect_err("no CA key");
        assert!(matches!(err, CertError::Read { .. }), "{err}");
    }
}
