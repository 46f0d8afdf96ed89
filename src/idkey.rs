//! The keyed hash that replaces an identity number everywhere past the API:
//! `id_key = HMAC-SHA256(pepper, doc_type ‖ normalized number)`. Without the
//! pepper, the raft log and the database cannot be reversed into ID numbers
//! by enumerating the (small) space of valid numbers.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::command::IdKey;
use crate::domain::Identity;

/// Shortest pepper accepted: 128 bits.
pub const MIN_PEPPER_BYTES: usize = 16;

#[derive(Clone)]
pub struct IdHasher {
    mac: Hmac<Sha256>,
}

#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    #[error("pepper is {0} bytes; at least {MIN_PEPPER_BYTES} are required")]
    TooShort(usize),
    #[error("reading pepper file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no pepper: pass --pepper-file or set ONEID_PEPPER")]
    Missing,
}

impl IdHasher {
    pub fn new(pepper: &[u8]) -> Result<IdHasher, PepperError> {
        if pepper.len() < MIN_PEPPER_BYTES {
            return Err(PepperError::TooShort(pepper.len()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(pepper)
            .map_err(|_| PepperError::TooShort(pepper.len()))?;
        Ok(IdHasher { mac })
    }

    /// Loads the pepper from a file (trailing newline ignored) or, failing
    /// that, from the `ONEID_PEPPER` value given.
    pub fn load(
        file: Option<&std::path::Path>,
        env: Option<&str>,
    ) -> Result<IdHasher, PepperError> {
        let bytes = match (file, env) {
            (Some(path), _) => {
                let mut b = std::fs::read(path).map_err(|source| PepperError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                while b.last().is_some_and(|c| c.is_ascii_whitespace()) {
                    b.pop();
                }
                b
            }
            (None, Some(v)) => v.trim().as_bytes().to_vec(),
            (None, None) => return Err(PepperError::Missing),
        };
        IdHasher::new(&bytes)
    }

    pub fn id_key(&self, identity: &Identity) -> IdKey {
        let mut mac = self.mac.clone();
        mac.update(&identity.hash_input());
        mac.finalize().into_bytes().into()
    }

    /// Keyed tag of the last six characters of an ID number, stored with each
    /// card so a linkage query (number + last six) can be checked without
    /// keeping any part of the number in plaintext. The `last6:` prefix
    /// separates it from `id_key` inputs, which start with a doc type code.
    pub fn last6_tag(&self, last6: &str) -> [u8; 16] {
        let mut mac = self.mac.clone();
        mac.update(b"last6:");
        mac.update(last6.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DocType;

    #[test]
    fn same_identity_same_key_other_pepper_other_key() {
        let id = Identity::parse(DocType::ResidentId, "11010519491231002X").unwrap();
        let a = IdHasher::new(b"0123456789abcdef").unwrap();
        let b = IdHasher::new(b"0123456789abcdeF").unwrap();
        assert_eq!(a.id_key(&id), a.id_key(&id));
        assert_ne!(a.id_key(&id), b.id_key(&id));
    }

    #[test]
    fn doc_type_is_part_of_the_key() {
        let h = IdHasher::new(b"0123456789abcdef").unwrap();
        let a = Identity::parse(DocType::Passport, "E12345678").unwrap();
        let b = Identity::parse(DocType::HkMacauPermit, "H12345678").unwrap();
        let c = Identity::parse(DocType::Passport, "H12345678").unwrap();
        assert_ne!(h.id_key(&b), h.id_key(&c));
        assert_ne!(h.id_key(&a), h.id_key(&c));
    }

    #[test]
    fn last6_tag_depends_on_digits_and_pepper() {
        let a = IdHasher::new(b"0123456789abcdef").unwrap();
        let b = IdHasher::new(b"0123456789abcdeF").unwrap();
        let id = Identity::parse(DocType::ResidentId, "11010519491231002X").unwrap();
        assert_eq!(a.last6_tag(id.last6()), a.last6_tag("31002X"));
        assert_ne!(a.last6_tag("31002X"), a.last6_tag("310021"));
        assert_ne!(a.last6_tag("31002X"), b.last6_tag("31002X"));
    }

    #[test]
    fn short_pepper_is_refused() {
        assert!(matches!(
            IdHasher::new(b"short"),
            Err(PepperError::TooShort(5))
        ));
        assert!(matches!(
            IdHasher::load(None, None),
            Err(PepperError::Missing)
        ));
    }
}
