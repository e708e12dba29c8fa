//! A key generated on one client travels through the server to another
//! client, and the server's log says where it came from.

use kmdata_fixtures::new_key_file;
use rfs_tests::{Grant, Server, assert_same_tree};

const WRITER: &str = "127.0.0.2";
const READER: &str = "127.0.0.3";

#[test]
fn key_committed_by_one_client_reaches_another_with_its_origin_logged() {
    let server = Server::builder()
        .with_fixture_tree(200, 2)
        .with_grant(Grant::address(WRITER).write_noauth())
        .with_grant(Grant::address(READER).readonly())
        .start();
    let writer = server.synced_client(WRITER);
    let reader = server.synced_client(READER);
    let key = new_key_file(2);
    writer.add(&key);

    let commit = writer.commit();
    let update = reader.update();

    commit.assert_success();
    update.assert_success();
    assert_eq!(reader.read(&key.path), Some(key.content.clone()));
    assert_eq!(reader.mode(&key.path), key.mode);
    assert_eq!(server.read(&key.path), Some(key.content.clone()));
    assert_same_tree("server", server.local_dir(), "writer", writer.local_dir());
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
    let head = server.head_version();
    assert_eq!(head, 2, "one commit on top of version 1");
    let version = server.log_entry(head);
    assert_eq!(version["origin"]["source"], "client", "{version}");
    assert_eq!(version["origin"]["address"], WRITER, "{version}");
    assert_eq!(version["added"], 1, "{version}");
    let human_log = server.admin(&["log"]);
    let v2_line = human_log
        .stdout
        .lines()
        .find(|line| line.starts_with("v2 "));
    assert!(
        v2_line.is_some_and(|line| line.contains(WRITER)),
        "rfsd log should show v2 with its origin address\n{human_log}"
    );
}
