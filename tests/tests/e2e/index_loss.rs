//! A lost or damaged database: rfsd refuses to serve an empty history and
//! says how to recover; `rfsd rebuild-index` makes the live tree version 1
//! and keeps the damaged file aside.

use rfs_tests::{Grant, Server, assert_same_tree};

const WRITER: &str = "127.0.0.2";

fn server_with_a_commit() -> (Server, rfs_tests::Client) {
    let server = Server::builder()
        .with_fixture_tree(15, 4)
        .with_grant(Grant::address(WRITER).write_noauth())
        .start();
    let writer = server.synced_client(WRITER);
    writer.write("key_simple_committed", b"committed before the loss");
    writer.commit().assert_success();
    (server, writer)
}

#[test]
fn a_deleted_database_stops_start_up_until_rebuilt_from_the_live_tree() {
    let (mut server, writer) = server_with_a_commit();
    server.halt();
    std::fs::remove_file(server.state_dir().join("rfsd.redb")).unwrap();

    let refused = server.serve_refused();
    let rebuilt = server.rfsd(&["rebuild-index"]);
    server.restart();

    refused.assert_code(65);
    assert!(refused.stderr.contains("rfsd rebuild-index"), "{refused}");
    rebuilt.assert_success();
    assert_eq!(server.head_version(), 1);
    assert_eq!(
        server.read("key_simple_committed").as_deref(),
        Some(&b"committed before the loss"[..])
    );
    server.rfsd(&["verify"]).assert_success();
    assert_same_tree("server", server.local_dir(), "writer", writer.local_dir());
}

#[test]
fn a_damaged_database_is_kept_aside_when_rebuilt() {
    let (mut server, _writer) = server_with_a_commit();
    server.halt();
    std::fs::write(
        server.state_dir().join("rfsd.redb"),
        b"not a database at all",
    )
    .unwrap();

    let refused = server.serve_refused();
    let rebuilt = server.rfsd(&["rebuild-index"]);
    server.restart();

    refused.assert_code(65);
    rebuilt.assert_success();
    let aside: Vec<_> = std::fs::read_dir(server.state_dir())
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("rfsd.redb.aside-")
        })
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the damaged file must be kept aside\n{rebuilt}"
    );
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"not a database at all"
    );
    assert_eq!(server.head_version(), 1);
}

#[test]
fn a_client_of_the_old_history_is_not_fooled_by_a_reused_version_number() {
    let (mut server, writer) = server_with_a_commit();
    let reader = server.synced_client(WRITER);
    writer.write("key_simple_after", b"committed after the reader synced");
    writer.commit().assert_success();
    std::fs::remove_file(reader.local_dir().join("key_simple_after")).ok();
    server.halt();
    std::fs::remove_file(server.state_dir().join("rfsd.redb")).unwrap();
    server.rfsd(&["rebuild-index"]).assert_success();
    server.restart();

    let update = reader.json(&["--update"]);

    assert_eq!(update["ok"], true, "{update}");
    assert_eq!(update["history_lost"], true, "{update}");
    assert_eq!(
        reader.read("key_simple_after").as_deref(),
        Some(&b"committed after the reader synced"[..])
    );
    assert_same_tree("server", server.local_dir(), "reader", reader.local_dir());
}
