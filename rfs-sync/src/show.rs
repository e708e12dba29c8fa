//! `--show`: prints the recorded setup and where rfs-sync keeps things.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;
use rfs_core::KeyHash;
use serde::Serialize;

use crate::config::{Config, Paths};
use crate::identity;
use crate::output::Report;
use crate::state::State;

/// The setup as `--show` reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ShowReport {
    pub(crate) server: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) rfs_keyhash: Option<KeyHash>,
    pub(crate) insecure_plaintext: bool,
    pub(crate) bind: Option<IpAddr>,
    pub(crate) authenticate: bool,
    pub(crate) client_keyhash: Option<KeyHash>,
    pub(crate) volume: String,
    pub(crate) group: Option<String>,
    pub(crate) base_version: u64,
    pub(crate) kmdata: PathBuf,
    pub(crate) local: PathBuf,
    pub(crate) config_file: PathBuf,
    pub(crate) state_dir: PathBuf,
}

/// Runs `--show`.
///
/// # Errors
///
/// Fails when rfs-sync is not set up or its files cannot be read.
pub(crate) fn run(paths: &Paths) -> Result<ShowReport> {
    let config = Config::load(paths)?;
    let state = State::load_version(paths)?;
    let client_keyhash = match config.authenticate {
        true => Some(identity::key_hash(paths)?),
        false => None,
    };
    Ok(ShowReport {
        server: config.server_address(),
        host: config.host,
        port: config.port,
        rfs_keyhash: config.rfs_keyhash,
        insecure_plaintext: config.insecure_plaintext,
        bind: config.bind,
        authenticate: config.authenticate,
        client_keyhash,
        volume: config.volume,
        group: config.group,
        base_version: state.base_version,
        kmdata: paths.kmdata.clone(),
        local: paths.local.clone(),
        config_file: paths.config_file.clone(),
        state_dir: paths.state_dir.clone(),
    })
}

impl Report for ShowReport {
    const ACTION: &'static str = "show";

    fn lines(&self) -> Vec<String> {
        let none = || "-".to_owned();
        let key = self.rfs_keyhash.map_or_else(none, |hash| hash.to_hex());
        let rows = [
            ("server", self.server.clone()),
            ("server key hash", key),
            ("insecure plaintext", self.insecure_plaintext.to_string()),
            ("bind", self.bind.map_or_else(none, |ip| ip.to_string())),
            ("authenticate", self.authenticate.to_string()),
            (
                "client key hash",
                self.client_keyhash.map_or_else(none, |hash| hash.to_hex()),
            ),
            ("volume", self.volume.clone()),
            ("group", self.group.clone().unwrap_or_else(none)),
            ("base version", self.base_version.to_string()),
            ("local directory", self.local.display().to_string()),
            ("config file", self.config_file.display().to_string()),
            ("state directory", self.state_dir.display().to_string()),
        ];
        rows.into_iter()
            .map(|(name, value)| format!("{name:<19}{value}"))
            .collect()
    }

    fn lines_are_data(&self) -> bool {
        true
    }
}
