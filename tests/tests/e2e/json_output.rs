//! The `--json` results of `--update` and `--commit`: exactly one JSON
//! object on stdout, carrying the version, on success and on failure.

use kmdata_fixtures::new_key_file;
use rfs_tests::{Grant, Server, json_strings, json_version};

const WRITER: &str = "127.0.0.2";
const READER: &str = "127.0.0.3";
const STRANGER: &str = "127.0.0.4";

fn json_server(seed: u64) -> Server {
    Server::builder()
        .with_fixture_tree(200, seed)
        .with_grant(Grant::address(WRITER).write_noauth())
        .with_grant(Grant::address(READER).readonly())
        .start()
}

#[test]
fn first_update_json_lists_every_file_as_added() {
    let server = json_server(81);
    let reader = server.client(READER);
    reader.setup().assert_success();

    let update = reader.run(&["--update", "--json"]);

    update.assert_success();
    let result = update.json();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["action"], "update", "{result}");
    assert_eq!(json_version(&result), 1, "{result}");
    assert_eq!(json_strings(&result["added"]).len(), 200, "{result}");
}

#[test]
fn update_json_carries_the_new_version() {
    let server = json_server(82);
    let writer = server.synced_client(WRITER);
    let reader = server.synced_client(READER);
    let key = new_key_file(82);
    writer.add(&key);
    writer.commit().assert_success();

    let update = reader.run(&["--update", "--json"]);

    update.assert_success();
    let result = update.json();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["action"], "update", "{result}");
    assert_eq!(result["base_version"], 1, "{result}");
    assert_eq!(json_version(&result), 2, "{result}");
    assert_eq!(json_version(&result), server.head_version());
    assert_eq!(json_strings(&result["added"]), [key.path.as_str()]);
    assert_eq!(result["dry_run"], false, "{result}");
}

#[test]
fn commit_json_carries_the_new_version() {
    let server = json_server(83);
    let writer = server.synced_client(WRITER);
    let key = new_key_file(83);
    writer.add(&key);
    writer.write("world", b"world rewritten for the json test\n");

    let commit = writer.run(&["--commit", "--json"]);

    commit.assert_success();
    let result = commit.json();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["action"], "commit", "{result}");
    assert_eq!(result["base_version"], 1, "{result}");
    assert_eq!(json_version(&result), 2, "{result}");
    assert_eq!(json_version(&result), server.head_version());
    assert_eq!(json_strings(&result["added"]), [key.path.as_str()]);
    assert_eq!(json_strings(&result["modified"]), ["world"]);
    assert!(
        json_strings(&result["deletions_not_sent"]).is_empty(),
        "{result}"
    );
}

#[test]
fn denied_update_json_carries_exit_code_and_grant_command() {
    let server = json_server(84);
    let stranger = server.client(STRANGER);
    stranger.setup().assert_success();

    let update = stranger.run(&["--update", "--json"]);

    update.assert_code(5);
    let result = update.json();
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["action"], "update", "{result}");
    assert_eq!(result["exit_code"], 5, "{result}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(error.contains("rfsd client add 127.0.0.4"), "{result}");
}
