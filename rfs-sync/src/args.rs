//! Command-line definitions: exactly one mode flag per run, and the options
//! that each mode accepts.
//!
//! The modes are flags rather than subcommands because scripts written for
//! the vendor's `rfs-sync` call `rfs-sync --update` and `rfs-sync --setup
//! ADDR`. Clap enforces that exactly one mode is given and that each option
//! is only used with a mode it belongs to; a violation exits with code 2.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, ArgGroup, Parser};
use rfs_core::KeyHash;

/// The default TCP port of rfsd.
pub(crate) const DEFAULT_PORT: u16 = 9005;

/// Keeps one machine's copy of the nShield kmdata tree in step with rfsd.
#[derive(Debug, Parser)]
#[command(name = "rfs-sync", version, about, long_about = LONG_ABOUT)]
#[command(group(
    ArgGroup::new("mode")
        .required(true)
        .multiple(false)
        .args(["setup", "update", "commit", "sync", "show", "remove", "status"])
))]
#[command(group(ArgGroup::new("changing").multiple(true).args(["update", "commit", "sync"])))]
#[command(group(ArgGroup::new("committing").multiple(true).args(["commit", "sync"])))]
#[command(group(ArgGroup::new("updating").multiple(true).args(["update", "sync"])))]
// A flag always has a value (false by default), so `requires = "setup"` would
// always hold; a group of one is present only when the flag was given.
#[command(group(ArgGroup::new("setting_up").args(["setup"])))]
pub(crate) struct Args {
    /// The kmdata root; the synced directory is DIR/local unless
    /// NFAST_KMLOCAL names another.
    #[arg(
        long,
        env = "NFAST_KMDATA",
        value_name = "DIR",
        default_value = "/opt/nfast/kmdata"
    )]
    pub(crate) kmdata: PathBuf,

    /// Records the server RFS_ADDR, checks that it answers and pins its key.
    #[arg(long)]
    pub(crate) setup: bool,
    /// Pulls the server's head version into the local directory.
    #[arg(long)]
    pub(crate) update: bool,
    /// Pushes local changes to the server as a new version.
    #[arg(long)]
    pub(crate) commit: bool,
    /// Updates, then commits.
    #[arg(long)]
    pub(crate) sync: bool,
    /// Prints the recorded setup.
    #[arg(long)]
    pub(crate) show: bool,
    /// Forgets the setup and the sync state; local files stay.
    #[arg(long)]
    pub(crate) remove: bool,
    /// Reports base and head versions, local changes and the lock holder.
    #[arg(long)]
    pub(crate) status: bool,

    /// The server's address (IP address or host name, optionally with
    /// :PORT), with --setup.
    #[arg(
        value_name = "RFS_ADDR",
        requires = "setting_up",
        required_if_eq("setup", "true")
    )]
    pub(crate) rfs_addr: Option<String>,

    /// Shows what would change and changes nothing.
    #[arg(long, requires = "changing")]
    pub(crate) dry_run: bool,
    /// Sends local deletions too (they are only reported otherwise).
    #[arg(long, requires = "committing")]
    pub(crate) allow_delete: bool,
    /// Waits this long (e.g. 30s, 2m) for a lock held by someone else:
    /// another rfs-sync run on this client, and with --commit or --sync the
    /// server's lock held by another client. Without it a held lock fails
    /// the run at once with exit code 4.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "changing")]
    pub(crate) wait_lock: Option<Duration>,
    /// Takes the server's file on a conflict, keeping the local one beside
    /// it as NAME.rfs-conflict-TIME.
    #[arg(long, requires = "updating")]
    pub(crate) force_remote: bool,
    /// Applies an update even when it deletes more than half of the local
    /// tree; without it such an update changes nothing and fails, since a
    /// server that looks empty must not empty every client.
    #[arg(long, requires = "updating")]
    pub(crate) allow_mass_delete: bool,

    /// Creates a client key and certificate and authenticates with them.
    #[arg(long, requires = "setting_up", conflicts_with = "no_authenticate")]
    pub(crate) authenticate: bool,
    /// Trusts the client by its address only (the default).
    #[arg(long, requires = "setting_up")]
    pub(crate) no_authenticate: bool,
    /// The server's TCP port.
    #[arg(short, long, value_name = "PORT", requires = "setting_up")]
    pub(crate) port: Option<u16>,
    /// The server key hash to pin (64 hex digits), instead of asking.
    #[arg(long, value_name = "H", value_parser = parse_key_hash, requires = "setting_up")]
    pub(crate) rfs_keyhash: Option<KeyHash>,
    /// The local source address of every connection to the server.
    #[arg(long, value_name = "ADDR", requires = "setting_up")]
    pub(crate) bind: Option<IpAddr>,
    /// Speaks plain HTTP/2 without TLS (debugging only; the server must agree).
    #[arg(long, requires = "setting_up", conflicts_with_all = ["authenticate", "rfs_keyhash"])]
    pub(crate) insecure_plaintext: bool,
    /// Replaces an existing setup.
    #[arg(long, requires = "setting_up")]
    pub(crate) force: bool,
    /// Trusts the key the server presents without asking.
    #[arg(long, requires = "setting_up")]
    pub(crate) yes: bool,

    /// Prints exactly one JSON object on standard output.
    #[arg(long)]
    pub(crate) json: bool,
    /// Logs more: -v for progress, -vv for every RPC.
    #[arg(short, long, action = ArgAction::Count)]
    pub(crate) verbose: u8,
}

const LONG_ABOUT: &str = "Keeps one machine's copy of the nShield kmdata tree in step with rfsd.

Exit codes: 0 done; 1 error; 2 usage; 3 conflict; 4 lock held by someone \
else; 5 permission denied; 6 server unreachable; 7 integrity failure.";

/// What one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Setup,
    Update,
    Commit,
    Sync,
    Show,
    Remove,
    Status,
}

impl Mode {
    /// Returns the name used as `action` in JSON output.
    pub(crate) fn action(self) -> &'static str {
        match self {
            Mode::Setup => "setup",
            Mode::Update => "update",
            Mode::Commit => "commit",
            Mode::Sync => "sync",
            Mode::Show => "show",
            Mode::Remove => "remove",
            Mode::Status => "status",
        }
    }
}

impl Args {
    /// Returns the mode chosen; clap guarantees exactly one flag is set.
    pub(crate) fn mode(&self) -> Mode {
        let flags = [
            (self.setup, Mode::Setup),
            (self.update, Mode::Update),
            (self.commit, Mode::Commit),
            (self.sync, Mode::Sync),
            (self.show, Mode::Show),
            (self.remove, Mode::Remove),
        ];
        flags
            .into_iter()
            .find_map(|(set, mode)| set.then_some(mode))
            .unwrap_or(Mode::Status)
    }
}

/// Parses a duration such as `30s`, `2m`, `1h30m` or `500ms`; a bare number
/// means seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    rfs_core::duration::parse(text)
}

fn parse_key_hash(text: &str) -> Result<KeyHash, String> {
    match KeyHash::parse_optional(text) {
        Ok(Some(hash)) => Ok(hash),
        Ok(None) => Err("the server must have a key hash; zeros mean no key".to_owned()),
        Err(err) => Err(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("rfs-sync").chain(args.iter().copied()))
    }

    #[test]
    fn exactly_one_mode_is_required() {
        assert_eq!(parse(&[]).unwrap_err().exit_code(), 2);
        let both = parse(&["--update", "--commit"]).unwrap_err();
        assert_eq!(both.kind(), ErrorKind::ArgumentConflict);
        assert_eq!(both.exit_code(), 2);
    }

    #[test]
    fn setup_takes_the_server_address_and_its_options() {
        let args = parse(&[
            "--setup",
            "-p",
            "19005",
            "--bind",
            "127.0.0.2",
            "--yes",
            "10.0.0.1",
        ])
        .unwrap();

        assert_eq!(args.mode(), Mode::Setup);
        assert_eq!(args.rfs_addr.as_deref(), Some("10.0.0.1"));
        assert_eq!(args.port, Some(19005));
        assert_eq!(args.bind, Some("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn setup_without_an_address_is_a_usage_error() {
        let err = parse(&["--setup", "--yes"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn options_outside_their_mode_are_usage_errors() {
        for args in [
            &["--update", "--allow-delete"][..],
            &["--commit", "--force-remote"],
            &["--show", "--dry-run"],
            &["--update", "--port", "1"],
            &["--update", "10.0.0.1"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn sync_accepts_update_and_commit_options() {
        let args = parse(&[
            "--sync",
            "--force-remote",
            "--allow-delete",
            "--wait-lock",
            "2m",
        ])
        .unwrap();
        assert_eq!(args.mode(), Mode::Sync);
        assert_eq!(args.wait_lock, Some(Duration::from_secs(120)));
    }

    #[test]
    fn bad_key_hashes_are_usage_errors() {
        let zeros = "0".repeat(64);
        for hash in ["abc", zeros.as_str()] {
            let err = parse(&["--setup", "--rfs-keyhash", hash, "h"]).unwrap_err();
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("s").is_err());
    }
}
