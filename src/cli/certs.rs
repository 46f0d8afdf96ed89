//! `oneid certs`: a development CA with node and client certificates, for
//! `oneid demo`, the tests and trying TLS locally. Production brings its own
//! PKI and points `tls.ca`, `tls.cert` and `tls.key` at it.

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
        },
    )
    .with_context(|| format!("writing certificates to {}", a.out.display()))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}
