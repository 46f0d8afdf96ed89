//! A development PKI for `oneid certs`, `oneid demo` and the tests: one CA,
//! a certificate per node (`oneid://node/<id>`, valid for the given hosts,
//! as server and as client) and one per client role
//! (`oneid://role/...`). Production brings its own certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::principal::{Role, NODE_URI};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0} already exists; pick an empty directory so old and new certificates do not mix")]
    Exists(PathBuf),
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
}

/// File names inside an output directory.
pub fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

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
    let issuer = Issuer::new(ca_params, ca_key);

    let mut written = vec![write(&ca_path, &ca_cert.pem())?];
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
