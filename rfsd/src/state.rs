//! The state shared by every service of a running rfsd.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rfs_core::KeyHash;

use crate::conn::ConnInfo;
use crate::error::ServiceError;
use crate::grants::{Grants, Peer, Rights, grant_hint};
use crate::limits::Limits;
use crate::store::Store;
use crate::volume::Volume;
use crate::watch::WatchSettings;

/// What a request needs on its volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Download versions and objects.
    Read,
    /// Take the lock, upload and commit.
    Write,
}

/// Everything the services share.
#[derive(Debug)]
pub struct ServerState {
    /// Versions and objects.
    pub store: Arc<dyn Store>,
    /// The served volumes by name.
    pub volumes: BTreeMap<String, Arc<Volume>>,
    /// The grant table.
    pub grants: Grants,
    /// When each client was last seen, for `client list` and `status`.
    pub seen: Mutex<HashMap<Peer, SystemTime>>,
    /// The server's key hash; `None` in plaintext mode.
    pub key_hash: Option<KeyHash>,
    /// Limits on requests.
    pub limits: Limits,
    /// The lease of a newly granted lock.
    pub lease: Duration,
    /// When the daemon started.
    pub started: SystemTime,
    /// The addresses the daemon listens on, once bound.
    pub listen: Mutex<Vec<String>>,
    /// The state directory.
    pub state_dir: PathBuf,
    /// How the volume watchers behave.
    pub watch: WatchSettings,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl ServerState {
    /// Returns the named volume.
    ///
    /// # Errors
    ///
    /// Returns `NotFound` for an unknown volume.
    pub fn volume(&self, name: &str) -> Result<Arc<Volume>, ServiceError> {
        self.volumes
            .get(name)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("volume {name:?} not found")))
    }

    /// Checks that the client on `conn` may do `need` on `volume`, logging
    /// the decision, and returns its rights.
    ///
    /// # Errors
    ///
    /// Returns `PermissionDenied` with the command that would allow it.
    pub fn authorize(
        &self,
        conn: &ConnInfo,
        volume: &str,
        need: Need,
    ) -> Result<Rights, ServiceError> {
        let peer = conn.peer();
        self.mark_seen(peer);
        let key_hash = peer.key_hash.map(|hash| hash.to_hex());
        let rights = self.grants.rights(&peer, volume);
        let allowed = match (rights, need) {
            (Some(rights), Need::Read) => rights.read,
            (Some(rights), Need::Write) => rights.write,
            (None, _) => false,
        };
        if allowed {
            tracing::debug!(peer.addr = %peer.addr, peer.key_hash = ?key_hash, volume, ?need, "allowed");
            return Ok(rights.unwrap_or_default());
        }

        tracing::info!(peer.addr = %peer.addr, peer.key_hash = ?key_hash, volume, ?need, "denied");
        let hint = grant_hint(&peer, volume, need == Need::Write);
        let what = match (rights, need) {
            (None, _) => format!("no grant for {peer} on volume {volume:?}"),
            (Some(_), _) => format!("{peer} may not write volume {volume:?}"),
        };
        Err(ServiceError::PermissionDenied(format!(
            "{what}; to allow it, run on the RFS host: {hint}"
        )))
    }

    /// Runs a blocking storage or file-system job off the async workers.
    ///
    /// # Errors
    ///
    /// Returns the job's error, or `Internal` if the job panicked.
    pub async fn blocking<T, F>(self: &Arc<Self>, job: F) -> Result<T, ServiceError>
    where
        T: Send + 'static,
        F: FnOnce(&ServerState) -> Result<T, ServiceError> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || job(&state))
            .await
            .map_err(|err| ServiceError::Internal(anyhow::anyhow!("blocking job failed: {err}")))?
    }

    fn mark_seen(&self, peer: Peer) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(peer, SystemTime::now());
        }
    }
}
