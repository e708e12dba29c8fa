//! The redb backend of [`Store`]: one database file in the state directory.
//!
//! Tables, all keyed by volume name first:
//!
//! - `heads`: volume → head version;
//! - `versions`: (volume, version) → version record;
//! - `live`: (volume, path) → the path's state in the head, including
//!   deletions, with the version that last changed it (the conflict check of
//!   a commit is one lookup per path);
//! - `changes`: (volume, version, path) → what that version did to the path
//!   (the changes since a base are one range scan, costing in proportion to
//!   what changed, not to the size of the tree);
//! - `objects`: digest → content;
//! - `applied`: volume → the version the live tree was last brought to;
//! - `tokens`: volume → the last fencing token granted;
//! - `meta`: the history id, made when the database is created.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use rfs_core::{Digest, Entry, EntryKind, Manifest, RelPath};

use super::codec::{self, Stored};
use super::{
    Changes, NewVersion, Result, Store, StoreCheck, StoreError, VersionRecord, count_changes,
};

type LiveTable<'txn> = redb::Table<'txn, (&'static str, &'static str), &'static [u8]>;

const HEADS: TableDefinition<&str, u64> = TableDefinition::new("heads");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
const LIVE: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("live");
const CHANGES: TableDefinition<(&str, u64, &str), &[u8]> = TableDefinition::new("changes");
const OBJECTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("objects");
const APPLIED: TableDefinition<&str, u64> = TableDefinition::new("applied");
const TOKENS: TableDefinition<&str, u64> = TableDefinition::new("tokens");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The key of the history id in the `meta` table.
const HISTORY_ID: &str = "history_id";

/// Versions and objects in one redb database file.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    history_id: String,
}

impl RedbStore {
    /// Opens the database at `path`, creating it and its tables if needed.
    ///
    /// # Errors
    ///
    /// Fails when the file cannot be opened, is corrupt, or is held by
    /// another process.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(HEADS).map_err(db_err)?;
        txn.open_table(VERSIONS).map_err(db_err)?;
        txn.open_table(LIVE).map_err(db_err)?;
        txn.open_table(CHANGES).map_err(db_err)?;
        txn.open_table(OBJECTS).map_err(db_err)?;
        txn.open_table(APPLIED).map_err(db_err)?;
        txn.open_table(TOKENS).map_err(db_err)?;
        let history_id = {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            let existing = meta
                .get(HISTORY_ID)
                .map_err(db_err)?
                .map(|guard| guard.value().to_owned());
            match existing {
                Some(id) => id,
                None => {
                    let id = format!("{:032x}", rand::random::<u128>());
                    meta.insert(HISTORY_ID, id.as_str()).map_err(db_err)?;
                    id
                }
            }
        };
        txn.commit().map_err(db_err)?;
        Ok(Self { db, history_id })
    }

    fn write_version(&self, txn: &WriteTransaction, request: NewVersion) -> Result<VersionRecord> {
        let volume = request.volume.as_str();
        if let Some(token) = request.fencing_token {
            check_token(txn, volume, token)?;
        }
        let mut heads = txn.open_table(HEADS).map_err(db_err)?;
        let head = heads
            .get(volume)
            .map_err(db_err)?
            .map_or(0, |guard| guard.value());
        if let Some(base) = request.base.filter(|base| *base > head) {
            return Err(StoreError::VersionNotFound {
                volume: volume.to_owned(),
                version: base,
            });
        }

        let mut live = txn.open_table(LIVE).map_err(db_err)?;
        let (changed, deleted, previous) = effective_changes(&live, &request, head)?;
        if changed.is_empty() && deleted.is_empty() && head > 0 {
            return self.record_at(txn, volume, head);
        }
        check_objects(txn, &changed)?;
        check_shape(&live, volume, &changed, &deleted)?;

        // Every check passed: write the new version.
        let version = head + 1;
        let mut changes = txn.open_table(CHANGES).map_err(db_err)?;
        for entry in &changed {
            let bytes = codec::encode(Some(entry), version);
            let path = entry.path.as_str();
            live.insert((volume, path), bytes.as_slice())
                .map_err(db_err)?;
            changes
                .insert((volume, version, path), bytes.as_slice())
                .map_err(db_err)?;
        }
        for path in &deleted {
            let bytes = codec::encode(None, version);
            live.insert((volume, path.as_str()), bytes.as_slice())
                .map_err(db_err)?;
            changes
                .insert((volume, version, path.as_str()), bytes.as_slice())
                .map_err(db_err)?;
        }

        let (added, modified) = count_changes(&previous, &changed);
        let before = match head {
            0 => 0,
            head => self.record_at(txn, volume, head)?.entries,
        };
        let deleted_count = deleted.len() as u64;
        let record = VersionRecord {
            version,
            origin: request.origin,
            added,
            modified,
            deleted: deleted_count,
            entries: (before + added).saturating_sub(deleted_count),
        };
        let mut versions = txn.open_table(VERSIONS).map_err(db_err)?;
        versions
            .insert((volume, version), codec::encode_record(&record).as_slice())
            .map_err(db_err)?;
        heads.insert(volume, version).map_err(db_err)?;
        Ok(record)
    }

    fn record_at(
        &self,
        txn: &WriteTransaction,
        volume: &str,
        version: u64,
    ) -> Result<VersionRecord> {
        let versions = txn.open_table(VERSIONS).map_err(db_err)?;
        read_record(&versions, volume, version)
    }
}

impl Store for RedbStore {
    fn history_id(&self) -> &str {
        &self.history_id
    }

    fn head(&self, volume: &str) -> Result<Option<u64>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let heads = txn.open_table(HEADS).map_err(db_err)?;
        Ok(heads
            .get(volume)
            .map_err(db_err)?
            .map(|guard| guard.value()))
    }

    fn changes_since(&self, volume: &str, base: u64) -> Result<Changes> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let heads = txn.open_table(HEADS).map_err(db_err)?;
        let head = heads
            .get(volume)
            .map_err(db_err)?
            .map(|guard| guard.value());
        let head = head.ok_or_else(|| StoreError::VolumeNotFound(volume.to_owned()))?;
        if base > head {
            return Err(StoreError::VersionNotFound {
                volume: volume.to_owned(),
                version: base,
            });
        }

        let mut latest: BTreeMap<String, Option<Entry>> = BTreeMap::new();
        if base == 0 {
            let live = txn.open_table(LIVE).map_err(db_err)?;
            for item in live.range((volume, "")..).map_err(db_err)? {
                let (key, value) = item.map_err(db_err)?;
                let (key_volume, path) = key.value();
                if key_volume != volume {
                    break;
                }
                latest.insert(path.to_owned(), codec::decode(path, value.value())?.entry);
            }
        } else {
            let changes = txn.open_table(CHANGES).map_err(db_err)?;
            let range = (volume, base + 1, "")..(volume, head + 1, "");
            for item in changes.range(range).map_err(db_err)? {
                let (key, value) = item.map_err(db_err)?;
                let (_, _, path) = key.value();
                latest.insert(path.to_owned(), codec::decode(path, value.value())?.entry);
            }
        }

        let mut result = Changes {
            head,
            ..Changes::default()
        };
        for (path, entry) in latest {
            match entry {
                Some(entry) => result.changed.push(entry),
                None if base > 0 => result.deleted.push(to_rel(&path)?),
                None => {}
            }
        }
        Ok(result)
    }

    fn head_manifest(&self, volume: &str) -> Result<Manifest> {
        Ok(self.changes_since(volume, 0)?.changed.into())
    }

    fn head_entries(&self, volume: &str, paths: &[RelPath]) -> Result<Vec<Option<Entry>>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let live = txn.open_table(LIVE).map_err(db_err)?;
        let mut entries = Vec::with_capacity(paths.len());
        for path in paths {
            let entry = match live.get((volume, path.as_str())).map_err(db_err)? {
                Some(guard) => codec::decode(path.as_str(), guard.value())?.entry,
                None => None,
            };
            entries.push(entry);
        }
        Ok(entries)
    }

    fn manifest_at(&self, volume: &str, version: u64) -> Result<Manifest> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let versions = txn.open_table(VERSIONS).map_err(db_err)?;
        if version == 0 || versions.get((volume, version)).map_err(db_err)?.is_none() {
            return Err(StoreError::VersionNotFound {
                volume: volume.to_owned(),
                version,
            });
        }

        let changes = txn.open_table(CHANGES).map_err(db_err)?;
        let mut manifest = Manifest::new();
        for item in changes
            .range((volume, 1, "")..(volume, version + 1, ""))
            .map_err(db_err)?
        {
            let (key, value) = item.map_err(db_err)?;
            let (_, _, path) = key.value();
            match codec::decode(path, value.value())?.entry {
                Some(entry) => {
                    manifest.insert(entry);
                }
                None => {
                    manifest.remove(&to_rel(path)?);
                }
            }
        }
        Ok(manifest)
    }

    fn record(&self, volume: &str, version: u64) -> Result<VersionRecord> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let versions = txn.open_table(VERSIONS).map_err(db_err)?;
        read_record(&versions, volume, version)
    }

    fn verify(&self) -> Result<StoreCheck> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let objects = txn.open_table(OBJECTS).map_err(db_err)?;
        let mut check = StoreCheck::default();
        let mut corrupt = BTreeSet::new();
        for item in objects.iter().map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            let digest = Digest::from(*key.value());
            check.objects_checked += 1;
            if Digest::of(value.value()) != digest {
                corrupt.insert(digest);
            }
        }

        let changes = txn.open_table(CHANGES).map_err(db_err)?;
        let mut users = Users::default();
        for item in changes.iter().map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            let (volume, version, path) = key.value();
            let digest = codec::decode(path, value.value())?
                .entry
                .and_then(|entry| entry.digest);
            users.step(volume, version, path, digest);
        }
        users.finish();
        check.versions_checked = users.versions;

        for (digest, versions) in users.by_digest {
            if corrupt.contains(&digest) {
                check.corrupt.push((digest, versions));
            } else if objects.get(digest.as_bytes()).map_err(db_err)?.is_none() {
                check.missing.push((digest, versions));
            }
        }
        Ok(check)
    }

    fn log(&self, volume: &str, limit: usize) -> Result<Vec<VersionRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let versions = txn.open_table(VERSIONS).map_err(db_err)?;
        let range = versions
            .range((volume, 0)..=(volume, u64::MAX))
            .map_err(db_err)?;
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut records = Vec::new();
        for item in range.rev().take(limit) {
            let (_, value) = item.map_err(db_err)?;
            records.push(codec::decode_record(value.value())?);
        }
        Ok(records)
    }

    fn missing_objects(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let objects = txn.open_table(OBJECTS).map_err(db_err)?;
        let mut missing = Vec::new();
        for digest in digests {
            if objects.get(digest.as_bytes()).map_err(db_err)?.is_none() {
                missing.push(*digest);
            }
        }
        Ok(missing)
    }

    fn put_objects(&self, objects: &[(Digest, Vec<u8>)]) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = txn.open_table(OBJECTS).map_err(db_err)?;
            for (digest, content) in objects {
                if table.get(digest.as_bytes()).map_err(db_err)?.is_none() {
                    table
                        .insert(digest.as_bytes(), content.as_slice())
                        .map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)
    }

    fn read_object(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let objects = txn.open_table(OBJECTS).map_err(db_err)?;
        Ok(objects
            .get(digest.as_bytes())
            .map_err(db_err)?
            .map(|guard| guard.value().to_vec()))
    }

    fn commit(&self, request: NewVersion) -> Result<VersionRecord> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let record = self.write_version(&txn, request)?;
        // Committing this transaction is the instant the version exists.
        txn.commit().map_err(db_err)?;
        Ok(record)
    }

    fn applied(&self, volume: &str) -> Result<u64> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let applied = txn.open_table(APPLIED).map_err(db_err)?;
        Ok(applied
            .get(volume)
            .map_err(db_err)?
            .map_or(0, |guard| guard.value()))
    }

    fn set_applied(&self, volume: &str, version: u64) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        txn.open_table(APPLIED)
            .map_err(db_err)?
            .insert(volume, version)
            .map_err(db_err)?;
        txn.commit().map_err(db_err)
    }

    fn next_fencing_token(&self, volume: &str) -> Result<u64> {
        let txn = self.db.begin_write().map_err(db_err)?;
        let token = {
            let mut tokens = txn.open_table(TOKENS).map_err(db_err)?;
            let token = tokens
                .get(volume)
                .map_err(db_err)?
                .map_or(0, |guard| guard.value())
                + 1;
            tokens.insert(volume, token).map_err(db_err)?;
            token
        };
        txn.commit().map_err(db_err)?;
        Ok(token)
    }
}

/// Folds the `changes` table in key order (volume, version, path) to find
/// which versions' manifests use each object.
#[derive(Default)]
struct Users {
    current: Option<(String, u64)>,
    paths: BTreeMap<String, Digest>,
    by_digest: BTreeMap<Digest, Vec<(String, u64)>>,
    versions: u64,
}

impl Users {
    fn step(&mut self, volume: &str, version: u64, path: &str, digest: Option<Digest>) {
        let same_volume = self
            .current
            .as_ref()
            .is_some_and(|(current, _)| current == volume);
        if self
            .current
            .as_ref()
            .is_some_and(|(_, current)| *current != version)
            || !same_volume
        {
            self.finish();
        }
        if !same_volume {
            self.paths.clear();
        }
        self.current = Some((volume.to_owned(), version));
        match digest {
            Some(digest) => self.paths.insert(path.to_owned(), digest),
            None => self.paths.remove(path),
        };
    }

    /// Credits every object in the current manifest to the current version.
    fn finish(&mut self) {
        let Some((volume, version)) = self.current.take() else {
            return;
        };
        self.versions += 1;
        let in_use: BTreeSet<Digest> = self.paths.values().copied().collect();
        for digest in in_use {
            self.by_digest
                .entry(digest)
                .or_default()
                .push((volume.clone(), version));
        }
        self.current = Some((volume, version));
    }
}

/// The paths a change set really changes, after dropping those already in
/// the requested state, with the previous state of each.
type Effective = (Vec<Entry>, Vec<RelPath>, BTreeMap<RelPath, Option<Entry>>);

fn effective_changes(live: &LiveTable<'_>, request: &NewVersion, head: u64) -> Result<Effective> {
    let volume = request.volume.as_str();
    let mut previous = BTreeMap::new();
    let mut conflicts = Vec::new();
    let mut changed = Vec::new();
    let mut deleted = Vec::new();
    let requested = request
        .changed
        .iter()
        .map(|entry| (&entry.path, Some(entry)));
    let requested = requested.chain(request.deleted.iter().map(|path| (path, None)));

    for (path, wanted) in requested {
        let current = match live.get((volume, path.as_str())).map_err(db_err)? {
            Some(guard) => codec::decode(path.as_str(), guard.value())?,
            None => Stored {
                entry: None,
                changed_in: 0,
            },
        };
        let unchanged = match (&current.entry, wanted) {
            (Some(current), Some(wanted)) => current.same_state(wanted),
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            continue;
        }
        if request.base.is_some_and(|base| current.changed_in > base) {
            conflicts.push(path.clone());
            continue;
        }
        previous.insert(path.clone(), current.entry);
        match wanted {
            Some(entry) => changed.push(entry.clone()),
            None => deleted.push(path.clone()),
        }
    }

    if !conflicts.is_empty() {
        let base = request.base.unwrap_or(0);
        return Err(StoreError::Conflict {
            base,
            head,
            paths: conflicts,
        });
    }
    Ok((changed, deleted, previous))
}

/// Refuses a writer whose token is not the last one granted, inside the
/// transaction that would record its version.
fn check_token(txn: &WriteTransaction, volume: &str, token: u64) -> Result<()> {
    let tokens = txn.open_table(TOKENS).map_err(db_err)?;
    let current = tokens
        .get(volume)
        .map_err(db_err)?
        .map_or(0, |guard| guard.value());
    if current != token {
        return Err(StoreError::StaleToken {
            volume: volume.to_owned(),
            token,
            current,
        });
    }
    Ok(())
}

fn check_objects(txn: &WriteTransaction, changed: &[Entry]) -> Result<()> {
    let objects = txn.open_table(OBJECTS).map_err(db_err)?;
    for entry in changed {
        let Some(digest) = entry.digest else { continue };
        if objects.get(digest.as_bytes()).map_err(db_err)?.is_none() {
            return Err(StoreError::MissingObject {
                path: entry.path.clone(),
                digest,
            });
        }
    }
    Ok(())
}

/// Refuses a change set that would leave a file without a directory above
/// it, or a deleted directory with entries still inside.
fn check_shape(
    live: &LiveTable<'_>,
    volume: &str,
    changed: &[Entry],
    deleted: &[RelPath],
) -> Result<()> {
    let upserts: BTreeMap<&RelPath, &Entry> =
        changed.iter().map(|entry| (&entry.path, entry)).collect();
    let removed: BTreeSet<&RelPath> = deleted.iter().collect();

    for entry in changed {
        let Some(parent) = entry.path.parent() else {
            continue;
        };
        let parent_kind = match upserts.get(&parent) {
            Some(entry) => Some(entry.kind),
            None if removed.contains(&parent) => None,
            None => live_kind(live, volume, &parent)?,
        };
        if parent_kind != Some(EntryKind::Directory) {
            return Err(StoreError::Rejected(format!(
                "{:?} needs directory {:?}, which does not exist",
                entry.path.as_str(),
                parent.as_str()
            )));
        }
    }

    // A directory that goes away, or turns into a file, must be empty.
    let vanishing = deleted.iter().chain(
        changed
            .iter()
            .filter(|entry| entry.is_file())
            .map(|entry| &entry.path),
    );
    for path in vanishing {
        let prefix = format!("{path}/");
        for item in live.range((volume, prefix.as_str())..).map_err(db_err)? {
            let (key, value) = item.map_err(db_err)?;
            let (key_volume, child) = key.value();
            if key_volume != volume || !child.starts_with(&prefix) {
                break;
            }
            let child_path = to_rel(child)?;
            let stays = codec::decode(child, value.value())?.entry.is_some()
                && !removed.contains(&child_path);
            if stays || upserts.contains_key(&child_path) {
                return Err(StoreError::Rejected(format!(
                    "directory {:?} is not empty: {child:?} stays",
                    path.as_str()
                )));
            }
        }
    }
    Ok(())
}

fn read_record(
    versions: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    volume: &str,
    version: u64,
) -> Result<VersionRecord> {
    let guard = versions.get((volume, version)).map_err(db_err)?;
    let guard = guard.ok_or_else(|| StoreError::VersionNotFound {
        volume: volume.to_owned(),
        version,
    })?;
    codec::decode_record(guard.value())
}

fn live_kind(live: &LiveTable<'_>, volume: &str, path: &RelPath) -> Result<Option<EntryKind>> {
    let Some(guard) = live.get((volume, path.as_str())).map_err(db_err)? else {
        return Ok(None);
    };
    Ok(codec::decode(path.as_str(), guard.value())?
        .entry
        .map(|entry| entry.kind))
}

fn to_rel(path: &str) -> Result<RelPath> {
    RelPath::new(path).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn db_err(err: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(err.into())
}

#[cfg(test)]
mod tests {
    use rfs_core::Digest;

    use super::*;
    use crate::store::{Origin, OriginSource};

    fn new_version(token: Option<u64>, content: &[u8]) -> NewVersion {
        let path = RelPath::new("key_a").unwrap();
        NewVersion {
            volume: "local".into(),
            base: Some(0),
            changed: vec![Entry::file(
                path,
                0o644,
                content.len() as u64,
                Digest::of(content),
            )],
            deleted: Vec::new(),
            origin: Origin {
                source: OriginSource::Client,
                address: "127.0.0.2".into(),
                key_hash: None,
                host_name: "fw1".into(),
                process_id: 1,
                time_unix: 0,
                reason: String::new(),
            },
            fencing_token: token,
        }
    }

    #[test]
    fn a_version_under_a_token_granted_again_since_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("rfsd.redb")).unwrap();
        store
            .put_objects(&[(Digest::of(b"a"), b"a".to_vec())])
            .unwrap();
        let paused = store.next_fencing_token("local").unwrap();
        let current = store.next_fencing_token("local").unwrap();

        let refused = store.commit(new_version(Some(paused), b"a"));
        let recorded = store.commit(new_version(Some(current), b"a"));

        assert!(
            matches!(
                refused,
                Err(StoreError::StaleToken {
                    token: 1,
                    current: 2,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!(recorded.unwrap().version, 1);
        assert_eq!(store.head("local").unwrap(), Some(1));
    }
}
