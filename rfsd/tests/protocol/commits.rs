//! Commits: the first of two conflicting commits wins, a stale lock token
//! cannot write, and a file changed on the host is never silently lost.

use prost::Message as _;
use proto::pb;
use tonic::Code;

use crate::harness::{commit, commit_file, file_entry, head, lock, server, upload};

const WRITER: &str = "127.0.0.2";
const OTHER_WRITER: &str = "127.0.0.5";

#[tokio::test]
async fn the_second_of_two_commits_to_one_path_is_refused_with_the_path() {
    let server = server()
        .with_file("world", b"v1")
        .with_writer(WRITER)
        .with_writer(OTHER_WRITER)
        .start()
        .await;
    let mut first = server.client(WRITER).await;
    let mut second = server.client(OTHER_WRITER).await;

    let won = commit_file(&mut first, 1, "world", b"first").await.unwrap();
    let lost = commit_file(&mut second, 1, "world", b"second")
        .await
        .unwrap_err();

    assert_eq!(won, 2);
    assert_eq!(lost.code(), Code::Aborted);
    let conflict = pb::CommitConflict::decode(lost.details()).unwrap();
    assert_eq!(conflict.paths, ["world"]);
    assert_eq!(conflict.base_version, 1);
    assert_eq!(head(&mut first).await, 2);
    assert_eq!(
        std::fs::read(server.local().join("world")).unwrap(),
        b"first"
    );
}

#[tokio::test]
async fn commits_to_different_paths_on_one_base_both_land() {
    let server = server()
        .with_file("world", b"v1")
        .with_writer(WRITER)
        .with_writer(OTHER_WRITER)
        .start()
        .await;
    let mut first = server.client(WRITER).await;
    let mut second = server.client(OTHER_WRITER).await;

    commit_file(&mut first, 1, "key_a", b"a").await.unwrap();
    let version = commit_file(&mut second, 1, "key_b", b"b").await.unwrap();

    assert_eq!(version, 3);
    assert_eq!(std::fs::read(server.local().join("key_a")).unwrap(), b"a");
    assert_eq!(std::fs::read(server.local().join("key_b")).unwrap(), b"b");
}

#[tokio::test]
async fn a_released_lock_token_cannot_write() {
    let server = server().with_writer(WRITER).start().await;
    let mut client = server.client(WRITER).await;
    let token = lock(&mut client).await;
    upload(&mut client, token, b"k").await.unwrap();
    client
        .release_lock(pb::ReleaseLockRequest {
            volume: "local".into(),
            token,
        })
        .await
        .unwrap();

    let result = commit(
        &mut client,
        token,
        1,
        vec![file_entry("key", b"k")],
        Vec::new(),
    )
    .await;

    assert_eq!(result.unwrap_err().code(), Code::Aborted);
    assert_eq!(head(&mut client).await, 1);
}

#[tokio::test]
async fn a_held_lock_names_its_holder() {
    let server = server()
        .with_writer(WRITER)
        .with_writer(OTHER_WRITER)
        .start()
        .await;
    let mut holder = server.client(WRITER).await;
    let mut other = server.client(OTHER_WRITER).await;
    lock(&mut holder).await;

    let request = pb::AcquireLockRequest {
        volume: "local".into(),
        host_name: "fw2".into(),
        process_id: 2,
    };
    let status = other.acquire_lock(request).await.unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains(WRITER), "{}", status.message());
    let lock_file = std::fs::read_to_string(server.local().join(".nft-lock")).unwrap();
    assert!(lock_file.contains(WRITER), "{lock_file}");
}

#[tokio::test]
async fn a_file_changed_on_the_host_turns_a_commit_into_a_conflict() {
    let server = server()
        .with_file("world", b"v1")
        .with_writer(WRITER)
        .start()
        .await;
    let mut client = server.client(WRITER).await;
    std::fs::write(
        server.local().join("world"),
        b"written by a tool on the host",
    )
    .unwrap();

    let status = commit_file(&mut client, 1, "world", b"from the client")
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Aborted);
    assert_eq!(
        head(&mut client).await,
        2,
        "the host's change became version 2"
    );
    let live = std::fs::read(server.local().join("world")).unwrap();
    assert_eq!(live, b"written by a tool on the host");
}

#[tokio::test]
async fn a_restart_records_changes_made_while_stopped_as_one_version() {
    let server = server()
        .with_file("world", b"v1")
        .with_file("key_a", b"a")
        .with_writer(WRITER)
        .start()
        .await;
    let mut client = server.client(WRITER).await;
    commit_file(&mut client, 1, "key_b", b"b").await.unwrap();
    drop(client);

    let server = server
        .restart(|local| {
            std::fs::write(local.join("key_c"), b"c").unwrap();
            std::fs::write(local.join("world"), b"v2").unwrap();
            std::fs::remove_file(local.join("key_a")).unwrap();
        })
        .await;
    let mut client = server.client(WRITER).await;

    assert_eq!(head(&mut client).await, 3);
    let mut stream = client
        .changes(pb::ChangesRequest {
            volume: "local".into(),
            base_version: 2,
            history_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let page = stream.message().await.unwrap().unwrap();
    let changed: Vec<&str> = page
        .changed
        .iter()
        .map(|entry| entry.path.as_str())
        .collect();
    let deleted: Vec<String> = std::iter::once(page.deleted.clone())
        .chain(std::iter::from_fn(|| None))
        .flatten()
        .collect();
    assert_eq!(changed, ["key_c", "world"]);
    assert_eq!(
        deleted.len()
            + stream
                .message()
                .await
                .unwrap()
                .map_or(0, |page| page.deleted.len()),
        1
    );
}
