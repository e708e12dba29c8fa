//! Conversions between protocol messages and domain types, at the service
//! edge only. Every conversion from the wire validates: a bad path, kind,
//! mode or digest becomes `INVALID_ARGUMENT` before anything acts on it.

use std::time::{Duration, SystemTime};

use proto::pb;
use rfs_core::entry::MODE_MASK;
use rfs_core::{Digest, Entry, EntryKind, RelPath};

use crate::error::ServiceError;
use crate::lock::{Held, LEGACY_HOLDER};
use crate::lock_file::LegacyLockFile;
use crate::store::{Origin, VersionRecord};
use crate::volume::LockState;

/// Returns the protocol form of an entry.
pub(crate) fn entry_to_pb(entry: &Entry) -> pb::Entry {
    let kind = match entry.kind {
        EntryKind::File => pb::EntryKind::File,
        EntryKind::Directory => pb::EntryKind::Directory,
    };
    pb::Entry {
        path: entry.path.as_str().to_owned(),
        kind: kind.into(),
        mode: entry.mode,
        size: entry.size,
        digest: entry
            .digest
            .map(|digest| digest.as_bytes().to_vec())
            .unwrap_or_default(),
    }
}

/// Returns the entry a client sent, checked against the path rules and
/// `max_file_size`.
pub(crate) fn entry_from_pb(entry: &pb::Entry, max_file_size: u64) -> Result<Entry, ServiceError> {
    let path = path_from_pb(&entry.path)?;
    if entry.mode & !MODE_MASK != 0 {
        return Err(invalid(format!(
            "{:?} has mode {:o}, beyond permission bits",
            entry.path, entry.mode
        )));
    }
    match pb::EntryKind::try_from(entry.kind) {
        Ok(pb::EntryKind::File) => {
            if entry.size > max_file_size {
                return Err(invalid(format!(
                    "{:?} is {} bytes, over the limit of {max_file_size}",
                    entry.path, entry.size
                )));
            }
            let digest = digest_from_pb(&entry.digest)?;
            Ok(Entry::file(path, entry.mode, entry.size, digest))
        }
        Ok(pb::EntryKind::Directory) => Ok(Entry::directory(path, entry.mode)),
        _ => Err(invalid(format!("{:?} has no valid kind", entry.path))),
    }
}

/// Returns a path a client sent, if it follows the rules and is not a name
/// that is never synchronised.
pub(crate) fn path_from_pb(path: &str) -> Result<RelPath, ServiceError> {
    let rel = RelPath::new(path).map_err(|err| invalid(err.to_string()))?;
    if rel.is_ignored() {
        return Err(invalid(format!(
            "{path:?} is a name that is never synchronised"
        )));
    }
    Ok(rel)
}

/// Returns a digest a client sent.
pub(crate) fn digest_from_pb(bytes: &[u8]) -> Result<Digest, ServiceError> {
    Digest::from_slice(bytes).map_err(|err| invalid(err.to_string()))
}

/// Returns the protocol form of a lock holder.
pub(crate) fn holder_to_pb(held: &Held) -> pb::LockHolder {
    let now = tokio::time::Instant::now();
    let since = crate::timefmt::unix_secs(held.since);
    pb::LockHolder {
        address: held.holder.peer.addr.to_string(),
        key_hash: held
            .holder
            .peer
            .key_hash
            .map(|hash| hash.to_hex())
            .unwrap_or_default(),
        host_name: held.holder.host_name.clone(),
        process_id: held.holder.process_id,
        since_unix: since,
        lease_remaining_ms: held.expires.saturating_duration_since(now).as_millis() as u64,
        legacy: false,
        token: held.token,
    }
}

/// Returns the protocol form of whoever holds a volume's lock, or `None`
/// when it is free.
pub(crate) fn lock_state_to_pb(state: &LockState, max_age: Duration) -> Option<pb::LockHolder> {
    match state {
        LockState::Free => None,
        LockState::Held(held) => Some(holder_to_pb(held)),
        LockState::Legacy(legacy) => Some(legacy_to_pb(legacy, max_age)),
    }
}

/// Returns the protocol form of a legacy `.nft-lock`: "unknown legacy
/// holder", since its modification time, until rfsd clears it.
pub(crate) fn legacy_to_pb(legacy: &LegacyLockFile, max_age: Duration) -> pb::LockHolder {
    let age = legacy.age(SystemTime::now());
    let since = crate::timefmt::unix_secs(legacy.modified);
    pb::LockHolder {
        host_name: LEGACY_HOLDER.to_owned(),
        since_unix: since,
        lease_remaining_ms: max_age.saturating_sub(age).as_millis() as u64,
        legacy: true,
        ..pb::LockHolder::default()
    }
}

/// Returns the protocol form of a version record.
pub(crate) fn record_to_pb(record: &VersionRecord) -> pb::VersionRecord {
    pb::VersionRecord {
        version: record.version,
        origin: Some(origin_to_pb(&record.origin)),
        added: record.added,
        modified: record.modified,
        deleted: record.deleted,
        entries: record.entries,
    }
}

fn origin_to_pb(origin: &Origin) -> pb::Origin {
    pb::Origin {
        source: origin.source.as_str().to_owned(),
        address: origin.address.clone(),
        key_hash: origin
            .key_hash
            .map(|hash| hash.to_hex())
            .unwrap_or_default(),
        host_name: origin.host_name.clone(),
        process_id: origin.process_id,
        time_unix: origin.time_unix,
        reason: origin.reason.clone(),
    }
}

/// Checks a text field a client sent against a length limit.
pub(crate) fn bounded(field: &str, value: &str, limit: usize) -> Result<(), ServiceError> {
    if value.len() > limit {
        return Err(invalid(format!(
            "{field} is {} bytes, over the limit of {limit}",
            value.len()
        )));
    }
    Ok(())
}

pub(crate) fn invalid(message: String) -> ServiceError {
    ServiceError::InvalidArgument(message)
}
