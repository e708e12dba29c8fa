//! `Download`, `MissingObjects` and `Upload`: object content in chunks of at
//! most [`proto::CHUNK_SIZE`] bytes. An object the receiver already has is
//! never sent: clients ask which objects the server lacks before uploading,
//! and download only what they do not have.

use std::sync::Arc;

use proto::pb;
use rfs_core::Digest;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status, Streaming};
use tracing::Instrument;

use super::convert::{digest_from_pb, invalid};
use super::{ReplyStream, conn_info};
use crate::error::{ServiceError, to_status};
use crate::state::{Need, ServerState};

/// Bytes of verified objects gathered before they are written in one
/// transaction.
const UPLOAD_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Chunks buffered ahead of a slow downloader.
const DOWNLOAD_BUFFER: usize = 4;

pub(super) fn download(
    state: &Arc<ServerState>,
    request: Request<pb::DownloadRequest>,
) -> Result<ReplyStream<pb::ObjectChunk>, ServiceError> {
    let conn = conn_info(&request)?;
    let request = request.into_inner();
    state.volume(&request.volume)?;
    state.authorize(&conn, &request.volume, Need::Read)?;
    let digests = digests_from_pb(&request.digests, state.limits.max_digests_per_request)?;

    Ok(stream_objects(state.clone(), digests))
}

/// Returns a stream of the chunks of `digests`, in order, read from the
/// store a few chunks ahead of the receiver.
pub(crate) fn stream_objects(
    state: Arc<ServerState>,
    digests: Vec<Digest>,
) -> ReplyStream<pb::ObjectChunk> {
    let (tx, rx) = mpsc::channel(DOWNLOAD_BUFFER);
    tokio::spawn(send_objects(state, digests, tx).in_current_span());
    Box::pin(ReceiverStream::new(rx))
}

pub(super) async fn missing(
    state: &Arc<ServerState>,
    request: Request<pb::MissingObjectsRequest>,
) -> Result<pb::MissingObjectsReply, ServiceError> {
    let conn = conn_info(&request)?;
    let request = request.into_inner();
    state.volume(&request.volume)?;
    state.authorize(&conn, &request.volume, Need::Write)?;
    let digests = digests_from_pb(&request.digests, state.limits.max_digests_per_request)?;

    let missing = state
        .blocking(move |state| Ok(state.store.missing_objects(&digests)?))
        .await?;
    Ok(pb::MissingObjectsReply {
        digests: missing
            .iter()
            .map(|digest| digest.as_bytes().to_vec())
            .collect(),
    })
}

pub(super) async fn upload(
    state: &Arc<ServerState>,
    request: Request<Streaming<pb::UploadRequest>>,
) -> Result<pb::UploadReply, ServiceError> {
    let conn = conn_info(&request)?;
    let mut stream = request.into_inner();
    let Some(first) = stream
        .next()
        .await
        .transpose()
        .map_err(|status| invalid(status.message().to_owned()))?
    else {
        return Ok(pb::UploadReply::default());
    };
    let volume = state.volume(&first.volume)?;
    state.authorize(&conn, &first.volume, Need::Write)?;
    check_token(&volume, first.lock_token)?;

    let token = first.lock_token;
    let mut receiver = Receiver::new(
        state.limits.max_file_size,
        state.limits.max_objects_per_commit,
    );
    let mut next = Some(first);
    while let Some(message) = next {
        if let Some(chunk) = message.chunk {
            receiver.take(chunk)?;
        }
        if receiver.batch_bytes >= UPLOAD_BATCH_BYTES {
            check_token(&volume, token)?;
            flush(state, &mut receiver).await?;
        }
        next = stream
            .next()
            .await
            .transpose()
            .map_err(|status| invalid(status.message().to_owned()))?;
    }
    if receiver.current.is_some() {
        return Err(invalid(
            "upload ended in the middle of an object".to_owned(),
        ));
    }
    check_token(&volume, token)?;
    flush(state, &mut receiver).await?;
    crate::crash::point("after-objects-stored");

    tracing::debug!(volume = %volume.name, objects = receiver.objects, bytes = receiver.bytes, "upload stored");
    Ok(pb::UploadReply {
        objects_stored: receiver.objects,
        bytes_stored: receiver.bytes,
    })
}

fn check_token(volume: &crate::volume::Volume, token: u64) -> Result<(), ServiceError> {
    let mut slot = volume
        .lock
        .lock()
        .expect("lock slot mutex is never poisoned: no code panics while holding it");
    slot.check(&volume.name, token, tokio::time::Instant::now())?;
    Ok(())
}

async fn flush(state: &Arc<ServerState>, receiver: &mut Receiver) -> Result<(), ServiceError> {
    let batch = std::mem::take(&mut receiver.batch);
    receiver.batch_bytes = 0;
    if batch.is_empty() {
        return Ok(());
    }
    state
        .blocking(move |state| Ok(state.store.put_objects(&batch)?))
        .await
}

/// Reassembles objects from chunks and verifies each against its digest.
struct Receiver {
    max_file_size: u64,
    max_objects: usize,
    current: Option<(Digest, Vec<u8>)>,
    batch: Vec<(Digest, Vec<u8>)>,
    batch_bytes: usize,
    objects: u64,
    bytes: u64,
}

impl Receiver {
    fn new(max_file_size: u64, max_objects: usize) -> Self {
        Self {
            max_file_size,
            max_objects,
            current: None,
            batch: Vec::new(),
            batch_bytes: 0,
            objects: 0,
            bytes: 0,
        }
    }

    fn take(&mut self, chunk: pb::ObjectChunk) -> Result<(), ServiceError> {
        let digest = digest_from_pb(&chunk.digest)?;
        if chunk.data.len() > proto::CHUNK_SIZE {
            return Err(invalid(format!(
                "chunk of {} bytes is over the limit of {}",
                chunk.data.len(),
                proto::CHUNK_SIZE
            )));
        }
        let (current_digest, content) = self.current.get_or_insert_with(|| (digest, Vec::new()));
        if *current_digest != digest {
            return Err(invalid(format!(
                "object {current_digest} ended without its last chunk"
            )));
        }
        if chunk.offset != content.len() as u64 {
            return Err(invalid(format!(
                "object {digest}: chunk at offset {} where {} was expected",
                chunk.offset,
                content.len()
            )));
        }
        if content.len() as u64 + chunk.data.len() as u64 > self.max_file_size {
            return Err(invalid(format!(
                "object {digest} is over the file size limit of {}",
                self.max_file_size
            )));
        }
        content.extend_from_slice(&chunk.data);
        if chunk.last {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), ServiceError> {
        let (digest, content) = self
            .current
            .take()
            .expect("finish is only called with an object in progress");
        let actual = Digest::of(&content);
        if actual != digest {
            return Err(invalid(format!(
                "object announced as {digest} has digest {actual}"
            )));
        }
        self.objects += 1;
        if self.objects as usize > self.max_objects {
            return Err(invalid(format!(
                "upload carries more than {} objects",
                self.max_objects
            )));
        }
        self.bytes += content.len() as u64;
        self.batch_bytes += content.len();
        self.batch.push((digest, content));
        Ok(())
    }
}

async fn send_objects(
    state: Arc<ServerState>,
    digests: Vec<Digest>,
    tx: mpsc::Sender<Result<pb::ObjectChunk, Status>>,
) {
    for digest in digests {
        let content = match state
            .blocking(move |state| Ok(state.store.read_object(&digest)?))
            .await
        {
            Ok(Some(content)) => content,
            Ok(None) => {
                let _ = tx
                    .send(Err(Status::not_found(format!("object {digest} not found"))))
                    .await;
                return;
            }
            Err(err) => {
                let _ = tx.send(Err(to_status(err))).await;
                return;
            }
        };

        let mut offset = 0;
        loop {
            let end = (offset + proto::CHUNK_SIZE).min(content.len());
            let last = end == content.len();
            let chunk = pb::ObjectChunk {
                digest: digest.as_bytes().to_vec(),
                offset: offset as u64,
                data: content[offset..end].to_vec(),
                last,
            };
            if tx.send(Ok(chunk)).await.is_err() {
                // The client went away.
                return;
            }
            if last {
                break;
            }
            offset = end;
        }
    }
}

fn digests_from_pb(digests: &[Vec<u8>], limit: usize) -> Result<Vec<Digest>, ServiceError> {
    if digests.len() > limit {
        return Err(invalid(format!(
            "request names {} objects, over the limit of {limit}",
            digests.len()
        )));
    }
    digests.iter().map(|bytes| digest_from_pb(bytes)).collect()
}
