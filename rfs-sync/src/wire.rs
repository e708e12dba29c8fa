//! Conversions between protocol messages and the shared model, checking
//! everything the server sends before the client acts on it.
//!
//! A reply that breaks the path rules or carries a malformed digest is
//! refused as a whole: the client never writes a path it has not validated.

use anyhow::{Context, Result, bail};
use proto::pb;
use rfs_core::entry::MODE_MASK;
use rfs_core::{Digest, Entry, EntryKind, RelPath};

/// Returns the protocol form of an entry.
pub(crate) fn entry_to_wire(entry: &Entry) -> pb::Entry {
    let kind = match entry.kind {
        EntryKind::File => pb::EntryKind::File,
        EntryKind::Directory => pb::EntryKind::Directory,
    };
    pb::Entry {
        path: entry.path.to_string(),
        kind: kind.into(),
        mode: entry.mode,
        size: entry.size,
        digest: entry
            .digest
            .map(|digest| digest.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

/// Returns the entry a server sent, after checking its path, kind, mode
/// and digest.
///
/// # Errors
///
/// Fails when any field breaks the protocol's rules.
pub(crate) fn entry_from_wire(entry: pb::Entry) -> Result<Entry> {
    let path = RelPath::new(entry.path.clone())
        .with_context(|| format!("server sent a bad path {:?}", entry.path))?;
    if entry.mode & !MODE_MASK != 0 {
        bail!("server sent mode {:o} for {path}", entry.mode);
    }
    match pb::EntryKind::try_from(entry.kind) {
        Ok(pb::EntryKind::File) => {
            let digest = Digest::from_slice(&entry.digest)
                .with_context(|| format!("server sent a bad digest for {path}"))?;
            Ok(Entry::file(path, entry.mode, entry.size, digest))
        }
        Ok(pb::EntryKind::Directory) => Ok(Entry::directory(path, entry.mode)),
        _ => bail!(
            "server sent an entry of unknown kind {} for {path}",
            entry.kind
        ),
    }
}

/// Returns a path a server sent, checked.
///
/// # Errors
///
/// Fails when the path breaks the rules.
pub(crate) fn path_from_wire(path: String) -> Result<RelPath> {
    RelPath::new(path.clone()).with_context(|| format!("server sent a bad path {path:?}"))
}

/// Returns a digest a server sent, checked.
///
/// # Errors
///
/// Fails when it is not 32 bytes.
pub(crate) fn digest_from_wire(bytes: &[u8]) -> Result<Digest> {
    Digest::from_slice(bytes).context("server sent a malformed digest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let path = RelPath::new("cards/card_1").unwrap();
        let file = Entry::file(path.clone(), 0o640, 3, Digest::of(b"abc"));
        let dir = Entry::directory(RelPath::new("cards").unwrap(), 0o755);

        assert_eq!(entry_from_wire(entry_to_wire(&file)).unwrap(), file);
        assert_eq!(entry_from_wire(entry_to_wire(&dir)).unwrap(), dir);
    }

    #[test]
    fn hostile_entries_are_refused() {
        let good = entry_to_wire(&Entry::file(
            RelPath::new("world").unwrap(),
            0o644,
            1,
            Digest::of(b"w"),
        ));
        let escape = pb::Entry {
            path: "../etc/passwd".into(),
            ..good.clone()
        };
        let short_digest = pb::Entry {
            digest: vec![0; 5],
            ..good.clone()
        };
        let type_bits = pb::Entry {
            mode: 0o100_644,
            ..good.clone()
        };
        let unknown_kind = pb::Entry { kind: 0, ..good };

        for entry in [escape, short_digest, type_bits, unknown_kind] {
            assert!(entry_from_wire(entry).is_err());
        }
    }
}
