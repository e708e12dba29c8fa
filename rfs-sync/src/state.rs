//! The client's sync state: its base version, the base manifest, and the
//! digest cache keyed by `stat`, kept in `KMDATA/rfs-sync/`.
//!
//! The base version sits alone in `state.json`, so that an update that
//! finds the server unchanged reads a few bytes instead of a manifest of
//! every file; the manifest and cache are in `base.json`. The base is the
//! common ancestor of the next update or commit, so both files are only
//! replaced after the local tree matches them on stable storage:
//! `base.json` first, then `state.json`. A crash between the two leaves
//! newer entries under an older version, the same shape an update with
//! conflicts records on purpose, which the next update resolves by finding
//! those paths already equal. Missing files mean a fresh client: base
//! version 0, nothing known.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rfs_core::fsx::Scan;
use rfs_core::{Digest, Manifest, RelPath, StatKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use tokio::time::Instant;

use crate::config::Paths;
use crate::durable;
use crate::exit::{Code, Failure};

/// The version of the state files' layout.
const FORMAT: u32 = 1;

/// What rfs-sync remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct State {
    /// The version the local tree was last synchronised to; 0 for none.
    pub(crate) base_version: u64,
    /// The server history the base version belongs to; empty when unknown.
    pub(crate) history_id: String,
    /// The entries of the base as far as this client applied them.
    pub(crate) base: Manifest,
    /// The digest of each local file as of its last `stat` key.
    pub(crate) cache: BTreeMap<RelPath, Cached>,
    /// Whether `base` and `cache` were read; only the version is otherwise.
    complete: bool,
}

/// A local file's digest, valid while its `stat` key is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cached {
    pub(crate) key: StatKey,
    pub(crate) digest: Digest,
}

/// The content of `state.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: u32,
    base_version: u64,
    #[serde(default)]
    history_id: String,
}

/// The content of `base.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BaseFile {
    format: u32,
    base: Manifest,
    cache: BTreeMap<RelPath, Cached>,
}

impl State {
    /// Returns the state with the base version only; [`State::complete`]
    /// reads the rest.
    ///
    /// # Errors
    ///
    /// Fails when `state.json` exists but cannot be read or parsed.
    pub(crate) fn load_version(paths: &Paths) -> Result<Self> {
        let Some(header) = read_json::<Header>(&paths.state_file())? else {
            return Ok(Self::fresh());
        };
        check_format(&paths.state_file(), header.format)?;
        Ok(Self {
            base_version: header.base_version,
            history_id: header.history_id,
            ..Self::default()
        })
    }

    /// Reads the base manifest and the digest cache, once.
    ///
    /// # Errors
    ///
    /// Fails when `base.json` exists but cannot be read or parsed.
    pub(crate) fn complete(&mut self, paths: &Paths) -> Result<()> {
        if self.complete {
            return Ok(());
        }
        let file = paths.base_file();
        let base = match read_json::<BaseFile>(&file)? {
            Some(base) => {
                check_format(&file, base.format)?;
                base
            }
            None if self.base_version == 0 => BaseFile::default(),
            None => {
                // Without the entries the version means nothing: start over.
                tracing::warn!(file = %file.display(), "base manifest missing, starting from version 0");
                self.base_version = 0;
                BaseFile::default()
            }
        };
        self.base = base.base;
        self.cache = base.cache;
        self.complete = true;
        Ok(())
    }

    /// Returns the state of a client that never synchronised.
    pub(crate) fn fresh() -> Self {
        Self {
            complete: true,
            ..Self::default()
        }
    }

    /// Writes the state atomically and durably: the manifest first, then
    /// the version.
    ///
    /// # Errors
    ///
    /// Fails when the state was only partly loaded, or the state directory
    /// or files cannot be written.
    pub(crate) fn save(&self, paths: &Paths) -> Result<()> {
        anyhow::ensure!(
            self.complete,
            "the sync state was saved before it was read whole"
        );
        durable::create_private_dir(&paths.state_dir)?;
        let base = BaseFile {
            format: FORMAT,
            base: self.base.clone(),
            cache: self.cache.clone(),
        };
        let text = serde_json::to_vec(&base).context("encoding the base manifest")?;
        durable::write_atomically(&paths.base_file(), &text, 0o600)?;
        let header = Header {
            format: FORMAT,
            base_version: self.base_version,
            history_id: self.history_id.clone(),
        };
        let text = serde_json::to_vec(&header).context("encoding the sync state")?;
        durable::write_atomically(&paths.state_file(), &text, 0o600)
    }

    /// Returns the cached digest of `path` if its `stat` key is unchanged.
    pub(crate) fn cached_digest(&self, path: &RelPath, key: &StatKey) -> Option<Digest> {
        self.cache
            .get(path)
            .filter(|cached| cached.key == *key)
            .map(|cached| cached.digest)
    }

    /// Records the digest of `path` for its current `stat` key.
    pub(crate) fn remember(&mut self, path: RelPath, key: StatKey, digest: Digest) {
        self.cache.insert(path, Cached { key, digest });
    }

    /// Replaces the cache with what a full scan found.
    pub(crate) fn remember_scan(&mut self, scan: &Scan) {
        self.cache = scan
            .stat_keys
            .iter()
            .filter_map(|(path, key)| {
                let digest = scan.manifest.get(path)?.digest?;
                Some((path.clone(), Cached { key: *key, digest }))
            })
            .collect();
    }
}

/// Returns the parsed content of `file`, or `None` when it does not exist.
fn read_json<T: DeserializeOwned>(file: &Path) -> Result<Option<T>> {
    let text = match std::fs::read(file) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
    };
    let value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", file.display()))?;
    Ok(Some(value))
}

fn check_format(file: &Path, format: u32) -> Result<()> {
    anyhow::ensure!(
        format == FORMAT,
        "{} has format {format}, this rfs-sync reads format {FORMAT}",
        file.display()
    );
    Ok(())
}

/// An advisory lock on the state directory, held for a whole run so that a
/// timer-driven update and a manual commit never interleave. The file names
/// the process that holds it, for the message a second run prints.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
}

/// The first pause before trying the run lock again.
const RUN_LOCK_FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest pause between tries of the run lock.
const RUN_LOCK_MAX_RETRY: Duration = Duration::from_secs(2);

impl RunLock {
    /// Takes the lock. While another rfs-sync holds it, waits up to `wait`
    /// (trying again with backoff), or fails at once without one.
    ///
    /// # Errors
    ///
    /// Fails with exit code 4, naming the other process, when the lock is
    /// still held once the wait is over; fails when the lock file cannot be
    /// created or locked.
    pub(crate) async fn acquire(paths: &Paths, wait: Option<Duration>) -> Result<Self> {
        durable::create_private_dir(&paths.state_dir)?;
        let path = paths.run_lock_file();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;

        let deadline = wait.map(|wait| Instant::now() + wait);
        let mut delay = RUN_LOCK_FIRST_RETRY;
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("locking {}", path.display()));
                }
            }
            let other = holder_of(&path);
            let now = Instant::now();
            let Some(deadline) = deadline.filter(|deadline| now < *deadline) else {
                let message = format!(
                    "another rfs-sync is running on this client ({other}); two runs never \
                     overlap: try again when it is done, or pass --wait-lock DURATION"
                );
                return Err(Failure::new(Code::LockHeld, message).into());
            };
            if !announced {
                eprintln!(
                    "another rfs-sync is running on this client ({other}); waiting up to {:.0?}",
                    deadline - now
                );
                announced = true;
            }
            let pause = crate::commit::jittered(delay);
            tokio::time::sleep(pause.min(deadline - now)).await;
            delay = (delay * 2).min(RUN_LOCK_MAX_RETRY);
        }

        // Best effort: the lock works without the note.
        let since = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let note = format!("pid {} since {since}\n", std::process::id());
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(note.as_bytes()));
        Ok(Self { _file: file })
    }
}

/// Returns who holds the run lock, by the note its holder wrote.
fn holder_of(path: &Path) -> String {
    let note = std::fs::read_to_string(path).unwrap_or_default();
    match note.trim() {
        "" => "an unknown process".to_owned(),
        note => note.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use rfs_core::Entry;

    use super::*;

    fn rel(path: &str) -> RelPath {
        RelPath::new(path).unwrap()
    }

    fn load(paths: &Paths) -> State {
        let mut state = State::load_version(paths).unwrap();
        state.complete(paths).unwrap();
        state
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(dir.path());
        let mut state = State::fresh();
        state.base_version = 7;
        state
            .base
            .insert(Entry::file(rel("world"), 0o644, 1, Digest::of(b"w")));
        let key = StatKey {
            size: 1,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: -5,
            inode: 42,
            device: 2049,
        };
        state.remember(rel("world"), key, Digest::of(b"w"));

        state.save(&paths).unwrap();

        assert_eq!(load(&paths), state);
    }

    #[test]
    fn the_version_alone_is_read_without_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(dir.path());
        let mut state = State::fresh();
        state.base_version = 3;
        state
            .base
            .insert(Entry::file(rel("world"), 0o644, 1, Digest::of(b"w")));
        state.save(&paths).unwrap();

        let mut partial = State::load_version(&paths).unwrap();

        assert_eq!(partial.base_version, 3);
        assert!(partial.base.is_empty());
        assert!(partial.save(&paths).is_err());
        partial.complete(&paths).unwrap();
        assert_eq!(partial, state);
    }

    #[test]
    fn a_missing_state_file_means_a_fresh_client() {
        let dir = tempfile::tempdir().unwrap();
        let state = load(&Paths::resolve(dir.path()));
        assert_eq!(state.base_version, 0);
        assert!(state.base.is_empty());
    }

    #[tokio::test]
    async fn a_second_run_is_refused_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(dir.path());
        let first = RunLock::acquire(&paths, None).await.unwrap();

        let second = RunLock::acquire(&paths, None).await.unwrap_err();

        let failure = second.downcast_ref::<Failure>().unwrap();
        assert_eq!(failure.code, Code::LockHeld);
        let pid = format!("pid {}", std::process::id());
        assert!(failure.message.contains(&pid), "{}", failure.message);
        drop(first);
        RunLock::acquire(&paths, None).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_run_with_a_wait_gets_the_lock_once_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(dir.path());
        let first = RunLock::acquire(&paths, None).await.unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(first);
        });

        let second = RunLock::acquire(&paths, Some(Duration::from_secs(10))).await;

        assert!(second.is_ok(), "{second:?}");
        release.await.unwrap();
    }

    #[test]
    fn a_changed_stat_key_misses_the_cache() {
        let mut state = State::fresh();
        let key = StatKey {
            size: 1,
            mtime_ns: 1,
            ctime_ns: 1,
            inode: 1,
            device: 1,
        };
        state.remember(rel("world"), key, Digest::of(b"w"));

        let touched = StatKey { ctime_ns: 2, ..key };

        assert_eq!(
            state.cached_digest(&rel("world"), &key),
            Some(Digest::of(b"w"))
        );
        assert_eq!(state.cached_digest(&rel("world"), &touched), None);
    }
}
