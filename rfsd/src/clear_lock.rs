//! `rfsd clear-lock`: frees a volume's lock now and says what was freed,
//! whether or not the daemon runs.
//!
//! With the daemon running, the `ClearLock` call on the administration
//! socket frees the grant in memory, removes `.nft-lock` and voids the
//! grant's fencing token. When the socket does not answer, the daemon's
//! locks died with it and only the file is left: this command then takes
//! the state directory's lock file (which a running daemon holds), so a
//! daemon starting meanwhile fails cleanly instead of racing it, removes the
//! volume's `.nft-lock`, and voids the token in the store. If the lock file
//! is taken although the socket does not answer, a daemon is starting or
//! stuck, and nothing is touched.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use proto::pb;
use rfs_core::fsx::VolumeDir;
use serde_json::json;

use crate::admin::cleared_to_pb;
use crate::admin_cli::non_empty;
use crate::cli::{ClearLockArgs, Cli, ServeArgs};
use crate::config::Settings;
use crate::daemon::{DATABASE_FILE, STATE_LOCK_FILE};
use crate::lock_file::{self, LockFile};
use crate::store::{RedbStore, Store};
use crate::timefmt::unix_rfc3339;
use crate::volume::Cleared;

/// How the lock was cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Through {
    /// By the running daemon.
    Daemon,
    /// On disk, with the daemon stopped.
    StateDirectory,
}

/// Runs `clear-lock` and returns its output.
///
/// # Errors
///
/// Fails when the settings are invalid, when a daemon holds the state
/// directory but does not answer, or on file-system and store errors.
pub async fn run(cli: &Cli, args: &ClearLockArgs) -> Result<String> {
    // The same resolution as `serve`, so the volume's path is the one the
    // daemon would use.
    let serve = ServeArgs {
        kmdata: args.kmdata.clone(),
        volumes: vec![args.volume.clone()],
        ..ServeArgs::default()
    };
    let settings = Settings::resolve(cli, &serve)?;

    let (reply, through) = match crate::admin_cli::connect(&settings.admin_socket).await {
        Ok(mut admin) => {
            let request = pb::ClearLockRequest {
                volume: args.volume.clone(),
            };
            let reply = admin
                .clear_lock(request)
                .await
                .context("clearing the lock")?;
            (reply.into_inner(), Through::Daemon)
        }
        Err(unreachable) => {
            let reply = clear_offline(&settings, &args.volume, &unreachable)?;
            (reply, Through::StateDirectory)
        }
    };

    Ok(render(&args.volume, &reply, through, args.json))
}

/// Clears the volume's lock file with the daemon stopped.
fn clear_offline(
    settings: &Settings,
    name: &str,
    unreachable: &anyhow::Error,
) -> Result<pb::ClearLockReply> {
    let _state_lock = hold_state_dir(&settings.state_dir, unreachable)?;
    let setting = settings
        .volumes
        .iter()
        .find(|volume| volume.name == name)
        .with_context(|| format!("volume {name:?} is not configured"))?;
    let dir = VolumeDir::open(&setting.path)
        .with_context(|| format!("opening volume {name:?} at {}", setting.path.display()))?;

    let cleared = match lock_file::inspect(&dir)? {
        LockFile::Absent => Cleared::Nothing,
        LockFile::Own(own) => {
            void_token(&settings.state_dir, name)?;
            Cleared::StaleFile(own)
        }
        LockFile::Legacy(legacy) => Cleared::Legacy(legacy),
    };
    if !matches!(cleared, Cleared::Nothing) {
        lock_file::remove(&dir)
            .with_context(|| format!("removing the lock file of volume {name:?}"))?;
    }

    Ok(cleared_to_pb(&cleared, settings.legacy_lock_max_age))
}

/// Takes the state directory's lock file for as long as the result lives;
/// `None` when the directory does not exist (no daemon ever ran there).
fn hold_state_dir(state_dir: &Path, unreachable: &anyhow::Error) -> Result<Option<File>> {
    if !state_dir.is_dir() {
        return Ok(None);
    }
    let path = state_dir.join(STATE_LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;

    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "rfsd holds the state directory {} but does not answer ({unreachable:#}); \
             nothing was cleared: try again once it is up, or stop it",
            state_dir.display()
        ),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Spends one fencing token, so the token of the cleared grant no longer
/// counts even if its holder reaches the next daemon.
fn void_token(state_dir: &Path, volume: &str) -> Result<()> {
    let path = state_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Ok(());
    }
    let store = RedbStore::open(&path)
        .with_context(|| format!("opening the database {}", path.display()))?;
    store.next_fencing_token(volume)?;
    Ok(())
}

/// Returns the output for people or as JSON.
fn render(volume: &str, reply: &pb::ClearLockReply, through: Through, json: bool) -> String {
    let age = Duration::from_millis(reply.age_ms);
    if json {
        let freed = reply.freed.as_ref().map(|holder| {
            let kind = match (holder.legacy, reply.stale_file) {
                (true, _) => "legacy",
                (false, true) => "stale_file",
                (false, false) => "grant",
            };
            json!({
                "kind": kind, "address": non_empty(&holder.address),
                "key_hash": non_empty(&holder.key_hash), "host_name": holder.host_name,
                "process_id": holder.process_id, "token": holder.token,
                "since": unix_rfc3339(holder.since_unix), "age_seconds": age.as_secs(),
            })
        });
        let through = match through {
            Through::Daemon => "daemon",
            Through::StateDirectory => "state_directory",
        };
        return json!({ "volume": volume, "through": through, "freed": freed }).to_string();
    }

    let text = match &reply.freed {
        None => format!("the lock of volume {volume} was free; nothing to clear"),
        Some(holder) if holder.legacy => format!(
            "removed the legacy .nft-lock of volume {volume} (unknown legacy holder, {} old)",
            human(age)
        ),
        Some(holder) if reply.stale_file => format!(
            "removed the lock file of volume {volume} left by {}, held for {}, token {}",
            describe(holder),
            human(age),
            holder.token
        ),
        Some(holder) => format!(
            "freed the lock of volume {volume} held by {} for {}, token {}",
            describe(holder),
            human(age),
            holder.token
        ),
    };
    match through {
        Through::Daemon => format!("{text}\n"),
        Through::StateDirectory => format!("{text} (rfsd is not running: cleared on disk)\n"),
    }
}

fn describe(holder: &pb::LockHolder) -> String {
    let key = match holder.key_hash.as_str() {
        "" => String::new(),
        key => format!(", key {key}"),
    };
    format!(
        "{} (host {}, pid {}{key})",
        holder.address, holder.host_name, holder.process_id
    )
}

/// Returns a duration for people: `42s`, `3m 5s`, `2h 0m`.
pub(crate) fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        _ => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_names_holder_age_and_token() {
        let reply = pb::ClearLockReply {
            freed: Some(pb::LockHolder {
                address: "127.0.0.2".into(),
                host_name: "fw1".into(),
                process_id: 42,
                token: 7,
                ..pb::LockHolder::default()
            }),
            age_ms: 65_000,
            stale_file: false,
        };

        let text = render("local", &reply, Through::Daemon, false);
        let offline = render("local", &reply, Through::StateDirectory, true);

        assert_eq!(
            text,
            "freed the lock of volume local held by 127.0.0.2 (host fw1, pid 42) \
             for 1m 5s, token 7\n"
        );
        let offline: serde_json::Value = serde_json::from_str(&offline).unwrap();
        assert_eq!(offline["through"], "state_directory");
        assert_eq!(offline["freed"]["kind"], "grant");
        assert_eq!(offline["freed"]["age_seconds"], 65);
    }

    #[test]
    fn a_free_lock_is_reported_as_such() {
        let text = render(
            "local",
            &pb::ClearLockReply::default(),
            Through::Daemon,
            false,
        );
        assert_eq!(
            text,
            "the lock of volume local was free; nothing to clear\n"
        );
    }
}
