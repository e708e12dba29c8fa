//! The operator's history subcommands: `show`, `diff`, `rollback`, `verify`
//! and `export`. Like [`crate::admin_cli`], they talk to the daemon over the
//! administration socket; `verify` falls back to the state directory when
//! the daemon is stopped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use proto::pb;
use rfs_core::fsx::VolumeDir;
use rfs_core::{Digest, RelPath};
use serde_json::json;

use crate::admin_cli::{connect, version_json};
use crate::cli::{DiffArgs, ExportArgs, ShowArgs};
use crate::config::Settings;

/// Digests asked for in one object stream.
const EXPORT_BATCH: usize = 1000;

/// Runs `show` and returns its output.
///
/// # Errors
///
/// Fails when the daemon cannot be reached or the version does not exist.
pub async fn show(socket: &Path, args: &ShowArgs) -> Result<String> {
    let mut admin = connect(socket).await?;
    let request = pb::ShowRequest {
        volume: args.volume.clone(),
        version: args.number,
    };
    let reply = admin.show(request).await.context("show")?.into_inner();
    if args.json {
        let entries: Vec<_> = reply.entries.iter().map(entry_json).collect();
        let record = reply.record.as_ref().map(version_json);
        return Ok(
            json!({ "volume": args.volume, "record": record, "entries": entries }).to_string(),
        );
    }
    Ok(reply.entries.iter().map(entry_line).collect())
}

/// Runs `diff` and returns its output.
///
/// # Errors
///
/// Fails when the daemon cannot be reached or a version does not exist.
pub async fn diff(socket: &Path, args: &DiffArgs) -> Result<String> {
    let mut admin = connect(socket).await?;
    let request = pb::DiffRequest {
        volume: args.volume.clone(),
        from_version: args.from,
        to_version: args.to,
    };
    let reply = admin.diff(request).await.context("diff")?.into_inner();
    if args.json {
        let list = |entries: &[pb::Entry]| entries.iter().map(entry_json).collect::<Vec<_>>();
        let value = json!({
            "volume": args.volume, "from": args.from, "to": args.to,
            "added": list(&reply.added), "modified": list(&reply.modified), "deleted": list(&reply.deleted),
        });
        return Ok(value.to_string());
    }

    let mut out = String::new();
    for (sign, entries) in [
        ("+", &reply.added),
        ("~", &reply.modified),
        ("-", &reply.deleted),
    ] {
        for entry in entries {
            out += &format!("{sign} {}", entry_line(entry));
        }
    }
    Ok(out)
}

/// Runs `rollback` and returns its output.
///
/// # Errors
///
/// Fails when the daemon cannot be reached or the version does not exist.
pub async fn rollback(socket: &Path, args: &ShowArgs) -> Result<String> {
    let mut admin = connect(socket).await?;
    let request = pb::RollbackRequest {
        volume: args.volume.clone(),
        version: args.number,
    };
    let reply = admin
        .rollback(request)
        .await
        .context("rollback")?
        .into_inner();
    if args.json {
        let record = reply.record.as_ref().map(version_json);
        return Ok(
            json!({ "volume": args.volume, "version": reply.version, "record": record })
                .to_string(),
        );
    }
    Ok(format!(
        "volume {} is now version {}, equal to version {}\n",
        args.volume, reply.version, args.number
    ))
}

/// Runs `verify` online or, when the daemon does not answer, offline.
/// Returns the output and whether everything held.
///
/// # Errors
///
/// Fails when neither the daemon nor the state directory can be used.
pub async fn verify(settings: &Settings, json: bool) -> Result<(String, bool)> {
    let reply = match connect(&settings.admin_socket).await {
        Ok(mut admin) => admin
            .verify(pb::VerifyRequest {})
            .await
            .context("verify")?
            .into_inner(),
        Err(_) => {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || verify_offline(&settings))
                .await
                .context("offline verify panicked")??
        }
    };
    let ok = reply.problems.is_empty();
    if json {
        let value = json!({
            "ok": ok, "problems": reply.problems, "objects_checked": reply.objects_checked,
            "versions_checked": reply.versions_checked, "files_checked": reply.files_checked,
        });
        return Ok((value.to_string(), ok));
    }

    let mut out: String = reply
        .problems
        .iter()
        .map(|problem| format!("{problem}\n"))
        .collect();
    let verdict = if ok { "ok" } else { "FAILED" };
    out += &format!(
        "verify {verdict}: {} objects, {} versions, {} live files checked; {} problems\n",
        reply.objects_checked,
        reply.versions_checked,
        reply.files_checked,
        reply.problems.len()
    );
    Ok((out, ok))
}

/// Runs `export` and returns its output.
///
/// # Errors
///
/// Fails when the daemon cannot be reached, the version does not exist, the
/// directory is not empty, or an object fails its digest.
pub async fn export(socket: &Path, args: &ExportArgs) -> Result<String> {
    let mut admin = connect(socket).await?;
    let request = pb::ShowRequest {
        volume: args.volume.clone(),
        version: args.number,
    };
    let entries = admin
        .show(request)
        .await
        .context("show")?
        .into_inner()
        .entries;
    let target = prepare_target(&args.dir)?;

    let mut files: BTreeMap<Digest, Vec<(RelPath, u32)>> = BTreeMap::new();
    for entry in &entries {
        let path = RelPath::new(entry.path.clone())?;
        if entry.kind == pb::EntryKind::Directory as i32 {
            target.create_dir_all(&path, entry.mode)?;
            target.set_mode(&path, entry.mode)?;
        } else {
            files
                .entry(Digest::from_slice(&entry.digest)?)
                .or_default()
                .push((path, entry.mode));
        }
    }

    let digests: Vec<Digest> = files.keys().copied().collect();
    for batch in digests.chunks(EXPORT_BATCH) {
        let request = pb::DownloadRequest {
            volume: args.volume.clone(),
            digests: batch.iter().map(|d| d.as_bytes().to_vec()).collect(),
        };
        let mut stream = admin
            .read_objects(request)
            .await
            .context("reading objects")?
            .into_inner();
        let mut content = Vec::new();
        while let Some(chunk) = stream.message().await.context("reading objects")? {
            content.extend_from_slice(&chunk.data);
            if !chunk.last {
                continue;
            }
            let digest = Digest::from_slice(&chunk.digest)?;
            if Digest::of(&content) != digest {
                bail!("object {digest} does not match its digest; run rfsd verify");
            }
            for (path, mode) in files.get(&digest).into_iter().flatten() {
                let (staged, mut file) = target.stage_writer(path, *mode)?;
                file.write_all(&content)
                    .with_context(|| format!("writing {path}"))?;
                target.install(staged)?;
            }
            content.clear();
        }
    }
    target.sync_filesystem()?;
    if args.json {
        let value = json!({ "volume": args.volume, "version": args.number, "entries": entries.len(), "dir": args.dir });
        return Ok(value.to_string());
    }
    Ok(format!(
        "exported version {} of {} ({} entries) to {}\n",
        args.number,
        args.volume,
        entries.len(),
        args.dir.display()
    ))
}

fn verify_offline(settings: &Settings) -> Result<pb::VerifyReply> {
    let offline = crate::offline::open(settings)?;
    let report = crate::verify::run(&offline.store, &offline.volumes)?;
    Ok(crate::admin::verify_to_pb(report))
}

fn prepare_target(dir: &Path) -> Result<VolumeDir> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} is not empty", dir.display());
    }
    Ok(VolumeDir::create(dir)?)
}

fn entry_json(entry: &pb::Entry) -> serde_json::Value {
    let kind = if entry.kind == pb::EntryKind::Directory as i32 {
        "directory"
    } else {
        "file"
    };
    json!({
        "path": entry.path, "kind": kind, "mode": format!("{:o}", entry.mode), "size": entry.size,
        "digest": (!entry.digest.is_empty()).then(|| hex_digest(&entry.digest)),
    })
}

fn entry_line(entry: &pb::Entry) -> String {
    if entry.kind == pb::EntryKind::Directory as i32 {
        return format!("{:o} {:>10} {:<16} {}/\n", entry.mode, "-", "", entry.path);
    }
    format!(
        "{:o} {:>10} {:<16} {}\n",
        entry.mode,
        entry.size,
        &hex_digest(&entry.digest)[..16.min(entry.digest.len() * 2)],
        entry.path
    )
}

fn hex_digest(bytes: &[u8]) -> String {
    Digest::from_slice(bytes).map_or_else(|_| String::from("?"), |digest| digest.to_hex())
}
