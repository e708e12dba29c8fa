//! Starts a real `rfsd serve` in its own temporary directory and stops it
//! when the test ends.
//!
//! The daemon listens on `127.0.0.1:0`. Readiness comes from the systemd
//! notify protocol: the harness binds a Unix datagram socket, passes it as
//! `NOTIFY_SOCKET`, and blocks until `READY=1` arrives, learning the port
//! from the `STATUS=listening on …` line. Nothing sleeps.

use std::fs::{self, File};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use kmdata_fixtures::{FixtureFile, TreeSpec};
use serde_json::Value;
use tempfile::TempDir;

use crate::binaries::{Binaries, binaries};
use crate::client::Client;
use crate::grant::Grant;
use crate::process::{self, COMMAND_LIMIT, RunResult};

/// How long rfsd may take to signal readiness before the test fails.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How often the readiness wait wakes to check that rfsd is still running.
const READY_CHECK: Duration = Duration::from_secs(1);

/// How long rfsd may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long [`Server::wait_for_lock_holder`] waits before the test fails.
const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(60);

/// How long [`Server::wait_for_lock_holder`] pauses between looks.
const LOCK_POLL: Duration = Duration::from_millis(20);

/// How many lines of the daemon log a failing test prints.
const LOG_TAIL_LINES: usize = 400;

/// The log filter for the daemon unless `RFS_TEST_LOG` overrides it: our
/// crates at debug, the chattiest transport crates at info.
const DEFAULT_LOG_FILTER: &str = "debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info";

/// The environment variable that, when set, keeps the temporary
/// directories of a failed test for inspection.
pub const KEEP_VAR: &str = "RFS_TEST_KEEP";

/// Describes a server to start.
#[derive(Debug, Default)]
pub struct ServerBuilder {
    fixture: Option<TreeSpec>,
    grants: Vec<Grant>,
    plaintext: bool,
    serve_args: Vec<String>,
    legacy_lock_age: Option<Duration>,
}

impl ServerBuilder {
    /// Fills `kmdata/local` with a generated tree of `files` files before
    /// the daemon starts, so that it becomes version 1.
    pub fn with_fixture_tree(mut self, files: usize, seed: u64) -> Self {
        self.fixture = Some(TreeSpec::new(files, seed));
        self
    }

    /// Adds a grant to the clients file.
    pub fn with_grant(mut self, grant: Grant) -> Self {
        self.grants.push(grant);
        self
    }

    /// Serves plain HTTP/2 (`--insecure-plaintext`) instead of TLS.
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// Passes more options to `rfsd serve`, such as `--lock-lease 2s`.
    pub fn with_serve_args(mut self, args: &[&str]) -> Self {
        self.serve_args
            .extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    /// Puts a `.nft-lock` into `kmdata/local` before the daemon starts, as
    /// the vendor's tools leave one, last modified `age` ago.
    pub fn with_legacy_lock(mut self, age: Duration) -> Self {
        self.legacy_lock_age = Some(age);
        self
    }

    /// Starts the daemon and returns once it has signalled readiness.
    ///
    /// Panics, printing the daemon log, if it exits or stays silent.
    pub fn start(self) -> Server {
        let binaries = binaries();
        let dir = tempfile::Builder::new()
            .prefix("rfsd-e2e-")
            .tempdir()
            .expect("creating the server's temporary directory");
        let paths = ServerPaths::new(dir.path());
        let fixture = paths.prepare(self.fixture, &self.grants);
        if let Some(age) = self.legacy_lock_age {
            write_legacy_lock(&paths.local, age);
        }

        let notify =
            UnixDatagram::bind(&paths.notify_socket).expect("binding the readiness socket");
        let mut serve_args = self.serve_args;
        if self.plaintext {
            serve_args.push("--insecure-plaintext".to_owned());
        }
        let child = spawn_daemon(binaries, &paths, "127.0.0.1:0", &serve_args, None);
        let mut server = Server {
            dir,
            paths,
            child: Some(child),
            notify,
            port: 0,
            key_hash: None,
            plaintext: self.plaintext,
            fixture,
            serve_args,
            crash_at: None,
        };

        server.port = server.wait_until_ready();
        if !server.plaintext {
            server.key_hash = Some(server.read_key_hash());
        }

        server
    }
}

/// A running `rfsd serve` with its own kmdata, state and clients file.
///
/// Dropping it stops the daemon; if the test is failing, the daemon's log
/// is printed first.
#[derive(Debug)]
pub struct Server {
    dir: TempDir,
    paths: ServerPaths,
    /// The daemon process; `None` once it has been stopped.
    child: Option<Child>,
    /// Receives the daemon's systemd notifications.
    notify: UnixDatagram,
    port: u16,
    /// The server's key hash; `None` in plaintext mode.
    key_hash: Option<String>,
    plaintext: bool,
    fixture: Vec<FixtureFile>,
    /// The options given to `rfsd serve` besides the paths, for restarts.
    serve_args: Vec<String>,
    /// The crash point the daemon aborts at (test builds only), if any.
    crash_at: Option<String>,
}

/// The result of stopping a server with SIGTERM.
#[derive(Debug)]
pub struct Shutdown {
    /// How the daemon exited.
    pub status: ExitStatus,
    /// The notification datagrams it sent after readiness, such as
    /// `STOPPING=1`.
    pub notifications: Vec<String>,
}

impl Server {
    /// Returns a builder for a server with an empty volume and no grants.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Returns the TCP port the daemon listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the server's key hash (64 hex digits), as `rfsd keyhash`
    /// printed it. Panics for a plaintext server, which has none.
    pub fn keyhash(&self) -> &str {
        self.key_hash
            .as_deref()
            .expect("a plaintext server has no key hash")
    }

    /// Returns whether the server speaks plaintext instead of TLS.
    pub fn is_plaintext(&self) -> bool {
        self.plaintext
    }

    /// Returns the server's live `local` directory.
    pub fn local_dir(&self) -> &Path {
        &self.paths.local
    }

    /// Returns the path of the admin socket.
    pub fn admin_socket(&self) -> &Path {
        &self.paths.admin_socket
    }

    /// Returns the files of the fixture tree the server started with.
    pub fn fixture(&self) -> &[FixtureFile] {
        &self.fixture
    }

    /// Returns the names of the fixture's key files, sorted.
    pub fn fixture_keys(&self) -> Vec<&str> {
        self.fixture
            .iter()
            .map(|file| file.path.as_str())
            .filter(|path| path.starts_with("key_"))
            .collect()
    }

    /// Returns the content of `path` in the live `local` directory, or
    /// `None` if there is no such file.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        read_optional(&self.paths.local.join(path))
    }

    /// Runs `rfsd ARGS --admin-socket PATH` against this daemon.
    pub fn admin(&self, args: &[&str]) -> RunResult {
        let mut command = Command::new(&binaries().rfsd);
        command
            .args(args)
            .arg("--admin-socket")
            .arg(&self.paths.admin_socket);
        clean_env(&mut command);
        process::run(command, COMMAND_LIMIT)
    }

    /// Returns the parsed output of `rfsd log --json`; panics if the command
    /// fails.
    pub fn log_json(&self) -> Value {
        self.admin(&["log", "--json"]).assert_success().json()
    }

    /// Returns the head version: the highest version in `rfsd log --json`.
    pub fn head_version(&self) -> u64 {
        let log = self.log_json();
        let versions = log["versions"]
            .as_array()
            .unwrap_or_else(|| panic!("rfsd log --json has no versions array: {log}"));

        versions
            .iter()
            .filter_map(|version| version["version"].as_u64())
            .max()
            .unwrap_or_else(|| panic!("rfsd log --json lists no version: {log}"))
    }

    /// Returns the `rfsd log --json` record of one version; panics if the
    /// log does not list it.
    pub fn log_entry(&self, version: u64) -> Value {
        let log = self.log_json();
        let versions = log["versions"].as_array().cloned().unwrap_or_default();

        versions
            .into_iter()
            .find(|entry| entry["version"].as_u64() == Some(version))
            .unwrap_or_else(|| panic!("rfsd log --json does not list v{version}: {log}"))
    }

    /// Returns a client with the given source address and an empty kmdata
    /// directory, not yet set up.
    pub fn client(&self, address: &str) -> Client {
        Client::new(address, self.port, self.key_hash.clone())
    }

    /// Returns a client that has run `--setup` and a first `--update`,
    /// panicking if either fails.
    pub fn synced_client(&self, address: &str) -> Client {
        let client = self.client(address);
        client.setup().assert_success();
        client.update().assert_success();
        client
    }

    /// Returns the parsed output of `rfsd status --json`; panics if the
    /// command fails.
    pub fn status_json(&self) -> Value {
        self.admin(&["status", "--json"]).assert_success().json()
    }

    /// Waits until `rfsd status` shows the lock of `local` held by a client
    /// at `address`, and returns the holder as `status --json` shows it.
    ///
    /// Panics, showing the last status, when that has not happened within
    /// a minute.
    pub fn wait_for_lock_holder(&self, address: &str) -> Value {
        // Nothing ever sends on this channel: its receive timeout is the
        // pause between looks, without sleeping a thread.
        let (_tx, pause) = mpsc::channel::<()>();
        let looks = LOCK_WAIT_LIMIT.as_millis() / LOCK_POLL.as_millis();
        let mut status = Value::Null;
        for _ in 0..looks {
            status = self.status_json();
            let lock = &status["volumes"][0]["lock"];
            if lock["address"] == address {
                return lock.clone();
            }
            let _ = pause.recv_timeout(LOCK_POLL);
        }

        panic!("{address} did not take the lock within {LOCK_WAIT_LIMIT:?}; last status: {status}");
    }

    /// Returns the content of `.nft-lock` in the live `local` directory,
    /// or `None` if there is none.
    pub fn lock_file(&self) -> Option<String> {
        self.read(".nft-lock")
            .map(|content| String::from_utf8_lossy(&content).into_owned())
    }

    /// Runs `rfsd clear-lock --json` with the daemon's kmdata, state
    /// directory and admin socket, so that it also works with the daemon
    /// stopped.
    pub fn clear_lock(&self) -> RunResult {
        let mut command = Command::new(&binaries().rfsd);
        command
            .args(["clear-lock", "--json", "--kmdata"])
            .arg(&self.paths.kmdata)
            .arg("--state-dir")
            .arg(&self.paths.state)
            .arg("--admin-socket")
            .arg(&self.paths.admin_socket);
        clean_env(&mut command);
        process::run(command, COMMAND_LIMIT)
    }

    /// Kills the daemon with SIGKILL, as a crash would, keeping its
    /// directories for [`Server::restart`].
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        let _ = child.kill();
        child.wait().expect("reaping the killed rfsd");
    }

    /// Starts the daemon again on the same directories and port, and
    /// returns once it has signalled readiness.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart needs a stopped server");
        self.drain_notifications();
        self.notify
            .set_nonblocking(false)
            .expect("making the readiness socket blocking again");
        let listen = format!("127.0.0.1:{}", self.port);
        self.child = Some(spawn_daemon(
            binaries(),
            &self.paths,
            &listen,
            &self.serve_args,
            self.crash_at.as_deref(),
        ));

        let port = self.wait_until_ready();
        assert_eq!(
            port, self.port,
            "the restarted daemon moved to another port"
        );
    }

    /// Restarts a stopped daemon so that it aborts when it reaches the named
    /// crash point (`None`: runs normally), as a crash at that step would.
    pub fn restart_crashing_at(&mut self, point: Option<&str>) {
        self.crash_at = point.map(str::to_owned);
        self.restart();
    }

    /// Returns what the daemon has logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    /// Stops the daemon with SIGTERM and reports how it exited.
    pub fn stop(mut self) -> Shutdown {
        let child = self
            .child
            .take()
            .expect("the server is running until stopped");
        let status = process::terminate(child, STOP_GRACE);
        let notifications = self.drain_notifications();

        Shutdown {
            status,
            notifications,
        }
    }

    /// Stops the daemon with SIGTERM but keeps its directories, so a test
    /// can change them while it is down; [`Server::restart`] starts it again.
    pub fn halt(&mut self) -> ExitStatus {
        let child = self
            .child
            .take()
            .expect("the server is running until halted");
        let status = process::terminate(child, STOP_GRACE);
        self.drain_notifications();
        status
    }

    /// Runs `rfsd serve` for a halted server in the foreground and returns
    /// how it ended, for tests of a start-up that must be refused. A daemon
    /// that starts after all is killed when the command limit passes.
    pub fn serve_refused(&self) -> RunResult {
        assert!(self.child.is_none(), "serve_refused needs a halted server");
        process::run(
            serve_command(binaries(), &self.paths, "127.0.0.1:0", &self.serve_args),
            COMMAND_LIMIT,
        )
    }

    /// Returns the daemon's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.paths.state
    }

    /// Runs `rfsd ARGS` with this server's state directory, administration
    /// socket and kmdata root, so that commands also work while the daemon
    /// is halted.
    pub fn rfsd(&self, args: &[&str]) -> RunResult {
        let mut command = Command::new(&binaries().rfsd);
        command
            .args(args)
            .arg("--state-dir")
            .arg(&self.paths.state)
            .arg("--admin-socket")
            .arg(&self.paths.admin_socket);
        clean_env(&mut command);
        command.env("NFAST_KMDATA", &self.paths.kmdata);
        process::run(command, COMMAND_LIMIT)
    }

    /// Blocks until the daemon sends `READY=1` with its listening address,
    /// and returns the port.
    fn wait_until_ready(&mut self) -> u16 {
        self.notify
            .set_read_timeout(Some(READY_CHECK))
            .expect("setting a read timeout on the readiness socket");
        let checks = READY_LIMIT.as_secs() / READY_CHECK.as_secs();
        let mut received = Vec::new();
        let mut ready = false;
        let mut port = None;

        // Each pass blocks on the socket until a datagram arrives or a
        // second passes, then makes sure the daemon has not died meanwhile.
        for _ in 0..checks {
            if let Some(datagram) = self.receive_notification() {
                ready |= datagram.lines().any(|line| line == "READY=1");
                port = port.or_else(|| listening_port(&datagram));
                received.push(datagram);
            }
            if let (true, Some(port)) = (ready, port) {
                return port;
            }
            self.assert_running(&received);
        }

        panic!(
            "rfsd did not send READY=1 and STATUS=listening on … within \
             {READY_LIMIT:?}; notifications so far: {received:?}"
        );
    }

    /// Returns the next notification, or `None` when the read timed out.
    fn receive_notification(&self) -> Option<String> {
        let mut buf = vec![0u8; 64 * 1024];
        match self.notify.recv(&mut buf) {
            Ok(len) => Some(String::from_utf8_lossy(&buf[..len]).into_owned()),
            Err(err) if is_timeout(&err) => None,
            Err(err) => panic!("reading the readiness socket: {err}"),
        }
    }

    /// Panics if the daemon has exited.
    fn assert_running(&mut self, received: &[String]) {
        let child = self.child.as_mut().expect("the server is running");
        let status = child.try_wait().expect("checking whether rfsd runs");
        if let Some(status) = status {
            panic!(
                "rfsd exited ({status}) before it signalled readiness; \
                 notifications: {received:?}"
            );
        }
    }

    /// Returns the daemon's key hash from `rfsd keyhash --state-dir`.
    fn read_key_hash(&self) -> String {
        let mut command = Command::new(&binaries().rfsd);
        command
            .arg("keyhash")
            .arg("--state-dir")
            .arg(&self.paths.state);
        clean_env(&mut command);

        let result = process::run(command, COMMAND_LIMIT);
        result.assert_success();
        let key_hash = result.stdout.trim().to_owned();
        let is_hex = key_hash.bytes().all(|byte| byte.is_ascii_hexdigit());
        assert!(
            key_hash.len() == 64 && is_hex,
            "rfsd keyhash must print 64 hex digits and nothing else\n{result}"
        );

        key_hash
    }

    /// Returns every notification still queued on the readiness socket.
    fn drain_notifications(&self) -> Vec<String> {
        self.notify
            .set_nonblocking(true)
            .expect("making the readiness socket non-blocking");
        let mut notifications = Vec::new();
        while let Some(datagram) = self.receive_notification() {
            notifications.push(datagram);
        }

        notifications
    }

    /// Prints the tail of the daemon log and where the files are, for a
    /// failing test.
    fn report_failure(&mut self, status: Option<ExitStatus>) {
        let log = self.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let skipped = lines.len().saturating_sub(LOG_TAIL_LINES);
        let keep = std::env::var_os(KEEP_VAR).is_some();
        if keep {
            self.dir.disable_cleanup(true);
        }

        eprintln!("===== rfsd log ({}) =====", self.paths.log.display());
        if skipped > 0 {
            eprintln!("[{skipped} earlier lines omitted]");
        }
        for line in &lines[skipped..] {
            eprintln!("{line}");
        }
        match status {
            Some(status) => eprintln!("===== rfsd stopped: {status} ====="),
            None => eprintln!("===== rfsd had already been stopped ====="),
        }
        if !keep {
            eprintln!("(set {KEEP_VAR}=1 to keep the server's directory)");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let status = self
            .child
            .take()
            .map(|child| process::terminate(child, STOP_GRACE));
        if thread::panicking() {
            self.report_failure(status);
        }
    }
}

/// The files and directories of one server, all inside its temporary
/// directory.
#[derive(Debug)]
struct ServerPaths {
    kmdata: PathBuf,
    local: PathBuf,
    state: PathBuf,
    clients: PathBuf,
    admin_socket: PathBuf,
    notify_socket: PathBuf,
    log: PathBuf,
}

impl ServerPaths {
    fn new(root: &Path) -> Self {
        let kmdata = root.join("kmdata");
        Self {
            local: kmdata.join("local"),
            kmdata,
            state: root.join("state"),
            clients: root.join("clients.toml"),
            admin_socket: root.join("admin.sock"),
            notify_socket: root.join("notify.sock"),
            log: root.join("rfsd.log"),
        }
    }

    /// Creates the directories, the fixture tree and the clients file, and
    /// returns the fixture's files.
    fn prepare(&self, fixture: Option<TreeSpec>, grants: &[Grant]) -> Vec<FixtureFile> {
        fs::create_dir_all(&self.local).expect("creating kmdata/local");
        fs::create_dir_all(&self.state).expect("creating the state directory");
        let clients: Vec<String> = grants.iter().map(Grant::to_toml).collect();
        fs::write(&self.clients, clients.join("\n")).expect("writing clients.toml");

        match fixture {
            Some(spec) => {
                kmdata_fixtures::write_tree(&self.local, &spec).expect("writing the fixture tree")
            }
            None => Vec::new(),
        }
    }
}

/// Writes a `.nft-lock` the way another program would, last modified `age`
/// ago.
fn write_legacy_lock(local: &Path, age: Duration) {
    let path = local.join(".nft-lock");
    fs::write(&path, "locked by rfs-sync on fw9\n").expect("writing the legacy lock");
    let file = File::options()
        .write(true)
        .open(&path)
        .expect("opening the legacy lock");
    let modified = std::time::SystemTime::now() - age;
    file.set_modified(modified)
        .expect("setting the legacy lock's modification time");
}

/// Returns the `rfsd serve` command for a server's paths.
fn serve_command(
    binaries: &Binaries,
    paths: &ServerPaths,
    listen: &str,
    extra: &[String],
) -> Command {
    let mut command = Command::new(&binaries.rfsd);
    command
        .arg("serve")
        .arg("--kmdata")
        .arg(&paths.kmdata)
        .arg("--state-dir")
        .arg(&paths.state)
        .args(["--listen", listen])
        .arg("--clients")
        .arg(&paths.clients)
        .arg("--admin-socket")
        .arg(&paths.admin_socket)
        .args(extra);
    clean_env(&mut command);
    command
}

/// Spawns `rfsd serve` with its output appended to the log file, which
/// keeps the log of an earlier run of a restarted server.
fn spawn_daemon(
    binaries: &Binaries,
    paths: &ServerPaths,
    listen: &str,
    extra: &[String],
    crash_at: Option<&str>,
) -> Child {
    let log = File::options()
        .create(true)
        .append(true)
        .open(&paths.log)
        .expect("opening rfsd.log");
    let log_for_stdout = log.try_clone().expect("duplicating the log file handle");
    let filter = std::env::var("RFS_TEST_LOG").unwrap_or_else(|_| DEFAULT_LOG_FILTER.into());

    let mut command = serve_command(binaries, paths, listen, extra);
    if let Some(point) = crash_at {
        command.env("RFSD_CRASH_AT", point);
    }
    command
        .env("NOTIFY_SOCKET", &paths.notify_socket)
        .env("RUST_LOG", filter)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log_for_stdout)
        .stderr(log);

    command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", binaries.rfsd.display()))
}

/// Removes the variables through which the developer's own environment
/// could change what rfsd reads.
fn clean_env(command: &mut Command) {
    for var in [
        "RFSD_CONFIG",
        "RFSD_STATE_DIR",
        "RFSD_LISTEN",
        "RFSD_CLIENTS",
        "RFSD_ADMIN_SOCKET",
        "RFSD_INSECURE_PLAINTEXT",
        "RFSD_LOCK_LEASE",
        "RFSD_LEGACY_LOCK_MAX_AGE",
        "RFSD_VOLUMES",
        "NFAST_KMDATA",
        "NFAST_KMLOCAL",
        "NOTIFY_SOCKET",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
}

/// Returns the port of the first address in a `STATUS=listening on …` line.
fn listening_port(datagram: &str) -> Option<u16> {
    datagram
        .lines()
        .filter_map(|line| line.strip_prefix("STATUS=listening on "))
        .flat_map(str::split_whitespace)
        .filter_map(|addr| addr.parse::<std::net::SocketAddr>().ok())
        .map(|addr| addr.port())
        .next()
}

/// Returns whether a socket read failed only because its timeout passed.
fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Returns the content of the file at `path`, or `None` if it is missing.
pub(crate) fn read_optional(path: &Path) -> Option<Vec<u8>> {
    match fs::read(path) {
        Ok(content) => Some(content),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => panic!("reading {}: {err}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_comes_from_the_first_listening_address() {
        let datagram = "READY=1\nSTATUS=listening on 127.0.0.1:40123 [::1]:40124";

        let port = listening_port(datagram);

        assert_eq!(port, Some(40123));
    }
}
