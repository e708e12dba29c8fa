//! Grants: who may read, who may write, and what a denial says.

use proto::pb;
use tonic::Code;

use crate::harness::{commit_file, server};

#[tokio::test]
async fn a_client_without_a_grant_is_told_the_command_that_allows_it() {
    let server = server().with_writer("127.0.0.2").start().await;
    let mut stranger = server.client("127.0.0.4").await;

    let status = stranger
        .head(pb::HeadRequest {
            volume: "local".into(),
        })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("rfsd client add 127.0.0.4"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_reader_cannot_take_the_lock_or_commit() {
    let server = server()
        .with_file("world", b"w")
        .with_reader("127.0.0.3")
        .start()
        .await;
    let mut reader = server.client("127.0.0.3").await;
    let request = pb::AcquireLockRequest {
        volume: "local".into(),
        host_name: "r".into(),
        process_id: 1,
    };

    let status = reader.acquire_lock(request).await.unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("--write-noauth"),
        "{}",
        status.message()
    );
    assert!(
        reader
            .head(pb::HeadRequest {
                volume: "local".into()
            })
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_grant_written_into_the_file_applies_to_the_next_request() {
    let server = server().start().await;
    let mut client = server.client("127.0.0.6").await;
    assert!(
        client
            .head(pb::HeadRequest {
                volume: "local".into()
            })
            .await
            .is_err()
    );

    let grants = "[[grant]]\naddress = \"127.0.0.6\"\nwrite_noauth = true\n";
    std::fs::write(server.dir.path().join("clients.toml"), grants).unwrap();

    assert!(
        client
            .head(pb::HeadRequest {
                volume: "local".into()
            })
            .await
            .is_ok()
    );
    assert_eq!(commit_file(&mut client, 1, "key", b"k").await.unwrap(), 2);
}
