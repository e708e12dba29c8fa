//! Versions and objects: the narrow storage interface and its redb backend.
//!
//! Everything the protocol code needs from storage goes through the
//! [`Store`] trait, so that a replicated backend (for an RFS pair) can be
//! added beside [`RedbStore`] without touching the services. The trait is
//! synchronous: callers run it on tokio's blocking pool.

mod codec;
mod redb_store;
mod reopen;

use std::collections::BTreeMap;

use rfs_core::{Digest, Entry, KeyHash, Manifest, RelPath};
use serde::{Deserialize, Serialize};

pub use redb_store::RedbStore;
pub use reopen::ReopeningStore;

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginSource {
    /// The tree found on disk when the volume was first served.
    Import,
    /// A commit from a client.
    Client,
    /// A change made by another program on the RFS host.
    Local,
}

impl OriginSource {
    /// Returns the lowercase name used in logs and output.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginSource::Import => "import",
            OriginSource::Client => "client",
            OriginSource::Local => "local",
        }
    }
}

/// Who made a version, from where, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Import, client commit or local change.
    pub source: OriginSource,
    /// The client's address, or empty for changes made on the host.
    pub address: String,
    /// The client's key hash, when it authenticated.
    pub key_hash: Option<KeyHash>,
    /// The host name the client reported, or this host's name.
    pub host_name: String,
    /// The process id the client reported.
    pub process_id: u32,
    /// Seconds since the Unix epoch.
    pub time_unix: i64,
    /// Free text given by the client.
    pub reason: String,
}

/// The record of one version: its number, origin and what it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The version number, from 1.
    pub version: u64,
    /// Who made it.
    pub origin: Origin,
    /// Entries added by this version.
    pub added: u64,
    /// Entries modified by this version.
    pub modified: u64,
    /// Entries deleted by this version.
    pub deleted: u64,
    /// Entries in the volume after this version.
    pub entries: u64,
}

/// What differs between a base version and the head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The head version the changes lead to.
    pub head: u64,
    /// Entries added or changed since the base, as they are in the head.
    pub changed: Vec<Entry>,
    /// Paths present in the base and absent from the head.
    pub deleted: Vec<RelPath>,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCheck {
    /// How many objects were re-hashed.
    pub objects_checked: u64,
    /// How many versions were checked for their objects.
    pub versions_checked: u64,
    /// Objects whose content no longer matches their digest, with the
    /// versions (volume, number) whose manifests use them.
    pub corrupt: Vec<(Digest, Vec<(String, u64)>)>,
    /// Objects that versions use but the store lacks, with those versions.
    pub missing: Vec<(Digest, Vec<(String, u64)>)>,
}

/// A request to record a new version.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The volume.
    pub volume: String,
    /// The base the change set was made against. `None` records the change
    /// set unconditionally (import and local changes, which are already on
    /// disk).
    pub base: Option<u64>,
    /// Entries to add or replace.
    pub changed: Vec<Entry>,
    /// Paths to delete.
    pub deleted: Vec<RelPath>,
    /// Who asks.
    pub origin: Origin,
    /// The fencing token the writer holds the volume's lock with. When set,
    /// the transaction that records the version refuses it unless the token
    /// is still the last one granted ([`Store::next_fencing_token`]).
    /// `None` for changes that need no lock (import, local changes).
    pub fencing_token: Option<u64>,
}

/// Why storage refused or failed an operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The volume has no versions.
    #[error("volume {0:?} not found")]
    VolumeNotFound(String),
    /// The version does not exist.
    #[error("version {version} of volume {volume:?} not found")]
    VersionNotFound {
        /// The volume.
        volume: String,
        /// The version asked for.
        version: u64,
    },
    /// Paths of the change set changed since its base.
    #[error("{} paths changed on the server since version {base}", paths.len())]
    Conflict {
        /// The base of the refused change set.
        base: u64,
        /// The head at the time.
        head: u64,
        /// The conflicting paths.
        paths: Vec<RelPath>,
    },
    /// The change set would not leave a well-formed tree, or names objects
    /// the server lacks.
    #[error("{0}")]
    Rejected(String),
    /// The writer's fencing token is no longer the last one granted: its
    /// lock was granted again (or cleared) since.
    #[error(
        "lock token {token} of volume {volume:?} is no longer valid: the lock was granted \
         again since (token {current})"
    )]
    StaleToken {
        /// The volume.
        volume: String,
        /// The token the writer sent.
        token: u64,
        /// The last token granted.
        current: u64,
    },
    /// A file's object is not stored.
    #[error("object {digest} of {path:?} is not on the server; upload it first")]
    MissingObject {
        /// The path that needs it.
        path: RelPath,
        /// The missing object.
        digest: Digest,
    },
    /// Stored data failed to decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
}

/// The result type of storage calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The storage of versions and objects.
pub trait Store: Send + Sync + 'static {
    /// Returns the id of this store's history, made when it was created.
    /// Version numbers mean something only within one history.
    fn history_id(&self) -> &str;

    /// Returns the head version of a volume, or `None` before its first.
    fn head(&self, volume: &str) -> Result<Option<u64>>;

    /// Returns what changed from `base` (0 for nothing) to the head.
    fn changes_since(&self, volume: &str, base: u64) -> Result<Changes>;

    /// Returns the manifest of the head version.
    fn head_manifest(&self, volume: &str) -> Result<Manifest>;

    /// Returns the head's entry at each of `paths` (`None` where absent),
    /// costing one lookup per path.
    fn head_entries(&self, volume: &str, paths: &[RelPath]) -> Result<Vec<Option<Entry>>>;

    /// Returns the manifest of any recorded version.
    fn manifest_at(&self, volume: &str, version: u64) -> Result<Manifest>;

    /// Returns the record of one version.
    fn record(&self, volume: &str, version: u64) -> Result<VersionRecord>;

    /// Re-hashes every stored object and checks that every version's
    /// objects are stored.
    fn verify(&self) -> Result<StoreCheck>;

    /// Returns the newest `limit` version records (all for 0), newest first.
    fn log(&self, volume: &str, limit: usize) -> Result<Vec<VersionRecord>>;

    /// Returns which of `digests` are not stored.
    fn missing_objects(&self, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// Stores objects whose digests the caller has verified, durably.
    fn put_objects(&self, objects: &[(Digest, Vec<u8>)]) -> Result<()>;

    /// Returns the content of an object.
    fn read_object(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;

    /// Records a new version in one durable transaction and returns it.
    fn commit(&self, request: NewVersion) -> Result<VersionRecord>;

    /// Returns the version the live tree was last brought to.
    fn applied(&self, volume: &str) -> Result<u64>;

    /// Records that the live tree now equals `version`.
    fn set_applied(&self, volume: &str, version: u64) -> Result<()>;

    /// Returns a new fencing token for the volume's lock, one higher than
    /// any before, durably.
    fn next_fencing_token(&self, volume: &str) -> Result<u64>;
}

/// Returns the counts of added and modified entries of a change set against
/// the entries they replace.
fn count_changes(previous: &BTreeMap<RelPath, Option<Entry>>, changed: &[Entry]) -> (u64, u64) {
    let mut added = 0;
    let mut modified = 0;
    for entry in changed {
        match previous.get(&entry.path) {
            Some(Some(_)) => modified += 1,
            _ => added += 1,
        }
    }
    (added, modified)
}
