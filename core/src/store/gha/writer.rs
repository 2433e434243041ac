//! A streamed write into a reserved blob: the bytes go up as blocks, several in flight, and the
//! service is told the size (and SHA-256) only once the block list is committed, so the object
//! appears whole or not at all. A stream that turns out small goes up as one Put Blob.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::Shared;
use super::blob::{BlobError, block_id};
use crate::store::{BackendError, ObjectWriter};

/// Size of one block: a slow uplink still moves one within the request timeout.
const BLOCK: usize = 16 * 1024 * 1024;
/// Blocks uploaded at once.
const IN_FLIGHT: usize = 4;

/// What makes a committed blob an object of its service, or gives it up.
#[async_trait::async_trait]
pub(crate) trait Commit: Send + Sync {
    /// Publishes the object once its blob holds `size` bytes with this SHA-256 (hex).
    async fn publish(&self, size: u64, sha256: String) -> Result<(), BackendError>;
    /// Gives the reservation up (best effort).
    async fn abandon(&self);
}

pub(crate) struct BlockWriter {
    shared: Arc<Shared>,
    url: String,
    content_type: &'static str,
    commit: Box<dyn Commit>,
    buf: BytesMut,
    hasher: Sha256,
    size: u64,
    ids: Vec<String>,
    in_flight: VecDeque<JoinHandle<Result<(), BlobError>>>,
}

fn upload_error(e: BlobError) -> BackendError {
    if e.status() == Some(403) {
        return BackendError::Other(
            format!(
                "{e} while uploading: the signed upload URL GitHub handed out was refused (it \
                 may have expired)"
            )
            .into(),
        );
    }
    BackendError::Other(format!("{e} while uploading").into())
}

impl BlockWriter {
    pub(crate) fn new(
        shared: Arc<Shared>,
        url: String,
        content_type: &'static str,
        commit: Box<dyn Commit>,
    ) -> Self {
        Self {
            shared,
            url,
            content_type,
            commit,
            buf: BytesMut::new(),
            hasher: Sha256::new(),
            size: 0,
            ids: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }

    async fn wait_one(&mut self) -> Result<(), BackendError> {
        if let Some(task) = self.in_flight.pop_front() {
            match task.await {
                Ok(r) => r.map_err(upload_error)?,
                Err(_) => {
                    return Err(BackendError::Other(
                        "the task uploading a block stopped".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn send_block(&mut self, block: Bytes) -> Result<(), BackendError> {
        if self.in_flight.len() >= IN_FLIGHT {
            self.wait_one().await?;
        }
        let id = block_id(self.ids.len());
        self.ids.push(id.clone());
        let shared = Arc::clone(&self.shared);
        let url = self.url.clone();
        self.in_flight.push_back(tokio::spawn(async move {
            shared.blobs.put_block(&url, &id, block).await
        }));
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectWriter for BlockWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BackendError> {
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        self.buf.extend_from_slice(&chunk);
        while self.buf.len() >= BLOCK {
            let block = self.buf.split_to(BLOCK).freeze();
            self.send_block(block).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), BackendError> {
        let rest = self.buf.split().freeze();
        let result = async {
            if self.ids.is_empty() {
                self.shared
                    .blobs
                    .put_blob(&self.url, rest, self.content_type)
                    .await
                    .map_err(upload_error)?;
            } else {
                if !rest.is_empty() {
                    self.send_block(rest).await?;
                }
                while !self.in_flight.is_empty() {
                    self.wait_one().await?;
                }
                self.shared
                    .blobs
                    .put_block_list(&self.url, &self.ids, self.content_type)
                    .await
                    .map_err(upload_error)?;
            }
            let sha256 = format!("{:x}", self.hasher.clone().finalize());
            self.commit.publish(self.size, sha256).await
        }
        .await;
        if result.is_err() {
            for task in self.in_flight.drain(..) {
                task.abort();
            }
        }
        result
    }

    async fn abort(mut self: Box<Self>) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        self.commit.abandon().await;
    }
}
