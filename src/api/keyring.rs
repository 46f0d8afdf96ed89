//! Id keys as the API derives them: under the pepper version the registry
//! is at (replicated state), plus the rotation's target version while one
//! runs, so apply can bind each command to wherever its identity lives.

use std::future::Future;

use oneid_storage::records::KeyStateRecord;

use super::commands::Bound;
use super::writer::Writer;
use super::ApiError;
use crate::command::{Applied, IdKey, KeyBinding, NextKeys};
use crate::domain::{Identity, Reason};
use crate::idkey::IdHasher;
use crate::reader::Reader;

/// Reads race with a rotation's moves at most this often before giving up;
/// each move is a single batch, so one retry nearly always settles it.
const READ_ATTEMPTS: usize = 4;
/// A write refused KEY_ROTATED is derived again and retried this often.
const WRITE_ATTEMPTS: usize = 3;

/// An identity's keys for one command.
#[derive(Debug, Clone)]
pub struct Keyed {
    /// Under the registry's current version.
    pub key: IdKey,
    pub binding: KeyBinding,
}

impl Keyed {
    /// The key under a rotation's target version, while one runs.
    fn next_key(&self) -> Option<IdKey> {
        match &self.binding {
            KeyBinding::Derived {
                next: Some(next), ..
            } => Some(next.id_key),
            _ => None,
        }
    }
}

/// An identity's keys and the key state they were derived under.
pub struct Derived {
    pub state: KeyStateRecord,
    pub keyed: Keyed,
}

impl Derived {
    /// True when a replica whose key state is `seen` keeps every record of
    /// the identity under `keyed.key`: the version the key was derived
    /// under, and no rotation moving identities. Data read in one view
    /// together with `seen` is then the identity's whole state in that view.
    pub fn holds_in(&self, seen: &KeyStateRecord) -> bool {
        seen.rotating_to().is_none() && seen.current == self.state.current
    }
}

/// A registration's derived values under one version.
pub struct RegistrationKeys {
    pub keyed: Keyed,
    pub last6_tag: [u8; 16],
    pub unit_key: Option<IdKey>,
}

#[derive(Clone)]
pub struct Keyring {
    hasher: IdHasher,
    source: Source,
}

/// Where the key state comes from.
#[derive(Clone)]
enum Source {
    /// The node's replica: the registry's real, replicated state.
    Replica(Reader),
    /// A fixed state with nothing moved (the fuzz targets).
    Fixed(KeyStateRecord),
}

impl Keyring {
    pub fn new(hasher: IdHasher, reader: Reader) -> Keyring {
        Keyring {
            hasher,
            source: Source::Replica(reader),
        }
    }

    /// A keyring that derives keys as a registry in `state` would, with no
    /// identity moved yet.
    pub fn fixed(hasher: IdHasher, state: KeyStateRecord) -> Keyring {
        Keyring {
            hasher,
            source: Source::Fixed(state),
        }
    }

    /// This keyring fixed at the key state the replica holds now: a batch
    /// derives every item's keys from one read of it instead of one each
    /// (an import's 10 000 items read it 10 000 times). A rotation that
    /// starts meanwhile refuses the stale items KEY_ROTATED, as it would
    /// between any read and apply.
    pub fn pinned(&self) -> Result<Keyring, ApiError> {
        Ok(Keyring::fixed(self.hasher.clone(), self.state()?))
    }

    pub fn hasher(&self) -> &IdHasher {
        &self.hasher
    }

    fn state(&self) -> Result<KeyStateRecord, ApiError> {
        match &self.source {
            Source::Replica(reader) => Ok(reader.key_state()?),
            Source::Fixed(state) => Ok(*state),
        }
    }

    /// Keys for a command about `identity`.
    pub fn identity(&self, identity: &Identity) -> Result<Keyed, ApiError> {
        Ok(self.derived(identity)?.keyed)
    }

    /// Keys for `identity` with the key state they were derived under.
    pub fn derived(&self, identity: &Identity) -> Result<Derived, ApiError> {
        let state = self.state()?;
        let keyed = self.derive(&state, identity, None, None)?.keyed;
        Ok(Derived { state, keyed })
    }

    /// Keys, last-six tags and the unit's key of a registration (`last6`
    /// None: a command that needs only the identity's key).
    pub fn registration(
        &self,
        identity: &Identity,
        last6: Option<&str>,
        unit: Option<&Identity>,
    ) -> Result<RegistrationKeys, ApiError> {
        self.derive(&self.state()?, identity, last6, unit)
    }

    fn derive(
        &self,
        state: &KeyStateRecord,
        identity: &Identity,
        last6: Option<&str>,
        unit: Option<&Identity>,
    ) -> Result<RegistrationKeys, ApiError> {
        let h = &self.hasher;
        let at = |version: u32| -> Result<NextKeys, ApiError> {
            Ok(NextKeys {
                version,
                id_key: h.id_key_at(identity, version)?,
                last6_tag: last6.map(|l| h.last6_tag_at(l, version)).transpose()?,
                unit_key: unit.map(|u| h.id_key_at(u, version)).transpose()?,
            })
        };
        let current = at(state.current)?;
        let next = state.rotating_to().map(at).transpose()?;
        Ok(RegistrationKeys {
            keyed: Keyed {
                key: current.id_key,
                binding: KeyBinding::Derived {
                    version: state.current,
                    next,
                },
            },
            last6_tag: current.last6_tag.unwrap_or_default(),
            unit_key: current.unit_key,
        })
    }

    /// The tags a card's stored last-six tag may equal: under the current
    /// version and, during a rotation, the next (a card moves with its
    /// identity, so it holds one or the other).
    pub fn last6_tags(&self, last6: &str) -> Result<Vec<[u8; 16]>, ApiError> {
        let state = self.state()?;
        let mut versions = vec![state.current];
        versions.extend(state.rotating_to());
        versions
            .into_iter()
            .map(|v| Ok(self.hasher.last6_tag_at(last6, v)?))
            .collect()
    }

    /// The key `identity`'s records are under right now.
    fn locate(&self, keyed: &Keyed) -> Result<IdKey, ApiError> {
        match &self.source {
            Source::Replica(reader) if keyed.next_key().is_some() => {
                Ok(reader.moved_to(&keyed.key)?.unwrap_or(keyed.key))
            }
            _ => Ok(keyed.key),
        }
    }

    /// Runs the reads in `read` against the key `identity`'s records are
    /// under, again if a rotation moved them meanwhile: moves happen only
    /// during a rotation and are atomic and one-way, so finding the same key
    /// state (and, during a rotation, the same place) after the reads proves
    /// they saw the identity where it was.
    pub fn read<T>(
        &self,
        identity: &Identity,
        mut read: impl FnMut(&IdKey) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        for _ in 0..READ_ATTEMPTS {
            let before = self.state()?;
            let keyed = self.derive(&before, identity, None, None)?.keyed;
            let at = self.locate(&keyed)?;
            let value = read(&at)?;
            // `moved` ticks with every batch; only the versions matter here.
            let after = self.state()?;
            let settled = (after.current, after.next) == (before.current, before.next)
                && (before.rotating_to().is_none() || self.locate(&keyed)? == at);
            if settled {
                return Ok(value);
            }
        }
        Err(ApiError::Unavailable(
            "the identity's keys moved during every read attempt; retry".into(),
        ))
    }

    /// Proposes the command `build` makes (with keys from this keyring)
    /// under `request_id`, building it again if a rotation refused its keys.
    pub async fn submit(
        &self,
        writer: &Writer,
        request_id: &str,
        build: impl Fn() -> Result<Bound, ApiError>,
    ) -> Result<(u64, Applied), ApiError> {
        self.write(writer, || {
            let (command, keys) = build()?;
            Ok(writer.submit_keyed(request_id, command, keys))
        })
        .await
    }

    /// Proposes the command `write` builds from fresh keys, deriving them
    /// again when apply refuses them as rotated (after catching up with the
    /// log, so the retry sees the rotation that refused it).
    pub async fn write<T, F, Fut>(&self, writer: &Writer, mut write: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Result<Fut, ApiError>,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 1;
        loop {
            match write()?.await {
                Err(ApiError::Domain(e))
                    if e.reason == Reason::KeyRotated && attempt < WRITE_ATTEMPTS =>
                {
                    attempt += 1;
                    writer.linearizable().await?;
                }
                other => return other,
            }
        }
    }
}
