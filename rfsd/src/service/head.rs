//! `Head`: the head version of a volume and its lock holder. This is all an
//! update costs when nothing changed.

use proto::pb;
use tonic::Request;

use super::conn_info;
use super::convert::lock_state_to_pb;
use crate::error::ServiceError;
use crate::state::{Need, ServerState};

pub(super) async fn head(
    state: &std::sync::Arc<ServerState>,
    request: Request<pb::HeadRequest>,
) -> Result<pb::HeadReply, ServiceError> {
    let conn = conn_info(&request)?;
    let volume_name = request.into_inner().volume;
    let volume = state.volume(&volume_name)?;
    state.authorize(&conn, &volume_name, Need::Read)?;

    let name = volume_name.clone();
    let head = state
        .blocking(move |state| Ok(state.store.head(&name)?))
        .await?;
    let head = head
        .ok_or_else(|| ServiceError::NotFound(format!("volume {volume_name:?} has no versions")))?;

    let lock = lock_state_to_pb(&volume.lock_state(), volume.legacy_max_age());
    let history_id = state.store.history_id().to_owned();
    Ok(pb::HeadReply {
        version: head,
        lock,
        history_id,
    })
}
