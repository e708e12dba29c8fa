//! The operator's first day: a writer and a reader set up against a fresh
//! server, pull the whole tree, and find nothing new the second time.

use rfs_tests::{Grant, Server, assert_same_tree, assert_tree_holds, json_strings};

const WRITER: &str = "127.0.0.2";
const READER: &str = "127.0.0.3";

fn day_one_server() -> Server {
    Server::builder()
        .with_fixture_tree(200, 1)
        .with_grant(Grant::address(WRITER).write_noauth())
        .with_grant(Grant::address(READER).readonly())
        .start()
}

#[test]
fn writer_and_reader_receive_the_server_tree_byte_for_byte() {
    let server = day_one_server();
    let writer = server.client(WRITER);
    let reader = server.client(READER);

    let writer_setup = writer.setup();
    let reader_setup = reader.setup();
    let writer_update = writer.update();
    let reader_update = reader.update();

    writer_setup.assert_success();
    reader_setup.assert_success();
    writer_update.assert_success();
    reader_update.assert_success();
    assert_tree_holds("server", server.local_dir(), server.fixture());
    assert_same_tree("server", server.local_dir(), "writer", writer.local_dir());
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
}

#[test]
fn update_when_nothing_changed_reports_up_to_date() {
    let server = day_one_server();
    let reader = server.synced_client(READER);

    let update = reader.update();
    let result = reader.json(&["--update"]);

    update.assert_success();
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["base_version"], 1, "{result}");
    assert_eq!(result["version"], 1, "{result}");
    for list in ["added", "modified", "deleted", "conflicts"] {
        let paths = json_strings(&result[list]);
        assert!(paths.is_empty(), "{list} should be empty: {result}");
    }
    assert_eq!(server.head_version(), 1);
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
}
