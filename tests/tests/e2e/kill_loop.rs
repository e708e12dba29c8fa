//! SIGKILL at arbitrary moments while three clients commit: afterwards
//! `verify` passes, the versions are consecutive, and every version a
//! client was told about exists with that client as its origin.
//!
//! `.ci/run` does a few rounds; set `RFS_KILL_ROUNDS=100` for the full run.

use std::thread;
use std::time::Duration;

use rfs_tests::{Client, Grant, Server, pause};

const WRITERS: [&str; 3] = ["127.0.0.2", "127.0.0.5", "127.0.0.7"];

/// Rounds when `RFS_KILL_ROUNDS` is not set.
const DEFAULT_ROUNDS: u64 = 4;

/// Commits each client tries per round.
const COMMITS_PER_ROUND: usize = 2;

#[test]
fn sigkill_during_commits_from_three_clients_loses_no_version_a_client_was_told_of() {
    let rounds = std::env::var("RFS_KILL_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let mut builder = Server::builder().with_fixture_tree(20, 11);
    for writer in WRITERS {
        builder = builder.with_grant(Grant::address(writer).write_noauth());
    }
    let mut server = builder.start();
    let clients: Vec<Client> = WRITERS
        .iter()
        .map(|writer| server.synced_client(writer))
        .collect();
    let mut told: Vec<(u64, &str)> = Vec::new();

    for round in 0..rounds {
        let results = thread::scope(|scope| {
            let workers: Vec<_> = clients
                .iter()
                .enumerate()
                .map(|(index, client)| scope.spawn(move || commit_stream(client, round, index)))
                .collect();
            // A moment that moves through the stream from round to round.
            pause(Duration::from_millis(150 + (round * 137) % 900));
            server.kill();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("a client thread panicked"))
                .collect::<Vec<_>>()
        });
        for (index, versions) in results.into_iter().enumerate() {
            told.extend(
                versions
                    .into_iter()
                    .map(|version| (version, WRITERS[index])),
            );
        }
        server.restart();
    }

    server.rfsd(&["verify"]).assert_success();
    let log = server.log_json();
    let versions: Vec<u64> = log["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["version"].as_u64())
        .collect();
    let head = versions[0];
    assert_eq!(
        versions,
        (1..=head).rev().collect::<Vec<_>>(),
        "versions must be consecutive"
    );
    for (version, writer) in told {
        let entry = server.log_entry(version);
        assert_eq!(
            entry["origin"]["address"], writer,
            "version {version} was told to {writer}: {entry}"
        );
    }
}

/// Commits a new file a few times and returns the versions the server
/// confirmed; a failed commit (the server was killed) ends the stream.
fn commit_stream(client: &Client, round: u64, index: usize) -> Vec<u64> {
    let mut confirmed = Vec::new();
    for step in 0..COMMITS_PER_ROUND {
        let name = format!("key_simple_r{round}_c{index}_s{step}");
        client.write(
            &name,
            format!("round {round}, client {index}, step {step}").as_bytes(),
        );
        let result = client.json(&["--commit", "--wait-lock", "20s"]);
        match result["version"].as_u64() {
            Some(version) if result["ok"] == true => confirmed.push(version),
            _ => break,
        }
    }
    confirmed
}
