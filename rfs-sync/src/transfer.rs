//! Moving object content: downloads stream into staged files while being
//! hashed, uploads stream from local files while being hashed.
//!
//! Nothing downloaded replaces a file here: content goes to staging files
//! next to their targets, and every object's SHA-256 and size are checked
//! before the caller installs anything. An upload re-checks each file's
//! digest as it reads it, because the file may have changed since the scan.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use proto::pb;
use rfs_core::fsx::{Staged, VolumeDir};
use rfs_core::{Digest, RelPath};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument as _;

use crate::exit::{Code, Failure, status_failure};
use crate::remote::Remote;

/// The most digests one Download request names.
const DOWNLOAD_BATCH: usize = 1000;

/// How many upload messages may wait to be sent.
const UPLOAD_QUEUE: usize = 4;

/// One object to fetch and the files it becomes.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    /// Each target path with the mode its file gets.
    pub(crate) targets: Vec<(RelPath, u32)>,
}

/// One object to send and the local file that holds it.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) path: RelPath,
}

/// Downloads `wanted` into staged files and returns them, each verified.
///
/// # Errors
///
/// Fails with exit code 7 when an object does not match its digest or
/// size; every staged file is discarded on any failure.
pub(crate) async fn download(
    remote: &mut Remote,
    volume: &VolumeDir,
    wanted: &[Wanted],
) -> Result<Vec<Staged>> {
    let mut staged = Vec::new();
    for batch in wanted.chunks(DOWNLOAD_BATCH) {
        if let Err(err) = download_batch(remote, volume, batch, &mut staged).await {
            for file in staged {
                volume.discard(file);
            }
            return Err(err);
        }
    }
    Ok(staged)
}

async fn download_batch(
    remote: &mut Remote,
    volume: &VolumeDir,
    batch: &[Wanted],
    staged: &mut Vec<Staged>,
) -> Result<()> {
    let digests: Vec<Digest> = batch.iter().map(|wanted| wanted.digest).collect();
    let mut stream = remote.download(&digests).await?;
    let mut pending = batch.iter();
    let mut current: Option<Receiving<'_>> = None;

    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|status| status_failure("download", &status))?
    {
        let receiving = match current.as_mut() {
            Some(receiving) => receiving,
            None => {
                let wanted = pending
                    .next()
                    .context("server sent more objects than were asked for")?;
                current.insert(Receiving::start(volume, wanted, staged)?)
            }
        };
        if receiving.accept(&chunk)? {
            current = None;
        }
    }

    if current.is_some() || pending.next().is_some() {
        anyhow::bail!("download ended before every object arrived");
    }
    Ok(())
}

/// An object being received: its staged files and the running hash.
struct Receiving<'a> {
    wanted: &'a Wanted,
    files: Vec<File>,
    hasher: Sha256,
    received: u64,
}

impl<'a> Receiving<'a> {
    /// Opens a staging file for every target of `wanted`, recording each
    /// in `staged` so that a failure can discard it.
    fn start(volume: &VolumeDir, wanted: &'a Wanted, staged: &mut Vec<Staged>) -> Result<Self> {
        let mut files = Vec::with_capacity(wanted.targets.len());
        for (path, mode) in &wanted.targets {
            let (staging, file) = volume
                .stage_writer(path, *mode)
                .with_context(|| format!("staging {path}"))?;
            staged.push(staging);
            files.push(file);
        }
        Ok(Self {
            wanted,
            files,
            hasher: Sha256::new(),
            received: 0,
        })
    }

    /// Writes one chunk; returns whether the object is complete and
    /// verified.
    fn accept(&mut self, chunk: &pb::ObjectChunk) -> Result<bool> {
        let expected = self.wanted.digest;
        let shown = &self.wanted.targets[0].0;
        anyhow::ensure!(
            chunk.digest == expected.as_bytes(),
            "server sent another object while {expected} ({shown}) was expected"
        );
        anyhow::ensure!(
            chunk.offset == self.received,
            "server sent offset {} of {shown}, expected {}",
            chunk.offset,
            self.received
        );
        self.received += chunk.data.len() as u64;
        if self.received > self.wanted.size {
            return Err(self.mismatch("is larger than its entry says").into());
        }

        self.hasher.update(&chunk.data);
        for file in &mut self.files {
            file.write_all(&chunk.data)
                .with_context(|| format!("writing the staged copy of {shown}"))?;
        }
        if !chunk.last {
            return Ok(false);
        }

        let actual = Digest::from(<[u8; 32]>::from(self.hasher.clone().finalize()));
        if actual != expected || self.received != self.wanted.size {
            return Err(self.mismatch(&format!("has digest {actual}")).into());
        }
        tracing::trace!(digest = %expected, size = self.received, "object verified");
        Ok(true)
    }

    fn mismatch(&self, what: &str) -> Failure {
        let message = format!(
            "integrity failure: object {} for {} {what}; nothing was replaced",
            self.wanted.digest, self.wanted.targets[0].0
        );
        Failure::new(Code::IntegrityFailure, message)
    }
}

/// Uploads `objects` under the lock `token`, reading each file as it goes.
///
/// # Errors
///
/// Fails when a file no longer has the digest it was scanned with ("run
/// again"), or when the server refuses the upload.
pub(crate) async fn upload(
    remote: &mut Remote,
    volume: Arc<VolumeDir>,
    token: u64,
    objects: Vec<Outgoing>,
) -> Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel(UPLOAD_QUEUE);
    let volume_name = remote.volume().to_owned();
    let producer = tokio::spawn(
        async move { produce(&volume, volume_name, token, &objects, &tx).await }.in_current_span(),
    );

    let sent = remote.upload(ReceiverStream::new(rx)).await;
    if sent.is_err() {
        // The server gave up: stop reading files nobody will receive.
        producer.abort();
    }
    match producer.await {
        Ok(produced) => produced?,
        Err(join) if join.is_cancelled() => {}
        Err(join) => return Err(join).context("the upload reader failed"),
    }
    let reply = sent?;
    tracing::debug!(
        objects = reply.objects_stored,
        bytes = reply.bytes_stored,
        "uploaded"
    );
    Ok(())
}

/// Reads each object's file in chunks and queues the upload messages. The
/// first message carries the volume and the lock token.
async fn produce(
    volume: &VolumeDir,
    volume_name: String,
    token: u64,
    objects: &[Outgoing],
    tx: &mpsc::Sender<pb::UploadRequest>,
) -> Result<()> {
    let mut header = Some((volume_name, token));
    for object in objects {
        let mut file = volume
            .open_file(&object.path)
            .with_context(|| format!("opening {} for upload", object.path))?;
        let mut reader = ObjectReader::new(object);
        let mut current = read_chunk(&mut file, &object.path)?;
        loop {
            let next = match current.len() == proto::CHUNK_SIZE {
                true => read_chunk(&mut file, &object.path)?,
                false => Vec::new(),
            };
            let last = next.is_empty();
            let chunk = reader.chunk(current, last)?;
            let (volume, lock_token) = header.take().unwrap_or_default();
            let message = pb::UploadRequest {
                volume,
                lock_token,
                chunk: Some(chunk),
            };
            if tx.send(message).await.is_err() {
                // The call ended; its own error says why.
                return Ok(());
            }
            if last {
                break;
            }
            current = next;
        }
    }
    Ok(())
}

/// Checks one object's content while it is being read for upload.
struct ObjectReader<'a> {
    object: &'a Outgoing,
    hasher: Sha256,
    offset: u64,
}

impl<'a> ObjectReader<'a> {
    fn new(object: &'a Outgoing) -> Self {
        Self {
            object,
            hasher: Sha256::new(),
            offset: 0,
        }
    }

    /// Returns the message chunk for `data`; on the last chunk, fails when
    /// the content no longer has the scanned digest.
    fn chunk(&mut self, data: Vec<u8>, last: bool) -> Result<pb::ObjectChunk> {
        let offset = self.offset;
        self.offset += data.len() as u64;
        self.hasher.update(&data);
        let grew = self.offset > self.object.size;
        let changed = last
            && Digest::from(<[u8; 32]>::from(self.hasher.clone().finalize())) != self.object.digest;
        if grew || changed {
            let message = format!("{} changed during commit, run again", self.object.path);
            return Err(Failure::new(Code::Error, message).into());
        }
        Ok(pb::ObjectChunk {
            digest: self.object.digest.as_bytes().to_vec(),
            offset,
            data,
            last,
        })
    }
}

/// Reads up to one chunk; a short result means the end of the file.
fn read_chunk(file: &mut File, path: &RelPath) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(proto::CHUNK_SIZE);
    Read::by_ref(file)
        .take(proto::CHUNK_SIZE as u64)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {path}"))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(content: &[u8]) -> Outgoing {
        Outgoing {
            digest: Digest::of(content),
            size: content.len() as u64,
            path: RelPath::new("world").unwrap(),
        }
    }

    #[test]
    fn unchanged_content_becomes_contiguous_chunks() {
        let object = outgoing(b"abcdef");
        let mut reader = ObjectReader::new(&object);

        let first = reader.chunk(b"abc".to_vec(), false).unwrap();
        let last = reader.chunk(b"def".to_vec(), true).unwrap();

        assert_eq!((first.offset, first.last), (0, false));
        assert_eq!((last.offset, last.last), (3, true));
    }

    #[test]
    fn content_changed_since_the_scan_is_refused() {
        let object = outgoing(b"abcdef");
        let mut reader = ObjectReader::new(&object);

        let err = reader.chunk(b"abcdeX".to_vec(), true).unwrap_err();

        assert!(err.to_string().contains("changed during commit"), "{err}");
    }

    #[test]
    fn a_corrupt_download_is_an_integrity_failure_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let volume = VolumeDir::open(dir.path()).unwrap();
        let wanted = Wanted {
            digest: Digest::of(b"good"),
            size: 4,
            targets: vec![(RelPath::new("world").unwrap(), 0o644)],
        };
        let mut staged = Vec::new();
        let mut receiving = Receiving::start(&volume, &wanted, &mut staged).unwrap();
        let chunk = pb::ObjectChunk {
            digest: wanted.digest.as_bytes().to_vec(),
            offset: 0,
            data: b"evil".to_vec(),
            last: true,
        };

        let err = receiving.accept(&chunk).unwrap_err();
        for file in staged {
            volume.discard(file);
        }

        assert_eq!(crate::exit::code_of(&err).0, Code::IntegrityFailure);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
