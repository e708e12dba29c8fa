//! Preparing a daemon from its settings: the state directory, the store,
//! the TLS identity, the grants, the volumes and the bound sockets.
//!
//! `main` calls [`prepare`] and then [`crate::server::run`]; everything that
//! can fail because of the environment fails here, before rfsd tells systemd
//! it is ready.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use rfs_core::fsx::VolumeDir;
use tokio::net::{TcpListener, UnixListener};

use crate::config::Settings;
use crate::grants::Grants;
use crate::server::Listeners;
use crate::state::ServerState;
use crate::store::{RedbStore, ReopeningStore, Store};
use crate::tls::Identity;
use crate::volume::Volume;

/// The database file inside the state directory.
pub const DATABASE_FILE: &str = "rfsd.redb";

/// The file inside the state directory whose advisory lock a running
/// daemon holds.
pub const STATE_LOCK_FILE: &str = "rfsd.lock";

/// A daemon ready to run.
#[derive(Debug)]
pub struct Prepared {
    /// The shared state.
    pub state: Arc<ServerState>,
    /// The bound sockets.
    pub listeners: Listeners,
    /// The TLS configuration; `None` in plaintext mode.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Held for the daemon's lifetime so no second rfsd uses the same state
    /// directory.
    pub state_lock: File,
}

/// Builds everything the daemon needs, in order, failing early.
///
/// # Errors
///
/// Fails when the state directory is in use or unusable, the store cannot
/// be opened, the grants file is broken, a volume cannot be recovered, or a
/// socket cannot be bound.
pub async fn prepare(settings: &Settings) -> Result<Prepared> {
    let state_lock = lock_state_dir(&settings.state_dir)?;
    let db_path = settings.state_dir.join(DATABASE_FILE);
    let store = ReopeningStore::new(&db_path, open_store(&settings.state_dir)?);
    let store: Arc<dyn Store> = Arc::new(store);

    let (tls, key_hash) = if settings.insecure_plaintext {
        tracing::warn!("serving WITHOUT TLS (--insecure-plaintext): for debugging only");
        (None, None)
    } else {
        let identity = Identity::load_or_create(&settings.state_dir)?;
        tracing::info!(key_hash = %identity.key_hash(), "server key");
        (Some(identity.server_config()?), Some(identity.key_hash()))
    };
    let grants = Grants::load(&settings.clients)?;
    if !settings.clients.exists() {
        tracing::warn!(path = %settings.clients.display(), "no clients file: every request is denied until grants are added");
    }

    let mut volumes = std::collections::BTreeMap::new();
    for setting in &settings.volumes {
        let dir = VolumeDir::create(&setting.path)
            .with_context(|| format!("opening volume {:?}", setting.name))?;
        let volume = Arc::new(Volume::new(
            setting.name.clone(),
            dir,
            settings.limits.scan(),
            settings.legacy_lock_max_age,
        ));
        let recover_volume = volume.clone();
        let recover_store = store.clone();
        tokio::task::spawn_blocking(move || recover_volume.recover(recover_store.as_ref()))
            .await
            .context("volume recovery panicked")?
            .with_context(|| {
                format!(
                    "recovering volume {:?} at {}",
                    setting.name,
                    setting.path.display()
                )
            })?;
        tracing::info!(volume = %setting.name, path = %setting.path.display(), "serving volume");
        volumes.insert(setting.name.clone(), volume);
    }

    let tcp = bind_all(&settings.listen)?;
    let listen: Vec<String> = tcp
        .iter()
        .filter_map(|listener| listener.local_addr().ok())
        .map(|addr| addr.to_string())
        .collect();
    let admin = bind_admin(&settings.admin_socket)?;
    let state = ServerState {
        store,
        volumes,
        grants,
        seen: Mutex::default(),
        key_hash,
        limits: settings.limits,
        lease: settings.lock_lease,
        started: SystemTime::now(),
        listen: Mutex::new(listen),
        state_dir: settings.state_dir.clone(),
        watch: settings.watch,
    };
    Ok(Prepared {
        state: Arc::new(state),
        listeners: Listeners { tcp, admin },
        tls,
        state_lock,
    })
}

/// The file that records that this state directory has a database, so that
/// a database that went missing is noticed instead of silently replaced by
/// an empty history.
pub const STORE_MARKER: &str = "rfsd.redb.created";

/// The database is missing or cannot be opened: rfsd refuses to serve
/// rather than start an empty history over a live tree.
#[derive(Debug, thiserror::Error)]
#[error(
    "{problem}; rfsd will not serve without its history. To rebuild the \
     database from the live tree as a new version 1 (the old file is kept \
     aside), stop rfsd and run: rfsd rebuild-index"
)]
pub struct IndexLost {
    problem: String,
}

/// Opens the database in `state_dir`, creating it only on the very first
/// start.
///
/// # Errors
///
/// Returns [`IndexLost`] when the database is missing although it existed
/// before, or cannot be opened.
pub fn open_store(state_dir: &Path) -> Result<RedbStore> {
    let db_path = state_dir.join(DATABASE_FILE);
    let marker = state_dir.join(STORE_MARKER);
    if marker.exists() && !db_path.exists() {
        let problem = format!("the database {} is missing", db_path.display());
        return Err(IndexLost { problem }.into());
    }

    let store = RedbStore::open(&db_path).map_err(|err| IndexLost {
        problem: format!("the database {} cannot be opened: {err}", db_path.display()),
    })?;
    if !marker.exists() {
        let created = format!("created {}\n", crate::timefmt::rfc3339(SystemTime::now()));
        std::fs::write(&marker, created)
            .with_context(|| format!("writing {}", marker.display()))?;
    }
    tracing::info!(path = %db_path.display(), "store opened");
    Ok(store)
}

/// Takes the state directory's lock file, which a running daemon holds.
///
/// # Errors
///
/// Fails when another process (a running rfsd, or `rfsd clear-lock` on a
/// stopped one) holds it, or the directory cannot be created.
pub fn lock_state_dir(state_dir: &Path) -> Result<File> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let lock_path = state_dir.join(STATE_LOCK_FILE);
    let file =
        File::create(&lock_path).with_context(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "the state directory {} is in use by another rfsd (or by `rfsd clear-lock`)",
            state_dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("locking {}", lock_path.display()))
        }
    }
}

fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    addrs
        .iter()
        .map(|addr| bind_tcp(*addr).with_context(|| format!("listening on {addr}")))
        .collect()
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    // [::] must not also take the IPv4 port that 0.0.0.0 listens on.
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let listener = TcpListener::from_std(socket.into())?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    Ok(listener)
}

fn bind_admin(path: &Path) -> Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another rfsd answers on the administration socket {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }

    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the administration socket {}", path.display()))?;
    // The socket's permissions are the access control of the admin service.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    tracing::info!(path = %path.display(), "administration socket");
    Ok(listener)
}
