//! Transport security and authorization: who is calling (a [`Principal`]
//! read from the verified client certificate), what each role may call
//! ([`authz`]), the TLS settings of the server and of peer channels
//! ([`tls`]), and the development CA behind `oneid certs` ([`certs`]).

pub mod authz;
pub mod certs;
pub mod principal;
pub mod tls;

pub use principal::{Principal, Role};
