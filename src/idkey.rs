//! The keyed hash that replaces an identity number everywhere past the API:
//! `id_key = HMAC-SHA256(pepper, doc_type ‖ normalized number)`. Without the
//! pepper, the raft log and the database cannot be reversed into ID numbers
//! by enumerating the (small) space of valid numbers.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::command::IdKey;
use crate::domain::Identity;

/// Shortest pepper accepted: 128 bits.
pub const MIN_PEPPER_BYTES: usize = 16;

/// The keyed hashes of one node, one pepper per version. Version 1 keys are
/// `HMAC(pepper_1, input)`; version `v` keys are `HMAC(pepper_v, key_{v-1})`,
/// so a rotation can re-key stored records without the ID numbers, and a
/// version-`v` key cannot be computed without every pepper up to `v`.
#[derive(Clone)]
pub struct IdHasher {
    macs: Arc<RwLock<Arc<Vec<Hmac<Sha256>>>>>,
    /// Re-read when a version this node lacks is asked for, so a new pepper
    /// appended to the file is picked up without a restart.
    file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PepperError {
    #[error("pepper version {version} is {len} bytes; at least {MIN_PEPPER_BYTES} are required")]
    TooShort { version: u32, len: usize },
    #[error("reading pepper file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no pepper: pass --pepper-file or set ONEID_PEPPER")]
    Missing,
    #[error(
        "this node has pepper versions 1..={have}, not {version}: append it as line {version} \
         of the pepper file on every node"
    )]
    MissingVersion { version: u32, have: u32 },
}

fn macs_of(peppers: &[&[u8]]) -> Result<Vec<Hmac<Sha256>>, PepperError> {
    if peppers.is_empty() {
        return Err(PepperError::Missing);
    }
    peppers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let too_short = || PepperError::TooShort {
                version: i as u32 + 1,
                len: p.len(),
            };
            if p.len() < MIN_PEPPER_BYTES {
                return Err(too_short());
            }
            Hmac::<Sha256>::new_from_slice(p).map_err(|_| too_short())
        })
        .collect()
}

/// One pepper per line, version 1 first; trailing whitespace on each line
/// and blank lines at the end are ignored.
fn parse_lines(text: &[u8]) -> Result<Vec<Hmac<Sha256>>, PepperError> {
    let mut lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii_end())
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    macs_of(&lines)
}

fn read_file(path: &std::path::Path) -> Result<Vec<Hmac<Sha256>>, PepperError> {
    let bytes = std::fs::read(path).map_err(|source| PepperError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_lines(&bytes)
}

impl IdHasher {
    /// A hasher with version 1 only.
    pub fn new(pepper: &[u8]) -> Result<IdHasher, PepperError> {
        IdHasher::with_versions(&[pepper])
    }

    /// A hasher with `peppers[0]` as version 1, `peppers[1]` as 2, ...
    pub fn with_versions(peppers: &[&[u8]]) -> Result<IdHasher, PepperError> {
        Ok(IdHasher {
            macs: Arc::new(RwLock::new(Arc::new(macs_of(peppers)?))),
            file: None,
        })
    }

    /// Loads the peppers from a file or, failing that, from the
    /// `ONEID_PEPPER` value given (versions on separate lines in both).
    pub fn load(
        file: Option<&std::path::Path>,
        env: Option<&str>,
    ) -> Result<IdHasher, PepperError> {
        let (macs, file) = match (file, env) {
            (Some(path), _) => (read_file(path)?, Some(path.to_path_buf())),
            (None, Some(v)) => (parse_lines(v.trim().as_bytes())?, None),
            (None, None) => return Err(PepperError::Missing),
        };
        Ok(IdHasher {
            macs: Arc::new(RwLock::new(Arc::new(macs))),
            file,
        })
    }

    fn loaded(&self) -> Arc<Vec<Hmac<Sha256>>> {
        match self.macs.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The highest pepper version this node has.
    pub fn versions(&self) -> u32 {
        self.loaded().len() as u32
    }

    /// Ok when this node has pepper `version` (re-reading the pepper file
    /// if needed), else why not.
    pub fn require(&self, version: u32) -> Result<(), PepperError> {
        self.up_to(version).map(|_| ())
    }

    /// The peppers up to `version`, reading the pepper file again if this
    /// node does not have that version yet.
    fn up_to(&self, version: u32) -> Result<Arc<Vec<Hmac<Sha256>>>, PepperError> {
        let macs = self.loaded();
        if version >= 1 && version as usize <= macs.len() {
            return Ok(macs);
        }
        let missing = |have: usize| PepperError::MissingVersion {
            version,
            have: have as u32,
        };
        let Some(path) = self.file.as_deref().filter(|_| version > macs.len() as u32) else {
            return Err(missing(macs.len()));
        };
        let fresh = Arc::new(read_file(path)?);
        if fresh.len() < version as usize {
            return Err(missing(fresh.len()));
        }
        tracing::info!(versions = fresh.len(), "loaded a new pepper version");
        match self.macs.write() {
            Ok(mut m) => *m = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    fn mac(m: &Hmac<Sha256>, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = m.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The version-1 key of an identity.
    pub fn id_key(&self, identity: &Identity) -> IdKey {
        Self::mac(&self.loaded()[0], &[&identity.hash_input()])
    }

    /// The key of an identity under pepper `version`.
    pub fn id_key_at(&self, identity: &Identity, version: u32) -> Result<IdKey, PepperError> {
        let macs = self.up_to(version)?;
        let mut key = Self::mac(&macs[0], &[&identity.hash_input()]);
        for m in &macs[1..version as usize] {
            key = Self::mac(m, &[&key]);
        }
        Ok(key)
    }

    /// A version `to - 1` key moved to version `to`.
    pub fn rekey(&self, key: &IdKey, to: u32) -> Result<IdKey, PepperError> {
        let macs = self.up_to(to)?;
        if to < 2 {
            return Err(PepperError::MissingVersion {
                version: to,
                have: macs.len() as u32,
            });
        }
        Ok(Self::mac(&macs[to as usize - 1], &[key]))
    }

    /// Keyed tag of the last six characters of an ID number under pepper
    /// `version`, stored with each card so a linkage query (number + last
    /// six) can be checked without keeping any part of the number in
    /// plaintext. The `last6:` prefix separates it from `id_key` inputs,
    /// which start with a doc type code.
    pub fn last6_tag_at(&self, last6: &str, version: u32) -> Result<[u8; 16], PepperError> {
        let macs = self.up_to(version)?;
        let mut tag = truncated(Self::mac(&macs[0], &[b"last6:", last6.as_bytes()]));
        for m in &macs[1..version as usize] {
            tag = truncated(Self::mac(m, &[b"last6:", &tag]));
        }
        Ok(tag)
    }

    /// A version `to - 1` tag moved to version `to`.
    pub fn retag(&self, tag: &[u8; 16], to: u32) -> Result<[u8; 16], PepperError> {
        let macs = self.up_to(to)?;
        if to < 2 {
            return Err(PepperError::MissingVersion {
                version: to,
                have: macs.len() as u32,
            });
        }
        Ok(truncated(Self::mac(
            &macs[to as usize - 1],
            &[b"last6:", tag],
        )))
    }
}

fn truncated(full: [u8; 32]) -> [u8; 16] {
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&full[..16]);
    tag
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
        assert_eq!(
            a.last6_tag_at(id.last6(), 1).unwrap(),
            a.last6_tag_at("31002X", 1).unwrap()
        );
        assert_ne!(
            a.last6_tag_at("31002X", 1).unwrap(),
            a.last6_tag_at("310021", 1).unwrap()
        );
        assert_ne!(
            a.last6_tag_at("31002X", 1).unwrap(),
            b.last6_tag_at("31002X", 1).unwrap()
        );
    }

    #[test]
    fn short_pepper_is_refused() {
        assert!(matches!(
            IdHasher::new(b"short"),
            Err(PepperError::TooShort { version: 1, len: 5 })
        ));
        assert!(matches!(
            IdHasher::load(None, None),
            Err(PepperError::Missing)
        ));
    }

    #[test]
    fn later_versions_chain_from_earlier_keys() {
        let id = Identity::parse(DocType::ResidentId, "11010519491231002X").unwrap();
        let v1 = IdHasher::new(b"0123456789abcdef").unwrap();
        let v2 = IdHasher::with_versions(&[b"0123456789abcdef", b"fedcba9876543210"]).unwrap();
        let k1 = v1.id_key(&id);
        assert_eq!(v2.id_key_at(&id, 1).unwrap(), k1);
        let k2 = v2.id_key_at(&id, 2).unwrap();
        assert_ne!(k2, k1);
        assert_eq!(v2.rekey(&k1, 2).unwrap(), k2);
        let t2 = v2.last6_tag_at("31002X", 2).unwrap();
        assert_eq!(
            v2.retag(&v1.last6_tag_at("31002X", 1).unwrap(), 2).unwrap(),
            t2
        );
        assert_ne!(t2, v1.last6_tag_at("31002X", 1).unwrap());
        assert!(matches!(
            v1.id_key_at(&id, 2),
            Err(PepperError::MissingVersion {
                version: 2,
                have: 1
            })
        ));
        assert!(v2.rekey(&k1, 1).is_err());
    }

    #[test]
    fn a_version_appended_to_the_file_is_picked_up_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pepper");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        let h = IdHasher::load(Some(&path), None).unwrap();
        assert_eq!(h.versions(), 1);
        std::fs::write(&path, "0123456789abcdef\nshort\n").unwrap();
        assert!(matches!(
            h.rekey(&[1; 32], 2),
            Err(PepperError::TooShort { version: 2, len: 5 })
        ));
        std::fs::write(&path, "0123456789abcdef\nfedcba9876543210  \n\n").unwrap();
        assert!(h.rekey(&[1; 32], 2).is_ok());
        assert_eq!(h.versions(), 2);
        assert!(h.rekey(&[1; 32], 3).is_err());
    }
}
