//! The command line of rfsd (SPEC section 12). Every setting of `serve` is
//! also an environment variable and a key of the configuration file; the
//! flag wins, then the variable, then the file, then the default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// rfsd serves the nShield kmdata tree as numbered versions to rfs-sync
/// clients, with per-client grants and a lock it manages itself.
#[derive(Debug, Parser)]
#[command(name = "rfsd", version, propagate_version = true)]
pub struct Cli {
    /// The configuration file (a missing file is fine).
    #[arg(long, global = true, env = "RFSD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The state directory: the database of versions and objects, and the
    /// server's TLS key.
    #[arg(long, global = true, env = "RFSD_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// The local administration socket of the running daemon.
    #[arg(long, global = true, env = "RFSD_ADMIN_SOCKET", value_name = "PATH")]
    pub admin_socket: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Serve a copy of the sample kmdata tree on 127.0.0.1, without root, and
    /// print how to point rfs-sync at it.
    Demo(DemoArgs),
    /// Show, add and remove client grants.
    Client {
        /// What to do with grants.
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Show volumes, head versions, lock holders and clients seen.
    Status(JsonArgs),
    /// Show the version history of a volume, newest first.
    Log(LogArgs),
    /// Print the server's key hash (64 hex digits) and nothing else.
    Keyhash,
    /// Show the manifest of a version.
    Show(ShowArgs),
    /// Show what changed between two versions.
    Diff(DiffArgs),
    /// Make a new version equal to an old one and write it to the live tree
    /// (history is never rewritten).
    Rollback(ShowArgs),
    /// Check every stored object, every version's objects, and each live
    /// tree against its head; exit 1 on any difference. Works with the
    /// daemon stopped too.
    Verify(JsonArgs),
    /// Write the files of a version into an empty directory.
    Export(ExportArgs),
    /// With the daemon stopped: move a lost or damaged database aside and
    /// rebuild it from the live trees, each becoming version 1.
    RebuildIndex,
    /// Free the lock of a volume now and say what was freed. Works through
    /// the running daemon, or directly on the state directory and the
    /// volume when the daemon is stopped.
    ClearLock(ClearLockArgs),
}

/// Options of `show` and `rollback`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The version number.
    #[arg(value_name = "VERSION")]
    pub number: u64,

    /// The volume.
    #[arg(long, default_value = rfs_core::DEFAULT_VOLUME)]
    pub volume: String,

    /// Print JSON instead of text for people.
    #[arg(long)]
    pub json: bool,
}

/// Options of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older version.
    pub from: u64,

    /// The newer version.
    pub to: u64,

    /// The volume.
    #[arg(long, default_value = rfs_core::DEFAULT_VOLUME)]
    pub volume: String,

    /// Print JSON instead of text for people.
    #[arg(long)]
    pub json: bool,
}

/// Options of `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The version number.
    #[arg(value_name = "VERSION")]
    pub number: u64,

    /// The directory to write into; it must not exist or be empty.
    pub dir: PathBuf,

    /// The volume.
    #[arg(long, default_value = rfs_core::DEFAULT_VOLUME)]
    pub volume: String,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Settings of the daemon.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// The kmdata root; volume `local` is DIR/local unless NFAST_KMLOCAL
    /// names another directory.
    #[arg(long, env = "NFAST_KMDATA", value_name = "DIR")]
    pub kmdata: Option<PathBuf>,

    /// An address to listen on (repeatable; the variable takes a
    /// comma-separated list). Default: 0.0.0.0:9005 and [::]:9005.
    #[arg(
        long,
        env = "RFSD_LISTEN",
        value_name = "ADDR:PORT",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,

    /// The grants file.
    #[arg(long, env = "RFSD_CLIENTS", value_name = "FILE")]
    pub clients: Option<PathBuf>,

    /// Serve without TLS. For debugging only: clients must say the same.
    #[arg(long, env = "RFSD_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,

    /// Log format: `text` (for journald) or `json`.
    #[arg(long, env = "RFSD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// A volume to serve besides `local`, as a path under the kmdata root
    /// (repeatable; the variable takes a comma-separated list).
    #[arg(
        long = "volume",
        env = "RFSD_VOLUMES",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub volumes: Vec<String>,

    /// How long a commit lock lasts unless the client renews it, e.g. `30s`.
    #[arg(long, env = "RFSD_LOCK_LEASE", value_name = "DURATION")]
    pub lock_lease: Option<String>,

    /// How long a changed file on the host must stay untouched before it is
    /// recorded, e.g. `500ms`.
    #[arg(long, env = "RFSD_WATCH_QUIET", value_name = "DURATION")]
    pub watch_quiet: Option<String>,

    /// How often each volume is rescanned in full, whatever the watcher
    /// reported, e.g. `10m`.
    #[arg(long, env = "RFSD_FULL_SCAN_INTERVAL", value_name = "DURATION")]
    pub full_scan_interval: Option<String>,
    /// How long a `.nft-lock` written by another program is honoured before
    /// rfsd clears it, e.g. `10m`.
    #[arg(long, env = "RFSD_LEGACY_LOCK_MAX_AGE", value_name = "DURATION")]
    pub legacy_lock_max_age: Option<String>,

    /// The largest file a volume may hold, in bytes.
    #[arg(long, env = "RFSD_MAX_FILE_SIZE", value_name = "BYTES")]
    pub max_file_size: Option<u64>,
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its kmdata, state and grants; reused if present.
    #[arg(long, value_name = "DIR", default_value = "rfsd-demo")]
    pub dir: PathBuf,

    /// The port to listen on, on 127.0.0.1.
    #[arg(long, default_value_t = 9005)]
    pub port: u16,

    /// The sample tree to copy on first run.
    #[arg(long, value_name = "DIR")]
    pub sample: Option<PathBuf>,
}

/// Grant subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Add a grant, or replace the one for the same address, key and volume.
    Add(ClientAddArgs),
    /// List grants and when each client was last seen.
    List(JsonArgs),
    /// Remove the grants for an address.
    Remove(ClientRemoveArgs),
}

/// Options of `client add`.
#[derive(Debug, Args)]
pub struct ClientAddArgs {
    /// The client's address, a CIDR range, or `*` (any address; use with
    /// --keyhash).
    pub address: String,

    /// The key hash the client must present (64 hex digits).
    #[arg(long, value_name = "HASH")]
    pub keyhash: Option<String>,

    /// The volume.
    #[arg(long, default_value = rfs_core::DEFAULT_VOLUME)]
    pub volume: String,

    /// Forbid writes.
    #[arg(long, conflicts_with = "write_noauth")]
    pub readonly: bool,

    /// Let the client write although it is trusted by address only.
    #[arg(long)]
    pub write_noauth: bool,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `client remove`.
#[derive(Debug, Args)]
pub struct ClientRemoveArgs {
    /// The address (or range, or `*`) whose grants go.
    pub address: String,

    /// Remove only the grant for this volume.
    #[arg(long)]
    pub volume: Option<String>,

    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` switch of listing subcommands.
#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON instead of text for people.
    #[arg(long)]
    pub json: bool,
}

/// Options of `log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The volume.
    #[arg(long, default_value = rfs_core::DEFAULT_VOLUME)]
    pub volume: String,

    /// Show at most this many versions.
    #[arg(short = 'n', long = "limit", value_name = "N")]
    pub limit: Option<u32>,

    /// Print JSON instead of text for people.
    #[arg(long)]
    pub json: bool,
}

/// Options of `clear-lock`.
#[derive(Debug, Args)]
pub struct ClearLockArgs {
    /// The volume whose lock to free.
    #[arg(long, default_value = rfs_core::DEFAULT_VOLUME)]
    pub volume: String,

    /// The kmdata root, to find the volume when the daemon is stopped.
    #[arg(long, env = "NFAST_KMDATA", value_name = "DIR")]
    pub kmdata: Option<PathBuf>,

    /// Print JSON instead of text for people.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
