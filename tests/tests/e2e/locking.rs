//! The commit lock: leases that free the lock of a killed or paused holder,
//! fencing tokens that keep a paused holder from writing afterwards,
//! `rfsd clear-lock` with the daemon running and stopped, legacy
//! `.nft-lock` files, twenty clients at once, and the client's own run lock.
//!
//! A holder is caught with the lock by giving it a large file to send and
//! watching `rfsd status` until it shows that client as the holder.

use std::collections::BTreeSet;
use std::time::Duration;

use kmdata_fixtures::new_key_file;
use rfs_tests::{Grant, RunResult, Running, Server};
use serde_json::Value;

const HOLDER: &str = "127.0.0.2";
const OTHER: &str = "127.0.0.5";

/// The exit code of `rfs-sync` for a lock held by someone else.
const LOCK_HELD: i32 = 4;

/// Big enough that sending it keeps the lock held while the test acts,
/// under the server's 64 MiB file size limit.
const LARGE_FILE: usize = 60 * 1024 * 1024;

/// A server with two writers; `serve_args` such as a short lease.
fn two_writer_server(seed: u64, serve_args: &[&str]) -> Server {
    Server::builder()
        .with_fixture_tree(20, seed)
        .with_grant(Grant::address(HOLDER).write_noauth())
        .with_grant(Grant::address(OTHER).write_noauth())
        .with_serve_args(serve_args)
        .start()
}

/// Returns the addresses of the clients that made versions, by version.
fn committers(server: &Server) -> Vec<(u64, String)> {
    let log = server.log_json();
    let versions = log["versions"].as_array().cloned().unwrap_or_default();
    versions
        .iter()
        .filter(|record| record["origin"]["source"] == "client")
        .map(|record| {
            let version = record["version"].as_u64().unwrap_or(0);
            let address = record["origin"]["address"].as_str().unwrap_or("");
            (version, address.to_owned())
        })
        .collect()
}

#[test]
fn a_client_killed_mid_commit_holds_the_lock_only_until_its_lease_runs_out() {
    let server = two_writer_server(201, &["--lock-lease", "2s"]);
    let killed = server.synced_client(HOLDER);
    let other = server.synced_client(OTHER);
    killed.write_large("key_large", LARGE_FILE);
    other.add(&new_key_file(201));

    let commit = killed.start(&["--commit"]);
    server.wait_for_lock_holder(HOLDER);
    commit.kill();
    let killed_run = commit.wait();
    let waited = other.commit_with(&["--wait-lock", "90s"]);

    assert_eq!(killed_run.code, 128 + 9, "{killed_run}");
    waited.assert_success();
    assert_eq!(committers(&server), [(2, OTHER.to_owned())]);
    assert!(server.read("key_large").is_none());
    assert!(
        server.lock_file().is_none(),
        "the lock file outlived the commit"
    );
    assert!(
        server.log_text().contains("lock lease ran out"),
        "the expiry was not logged"
    );
}

#[test]
fn a_client_paused_past_its_lease_cannot_commit_after_another_did() {
    let server = two_writer_server(202, &["--lock-lease", "2s"]);
    let paused = server.synced_client(HOLDER);
    let other = server.synced_client(OTHER);
    paused.write_large("key_large", LARGE_FILE);
    other.add(&new_key_file(202));

    let commit = paused.start(&["--commit"]);
    server.wait_for_lock_holder(HOLDER);
    commit.pause();
    let other_commit = other.commit_with(&["--wait-lock", "60s"]);
    commit.resume();
    let refused = commit.wait();

    other_commit.assert_success();
    refused.assert_code(LOCK_HELD);
    assert!(
        refused.stderr.contains("the lock was lost"),
        "the refusal must say why\n{refused}"
    );
    assert_eq!(committers(&server), [(2, OTHER.to_owned())]);
    assert_eq!(server.head_version(), 2);
    assert!(server.read("key_large").is_none());
}

/// Starts a commit of a large file from `client`, waits until it holds the
/// lock, and stops it there.
fn stuck_commit(server: &Server, client: &rfs_tests::Client) -> Running {
    client.write_large("key_large", LARGE_FILE);
    let commit = client.start(&["--commit"]);
    server.wait_for_lock_holder(client.address());
    commit.pause();
    commit
}

#[test]
fn clear_lock_frees_a_held_lock_while_the_daemon_runs() {
    let server = two_writer_server(203, &[]);
    let stuck = server.synced_client(HOLDER);
    let other = server.synced_client(OTHER);
    other.add(&new_key_file(203));
    let commit = stuck_commit(&server, &stuck);

    let cleared = server.clear_lock();
    let next = other.commit();
    commit.resume();
    let stuck_run = commit.wait();

    cleared.assert_success();
    let report = cleared.json();
    assert_eq!(report["through"], "daemon", "{report}");
    assert_eq!(report["freed"]["kind"], "grant", "{report}");
    assert_eq!(report["freed"]["address"], HOLDER, "{report}");
    assert!(report["freed"]["token"].as_u64() > Some(0), "{report}");
    next.assert_success();
    stuck_run.assert_code(LOCK_HELD);
    assert_eq!(committers(&server), [(2, OTHER.to_owned())]);
}

#[test]
fn clear_lock_removes_the_lock_file_while_the_daemon_is_stopped() {
    let mut server = two_writer_server(204, &[]);
    let stuck = server.synced_client(HOLDER);
    let other = server.synced_client(OTHER);
    other.add(&new_key_file(204));
    let commit = stuck_commit(&server, &stuck);

    server.kill();
    let left_behind = server.lock_file();
    let cleared = server.clear_lock();
    let after = server.lock_file();
    server.restart();
    let next = other.commit();
    commit.kill();
    commit.wait();

    let left_behind = left_behind.expect("the killed daemon left its lock file");
    assert!(left_behind.starts_with("rfsd lock\n"), "{left_behind}");
    cleared.assert_success();
    let report = cleared.json();
    assert_eq!(report["through"], "state_directory", "{report}");
    assert_eq!(report["freed"]["kind"], "stale_file", "{report}");
    assert_eq!(report["freed"]["address"], HOLDER, "{report}");
    assert_eq!(after, None, "clear-lock left the lock file");
    next.assert_success();
}

#[test]
fn a_stale_legacy_lock_is_cleared_at_start_up_with_a_warning() {
    let server = Server::builder()
        .with_fixture_tree(20, 205)
        .with_grant(Grant::address(HOLDER).write_noauth())
        .with_legacy_lock(Duration::from_secs(11 * 60))
        .start();
    let client = server.synced_client(HOLDER);
    client.add(&new_key_file(205));

    let commit = client.commit();

    commit.assert_success();
    assert!(server.lock_file().is_none());
    let log = server.log_text();
    let warned = log
        .lines()
        .any(|line| line.contains("WARN") && line.contains("legacy .nft-lock"));
    assert!(
        warned,
        "no warning about the legacy lock in the log:\n{log}"
    );
}

#[test]
fn a_fresh_legacy_lock_blocks_commits_until_cleared() {
    let server = Server::builder()
        .with_fixture_tree(20, 206)
        .with_grant(Grant::address(HOLDER).write_noauth())
        .with_legacy_lock(Duration::ZERO)
        .start();
    let client = server.synced_client(HOLDER);
    client.add(&new_key_file(206));

    let blocked = client.commit();
    let status = server.status_json();
    let cleared = server.clear_lock();
    let commit = client.commit();

    blocked.assert_code(LOCK_HELD);
    assert!(
        blocked.stderr.contains("unknown legacy holder"),
        "the refusal must name the holder\n{blocked}"
    );
    let lock = &status["volumes"][0]["lock"];
    assert_eq!(lock["legacy"], true, "{status}");
    assert_eq!(lock["host_name"], "unknown legacy holder", "{status}");
    assert_eq!(cleared.json()["freed"]["kind"], "legacy");
    commit.assert_success();
    assert!(server.lock_file().is_none());
}

#[test]
fn twenty_clients_committing_at_once_all_land_in_consecutive_versions() {
    let server = Server::builder()
        .with_fixture_tree(20, 207)
        .with_grant(Grant::address("127.0.0.0/24").write_noauth())
        .start();
    let clients: Vec<_> = (10..30)
        .map(|host| server.synced_client(&format!("127.0.0.{host}")))
        .collect();
    let content = |address: &str| format!("key made on {address}\n").into_bytes();
    for client in &clients {
        let path = format!("key_from_{}", client.address());
        client.write(&path, &content(client.address()));
    }

    let running: Vec<Running> = clients
        .iter()
        .map(|client| client.start(&["--commit", "--wait-lock", "60s"]))
        .collect();
    let results: Vec<RunResult> = running.into_iter().map(Running::wait).collect();

    results.iter().for_each(|result| {
        result.assert_success();
    });
    let log = server.log_json();
    let versions: Vec<&Value> = log["versions"].as_array().unwrap().iter().collect();
    let mut numbers: Vec<u64> = versions
        .iter()
        .filter_map(|record| record["version"].as_u64())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=21).collect::<Vec<u64>>(), "{log}");
    let addresses: BTreeSet<String> = committers(&server)
        .into_iter()
        .map(|(_, address)| address)
        .collect();
    assert_eq!(addresses.len(), 20, "{addresses:?}");
    for client in &clients {
        let path = format!("key_from_{}", client.address());
        assert_eq!(
            server.read(&path),
            Some(content(client.address())),
            "{path}"
        );
    }
}

#[test]
fn a_second_rfs_sync_on_one_client_says_another_is_running() {
    let server = Server::builder()
        .with_fixture_tree(20, 208)
        .with_grant(Grant::address(HOLDER).write_noauth())
        .start();
    let client = server.synced_client(HOLDER);
    let run_lock = client.hold_run_lock();

    let refused = client.update();
    let waiting = client.start(&["--update", "--wait-lock", "60s"]);
    drop(run_lock);
    let waited = waiting.wait();

    refused.assert_code(LOCK_HELD);
    assert!(
        refused
            .stderr
            .contains("another rfs-sync is running on this client"),
        "{refused}"
    );
    waited.assert_success();
}
