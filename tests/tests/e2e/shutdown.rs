//! SIGTERM while a client commits: the commit either completes or is
//! refused with a clean error, rfsd exits 0, and what it says afterwards
//! agrees with what the client was told.

use std::thread;
use std::time::Duration;

use rfs_tests::{Grant, Server, poll};

const WRITER: &str = "127.0.0.2";

/// Large enough that uploading and recording it takes a noticeable time,
/// below the 64 MiB file limit.
const LARGE: usize = 48 * 1024 * 1024;

#[test]
fn sigterm_during_a_long_commit_completes_or_refuses_it_and_exits_zero() {
    let mut server = Server::builder()
        .with_fixture_tree(10, 2)
        .with_grant(Grant::address(WRITER).write_noauth())
        .start();
    let writer = server.synced_client(WRITER);
    let content = pseudo_random(LARGE);
    writer.write("world_large", &content);

    let (commit, stopped) = thread::scope(|scope| {
        let commit = scope.spawn(|| writer.run(&["--commit", "--json"]));
        let held = poll(Duration::from_secs(60), Duration::from_millis(20), || {
            let status = server.admin(&["status", "--json"]);
            (status.code == 0 && !status.json()["volumes"][0]["lock"].is_null()).then_some(())
        });
        held.expect("the commit never took the lock");
        let stopped = server.halt();
        (commit.join().expect("the commit thread panicked"), stopped)
    });
    server.restart();

    assert!(
        stopped.success(),
        "rfsd must exit 0 on SIGTERM, got {stopped}"
    );
    let result = commit.json();
    let verify = server.rfsd(&["verify"]);
    verify.assert_success();
    if commit.code == 0 {
        assert_eq!(server.head_version(), 2, "the client was told {result}");
        assert_eq!(server.read("world_large").as_deref(), Some(&content[..]));
    } else {
        assert_eq!(result["ok"], false, "{commit}");
        assert!(
            result["error"]
                .as_str()
                .is_some_and(|error| !error.is_empty()),
            "{commit}"
        );
        assert_eq!(
            server.head_version(),
            1,
            "a refused commit must leave no version: {result}"
        );
        assert_eq!(server.read("world_large"), None);
    }
}

/// Returns `len` bytes that do not compress, from a fixed seed.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
