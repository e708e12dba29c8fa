//! Working on the state directory while the daemon is stopped: offline
//! `verify` and `rebuild-index`.
//!
//! The daemon holds an advisory lock on `<state-dir>/rfsd.lock` for as long
//! as it runs. An offline command takes the same lock first, so it never
//! works under a running daemon, and a daemon started meanwhile refuses to
//! start until the command is done.

use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rfs_core::fsx::VolumeDir;

use crate::config::Settings;
use crate::daemon::{DATABASE_FILE, STORE_MARKER, lock_state_dir, open_store};
use crate::store::{RedbStore, Store};
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
    let state_lock = lock_stopped(settings)?;
    if !settings.state_dir.join(DATABASE_FILE).exists()
        && !settings.state_dir.join(STORE_MARKER).exists()
    {
        bail!(
            "no database in {}: rfsd has never run with this state directory",
            settings.state_dir.display()
        );
    }
    let store = open_store(&settings.state_dir)?;
    let volumes = open_volumes(settings)?;
    Ok(Offline {
        store,
        volumes,
        _state_lock: state_lock,
    })
}

/// Moves the database aside (if there is one) and builds a new one from the
/// live trees, each volume's tree becoming its version 1. This is the
/// recovery after the database was lost or damaged: the live trees are what
/// the nShield tools use, and they are kept as they are.
///
/// # Errors
///
/// Fails when the daemon runs, or the database cannot be moved or created.
pub fn rebuild_index(settings: &Settings) -> Result<String> {
    let _state_lock = lock_stopped(settings)?;
    let db_path = settings.state_dir.join(DATABASE_FILE);
    let mut report = String::new();
    if db_path.exists() {
        let stamp = crate::timefmt::rfc3339(SystemTime::now()).replace(':', "");
        let aside = settings
            .state_dir
            .join(format!("{DATABASE_FILE}.aside-{stamp}"));
        std::fs::rename(&db_path, &aside)
            .with_context(|| format!("moving {} aside", db_path.display()))?;
        report += &format!("moved the old database to {}\n", aside.display());
    }
    let marker = settings.state_dir.join(STORE_MARKER);
    if marker.exists() {
        std::fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
    }

    let store = open_store(&settings.state_dir)?;
    for volume in open_volumes(settings)? {
        volume
            .recover(&store)
            .with_context(|| format!("importing volume {:?}", volume.name))?;
        let entries = store
            .log(&volume.name, 1)?
            .first()
            .map_or(0, |record| record.entries);
        report += &format!(
            "volume {}: the live tree ({entries} entries) is version 1\n",
            volume.name
        );
    }
    Ok(report)
}

/// Takes the state directory's lock, which a running daemon holds.
fn lock_stopped(settings: &Settings) -> Result<File> {
    lock_state_dir(&settings.state_dir).context("stop rfsd first, or use its administration socket")
}

fn open_volumes(settings: &Settings) -> Result<Vec<Arc<Volume>>> {
    let mut volumes = Vec::new();
    for setting in &settings.volumes {
        let dir = VolumeDir::open(&setting.path).with_context(|| {
            format!(
                "opening volume {:?} at {}",
                setting.name,
                setting.path.display()
            )
        })?;
        volumes.push(Arc::new(Volume::new(
            setting.name.clone(),
            dir,
            settings.limits.scan(),
            settings.legacy_lock_max_age,
        )));
    }
    Ok(volumes)
}
