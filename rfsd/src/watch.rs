//! Watching volumes for changes made by other programs on the RFS host.
//!
//! `generatekey` drops a new key file into `local`, card tools rewrite
//! `cards_…`: each such change becomes a version of origin "local" once the
//! writes settle. Events are gathered per path; a path is recorded after a
//! quiet period without events, and not while it is still open for writing
//! (inotify reports the close), so a file written slowly is never recorded
//! half-written. Recording compares the live file with the head
//! ([`Volume::capture_paths`]), which is also why rfsd's own writes never
//! come back as foreign changes: after rfsd writes a file, it equals the
//! head.
//!
//! A full rescan runs when the kernel reports lost events (queue overflow),
//! for directory events (a new directory's contents may predate its watch),
//! and periodically as a safety net.
//!
//! Limits: inotify needs one watch per directory (`fs.inotify.max_user_watches`);
//! kmdata volumes are flat, so a handful suffice. File systems that do not
//! report changes (NFS mounted from elsewhere) are covered only by the
//! periodic scan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind};
use notify::{RecursiveMode, Watcher};
use rfs_core::RelPath;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::state::ServerState;
use crate::volume::Volume;

/// Events buffered between the watcher thread and the task; more than this
/// counts as lost events and causes a full rescan.
const EVENT_BUFFER: usize = 8192;

/// How often to look again at paths that are still being written.
const RECHECK: Duration = Duration::from_millis(200);

/// How the watchers behave.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// How long a path must see no event before it is recorded.
    pub quiet: Duration,
    /// How often the whole volume is rescanned regardless of events.
    pub full_scan_interval: Duration,
    /// How long a file may stay open for writing before it is recorded
    /// anyway.
    pub max_open_wait: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            quiet: Duration::from_millis(500),
            full_scan_interval: Duration::from_secs(600),
            max_open_wait: Duration::from_secs(300),
        }
    }
}

/// What `rfsd status` reports of a volume's watcher.
#[derive(Debug, Default)]
pub struct WatchHealth {
    /// Whether the watcher is running.
    pub running: AtomicBool,
    /// How many times the kernel or the buffer lost events.
    pub lost_events: AtomicU64,
    /// When the last full scan finished.
    pub last_full_scan: Mutex<Option<SystemTime>>,
}

impl WatchHealth {
    /// Returns when the last full scan finished.
    pub fn last_full_scan(&self) -> Option<SystemTime> {
        self.last_full_scan.lock().ok().and_then(|last| *last)
    }

    /// Records that a full scan just finished.
    pub fn scanned_now(&self) {
        if let Ok(mut last) = self.last_full_scan.lock() {
            *last = Some(SystemTime::now());
        }
    }
}

/// Starts a watcher task for every volume; they stop when `stop` turns true.
pub fn spawn_all(
    state: &Arc<ServerState>,
    settings: WatchSettings,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    state
        .volumes
        .values()
        .map(|volume| {
            let span = tracing::info_span!("watch", volume = %volume.name);
            tokio::spawn(
                run(state.clone(), volume.clone(), settings, stop.clone()).instrument(span),
            )
        })
        .collect()
}

/// What the watcher thread hands to the task.
enum Signal {
    Event(notify::Event),
    Lost,
}

/// Paths waiting to be recorded.
#[derive(Default)]
struct Pending {
    /// Each path with the time of its last event.
    paths: BTreeMap<RelPath, Instant>,
    /// Paths with a write that has not been closed yet, since when.
    open: BTreeMap<RelPath, Instant>,
    /// A full rescan is due.
    full_scan: bool,
}

async fn run(
    state: Arc<ServerState>,
    volume: Arc<Volume>,
    settings: WatchSettings,
    mut stop: watch::Receiver<bool>,
) {
    let (tx, mut rx) = mpsc::channel(EVENT_BUFFER);
    let root = volume.dir.root().to_path_buf();
    let watcher = match start_watcher(&root, tx) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::error!(error = %err, path = %root.display(), "cannot watch the volume; only periodic scans will see changes on the host");
            periodic_only(state, volume, settings, stop).await;
            return;
        }
    };
    volume.watch.running.store(true, Ordering::Relaxed);
    tracing::info!(path = %root.display(), "watching for changes on the host");

    let mut pending = Pending::default();
    let mut next_full_scan = Instant::now() + settings.full_scan_interval;
    loop {
        let wake = next_wake(&pending, settings, next_full_scan);
        tokio::select! {
            signal = rx.recv() => match signal {
                Some(Signal::Event(event)) => note_event(&mut pending, &root, &event, &volume),
                Some(Signal::Lost) => {
                    volume.watch.lost_events.fetch_add(1, Ordering::Relaxed);
                    pending.full_scan = true;
                }
                None => break,
            },
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= next_full_scan {
                    pending.full_scan = true;
                    next_full_scan = Instant::now() + settings.full_scan_interval;
                }
                flush(&state, &volume, &mut pending, settings).await;
            }
            _ = stop.changed() => break,
        }
    }
    drop(watcher);
    volume.watch.running.store(false, Ordering::Relaxed);
}

fn start_watcher(
    root: &Path,
    tx: mpsc::Sender<Signal>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        let signal = match result {
            Ok(event) if !event.need_rescan() => Signal::Event(event),
            Ok(_) | Err(_) => Signal::Lost,
        };
        // A full buffer loses this event; the task then rescans.
        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(signal) {
            let _ = tx.try_send(Signal::Lost);
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Without a watcher, the periodic scan is the only way to see changes.
async fn periodic_only(
    state: Arc<ServerState>,
    volume: Arc<Volume>,
    settings: WatchSettings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(settings.full_scan_interval) => full_scan(&state, &volume).await,
            _ = stop.changed() => return,
        }
    }
}

fn note_event(pending: &mut Pending, root: &Path, event: &notify::Event, volume: &Volume) {
    let now = Instant::now();
    let directory_event = matches!(
        event.kind,
        EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder)
    );
    for path in &event.paths {
        let Some(rel) = relative(root, path) else {
            // The root itself changed, or a name we cannot serve: rescan.
            pending.full_scan = true;
            continue;
        };
        if rel.is_ignored() {
            continue;
        }
        if directory_event
            || matches!(event.kind, EventKind::Modify(ModifyKind::Name(_)))
                && is_directory(volume, &rel)
        {
            pending.full_scan = true;
        }
        match event.kind {
            EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) => {
                pending.open.entry(rel.clone()).or_insert(now);
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                pending.open.remove(&rel);
            }
            EventKind::Access(_) => continue,
            _ => {}
        }
        pending.paths.insert(rel, now);
    }
}

fn next_wake(pending: &Pending, settings: WatchSettings, next_full_scan: Instant) -> Instant {
    let settled = pending
        .paths
        .values()
        .max()
        .map(|last| *last + settings.quiet);
    let soonest = match settled {
        Some(settled) if !pending.open.is_empty() => {
            settled.max(Instant::now() + RECHECK).min(next_full_scan)
        }
        Some(settled) => settled.min(next_full_scan),
        None if pending.full_scan => Instant::now(),
        None => next_full_scan,
    };
    soonest.max(Instant::now())
}

/// Records what settled: a full rescan if one is due, else every path that
/// has been quiet long enough and is not open for writing.
async fn flush(
    state: &Arc<ServerState>,
    volume: &Arc<Volume>,
    pending: &mut Pending,
    settings: WatchSettings,
) {
    let now = Instant::now();
    if pending.full_scan {
        pending.full_scan = false;
        pending.paths.clear();
        pending.open.clear();
        full_scan(state, volume).await;
        return;
    }

    let open_too_long: BTreeSet<RelPath> = pending
        .open
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= settings.max_open_wait)
        .map(|(path, _)| path.clone())
        .collect();
    let ready: Vec<RelPath> = pending
        .paths
        .iter()
        .filter(|(path, last)| {
            now.duration_since(**last) >= settings.quiet
                && (!pending.open.contains_key(*path) || open_too_long.contains(*path))
        })
        .map(|(path, _)| path.clone())
        .collect();
    if ready.is_empty() {
        return;
    }
    for path in &ready {
        pending.paths.remove(path);
        pending.open.remove(path);
    }
    capture(state, volume, ready).await;
}

async fn capture(state: &Arc<ServerState>, volume: &Arc<Volume>, paths: Vec<RelPath>) {
    let _writer = volume.writer.lock().await;
    let job_volume = volume.clone();
    let result = state
        .blocking(move |state| Ok(job_volume.capture_paths(state.store.as_ref(), &paths)?))
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "recording changes made on the host failed; the next scan retries");
    }
}

async fn full_scan(state: &Arc<ServerState>, volume: &Arc<Volume>) {
    let _writer = volume.writer.lock().await;
    let job_volume = volume.clone();
    let result = state
        .blocking(move |state| Ok(job_volume.rescan(state.store.as_ref())?))
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "full scan failed; the next one retries");
    }
}

fn relative(root: &Path, path: &Path) -> Option<RelPath> {
    let rel: PathBuf = path.strip_prefix(root).ok()?.to_path_buf();
    RelPath::new(rel.to_str()?).ok()
}

fn is_directory(volume: &Volume, path: &RelPath) -> bool {
    matches!(volume.dir.stat(path), Ok(Some(stat)) if stat.kind == rfs_core::fsx::FileKind::Directory)
}
