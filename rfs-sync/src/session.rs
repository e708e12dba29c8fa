//! What one update, commit or status run works with: the configuration, the
//! synced directory, the sync state, the run lock, and a connection to rfsd
//! opened when first needed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rfs_core::fsx::{Scan, ScanLimits, VolumeDir};

use crate::config::{Config, Paths};
use crate::remote::Remote;
use crate::state::{RunLock, State};

/// How a run uses the synced directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Writes it (update, sync): created when missing, run lock held.
    Update,
    /// Reads it to send changes (commit): it must exist, run lock held.
    Commit,
    /// Only reads (status): created when missing, no lock.
    Inspect,
}

/// The local side of a run.
#[derive(Debug)]
pub(crate) struct Workspace {
    pub(crate) paths: Paths,
    pub(crate) volume: Arc<VolumeDir>,
    pub(crate) state: State,
}

impl Workspace {
    /// Walks the local tree, reading only files whose `stat` key changed
    /// since their digest was cached.
    ///
    /// # Errors
    ///
    /// Fails when the tree cannot be read.
    pub(crate) fn scan(&self) -> Result<Scan> {
        let state = &self.state;
        self.volume
            .scan(ScanLimits::default(), |path, key| {
                state.cached_digest(path, key)
            })
            .with_context(|| format!("scanning {}", self.paths.local.display()))
    }
}

/// One run's configuration, local side and connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) config: Config,
    pub(crate) local: Workspace,
    remote: Option<Remote>,
    _run_lock: Option<RunLock>,
}

impl Session {
    /// Loads the configuration and state and opens the synced directory.
    ///
    /// # Errors
    ///
    /// Fails when rfs-sync is not set up, the state is unreadable, or the
    /// synced directory is missing where `access` needs it.
    /// `wait` is how long to wait for another rfs-sync run on this client
    /// to end (`--wait-lock`); without it such a run fails with exit 4.
    pub(crate) async fn open(paths: Paths, access: Access, wait: Option<Duration>) -> Result<Self> {
        let config = Config::load(&paths)?;
        let run_lock = match access {
            Access::Inspect => None,
            Access::Update | Access::Commit => Some(RunLock::acquire(&paths, wait).await?),
        };
        // The manifest is read only where needed (see `State::complete`).
        let state = State::load_version(&paths)?;
        let local = &paths.local;
        let volume = match access {
            Access::Update | Access::Inspect => VolumeDir::create(local),
            // A missing directory must not read as "every file deleted".
            Access::Commit => VolumeDir::open(local),
        }
        .with_context(|| format!("opening the synced directory {}", local.display()))?;
        let volume = volume.with_group(config.group_id());

        Ok(Self {
            config,
            local: Workspace {
                paths,
                volume: Arc::new(volume),
                state,
            },
            remote: None,
            _run_lock: run_lock,
        })
    }

    /// Returns the connection, opening it on first use, together with the
    /// local side.
    ///
    /// # Errors
    ///
    /// Fails when the server cannot be reached.
    pub(crate) async fn parts(&mut self) -> Result<(&mut Remote, &mut Workspace)> {
        if self.remote.is_none() {
            let remote = Remote::open(&self.config, &self.local.paths).await?;
            self.remote = Some(remote);
        }
        let remote = self
            .remote
            .as_mut()
            .expect("the connection was opened just above");
        Ok((remote, &mut self.local))
    }
}
