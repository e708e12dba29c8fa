//! The operator's subcommands that talk to the running daemon over the
//! administration socket: `client`, `status` and `log`. Each returns the
//! text to print, for people or as JSON. `clear-lock`, which also works
//! without the daemon, is in [`crate::clear_lock`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use proto::pb;
use proto::pb::admin_client::AdminClient;
use serde_json::json;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::clear_lock::human;
use crate::cli::{ClientAddArgs, ClientCommand, ClientRemoveArgs, LogArgs};
use crate::timefmt::unix_rfc3339;

/// Runs a `client` subcommand and returns its output.
///
/// # Errors
///
/// Fails when the daemon cannot be reached or refuses the request.
pub async fn client(socket: &Path, command: &ClientCommand) -> Result<String> {
    let mut admin = connect(socket).await?;
    match command {
        ClientCommand::Add(args) => client_add(&mut admin, args).await,
        ClientCommand::List(args) => client_list(&mut admin, args.json).await,
        ClientCommand::Remove(args) => client_remove(&mut admin, args).await,
    }
}

/// Runs `status` and returns its output.
///
/// # Errors
///
/// Fails when the daemon cannot be reached.
pub async fn status(socket: &Path, json: bool) -> Result<String> {
    let mut admin = connect(socket).await?;
    let reply = admin
        .status(pb::StatusRequest {})
        .await
        .context("status")?
        .into_inner();
    let volumes: Vec<_> = reply
        .volumes
        .iter()
        .map(|volume| {
            json!({
                "volume": volume.volume, "path": volume.path, "head_version": volume.head_version,
                "entries": volume.entries, "lock": volume.lock.as_ref().map(holder_json),
            "watcher": {
                "running": volume.watching,
                "last_full_scan": (volume.last_full_scan_unix > 0).then(|| unix_rfc3339(volume.last_full_scan_unix)),
                "lost_events": volume.lost_events,
            },
            })
        })
        .collect();
    let clients: Vec<_> = reply.clients_seen.iter().map(|client| {
        json!({ "address": client.address, "key_hash": non_empty(&client.key_hash), "last_seen": unix_rfc3339(client.last_seen_unix) })
    }).collect();
    if json {
        let value = json!({
            "server_version": reply.server_version, "key_hash": non_empty(&reply.server_key_hash),
            "listen": reply.listen, "started": unix_rfc3339(reply.started_unix), "state_dir": reply.state_dir,
            "clients_file": reply.clients_file, "volumes": volumes, "clients_seen": clients,
        });
        return Ok(value.to_string());
    }

    let mut out = format!(
        "rfsd {} since {}\n",
        reply.server_version,
        unix_rfc3339(reply.started_unix)
    );
    let key = if reply.server_key_hash.is_empty() {
        "none (plaintext)"
    } else {
        &reply.server_key_hash
    };
    out += &format!(
        "key hash:     {key}\nlistening on: {}\nstate:        {}\nclients file: {}\n",
        reply.listen.join(" "),
        reply.state_dir,
        reply.clients_file
    );
    for volume in &reply.volumes {
        let lock = volume.lock.as_ref().map_or("free".to_owned(), lock_text);
        out += &format!(
            "volume {}: v{} ({} entries) at {}; lock {lock}\n",
            volume.volume, volume.head_version, volume.entries, volume.path
        );
        let watcher = if volume.watching {
            "running"
        } else {
            "NOT running"
        };
        let scanned = match volume.last_full_scan_unix {
            0 => "never".to_owned(),
            secs => unix_rfc3339(secs),
        };
        out += &format!(
            "  watcher {watcher}; last full scan {scanned}; events lost {} times\n",
            volume.lost_events
        );
    }
    for client in &reply.clients_seen {
        out += &format!(
            "client {} last seen {}\n",
            client.address,
            unix_rfc3339(client.last_seen_unix)
        );
    }
    Ok(out)
}

/// Runs `log` and returns its output.
///
/// # Errors
///
/// Fails when the daemon cannot be reached or the volume is unknown.
pub async fn log(socket: &Path, args: &LogArgs) -> Result<String> {
    let mut admin = connect(socket).await?;
    let request = pb::LogRequest {
        volume: args.volume.clone(),
        limit: args.limit.unwrap_or(0),
    };
    let reply = admin.log(request).await.context("log")?.into_inner();
    if args.json {
        let versions: Vec<_> = reply.versions.iter().map(version_json).collect();
        return Ok(json!({ "volume": args.volume, "versions": versions }).to_string());
    }

    let mut out = String::new();
    for record in &reply.versions {
        let origin = record.origin.clone().unwrap_or_default();
        let who = match origin.source.as_str() {
            "client" => format!(
                "client {} ({}, pid {})",
                origin.address, origin.host_name, origin.process_id
            ),
            source => format!("{source} on {}", origin.host_name),
        };
        out += &format!(
            "v{:<5} {}  {who}  +{} ~{} -{}  ({} entries)\n",
            record.version,
            unix_rfc3339(origin.time_unix),
            record.added,
            record.modified,
            record.deleted,
            record.entries
        );
    }
    Ok(out)
}

async fn client_add(admin: &mut AdminClient<Channel>, args: &ClientAddArgs) -> Result<String> {
    let grant = pb::Grant {
        address: args.address.clone(),
        key_hash: args.keyhash.clone().unwrap_or_default(),
        volume: args.volume.clone(),
        readonly: args.readonly,
        write_noauth: args.write_noauth,
    };
    let reply = admin
        .add_client(pb::AddClientRequest { grant: Some(grant) })
        .await
        .context("adding the grant")?
        .into_inner();
    if args.json {
        return Ok(
            json!({ "address": args.address, "volume": args.volume, "replaced": reply.replaced })
                .to_string(),
        );
    }
    let verb = if reply.replaced { "replaced" } else { "added" };
    Ok(format!(
        "{verb} grant for {} on volume {}\n",
        args.address, args.volume
    ))
}

async fn client_list(admin: &mut AdminClient<Channel>, json: bool) -> Result<String> {
    let reply = admin
        .list_clients(pb::ListClientsRequest {})
        .await
        .context("listing grants")?
        .into_inner();
    let rows: Vec<_> = reply.clients.iter().map(|listing| {
        let grant = listing.grant.clone().unwrap_or_default();
        let last_seen = (listing.last_seen_unix > 0).then(|| unix_rfc3339(listing.last_seen_unix));
        json!({
            "address": grant.address, "key_hash": non_empty(&grant.key_hash), "volume": grant.volume,
            "readonly": grant.readonly, "write_noauth": grant.write_noauth,
            "last_seen": last_seen, "last_seen_address": non_empty(&listing.last_seen_address),
        })
    }).collect();
    if json {
        return Ok(json!({ "grants": rows }).to_string());
    }

    let mut out = String::new();
    for row in &rows {
        let mut flags = Vec::new();
        if row["readonly"] == true {
            flags.push("readonly");
        }
        if row["write_noauth"] == true {
            flags.push("write-noauth");
        }
        let key = row["key_hash"]
            .as_str()
            .map_or("(address only)".to_owned(), |key| format!("key {key}"));
        let seen = row["last_seen"].as_str().unwrap_or("never");
        out += &format!(
            "{:<18} {:<10} {key} {}  last seen {seen}\n",
            row["address"].as_str().unwrap_or(""),
            row["volume"].as_str().unwrap_or(""),
            flags.join(",")
        );
    }
    if out.is_empty() {
        out.push_str("no grants\n");
    }
    Ok(out)
}

async fn client_remove(
    admin: &mut AdminClient<Channel>,
    args: &ClientRemoveArgs,
) -> Result<String> {
    let request = pb::RemoveClientRequest {
        address: args.address.clone(),
        volume: args.volume.clone().unwrap_or_default(),
    };
    let reply = admin
        .remove_client(request)
        .await
        .context("removing grants")?
        .into_inner();
    if args.json {
        return Ok(json!({ "address": args.address, "removed": reply.removed }).to_string());
    }
    Ok(format!(
        "removed {} grant(s) for {}\n",
        reply.removed, args.address
    ))
}

/// Returns a client of the daemon's administration socket.
///
/// # Errors
///
/// Fails when nothing answers on the socket.
pub(crate) async fn connect(socket: &Path) -> Result<AdminClient<Channel>> {
    let path: PathBuf = socket.to_owned();
    let channel = Endpoint::from_static("http://rfsd.admin")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .with_context(|| {
            format!(
                "connecting to rfsd at {} (is it running, and may you use that socket?)",
                socket.display()
            )
        })?;
    Ok(AdminClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}

/// Returns the JSON form of a version record.
pub(crate) fn version_json(record: &pb::VersionRecord) -> serde_json::Value {
    let origin = record.origin.clone().unwrap_or_default();
    json!({
        "version": record.version,
        "time": unix_rfc3339(origin.time_unix),
        "origin": {
            "source": origin.source, "address": non_empty(&origin.address), "key_hash": non_empty(&origin.key_hash),
            "host_name": origin.host_name, "process_id": origin.process_id, "reason": origin.reason,
        },
        "added": record.added, "modified": record.modified, "deleted": record.deleted, "entries": record.entries,
    })
}

fn holder_json(holder: &pb::LockHolder) -> serde_json::Value {
    json!({
        "address": non_empty(&holder.address), "key_hash": non_empty(&holder.key_hash), "host_name": holder.host_name,
        "process_id": holder.process_id, "since": unix_rfc3339(holder.since_unix),
        "lease_remaining_ms": holder.lease_remaining_ms, "legacy": holder.legacy, "token": holder.token,
    })
}

/// Returns the lock column of `status` for a held lock.
fn lock_text(holder: &pb::LockHolder) -> String {
    let remaining = Duration::from_millis(holder.lease_remaining_ms);
    let since = unix_rfc3339(holder.since_unix);
    if holder.legacy {
        return format!(
            "held by {} (.nft-lock written by another program, modified {since}; \
             cleared in {} or by rfsd clear-lock)",
            crate::lock::LEGACY_HOLDER,
            human(remaining)
        );
    }
    format!(
        "held by {} ({}, pid {}) since {since}, token {}, lease ends in {}",
        holder.address,
        holder.host_name,
        holder.process_id,
        holder.token,
        human(remaining)
    )
}

/// Returns `text`, or `None` for the empty string the protocol uses for
/// "absent".
pub(crate) fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}
