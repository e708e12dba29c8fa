//! `Changes`: the entries that differ between a client's base version and
//! the head, in pages. The cost follows what changed since the base, not the
//! size of the volume (except for base 0, which is the whole manifest).

use proto::pb;
use tonic::Request;

use super::convert::entry_to_pb;
use super::{ReplyStream, conn_info};
use crate::error::ServiceError;
use crate::state::{Need, ServerState};

/// Entries per reply message; about 150 bytes each, far below the message
/// size limit.
const PAGE: usize = 2000;

pub(super) async fn changes(
    state: &std::sync::Arc<ServerState>,
    request: Request<pb::ChangesRequest>,
) -> Result<ReplyStream<pb::ChangesReply>, ServiceError> {
    let conn = conn_info(&request)?;
    let request = request.into_inner();
    state.volume(&request.volume)?;
    state.authorize(&conn, &request.volume, Need::Read)?;

    let history_id = state.store.history_id().to_owned();
    check_history(&request.history_id, &history_id, request.base_version)?;
    let volume = request.volume.clone();
    let base = request.base_version;
    let changes = state
        .blocking(move |state| Ok(state.store.changes_since(&volume, base)?))
        .await?;
    tracing::debug!(volume = %request.volume, base, head = changes.head, changed = changes.changed.len(), deleted = changes.deleted.len(), "changes");

    let head = changes.head;
    let mut pages = Vec::new();
    for chunk in changes.changed.chunks(PAGE) {
        pages.push(pb::ChangesReply {
            head_version: head,
            history_id: history_id.clone(),
            changed: chunk.iter().map(entry_to_pb).collect(),
            deleted: Vec::new(),
        });
    }
    for chunk in changes.deleted.chunks(PAGE * 4) {
        let deleted = chunk.iter().map(|path| path.as_str().to_owned()).collect();
        pages.push(pb::ChangesReply {
            head_version: head,
            history_id: history_id.clone(),
            changed: Vec::new(),
            deleted,
        });
    }
    if pages.is_empty() {
        pages.push(pb::ChangesReply {
            head_version: head,
            history_id,
            ..Default::default()
        });
    }
    Ok(Box::pin(tokio_stream::iter(pages.into_iter().map(Ok))))
}

/// Refuses a base version that belongs to another history: its number may
/// exist here with different content (the database was rebuilt).
pub(super) fn check_history(client: &str, server: &str, base: u64) -> Result<(), ServiceError> {
    if base == 0 || client.is_empty() || client == server {
        return Ok(());
    }
    Err(ServiceError::NotFound(format!(
        "version {base} belongs to history {client}, not this server's {server}"
    )))
}
