//! `oneid certs`: a development CA with node and client certificates, for
//! `oneid demo`, the tests and trying TLS locally. Production brings its own
//! PKI and points `tls.ca`, `tls.cert` and `tls.key` at it. `oneid revoke`
//! adds certificates to that CA's revocation list (`tls.crl`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::security::certs::{self, Plan};
use crate::security::Role;

#[derive(Args, Debug)]
pub struct CertsArgs {
    /// Directory to write into (created if missing; must not hold a CA yet).
    #[arg(long)]
    pub out: PathBuf,
    /// Node ids to issue node certificates for, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub nodes: Vec<u64>,
    /// Client roles to issue certificates for: carrier:<code>, query,
    /// platform:<name>, regulator, admin.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "carrier:CMCC,query,platform:wechat,regulator,admin"
    )]
    pub clients: Vec<String>,
    /// Host names and IP addresses the node certificates are valid for
    /// (clients and peers check the address they dial against these).
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub hosts: Vec<String>,
    /// Keep the CA's private key (`ca.key`, owner-only) and write an empty
    /// revocation list (`crl.pem`), so `oneid revoke` can revoke
    /// certificates later. Without it the key is never written.
    #[arg(long)]
    pub keep_ca_key: bool,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// The directory `oneid certs --keep-ca-key` wrote (ca.pem, ca.key,
    /// crl.pem).
    #[arg(long)]
    pub dir: PathBuf,
    /// Certificates (PEM) to revoke. None: re-issue the list as it is (a
    /// fresh next-update date).
    pub certs: Vec<PathBuf>,
}

impl CertsArgs {
    pub fn roles(&self) -> anyhow::Result<Vec<Role>> {
        self.clients
            .iter()
            .map(|c| Role::parse(c.trim()).map_err(anyhow::Error::msg))
            .collect()
    }
}

pub fn run(a: CertsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.nodes.iter().all(|id| *id > 0), "node id 0 is reserved");
    let roles = a.roles()?;
    let written = certs::generate(
        &a.out,
        &Plan {
            nodes: &a.nodes,
            clients: &roles,
            hosts: &a.hosts,
            keep_ca_key: a.keep_ca_key,
        },
    )
    .with_context(|| format!("writing certificates to {}", a.out.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

pub fn revoke(a: RevokeArgs) -> anyhow::Result<()> {
    let done = certs::revoke(&a.dir, &a.certs)
        .with_context(|| format!("revoking in {}", a.dir.display()))?;
    for serial in &done.added {
        println!("revoked serial {serial}");
    }
    for serial in &done.already {
        println!("serial {serial} was revoked already");
    }
    println!(
        "{}: list number {}, {} certificate(s) revoked; nodes with tls.crl pointing at it \
         refuse them within seconds",
        certs::crl_file(&a.dir).display(),
        done.number,
        done.total
    );
    Ok(())
}
