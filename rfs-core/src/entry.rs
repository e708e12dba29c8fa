//! Entries: one file or directory of a version, as recorded in a manifest.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::path::RelPath;

/// The permission bits an entry may carry; type bits are never stored.
pub const MODE_MASK: u32 = 0o7777;

/// What an entry is. Symlinks, devices, sockets and FIFOs are never entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file with content.
    File,
    /// A directory.
    Directory,
}

/// One file or directory: its path, kind, mode bits, size and digest.
///
/// Two entries are equal when their path, kind, mode and content are equal;
/// that is the meaning of "unchanged" everywhere in rfsd and rfs-sync.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The path relative to the volume's root.
    pub path: RelPath,
    /// File or directory.
    pub kind: EntryKind,
    /// Permission bits, at most [`MODE_MASK`].
    pub mode: u32,
    /// Size in bytes; zero for directories.
    pub size: u64,
    /// Digest of the content; `None` for directories.
    pub digest: Option<Digest>,
}

impl Entry {
    /// Returns a file entry.
    pub fn file(path: RelPath, mode: u32, size: u64, digest: Digest) -> Self {
        Self {
            path,
            kind: EntryKind::File,
            mode: mode & MODE_MASK,
            size,
            digest: Some(digest),
        }
    }

    /// Returns a directory entry.
    pub fn directory(path: RelPath, mode: u32) -> Self {
        Self {
            path,
            kind: EntryKind::Directory,
            mode: mode & MODE_MASK,
            size: 0,
            digest: None,
        }
    }

    /// Returns whether the entry is a file.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// Returns whether `other` has the same kind, mode and content, whatever
    /// its path.
    pub fn same_state(&self, other: &Entry) -> bool {
        self.kind == other.kind && self.mode == other.mode && self.digest == other.digest
    }
}

/// What `stat` says of a file, used to tell whether its content may have
/// changed since it was last hashed without reading it again.
///
/// A file whose key is unchanged is taken to have its cached digest; any
/// write through the normal file API changes the change time, so a match is
/// reliable short of someone resetting the clock and the inode at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatKey {
    /// Size in bytes.
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Status change time in nanoseconds since the Unix epoch.
    pub ctime_ns: i128,
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub device: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bits_are_dropped_from_modes() {
        let path = RelPath::new("world").unwrap();
        let entry = Entry::file(path, 0o100_644, 3, Digest::of(b"abc"));
        assert_eq!(entry.mode, 0o644);
    }

    #[test]
    fn same_state_ignores_the_path_but_not_the_mode() {
        let a = Entry::file(RelPath::new("a").unwrap(), 0o644, 1, Digest::of(b"x"));
        let mut b = Entry::file(RelPath::new("b").unwrap(), 0o644, 1, Digest::of(b"x"));
        assert!(a.same_state(&b));
        b.mode = 0o600;
        assert!(!a.same_state(&b));
    }
}
