//! The byte layout of entries as stored in the database.
//!
//! A stored entry is 54 bytes: kind (0 deleted, 1 file, 2 directory), mode
//! (u32), size (u64), the version that last changed it (u64), a digest flag
//! and 32 digest bytes. Version records are JSON, since they are small and
//! read by people debugging a state directory.

use rfs_core::{Digest, Entry, EntryKind, RelPath};

use super::{StoreError, VersionRecord};

const LEN: usize = 1 + 4 + 8 + 8 + 1 + 32;

/// One path's state in a version: an entry, or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stored {
    pub(super) entry: Option<Entry>,
    pub(super) changed_in: u64,
}

pub(super) fn encode(entry: Option<&Entry>, changed_in: u64) -> [u8; LEN] {
    let mut buf = [0u8; LEN];
    if let Some(entry) = entry {
        buf[0] = match entry.kind {
            EntryKind::File => 1,
            EntryKind::Directory => 2,
        };
        buf[1..5].copy_from_slice(&entry.mode.to_le_bytes());
        buf[5..13].copy_from_slice(&entry.size.to_le_bytes());
        if let Some(digest) = entry.digest {
            buf[21] = 1;
            buf[22..].copy_from_slice(digest.as_bytes());
        }
    }
    buf[13..21].copy_from_slice(&changed_in.to_le_bytes());
    buf
}

pub(super) fn decode(path: &str, bytes: &[u8]) -> Result<Stored, StoreError> {
    if bytes.len() != LEN {
        return Err(StoreError::Corrupt(format!(
            "entry {path:?} has {} bytes",
            bytes.len()
        )));
    }
    let word = |range: std::ops::Range<usize>| -> u64 {
        let mut array = [0u8; 8];
        array.copy_from_slice(&bytes[range]);
        u64::from_le_bytes(array)
    };
    let changed_in = word(13..21);
    let kind = match bytes[0] {
        0 => {
            return Ok(Stored {
                entry: None,
                changed_in,
            });
        }
        1 => EntryKind::File,
        2 => EntryKind::Directory,
        other => {
            return Err(StoreError::Corrupt(format!(
                "entry {path:?} has kind {other}"
            )));
        }
    };

    let path = RelPath::new(path).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    let mut mode = [0u8; 4];
    mode.copy_from_slice(&bytes[1..5]);
    let digest = (bytes[21] == 1)
        .then(|| Digest::from_slice(&bytes[22..]))
        .transpose()
        .map_err(|err| StoreError::Corrupt(err.to_string()))?;
    let entry = Entry {
        path,
        kind,
        mode: u32::from_le_bytes(mode),
        size: word(5..13),
        digest,
    };
    Ok(Stored {
        entry: Some(entry),
        changed_in,
    })
}

pub(super) fn encode_record(record: &VersionRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("a version record always serialises")
}

pub(super) fn decode_record(bytes: &[u8]) -> Result<VersionRecord, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|err| StoreError::Corrupt(format!("version record: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_deletions_round_trip() {
        let file = Entry::file(RelPath::new("world").unwrap(), 0o640, 12, Digest::of(b"w"));
        let dir = Entry::directory(RelPath::new("d").unwrap(), 0o755);

        for entry in [Some(&file), Some(&dir), None] {
            let path = entry.map_or("gone", |e| e.path.as_str());
            let stored = decode(path, &encode(entry, 7)).unwrap();
            assert_eq!(stored.entry.as_ref(), entry);
            assert_eq!(stored.changed_in, 7);
        }
    }

    #[test]
    fn truncated_bytes_are_reported_as_corrupt() {
        assert!(matches!(
            decode("world", &[1, 2, 3]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
