//! The end-to-end test harness: real `rfsd` and `rfs-sync` processes over
//! real sockets, each in its own temporary directories.
//!
//! A test starts a [`Server`] from a [`ServerBuilder`], makes [`Client`]s
//! bound to distinct loopback addresses, runs `rfs-sync` verbs and compares
//! trees with [`assert_same_tree`]:
//!
//! ```no_run
//! use rfs_tests::{Grant, Server, assert_same_tree};
//!
//! let server = Server::builder()
//!     .with_fixture_tree(200, 1)
//!     .with_grant(Grant::address("127.0.0.2").write_noauth())
//!     .start();
//! let client = server.synced_client("127.0.0.2");
//! assert_same_tree("server", server.local_dir(), "client", client.local_dir());
//! ```
//!
//! Every process has a bounded runtime, readiness comes from the systemd
//! notify protocol rather than sleeps, and a failing test prints the
//! daemon's log.

#![warn(missing_docs)]

use std::time::Duration;

mod binaries;
mod client;
mod grant;
mod process;
mod server;
mod tree;

pub use crate::binaries::BIN_DIR_VAR;
pub use crate::client::Client;
pub use crate::grant::Grant;
pub use crate::process::{COMMAND_LIMIT, RunResult, Running};
pub use crate::server::{KEEP_VAR, Server, ServerBuilder, Shutdown};
pub use crate::tree::{assert_same_tree, assert_tree_holds, tree_diff};

/// Calls `check` until it returns `Some`, at most `limit / step` times with
/// `step` between calls, and returns what it returned; `None` when the
/// limit passed. For waiting on the daemon's own pace (a change on the host
/// becoming a version), never for readiness, which the notify protocol
/// reports.
pub fn poll<T>(limit: Duration, step: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let tries = (limit.as_millis() / step.as_millis().max(1)).max(1);
    for _ in 0..tries {
        if let Some(found) = check() {
            return Some(found);
        }
        pause(step);
    }
    check()
}

/// Lets `step` pass, for a test that must act at a moment of its own
/// choosing (a kill in the middle of a stream of commits).
// The end-to-end tests are plain threads: no async runtime to block.
#[allow(clippy::disallowed_methods)]
pub fn pause(step: Duration) {
    std::thread::sleep(step);
}

/// Returns the strings of a JSON array, such as the `"added"` list of an
/// `rfs-sync --json` result; panics if `value` is not an array of strings.
pub fn json_strings(value: &serde_json::Value) -> Vec<String> {
    let items = value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array of strings, got {value}"));

    items
        .iter()
        .map(|item| {
            item.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {item}"))
                .to_owned()
        })
        .collect()
}

/// Returns the `"version"` number of an `rfs-sync --json` result; panics,
/// showing the result, when it is missing.
pub fn json_version(result: &serde_json::Value) -> u64 {
    result["version"]
        .as_u64()
        .unwrap_or_else(|| panic!("no \"version\" number in {result}"))
}
