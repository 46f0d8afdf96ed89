//! The caller's identity, taken from a URI in the subject alternative names
//! of its (already verified) certificate: `oneid://node/<id>` for a cluster
//! member, `oneid://role/<role>[/<name>]` for a client.

use std::fmt;

use x509_parser::extensions::GeneralName;

/// URI prefix of a node certificate.
pub const NODE_URI: &str = "oneid://node/";
/// URI prefix of a client certificate.
pub const ROLE_URI: &str = "oneid://role/";

/// What a client certificate lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A carrier, acting for its own cards only.
    Carrier(String),
    /// The 一证通查 query service: verified counts and linked-account counts.
    Query,
    /// An internet platform, acting for its own accounts only.
    Platform(String),
    Regulator,
    Admin,
}

impl Role {
    /// Parses `carrier:CMCC`, `query`, `platform:wechat`, `regulator`, `admin`
    /// (the `oneid certs --clients` spelling).
    pub fn parse(spec: &str) -> Result<Role, String> {
        let (kind, name) = match spec.split_once(':') {
            Some((k, n)) => (k, Some(n)),
            None => (spec, None),
        };
        let named = |n: Option<&str>| match n {
            Some(n) if valid_name(n) => Ok(n.to_string()),
            _ => Err(format!(
                "role '{spec}' needs a name of letters, digits, '-' or '_' after ':'"
            )),
        };
        let bare = |r: Role| match name {
            None => Ok(r),
            Some(_) => Err(format!("role '{kind}' takes no name")),
        };
        match kind {
            "carrier" => Ok(Role::Carrier(named(name)?)),
            "platform" => Ok(Role::Platform(named(name)?)),
            "query" => bare(Role::Query),
            "regulator" => bare(Role::Regulator),
            "admin" => bare(Role::Admin),
            _ => Err(format!(
                "unknown role '{spec}' (carrier:<code>, query, platform:<name>, regulator, admin)"
            )),
        }
    }

    /// The URI that carries this role in a certificate.
    pub fn uri(&self) -> String {
        format!("{ROLE_URI}{}", self.to_string().replace(':', "/"))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Carrier(c) => write!(f, "carrier:{c}"),
            Role::Query => f.write_str("query"),
            Role::Platform(p) => write!(f, "platform:{p}"),
            Role::Regulator => f.write_str("regulator"),
            Role::Admin => f.write_str("admin"),
        }
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `--insecure`: there is no certificate, so the caller is trusted as an
    /// operator holding every role.
    Operator,
    /// A cluster member, by node id.
    Node(u64),
    Client {
        role: Role,
        /// The certificate subject, for the audit trail.
        subject: String,
    },
}

/// A verified certificate: the principal it names and its serial number
/// (which revocation lists name it by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certified {
    pub who: Principal,
    pub serial: Vec<u8>,
}

impl Certified {
    /// Reads a verified DER certificate; an error says why a certificate
    /// signed by the cluster CA still names nobody.
    pub fn from_der(der: &[u8]) -> Result<Certified, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("unparsable certificate: {e}"))?;
        let who = named_by(&cert)?;
        Ok(Certified {
            who,
            serial: cert.raw_serial().to_vec(),
        })
    }
}

/// The principal the URIs of `cert`'s subject alternative names name.
fn named_by(cert: &x509_parser::certificate::X509Certificate) -> Result<Principal, String> {
    let subject = cert.subject().to_string();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subject alternative names: {e}"))?;
    let uris = san
        .iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|g| match g {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        });
    for uri in uris {
        if let Some(id) = uri.strip_prefix(NODE_URI) {
            let id = id
                .parse::<u64>()
                .map_err(|_| format!("node URI '{uri}' has no numeric id"))?;
            return Ok(Principal::Node(id));
        }
        if let Some(role) = uri.strip_prefix(ROLE_URI) {
            let role = Role::parse(&role.replacen('/', ":", 1))?;
            return Ok(Principal::Client { role, subject });
        }
    }
    Err(format!(
        "certificate '{subject}' carries no {NODE_URI}<id> or {ROLE_URI}<role> URI"
    ))
}

impl Principal {
    /// The name the audit trail and log lines give this caller.
    pub fn actor(&self) -> String {
        match self {
            Principal::Operator => "operator(insecure)".into(),
            Principal::Node(id) => format!("node:{id}"),
            Principal::Client { role, subject } => format!("{role} [{subject}]"),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.actor())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_spelling_and_uri() {
        for spec in [
            "carrier:CMCC",
            "query",
            "platform:wechat",
            "regulator",
            "admin",
        ] {
            let role = Role::parse(spec).expect("valid role");
            assert_eq!(role.to_string(), spec);
            let from_uri = role
                .uri()
                .strip_prefix(ROLE_URI)
                .map(|r| r.replacen('/', ":", 1));
            assert_eq!(from_uri.as_deref(), Some(spec));
        }
    }

    #[test]
    fn malformed_roles_are_refused() {
        for spec in ["carrier", "carrier:", "query:x", "root", "platform:a/b", ""] {
            assert!(Role::parse(spec).is_err(), "{spec} accepted");
        }
    }
}
