//! Settings: flags and variables (parsed by clap) over the configuration
//! file over the defaults. Every problem is collected, so an operator sees
//! all of them in one run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rfs_core::{DEFAULT_VOLUME, RelPath};
use serde::Deserialize;

use crate::cli::{Cli, ServeArgs};
use crate::limits::Limits;
use crate::lock::{DEFAULT_LEASE, DEFAULT_LEGACY_MAX_AGE};
use crate::watch::WatchSettings;

/// The configuration file read when none is named.
pub const DEFAULT_CONFIG: &str = "/etc/rfsd/rfsd.toml";
/// The default kmdata root.
pub const DEFAULT_KMDATA: &str = "/opt/nfast/kmdata";
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rfsd";
/// The default grants file.
pub const DEFAULT_CLIENTS: &str = "/etc/rfsd/clients.toml";
/// The default administration socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/rfsd/admin.sock";
/// The default port: next to the vendor's hardserver on 9004.
pub const DEFAULT_PORT: u16 = 9005;

/// How the daemon logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain text, one line per event, for journald.
    Text,
    /// One JSON object per event.
    Json,
}

/// One served volume: its name and live directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSetting {
    /// The name clients use.
    pub name: String,
    /// The live directory.
    pub path: PathBuf,
}

/// Every setting of the daemon, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The kmdata root.
    pub kmdata: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// The grants file.
    pub clients: PathBuf,
    /// The administration socket.
    pub admin_socket: PathBuf,
    /// Serve without TLS.
    pub insecure_plaintext: bool,
    /// The log format.
    pub log_format: LogFormat,
    /// The served volumes, `local` first.
    pub volumes: Vec<VolumeSetting>,
    /// The lease of a commit lock.
    pub lock_lease: Duration,
    /// How long a `.nft-lock` written by another program is honoured.
    pub legacy_lock_max_age: Duration,
    /// Request limits.
    pub limits: Limits,
    /// How changes made on the host are noticed.
    pub watch: WatchSettings,
}

/// Every problem found in the settings.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

/// The configuration file's keys, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    kmdata: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    listen: Option<Vec<String>>,
    clients: Option<PathBuf>,
    admin_socket: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    log_format: Option<String>,
    volumes: Option<Vec<String>>,
    lock_lease: Option<String>,
    legacy_lock_max_age: Option<String>,
    max_file_size: Option<u64>,
    max_entries: Option<usize>,
    max_objects_per_commit: Option<usize>,
    watch_quiet: Option<String>,
    full_scan_interval: Option<String>,
}

impl Settings {
    /// Resolves the settings of `cli` with `serve` options (defaults when
    /// the subcommand is not `serve`).
    ///
    /// # Errors
    ///
    /// Returns every problem found: an unreadable or malformed file, bad
    /// addresses, durations or volume names.
    pub fn resolve(cli: &Cli, serve: &ServeArgs) -> Result<Self, ConfigErrors> {
        let mut problems = Vec::new();
        let file = load_file(cli.config.as_deref(), &mut problems);

        // Subcommands other than `serve` take no --kmdata but still honour
        // the variable, for the offline commands.
        let kmdata_flag = serve
            .kmdata
            .clone()
            .or_else(|| std::env::var_os("NFAST_KMDATA").map(PathBuf::from));
        let kmdata = pick(kmdata_flag, file.kmdata, DEFAULT_KMDATA);
        let listen_text = if serve.listen.is_empty() {
            file.listen.unwrap_or_default()
        } else {
            serve.listen.clone()
        };
        let listen = parse_listen(&listen_text, &mut problems);
        let log_format = match serve.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                problems.push(format!(
                    "log format {other:?} is neither \"text\" nor \"json\""
                ));
                LogFormat::Text
            }
        };
        let lock_lease = duration_setting(
            "lock lease",
            serve.lock_lease.clone().or(file.lock_lease),
            DEFAULT_LEASE,
            &mut problems,
        );
        let watch_defaults = WatchSettings::default();
        let watch = WatchSettings {
            quiet: duration_setting(
                "watch quiet period",
                serve.watch_quiet.clone().or(file.watch_quiet),
                watch_defaults.quiet,
                &mut problems,
            ),
            full_scan_interval: duration_setting(
                "full scan interval",
                serve.full_scan_interval.clone().or(file.full_scan_interval),
                watch_defaults.full_scan_interval,
                &mut problems,
            ),
            ..watch_defaults
        };
        let legacy_text = serve
            .legacy_lock_max_age
            .clone()
            .or(file.legacy_lock_max_age);
        let legacy_lock_max_age = match legacy_text {
            None => DEFAULT_LEGACY_MAX_AGE,
            Some(text) => parse_duration(&text).unwrap_or_else(|err| {
                problems.push(format!("legacy lock max age: {err}"));
                DEFAULT_LEGACY_MAX_AGE
            }),
        };
        let extra = if serve.volumes.is_empty() {
            file.volumes.unwrap_or_default()
        } else {
            serve.volumes.clone()
        };
        let volumes = volume_settings(&kmdata, &extra, &mut problems);

        let defaults = Limits::default();
        let limits = Limits {
            max_file_size: serve
                .max_file_size
                .or(file.max_file_size)
                .unwrap_or(defaults.max_file_size),
            max_entries: file.max_entries.unwrap_or(defaults.max_entries),
            max_objects_per_commit: file
                .max_objects_per_commit
                .unwrap_or(defaults.max_objects_per_commit),
            ..defaults
        };
        let settings = Settings {
            state_dir: pick(cli.state_dir.clone(), file.state_dir, DEFAULT_STATE_DIR),
            clients: pick(serve.clients.clone(), file.clients, DEFAULT_CLIENTS),
            admin_socket: pick(
                cli.admin_socket.clone(),
                file.admin_socket,
                DEFAULT_ADMIN_SOCKET,
            ),
            insecure_plaintext: serve.insecure_plaintext
                || file.insecure_plaintext.unwrap_or(false),
            kmdata,
            listen,
            log_format,
            volumes,
            lock_lease,
            legacy_lock_max_age,
            limits,
            watch,
        };
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigErrors(problems))
        }
    }
}

/// Parses a duration such as `30s`, `500ms`, `2m`, `1h30m` or a bare number
/// of seconds; zero is refused, since every duration setting must pass.
///
/// # Errors
///
/// Returns a message naming the bad text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = rfs_core::duration::parse(text)?;
    if duration.is_zero() {
        return Err(format!("{:?} is zero", text.trim()));
    }
    Ok(duration)
}

fn duration_setting(
    name: &str,
    text: Option<String>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match text {
        None => default,
        Some(text) => parse_duration(&text).unwrap_or_else(|err| {
            problems.push(format!("{name}: {err}"));
            default
        }),
    }
}

fn load_file(named: Option<&Path>, problems: &mut Vec<String>) -> FileSettings {
    let path = named.unwrap_or(Path::new(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // Only a file that was named must exist.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && named.is_none() => {
            return FileSettings::default();
        }
        Err(err) => {
            problems.push(format!("{}: {err}", path.display()));
            return FileSettings::default();
        }
    };
    toml::from_str(&text).unwrap_or_else(|err| {
        problems.push(format!("{}: {err}", path.display()));
        FileSettings::default()
    })
}

fn pick(flag: Option<PathBuf>, file: Option<PathBuf>, default: &str) -> PathBuf {
    flag.or(file).unwrap_or_else(|| PathBuf::from(default))
}

fn parse_listen(texts: &[String], problems: &mut Vec<String>) -> Vec<SocketAddr> {
    if texts.is_empty() {
        return vec![
            SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            SocketAddr::from(([0u16; 8], DEFAULT_PORT)),
        ];
    }
    texts
        .iter()
        .filter_map(|text| match text.trim().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                problems.push(format!(
                    "listen address {text:?} is not ADDR:PORT (IPv6 as [ADDR]:PORT)"
                ));
                None
            }
        })
        .collect()
}

fn volume_settings(
    kmdata: &Path,
    extra: &[String],
    problems: &mut Vec<String>,
) -> Vec<VolumeSetting> {
    let local_path = std::env::var_os("NFAST_KMLOCAL")
        .map_or_else(|| kmdata.join(DEFAULT_VOLUME), PathBuf::from);
    let mut volumes = vec![VolumeSetting {
        name: DEFAULT_VOLUME.to_owned(),
        path: local_path,
    }];
    for name in extra
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty() && *name != DEFAULT_VOLUME)
    {
        match RelPath::new(name) {
            Ok(rel) => volumes.push(VolumeSetting {
                name: rel.as_str().to_owned(),
                path: kmdata.join(rel.as_str()),
            }),
            Err(err) => problems.push(format!("volume {name:?}: {err}")),
        }
    }
    volumes
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, ConfigErrors> {
        let cli = Cli::parse_from(args);
        let crate::cli::Command::Serve(serve) = &cli.command else {
            panic!("expected serve");
        };
        Settings::resolve(&cli, serve)
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rfsd.toml");
        std::fs::write(
            &file,
            "state_dir = \"/from/file\"\nkmdata = \"/file/kmdata\"\n",
        )
        .unwrap();

        let resolved = settings(&[
            "rfsd",
            "--config",
            file.to_str().unwrap(),
            "serve",
            "--kmdata",
            "/flag/kmdata",
        ])
        .unwrap();

        assert_eq!(resolved.kmdata, PathBuf::from("/flag/kmdata"));
        assert_eq!(resolved.state_dir, PathBuf::from("/from/file"));
        assert_eq!(resolved.listen.len(), 2);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rfsd.toml");
        std::fs::write(&file, "lock_lease = \"soon\"\nlog_format = \"xml\"\n").unwrap();

        let errors = settings(&[
            "rfsd",
            "--config",
            file.to_str().unwrap(),
            "serve",
            "--listen",
            "nowhere",
        ])
        .unwrap_err();

        assert_eq!(errors.0.len(), 3, "{errors}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rfsd.toml");
        std::fs::write(&file, "listen_port = 1\n").unwrap();

        assert!(settings(&["rfsd", "--config", file.to_str().unwrap(), "serve"]).is_err());
    }

    #[test]
    fn the_legacy_lock_age_comes_from_the_file_unless_a_flag_names_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rfsd.toml");
        std::fs::write(&file, "legacy_lock_max_age = \"20m\"\n").unwrap();
        let config = file.to_str().unwrap();

        let from_file = settings(&["rfsd", "--config", config, "serve"]).unwrap();
        let from_flag = settings(&[
            "rfsd",
            "--config",
            config,
            "serve",
            "--legacy-lock-max-age",
            "90s",
        ])
        .unwrap();

        assert_eq!(from_file.legacy_lock_max_age, Duration::from_secs(1200));
        assert_eq!(from_flag.legacy_lock_max_age, Duration::from_secs(90));
    }

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
