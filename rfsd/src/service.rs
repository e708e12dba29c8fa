//! The client service `rfs.v1.Rfs`: one module per RPC family, each in the
//! same order: decode and validate the request, check the grant, act on the
//! store, build the reply.

mod changes;
mod commit;
pub(crate) mod convert;
mod head;
mod identify;
mod locking;
pub(crate) mod objects;

use std::pin::Pin;
use std::sync::Arc;

use proto::pb;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::conn::ConnInfo;
use crate::error::ServiceError;
use crate::state::ServerState;

/// A boxed stream of replies.
pub(crate) type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The implementation of `rfs.v1.Rfs`.
#[derive(Debug, Clone)]
pub struct RfsService {
    state: Arc<ServerState>,
}

impl RfsService {
    /// Returns the service over the shared state.
    pub fn new(state: Arc<ServerState>) -> Self {
        Self { state }
    }
}

/// Returns what the connection layer learned about the caller.
fn conn_info<T>(request: &Request<T>) -> Result<ConnInfo, ServiceError> {
    request
        .extensions()
        .get::<ConnInfo>()
        .copied()
        .ok_or_else(|| {
            ServiceError::Internal(anyhow::anyhow!("request arrived without connection info"))
        })
}

#[tonic::async_trait]
impl pb::rfs_server::Rfs for RfsService {
    type ChangesStream = ReplyStream<pb::ChangesReply>;
    type DownloadStream = ReplyStream<pb::ObjectChunk>;

    async fn identify(
        &self,
        request: Request<pb::IdentifyRequest>,
    ) -> Result<Response<pb::IdentifyReply>, Status> {
        Ok(Response::new(identify::identify(&self.state, request)?))
    }

    async fn head(
        &self,
        request: Request<pb::HeadRequest>,
    ) -> Result<Response<pb::HeadReply>, Status> {
        Ok(Response::new(head::head(&self.state, request).await?))
    }

    async fn changes(
        &self,
        request: Request<pb::ChangesRequest>,
    ) -> Result<Response<Self::ChangesStream>, Status> {
        Ok(Response::new(changes::changes(&self.state, request).await?))
    }

    async fn download(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        Ok(Response::new(objects::download(&self.state, request)?))
    }

    async fn missing_objects(
        &self,
        request: Request<pb::MissingObjectsRequest>,
    ) -> Result<Response<pb::MissingObjectsReply>, Status> {
        Ok(Response::new(objects::missing(&self.state, request).await?))
    }

    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadReply>, Status> {
        Ok(Response::new(objects::upload(&self.state, request).await?))
    }

    async fn acquire_lock(
        &self,
        request: Request<pb::AcquireLockRequest>,
    ) -> Result<Response<pb::LockReply>, Status> {
        Ok(Response::new(locking::acquire(&self.state, request).await?))
    }

    async fn renew_lock(
        &self,
        request: Request<pb::RenewLockRequest>,
    ) -> Result<Response<pb::LockReply>, Status> {
        Ok(Response::new(locking::renew(&self.state, request)?))
    }

    async fn release_lock(
        &self,
        request: Request<pb::ReleaseLockRequest>,
    ) -> Result<Response<pb::ReleaseLockReply>, Status> {
        Ok(Response::new(locking::release(&self.state, request).await?))
    }

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitReply>, Status> {
        Ok(Response::new(commit::commit(&self.state, request).await?))
    }
}
