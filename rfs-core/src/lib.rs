//! The model that rfsd and rfs-sync share: paths, entries, manifests,
//! digests, change sets, and file access inside a volume that never follows a
//! symlink.
//!
//! This crate knows nothing of gRPC: conversions to and from protocol types
//! happen at the service edge in `rfsd` and `rfs-sync`.

#![warn(missing_docs)]

pub mod change;
pub mod digest;
pub mod duration;
pub mod entry;
pub mod fsx;
pub mod keyhash;
pub mod manifest;
pub mod path;

pub use change::{ChangeSet, Merge};
pub use digest::Digest;
pub use entry::{Entry, EntryKind, StatKey};
pub use keyhash::KeyHash;
pub use manifest::Manifest;
pub use path::RelPath;

/// The name of the lock file that rfsd shows in a volume while a commit
/// holds its lock. It is never part of a version.
pub const LOCK_FILE_NAME: &str = ".nft-lock";

/// The name of the default volume: the shared Security World.
pub const DEFAULT_VOLUME: &str = "local";
