//! `Commit`: records a client's change set on top of its base as a new
//! version and writes it to the live tree.
//!
//! Steps, under the volume's writer mutex:
//!
//! 1. check the fencing token against the live lock grant (the store checks
//!    it again in step 3, against the last token granted);
//! 2. compare the live files of every path in the change set with the head,
//!    and record any difference made by another program on the host as a
//!    version of origin "local" first (so it is a conflict, not lost);
//! 3. record the version in one store transaction, which refuses the whole
//!    change set if any of its paths changed since the base or the lock was
//!    granted again since the token was;
//! 4. write the change set to the live tree and mark it applied.

use std::collections::BTreeSet;
use std::sync::Arc;

use proto::pb;
use rfs_core::{Entry, RelPath};
use tonic::Request;

use super::conn_info;
use super::convert::{bounded, entry_from_pb, invalid, path_from_pb};
use crate::error::ServiceError;
use crate::state::{Need, ServerState};
use crate::store::{NewVersion, Origin, OriginSource};

/// The longest free-text reason a client may give.
const MAX_REASON: usize = 1024;

pub(super) async fn commit(
    state: &Arc<ServerState>,
    request: Request<pb::CommitRequest>,
) -> Result<pb::CommitReply, ServiceError> {
    let conn = conn_info(&request)?;
    let request = request.into_inner();
    let volume = state.volume(&request.volume)?;
    state.authorize(&conn, &request.volume, Need::Write)?;
    let (changed, deleted) = validate(state, &request)?;
    if super::changes::check_history(
        &request.history_id,
        state.store.history_id(),
        request.base_version,
    )
    .is_err()
    {
        let message = "the base version belongs to an earlier history of this server (its database was rebuilt); run rfs-sync --update first";
        return Err(ServiceError::FailedPrecondition(message.to_owned()));
    }

    let peer = conn.peer();
    let origin = Origin {
        source: OriginSource::Client,
        address: peer.addr.to_string(),
        key_hash: peer.key_hash,
        host_name: request.host_name.clone(),
        process_id: request.process_id,
        time_unix: crate::timefmt::now_unix(),
        reason: request.reason.clone(),
    };
    let new_version = NewVersion {
        volume: volume.name.clone(),
        base: Some(request.base_version),
        changed,
        deleted,
        origin,
        fencing_token: Some(request.lock_token),
    };

    let _writer = volume.writer.lock().await;
    {
        let mut slot = volume
            .lock
            .lock()
            .expect("lock slot mutex is never poisoned: no code panics while holding it");
        slot.check(
            &volume.name,
            request.lock_token,
            tokio::time::Instant::now(),
        )?;
    }
    let job_volume = volume.clone();
    let record = state
        .blocking(move |state| {
            let store = state.store.as_ref();
            let paths: Vec<RelPath> = new_version
                .changed
                .iter()
                .map(|entry| entry.path.clone())
                .chain(new_version.deleted.iter().cloned())
                .collect();
            job_volume.finish_interrupted(store)?;
            let expected = store.head_entries(&job_volume.name, &paths)?;
            job_volume.capture_foreign(store, &expected, &paths)?;

            let changed = new_version.changed.clone();
            let deleted = new_version.deleted.clone();
            let record = store.commit(new_version)?;
            crate::crash::point("after-version-recorded");
            job_volume.apply(store, &changed, &deleted)?;
            crate::crash::point("before-applied-marked");
            store.set_applied(&job_volume.name, record.version)?;
            Ok(record)
        })
        .await?;

    tracing::info!(volume = %volume.name, version = record.version, peer.addr = %peer.addr, added = record.added, modified = record.modified, deleted = record.deleted, "commit recorded");
    Ok(pb::CommitReply {
        version: record.version,
    })
}

fn validate(
    state: &ServerState,
    request: &pb::CommitRequest,
) -> Result<(Vec<Entry>, Vec<RelPath>), ServiceError> {
    bounded("host name", &request.host_name, 255)?;
    bounded("reason", &request.reason, MAX_REASON)?;
    let count = request.changed.len() + request.deleted.len();
    if count == 0 {
        return Err(invalid("empty change set".to_owned()));
    }
    if count > state.limits.max_objects_per_commit {
        return Err(invalid(format!(
            "commit of {count} paths is over the limit of {}",
            state.limits.max_objects_per_commit
        )));
    }

    let changed: Vec<Entry> = request
        .changed
        .iter()
        .map(|entry| entry_from_pb(entry, state.limits.max_file_size))
        .collect::<Result<_, _>>()?;
    let deleted: Vec<RelPath> = request
        .deleted
        .iter()
        .map(|path| path_from_pb(path))
        .collect::<Result<_, _>>()?;
    let mut seen = BTreeSet::new();
    for path in changed.iter().map(|entry| &entry.path).chain(&deleted) {
        if !seen.insert(path) {
            return Err(invalid(format!(
                "{:?} appears twice in the change set",
                path.as_str()
            )));
        }
    }
    Ok((changed, deleted))
}
