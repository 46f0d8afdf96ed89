//! Transport security and authorization: who is calling (a [`Principal`]
//! read from the verified client certificate), what each role may call
//! ([`authz`]), the TLS settings of the server and of peer channels
//! ([`tls`]), revoked certificates ([`revocation`]), and the development
//! CA behind `oneid certs` and `oneid revoke` ([`certs`]).

pub mod authz;
pub mod certs;
pub mod principal;
pub mod revocation;
pub mod tls;

pub use principal::{Principal, Role};
