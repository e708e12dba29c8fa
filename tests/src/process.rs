//! Runs child processes with a bounded runtime and keeps what they printed.
//!
//! A hung `rfsd` or `rfs-sync` must fail its test, not block CI, so every
//! child gets a deadline. Waiting happens on a channel fed by a thread that
//! owns the child, which bounds the wait without sleeping or polling a clock.

use std::fmt;
use std::io;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

/// How long a command-line run (`rfs-sync`, `rfsd log`, …) may take before
/// the harness kills it and fails the test.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The outcome of one finished command: its exit code and what it printed.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The command line, for messages.
    pub command: String,
    /// The exit code; a process killed by signal N reports 128 + N, as a
    /// shell would.
    pub code: i32,
    /// Everything the process wrote to standard output.
    pub stdout: String,
    /// Everything the process wrote to standard error.
    pub stderr: String,
}

impl RunResult {
    /// Returns standard output and standard error joined, for checks that
    /// only care that a message was shown somewhere.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics, showing the whole run, unless the exit code is 0.
    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// Panics, showing the whole run, unless the exit code is `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Returns standard output parsed as one JSON value.
    ///
    /// Panics, showing the whole run, when it is not valid JSON.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(self.stdout.trim()) {
            Ok(value) => value,
            Err(err) => panic!("stdout is not one JSON value: {err}\n{self}"),
        }
    }
}

impl fmt::Display for RunResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "exit code: {}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout.trim_end())?;
        write!(f, "--- stderr ---\n{}", self.stderr.trim_end())
    }
}

/// A command started in the background, with its output captured, that a
/// test can pause, resume or kill before it collects the result.
#[derive(Debug)]
pub struct Running {
    command: String,
    pid: Pid,
    /// Receives the output once the waiter thread has reaped the child.
    done: mpsc::Receiver<io::Result<Output>>,
}

impl Running {
    /// Stops the process with SIGSTOP, as a debugger or an overloaded
    /// host would.
    pub fn pause(&self) {
        self.signal(Signal::STOP);
    }

    /// Lets a paused process run on with SIGCONT.
    pub fn resume(&self) {
        self.signal(Signal::CONT);
    }

    /// Kills the process with SIGKILL, as a crash would: no handler runs.
    pub fn kill(&self) {
        self.signal(Signal::KILL);
    }

    /// Waits for the process to exit, killing it after [`COMMAND_LIMIT`],
    /// and returns how it ended.
    ///
    /// Panics, showing the whole run, if it had to be killed.
    pub fn wait(self) -> RunResult {
        let (output, timed_out) = match self.done.recv_timeout(COMMAND_LIMIT) {
            Ok(output) => (output, false),
            Err(_) => {
                let _ = kill_process(self.pid, Signal::KILL);
                let output = self
                    .done
                    .recv()
                    .expect("the waiter thread sends exactly once");
                (output, true)
            }
        };
        let output = output.expect("collecting a spawned child's output cannot fail");
        let result = result_of(self.command, &output);
        assert!(
            !timed_out,
            "killed after {COMMAND_LIMIT:?} without finishing\n{result}"
        );

        result
    }

    fn signal(&self, signal: Signal) {
        // The waiter thread reaps the child only after it exited, so the pid
        // still names it; signalling a process that just exited is harmless.
        let _ = kill_process(self.pid, signal);
    }
}

/// Starts `command` in the background with standard input closed and its
/// output captured.
///
/// Panics if the command cannot start.
pub(crate) fn spawn(mut command: Command) -> Running {
    let description = describe(&command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {description}: {err}"));

    let pid = Pid::from_child(&child);
    let (tx, done) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    Running {
        command: description,
        pid,
        done,
    }
}

/// Runs `command` with standard input closed and its output captured,
/// killing it if it runs longer than `limit`.
///
/// Panics if the command cannot start or outlives its limit; a non-zero exit
/// is a normal result.
pub(crate) fn run(mut command: Command, limit: Duration) -> RunResult {
    let description = describe(&command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {description}: {err}"));

    let (output, timed_out) = wait_output(child, limit);
    let result = result_of(description, &output);
    assert!(
        !timed_out,
        "killed after {limit:?} without finishing\n{result}"
    );

    result
}

/// Stops `child` with SIGTERM, escalating to SIGKILL when it has not exited
/// within `grace`, and returns its exit status.
pub(crate) fn terminate(mut child: Child, grace: Duration) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }

    let pid = Pid::from_child(&child);
    // The child may exit on its own between try_wait and here; a failed
    // signal is then harmless, and the wait below still reaps it.
    let _ = kill_process(pid, Signal::TERM);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });

    let status = match rx.recv_timeout(grace) {
        Ok(status) => status,
        Err(_) => {
            let _ = kill_process(pid, Signal::KILL);
            rx.recv().expect("the waiter thread sends exactly once")
        }
    };
    status.expect("waiting for a spawned child cannot fail")
}

/// Returns the result of a finished command.
fn result_of(command: String, output: &Output) -> RunResult {
    RunResult {
        command,
        code: exit_code(output.status),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Returns the exit code of `status`, or 128 + the signal number.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;

    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// Waits for `child` to exit and collects its output, killing it after
/// `limit`. Returns the output and whether the child was killed.
fn wait_output(child: Child, limit: Duration) -> (Output, bool) {
    let pid = Pid::from_child(&child);
    let (tx, rx) = mpsc::channel();
    // The waiter owns the child until it has been reaped, so its pid cannot
    // be reused before the kill below.
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });

    let (output, timed_out) = match rx.recv_timeout(limit) {
        Ok(output) => (output, false),
        Err(_) => {
            let _ = kill_process(pid, Signal::KILL);
            let output = rx.recv().expect("the waiter thread sends exactly once");
            (output, true)
        }
    };
    let output = output.expect("collecting a spawned child's output cannot fail");

    (output, timed_out)
}

/// Returns the command line of `command` as one readable string.
fn describe(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}
