//! Where rfs-sync keeps things, and its configuration file `rfs-sync.toml`.
//!
//! The configuration and the sync state live outside the synced directory
//! (SPEC section 5): `KMDATA/config/rfs-sync.toml` and `KMDATA/rfs-sync/`.
//! The synced directory follows the vendor's lookup: `NFAST_KMLOCAL`, else
//! `KMDATA/local`.

use std::io::ErrorKind;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rfs_core::KeyHash;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::exit::{Code, Failure};

/// The message of every mode that needs a setup when there is none.
pub(crate) const NOT_SET_UP: &str = "not set up: run rfs-sync --setup RFS_ADDR";

/// The group that owns the kmdata tree on nShield hosts.
const DEFAULT_GROUP: &str = "nfast";

/// Every path rfs-sync uses, resolved once from the command line and the
/// environment.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) kmdata: PathBuf,
    /// The synced directory.
    pub(crate) local: PathBuf,
    pub(crate) config_file: PathBuf,
    /// Holds the sync state, the run lock and the client's key.
    pub(crate) state_dir: PathBuf,
}

impl Paths {
    /// Resolves the paths for the kmdata root `kmdata`.
    pub(crate) fn resolve(kmdata: &Path) -> Self {
        let local = match std::env::var_os("NFAST_KMLOCAL") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => kmdata.join("local"),
        };
        Self {
            kmdata: kmdata.to_owned(),
            local,
            config_file: kmdata.join("config").join("rfs-sync.toml"),
            state_dir: kmdata.join("rfs-sync"),
        }
    }

    /// Returns the file that holds the base version.
    pub(crate) fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// Returns the file that holds the base manifest and digest cache.
    pub(crate) fn base_file(&self) -> PathBuf {
        self.state_dir.join("base.json")
    }

    /// Returns the file whose advisory lock serialises rfs-sync runs.
    pub(crate) fn run_lock_file(&self) -> PathBuf {
        self.state_dir.join("lock")
    }

    /// Returns the client's private key (PEM, mode 0600).
    pub(crate) fn client_key(&self) -> PathBuf {
        self.state_dir.join("client.key.pem")
    }

    /// Returns the client's self-signed certificate (PEM, mode 0600).
    pub(crate) fn client_cert(&self) -> PathBuf {
        self.state_dir.join("client.cert.pem")
    }
}

/// The setup recorded by `--setup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Config {
    /// The server's address as the operator gave it (IP or host name).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The pinned key hash of the server; absent in plaintext mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) rfs_keyhash: Option<KeyHash>,
    /// The local source address of every connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bind: Option<IpAddr>,
    #[serde(default)]
    pub(crate) insecure_plaintext: bool,
    /// Whether the client presents its own certificate.
    #[serde(default)]
    pub(crate) authenticate: bool,
    pub(crate) volume: String,
    /// The group that files written by rfs-sync belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    /// The percentage of the local tree an update may delete without
    /// `--allow-mass-delete`; 50 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_delete_percent: Option<u8>,
}

impl Config {
    /// Returns the configuration at `paths.config_file`.
    ///
    /// # Errors
    ///
    /// Fails with [`NOT_SET_UP`] when the file is missing, and when it cannot
    /// be read or parsed.
    pub(crate) fn load(paths: &Paths) -> Result<Self> {
        let file = &paths.config_file;
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                return Err(Failure::new(Code::Error, NOT_SET_UP).into());
            }
            Err(err) => return Err(err).with_context(|| format!("reading {}", file.display())),
        };
        let config: Config =
            toml::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        if !config.insecure_plaintext && config.rfs_keyhash.is_none() {
            anyhow::bail!(
                "{} pins no server key hash: run rfs-sync --setup --force RFS_ADDR",
                file.display()
            );
        }
        Ok(config)
    }

    /// Returns whether a configuration file exists.
    pub(crate) fn exists(paths: &Paths) -> bool {
        paths.config_file.exists()
    }

    /// Writes the configuration atomically, creating its directory.
    ///
    /// # Errors
    ///
    /// Fails when the directory or the file cannot be written.
    pub(crate) fn save(&self, paths: &Paths) -> Result<()> {
        let file = &paths.config_file;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating directory {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("encoding the configuration")?;
        durable::write_atomically(file, text.as_bytes(), 0o644)
    }

    /// Returns the address to show people: `host:port`, with brackets
    /// around an IPv6 address.
    pub(crate) fn server_address(&self) -> String {
        crate::connect::show_address(&self.host, self.port)
    }

    /// Returns the numeric id of the configured group, if it exists and this
    /// process may give files to it.
    pub(crate) fn group_id(&self) -> Option<u32> {
        let name = self.group.as_deref()?;
        let Some(gid) = group_id(name) else {
            tracing::warn!(
                group = name,
                "configured group does not exist, not setting it"
            );
            return None;
        };
        if !may_use_group(gid) {
            tracing::warn!(
                group = name,
                "not a member of the configured group, not setting it"
            );
            return None;
        }
        Some(gid)
    }
}

/// Returns the group a new setup uses: `nfast` where that group exists.
pub(crate) fn default_group() -> Option<String> {
    group_id(DEFAULT_GROUP).map(|_| DEFAULT_GROUP.to_owned())
}

/// Returns the id of the group `name` from `/etc/group`.
fn group_id(name: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    parse_group_id(&text, name)
}

fn parse_group_id(group_file: &str, name: &str) -> Option<u32> {
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        let found = fields.next()?;
        let gid = fields.nth(1)?;
        (found == name).then(|| gid.parse().ok()).flatten()
    })
}

/// Returns whether `chown` to `gid` can succeed: root may give any group,
/// others only their own.
fn may_use_group(gid: u32) -> bool {
    if rustix::process::geteuid().is_root() || rustix::process::getegid().as_raw() == gid {
        return true;
    }
    rustix::process::getgroups()
        .map(|groups| groups.iter().any(|group| group.as_raw() == gid))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(dir.path());
        let config = Config {
            host: "10.0.0.1".into(),
            port: 9005,
            rfs_keyhash: Some(KeyHash::of_spki(b"server")),
            bind: Some("127.0.0.2".parse().unwrap()),
            insecure_plaintext: false,
            authenticate: true,
            volume: "local".into(),
            group: None,
            max_delete_percent: None,
        };

        config.save(&paths).unwrap();

        assert_eq!(Config::load(&paths).unwrap(), config);
        let text = std::fs::read_to_string(&paths.config_file).unwrap();
        assert!(text.contains("rfs_keyhash = \""), "{text}");
    }

    #[test]
    fn a_missing_configuration_says_how_to_set_up() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(&Paths::resolve(dir.path())).unwrap_err();
        assert_eq!(err.to_string(), NOT_SET_UP);
    }

    #[test]
    fn paths_follow_the_kmdata_root() {
        let paths = Paths::resolve(Path::new("/k"));
        assert_eq!(paths.config_file, Path::new("/k/config/rfs-sync.toml"));
        assert_eq!(paths.state_file(), Path::new("/k/rfs-sync/state.json"));
    }

    #[test]
    fn group_ids_come_from_the_group_file() {
        let file = "root:x:0:\nnfast:x:901:alice,bob\nbroken\n";
        assert_eq!(parse_group_id(file, "nfast"), Some(901));
        assert_eq!(parse_group_id(file, "wheel"), None);
    }

    #[test]
    fn ipv6_servers_are_shown_in_brackets() {
        let mut config = Config {
            host: "::1".into(),
            port: 9005,
            rfs_keyhash: None,
            bind: None,
            insecure_plaintext: true,
            authenticate: false,
            volume: "local".into(),
            group: None,
            max_delete_percent: None,
        };
        assert_eq!(config.server_address(), "[::1]:9005");
        config.host = "rfs.example".into();
        assert_eq!(config.server_address(), "rfs.example:9005");
    }
}
