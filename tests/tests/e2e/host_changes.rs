//! Changes made on the RFS host by other programs (a new key from
//! `generatekey`, a rewritten `world`) become versions of origin "local",
//! without anyone running a command.

use std::process::Command;
use std::time::Duration;

use rfs_tests::{Grant, Server, poll};
use serde_json::Value;

const READER: &str = "127.0.0.3";

/// How long a change on the host may take to become a version.
const RECORD_LIMIT: Duration = Duration::from_secs(3);

fn server_with_reader() -> Server {
    Server::builder()
        .with_fixture_tree(20, 5)
        .with_grant(Grant::address(READER).readonly())
        .start()
}

/// Runs a shell command as a separate process, as a tool on the host would.
fn on_host(script: &str) {
    let status = Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("running sh");
    assert!(status.success(), "host command failed: {script}");
}

/// Returns the manifest entries of version `version` from `rfsd show`.
fn manifest(server: &Server, version: u64) -> Vec<Value> {
    let shown = server
        .admin(&["show", &version.to_string(), "--json"])
        .assert_success()
        .json();
    shown["entries"].as_array().cloned().unwrap_or_default()
}

fn entry<'a>(entries: &'a [Value], path: &str) -> Option<&'a Value> {
    entries.iter().find(|entry| entry["path"] == path)
}

#[test]
fn a_key_written_on_the_host_becomes_a_local_version_and_reaches_clients() {
    let server = server_with_reader();
    let reader = server.synced_client(READER);
    let key = server
        .local_dir()
        .join("key_pkcs11_ua0123456789abcdef0123456789abcdef01234567");

    on_host(&format!("head -c 4096 /dev/urandom > '{}'", key.display()));
    let recorded = poll(RECORD_LIMIT, Duration::from_millis(100), || {
        let head = server.head_version();
        (head > 1).then_some(head)
    });

    let version = recorded.expect("the new key did not become a version within 3 s");
    let origin = &server.log_entry(version)["origin"];
    assert_eq!(origin["source"], "local", "{origin}");
    let entries = manifest(&server, version);
    let listed = entry(
        &entries,
        "key_pkcs11_ua0123456789abcdef0123456789abcdef01234567",
    );
    assert_eq!(listed.map(|entry| entry["size"].clone()), Some(4096.into()));
    reader.update().assert_success();
    assert_eq!(
        reader.read(key.file_name().unwrap().to_str().unwrap()),
        std::fs::read(&key).ok()
    );
}

#[test]
fn a_file_written_slowly_is_never_recorded_half_written() {
    let server = server_with_reader();
    let path = server.local_dir().join("world_big");

    // 5 MiB in 1 MiB steps, 300 ms apart, through one open file.
    on_host(&format!(
        "exec 3>'{}'; for i in 1 2 3 4 5; do head -c 1048576 /dev/urandom >&3; sleep 0.3; done; exec 3>&-",
        path.display()
    ));
    let recorded = poll(RECORD_LIMIT, Duration::from_millis(100), || {
        let head = server.head_version();
        entry(&manifest(&server, head), "world_big").map(|_| head)
    });

    let head = recorded.expect("the finished file did not become a version");
    for version in 1..=head {
        if let Some(found) = entry(&manifest(&server, version), "world_big") {
            assert_eq!(
                found["size"],
                5 * 1024 * 1024,
                "version {version} holds a truncated copy: {found}"
            );
        }
    }
}

#[test]
fn changes_made_while_stopped_become_exactly_one_version() {
    let mut server = server_with_reader();
    let fixture: Vec<String> = server
        .fixture()
        .iter()
        .map(|file| file.path.clone())
        .collect();
    let (modified, deleted) = (&fixture[0], &fixture[1]);

    server.halt();
    std::fs::write(
        server.local_dir().join("key_simple_added"),
        b"added while stopped",
    )
    .unwrap();
    std::fs::write(server.local_dir().join(modified), b"modified while stopped").unwrap();
    std::fs::remove_file(server.local_dir().join(deleted)).unwrap();
    server.restart();

    assert_eq!(server.head_version(), 2);
    let record = server.log_entry(2);
    assert_eq!(
        (
            record["added"].as_u64(),
            record["modified"].as_u64(),
            record["deleted"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{record}"
    );
    assert_eq!(record["origin"]["source"], "local", "{record}");
}

#[test]
fn a_burst_of_a_thousand_files_becomes_a_few_versions() {
    let server = server_with_reader();
    let dir = server.local_dir().display().to_string();

    on_host(&format!(
        "for i in $(seq 1 1000); do echo \"key $i\" > \"{dir}/key_simple_burst$i\"; done"
    ));
    let settled = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        let head = server.head_version();
        let entries = server.log_entry(head)["entries"].as_u64();
        (entries == Some(1020)).then_some(head)
    });

    let head = settled.expect("the burst was not recorded within 10 s");
    assert!(head - 1 <= 5, "1,000 files became {} versions", head - 1);
}
