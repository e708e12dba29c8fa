//! `rfsd demo`: a throwaway server on a copy of the sample kmdata tree, on
//! 127.0.0.1, without root, so anyone can try rfsd and rfs-sync in a minute.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::DemoArgs;
use crate::config::{LogFormat, Settings, VolumeSetting};
use crate::limits::Limits;
use crate::lock::DEFAULT_LEASE;

/// The sample tree of this source checkout.
const SAMPLE_TREE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../kmdata-fixtures/sample/local"
);

/// Returns settings for a demo server in `args.dir`, creating it (with a
/// copy of the sample tree and a grants file for loopback clients) on first
/// use.
///
/// # Errors
///
/// Fails when the directory cannot be created or the sample copied.
pub fn prepare(args: &DemoArgs) -> Result<Settings> {
    let root = std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    let local = root.join("kmdata/local");
    if !local.exists() {
        let sample = args
            .sample
            .clone()
            .unwrap_or_else(|| PathBuf::from(SAMPLE_TREE));
        copy_tree(&sample, &local)
            .with_context(|| format!("copying the sample tree {}", sample.display()))?;
    }
    let clients = root.join("clients.toml");
    if !clients.exists() {
        let grants = "# Demo grants: every loopback client may read and write.\n\n\
                      [[grant]]\naddress = \"127.0.0.0/8\"\nwrite_noauth = true\n\n\
                      [[grant]]\naddress = \"::1\"\nwrite_noauth = true\n";
        std::fs::write(&clients, grants)
            .with_context(|| format!("writing {}", clients.display()))?;
    }

    Ok(Settings {
        kmdata: root.join("kmdata"),
        state_dir: root.join("state"),
        listen: vec![std::net::SocketAddr::from(([127, 0, 0, 1], args.port))],
        clients,
        admin_socket: root.join("admin.sock"),
        insecure_plaintext: false,
        log_format: LogFormat::Text,
        volumes: vec![VolumeSetting {
            name: rfs_core::DEFAULT_VOLUME.to_owned(),
            path: local,
        }],
        lock_lease: DEFAULT_LEASE,
        legacy_lock_max_age: crate::lock::DEFAULT_LEGACY_MAX_AGE,
        limits: Limits::default(),
        watch: crate::watch::WatchSettings::default(),
    })
}

/// Returns the text that tells a person how to use the demo server.
pub fn instructions(settings: &Settings, key_hash: &str, port: u16) -> String {
    let root = settings.kmdata.parent().unwrap_or(Path::new("."));
    let client = root.join("client-a");
    format!(
        "rfsd demo: serving {local} on 127.0.0.1:{port}\n\
         server key hash: {key_hash}\n\n\
         In another terminal, point rfs-sync at it:\n\
         \x20 cargo run --bin rfs-sync -- --kmdata {client} --setup --port {port} --rfs-keyhash {key_hash} 127.0.0.1\n\
         \x20 cargo run --bin rfs-sync -- --kmdata {client} --update\n\
         \x20 ls {client}/local\n\n\
         Operator's view:\n\
         \x20 cargo run --bin rfsd -- log --admin-socket {socket}\n\
         \x20 cargo run --bin rfsd -- client list --admin-socket {socket}\n\n\
         Stop with Ctrl-C; {root} keeps the demo's versions for the next run.\n",
        local = settings.volumes[0].path.display(),
        client = client.display(),
        socket = settings.admin_socket.display(),
        root = root.display(),
    )
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for dir_entry in std::fs::read_dir(from)? {
        let dir_entry = dir_entry?;
        let target = to.join(dir_entry.file_name());
        let kind = dir_entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&dir_entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(dir_entry.path(), &target)?;
        }
    }
    Ok(())
}
