//! Bad paths, digests and sizes get INVALID_ARGUMENT and change nothing.

use proto::pb;
use tonic::Code;

use crate::harness::{commit, file_entry, head, lock, server, upload, upload_as};

const WRITER: &str = "127.0.0.2";

#[tokio::test]
async fn paths_that_leave_the_volume_are_rejected_and_change_nothing() {
    let server = server()
        .with_file("world", b"w")
        .with_writer(WRITER)
        .start()
        .await;
    let mut client = server.client(WRITER).await;
    let token = lock(&mut client).await;
    upload(&mut client, token, b"evil").await.unwrap();

    for path in [
        "../escape",
        "/etc/passwd",
        "a//b",
        "./world",
        ".nft-lock",
        "x/.rfs-tmp-1",
        "",
    ] {
        let result = commit(
            &mut client,
            token,
            1,
            vec![file_entry(path, b"evil")],
            Vec::new(),
        )
        .await;
        assert_eq!(
            result.unwrap_err().code(),
            Code::InvalidArgument,
            "path {path:?}"
        );
    }

    assert_eq!(head(&mut client).await, 1);
    assert!(!server.dir.path().join("kmdata/escape").exists());
    assert!(!server.local().join(".nft-lock.evil").exists());
}

#[tokio::test]
async fn an_object_whose_content_does_not_match_its_digest_is_refused() {
    let server = server().with_writer(WRITER).start().await;
    let mut client = server.client(WRITER).await;
    let token = lock(&mut client).await;
    let claimed = rfs_core::Digest::of(b"good").as_bytes().to_vec();

    let result = upload_as(&mut client, token, claimed.clone(), b"bad").await;

    assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);
    let missing = client
        .missing_objects(pb::MissingObjectsRequest {
            volume: "local".into(),
            digests: vec![claimed.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(missing.digests, vec![claimed]);
}

#[tokio::test]
async fn a_commit_naming_an_object_that_was_never_uploaded_is_refused() {
    let server = server().with_writer(WRITER).start().await;
    let mut client = server.client(WRITER).await;
    let token = lock(&mut client).await;

    let result = commit(
        &mut client,
        token,
        1,
        vec![file_entry("key_x", b"never sent")],
        Vec::new(),
    )
    .await;

    assert_eq!(result.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(head(&mut client).await, 1);
    assert!(!server.local().join("key_x").exists());
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_refused() {
    let server = server().with_writer(WRITER).start().await;
    let mut client = server.client(WRITER).await;
    let token = lock(&mut client).await;
    let mut entry = file_entry("big", b"x");
    entry.size = 2 * 1024 * 1024;

    let result = commit(&mut client, token, 1, vec![entry], Vec::new()).await;

    assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_file_under_a_missing_directory_is_refused() {
    let server = server()
        .with_file("world", b"w")
        .with_writer(WRITER)
        .start()
        .await;
    let mut client = server.client(WRITER).await;
    let token = lock(&mut client).await;
    upload(&mut client, token, b"k").await.unwrap();

    let under_file = commit(
        &mut client,
        token,
        1,
        vec![file_entry("world/key", b"k")],
        Vec::new(),
    )
    .await;
    let under_nothing = commit(
        &mut client,
        token,
        1,
        vec![file_entry("nodir/key", b"k")],
        Vec::new(),
    )
    .await;

    assert_eq!(under_file.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(under_nothing.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(head(&mut client).await, 1);
}

#[tokio::test]
async fn symlinks_in_the_live_tree_are_never_served() {
    let server = server()
        .with_file("world", b"w")
        .with_writer(WRITER)
        .start()
        .await;
    std::os::unix::fs::symlink("/etc/passwd", server.local().join("sneaky")).unwrap();
    let mut client = server.client(WRITER).await;

    let mut stream = client
        .changes(pb::ChangesRequest {
            volume: "local".into(),
            base_version: 0,
            history_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut paths = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        paths.extend(page.changed.into_iter().map(|entry| entry.path));
    }

    assert_eq!(paths, ["world"]);
}

#[tokio::test]
async fn an_unknown_volume_is_not_found() {
    let server = server().with_writer(WRITER).start().await;
    let mut client = server.client(WRITER).await;

    let status = client
        .head(pb::HeadRequest {
            volume: "nope".into(),
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::NotFound);
}
