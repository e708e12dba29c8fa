//! Runs `rfs-sync` as one client host: its own kmdata directory and its own
//! source address on the loopback network.
//!
//! Every address in 127.0.0.0/8 reaches the loopback interface on Linux, so
//! `--bind 127.0.0.2` gives one machine as many distinct clients as a test
//! needs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use kmdata_fixtures::FixtureFile;
use serde_json::Value;
use tempfile::TempDir;

use crate::binaries::binaries;
use crate::process::{self, COMMAND_LIMIT, RunResult, Running};
use crate::server::{KEEP_VAR, read_optional};

/// The address clients use to reach the server.
const SERVER_ADDRESS: &str = "127.0.0.1";

/// One client host with its own kmdata directory.
///
/// Dropping it removes the directory, unless the test is failing and
/// `RFS_TEST_KEEP` is set.
#[derive(Debug)]
pub struct Client {
    dir: TempDir,
    kmdata: PathBuf,
    local: PathBuf,
    address: String,
    port: u16,
    /// The server key hash to pin; `None` for a plaintext server.
    server_key_hash: Option<String>,
}

impl Client {
    /// Returns a client with an empty `kmdata/local`, as a fresh nShield
    /// installation has.
    pub(crate) fn new(address: &str, port: u16, server_key_hash: Option<String>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rfs-sync-e2e-")
            .tempdir()
            .expect("creating the client's temporary directory");
        let kmdata = dir.path().join("kmdata");
        let local = kmdata.join("local");
        fs::create_dir_all(&local).expect("creating the client's kmdata/local");

        Self {
            dir,
            kmdata,
            local,
            address: address.to_owned(),
            port,
            server_key_hash,
        }
    }

    /// Returns the source address this client connects from.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Returns the client's `local` directory, the one rfs-sync keeps equal
    /// to the server's.
    pub fn local_dir(&self) -> &Path {
        &self.local
    }

    /// Returns the client's kmdata root.
    pub fn kmdata_dir(&self) -> &Path {
        &self.kmdata
    }

    /// Runs `rfs-sync --setup` for this client without a terminal: pinning
    /// the server's key hash (or in plaintext), binding the source address,
    /// and without client authentication.
    pub fn setup(&self) -> RunResult {
        self.setup_with(&[])
    }

    /// Runs `rfs-sync --setup` like [`Client::setup`], with extra options.
    pub fn setup_with(&self, extra: &[&str]) -> RunResult {
        self.run_setup("--no-authenticate", extra)
    }

    /// Runs `rfs-sync --setup --authenticate`: the client makes its own key
    /// and presents it on every connection.
    pub fn setup_authenticated(&self) -> RunResult {
        self.run_setup("--authenticate", &["--json"])
    }

    fn run_setup(&self, authentication: &str, extra: &[&str]) -> RunResult {
        let port = self.port.to_string();
        let mut args = vec![
            "--setup",
            SERVER_ADDRESS,
            authentication,
            "--port",
            &port,
            "--bind",
            &self.address,
        ];
        match &self.server_key_hash {
            Some(key_hash) => args.extend(["--rfs-keyhash", key_hash.as_str()]),
            None => args.push("--insecure-plaintext"),
        }
        args.extend(extra);

        self.run(&args)
    }

    /// Runs `rfs-sync --kmdata DIR ARGS` and returns how it ended.
    pub fn run(&self, args: &[&str]) -> RunResult {
        process::run(self.command(args), COMMAND_LIMIT)
    }

    /// Runs `rfs-sync --kmdata DIR ARGS` so that it aborts when it reaches
    /// the named crash point (test builds only), as a crash there would.
    pub fn run_crashing_at(&self, args: &[&str], point: &str) -> RunResult {
        let mut command = self.command(args);
        command.env("RFS_SYNC_CRASH_AT", point);
        process::run(command, COMMAND_LIMIT)
    }

    /// Starts `rfs-sync --kmdata DIR ARGS` in the background, so the test
    /// can pause or kill it midway.
    pub fn start(&self, args: &[&str]) -> Running {
        process::spawn(self.command(args))
    }

    /// Writes a file of `size` bytes to `path` in the local directory: big
    /// enough that sending it keeps the commit lock held for a while.
    pub fn write_large(&self, path: &str, size: usize) {
        let content: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
        self.write(path, &content);
    }

    /// Holds the advisory run lock in this client's state directory, the
    /// way a running `rfs-sync` does, until the returned file is dropped.
    pub fn hold_run_lock(&self) -> fs::File {
        let dir = self.kmdata.join("rfs-sync");
        fs::create_dir_all(&dir).expect("creating the client's state directory");
        let file = fs::File::create(dir.join("lock")).expect("creating the run lock file");
        file.try_lock().expect("taking the client's run lock");
        file
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&binaries().rfs_sync);
        command.arg("--kmdata").arg(&self.kmdata).args(args);
        for var in ["NFAST_KMDATA", "NFAST_KMLOCAL", "RUST_LOG"] {
            command.env_remove(var);
        }
        command.env("NO_COLOR", "1");
        command
    }

    /// Runs `rfs-sync --update`.
    pub fn update(&self) -> RunResult {
        self.run(&["--update"])
    }

    /// Runs `rfs-sync --commit`.
    pub fn commit(&self) -> RunResult {
        self.run(&["--commit"])
    }

    /// Runs `rfs-sync --commit` with extra options, such as
    /// `--allow-delete`.
    pub fn commit_with(&self, extra: &[&str]) -> RunResult {
        let mut args = vec!["--commit"];
        args.extend(extra);
        self.run(&args)
    }

    /// Runs `rfs-sync ARGS --json` and returns the JSON object it printed,
    /// whatever its exit code; failures carry `"ok": false`.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        self.run(&args).json()
    }

    /// Writes `content` to `path` in the local directory, keeping the mode
    /// of an existing file.
    pub fn write(&self, path: &str, content: &[u8]) {
        let path = self.local.join(path);
        fs::write(&path, content).unwrap_or_else(|err| panic!("writing {}: {err}", path.display()));
    }

    /// Adds a file to the local directory with its content and mode, the
    /// way a key generated on this host appears.
    pub fn add(&self, file: &FixtureFile) {
        self.write(&file.path, &file.content);
        let path = self.local.join(&file.path);
        let mode = fs::Permissions::from_mode(file.mode);
        fs::set_permissions(&path, mode)
            .unwrap_or_else(|err| panic!("chmod {}: {err}", path.display()));
    }

    /// Deletes `path` from the local directory.
    pub fn remove(&self, path: &str) {
        let path = self.local.join(path);
        fs::remove_file(&path).unwrap_or_else(|err| panic!("removing {}: {err}", path.display()));
    }

    /// Returns the content of `path` in the local directory, or `None` if
    /// there is no such file.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        read_optional(&self.local.join(path))
    }

    /// Returns the permission bits of `path` in the local directory.
    pub fn mode(&self, path: &str) -> u32 {
        let path = self.local.join(path);
        let metadata =
            fs::metadata(&path).unwrap_or_else(|err| panic!("stat {}: {err}", path.display()));
        metadata.permissions().mode() & 0o7777
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if thread::panicking() && std::env::var_os(KEEP_VAR).is_some() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "kept client {} at {}",
                self.address,
                self.dir.path().display()
            );
        }
    }
}
