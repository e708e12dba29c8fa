//! Working on the state directory while the daemon is stopped.
//!
//! The daemon holds an advisory lock on `<state-dir>/rfsd.lock` for as long
//! as it runs. An offline command takes the same lock first, so it never
//! works under a running daemon, and a daemon started meanwhile refuses to
//! start until the command is done.

use std::fs::File;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rfs_core::fsx::VolumeDir;

use crate::config::Settings;
use crate::daemon::DATABASE_FILE;
use crate::store::RedbStore;
use crate::volume::Volume;

/// The state of a stopped daemon, opened for an offline command.
#[derive(Debug)]
pub struct Offline {
    /// The store.
    pub store: RedbStore,
    /// The configured volumes (opened, not recovered).
    pub volumes: Vec<Arc<Volume>>,
    /// Held until the command is done.
    _state_lock: File,
}

/// Opens the state directory and volumes of `settings`.
///
/// # Errors
///
/// Fails when the daemon runs (it holds the state directory lock), when
/// there is no database, or when it cannot be opened.
pub fn open(settings: &Settings) -> Result<Offline> {
    let lock_path = settings.state_dir.join("rfsd.lock");
    let state_lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if let Err(std::fs::TryLockError::WouldBlock) = state_lock.try_lock() {
        bail!(
            "rfsd is running on {} but its administration socket did not answer",
            settings.state_dir.display()
        );
    }

    let db_path = settings.state_dir.join(DATABASE_FILE);
    if !db_path.exists() {
        bail!(
            "no database at {}: rfsd has never run with this state directory",
            db_path.display()
        );
    }
    let store = RedbStore::open(&db_path)
        .with_context(|| format!("opening the database {}", db_path.display()))?;
    let mut volumes = Vec::new();
    for setting in &settings.volumes {
        let dir = VolumeDir::open(&setting.path)
            .with_context(|| format!("opening volume {:?}", setting.name))?;
        volumes.push(Arc::new(Volume::new(
            setting.name.clone(),
            dir,
            settings.limits.scan(),
        )));
    }
    Ok(Offline {
        store,
        volumes,
        _state_lock: state_lock,
    })
}
