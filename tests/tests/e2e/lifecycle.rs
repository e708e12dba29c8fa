//! The daemon's lifecycle: the tree it finds at start becomes version 1,
//! and SIGTERM stops it cleanly with a systemd `STOPPING=1`.

use rfs_tests::Server;

#[test]
fn tree_present_at_first_start_becomes_version_one() {
    let server = Server::builder().with_fixture_tree(200, 101).start();

    let log = server.log_json();

    assert_eq!(log["volume"], "local", "{log}");
    let versions = log["versions"].as_array().cloned().unwrap_or_default();
    assert_eq!(versions.len(), 1, "{log}");
    assert_eq!(versions[0]["version"], 1, "{log}");
    assert_eq!(versions[0]["entries"], 200, "{log}");
}

#[test]
fn server_exits_cleanly_on_sigterm() {
    let server = Server::builder().with_fixture_tree(20, 102).start();

    let shutdown = server.stop();

    assert!(
        shutdown.status.success(),
        "rfsd exited with {}",
        shutdown.status
    );
    let stopping = shutdown
        .notifications
        .iter()
        .any(|datagram| datagram.lines().any(|line| line == "STOPPING=1"));
    assert!(stopping, "no STOPPING=1 among {:?}", shutdown.notifications);
}
