//! A deliberately reduced store: a key-value service that keeps immutable blobs by key, finds
//! the newest key starting with a prefix itself, and can do nothing else: no listing, no
//! overwrite, no ranged reads, no links, and a create that only answers "exists" (GitHub's
//! Actions cache service is such a store). The conformance suite runs against it, so every
//! operation a store like that lacks fails clearly instead of silently.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::store::{
    Backend, BackendError, Capabilities, ObjectInfo, ObjectWriter, Published, PutMode, Store,
};
use futures::StreamExt;
use futures::stream::BoxStream;

type Blobs = Arc<Mutex<BTreeMap<String, (Bytes, DateTime<Utc>)>>>;

#[derive(Default)]
struct Reduced {
    blobs: Blobs,
}

/// A new, empty reduced store.
pub fn store() -> Store {
    Store::with_backend(
        "reduced://",
        Arc::new(Reduced::default()),
        "a reduced test store lives in one process",
    )
}

fn insert(blobs: &Blobs, path: &str, bytes: Bytes) -> Result<Published, BackendError> {
    let mut map = blobs
        .lock()
        .map_err(|_| BackendError::Unsupported("recover"))?;
    if map.contains_key(path) {
        return Ok(Published::Exists);
    }
    map.insert(path.to_string(), (bytes, Utc::now()));
    Ok(Published::Created)
}

struct Writer {
    blobs: Blobs,
    path: String,
    buf: Vec<u8>,
}

#[async_trait::async_trait]
impl ObjectWriter for Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BackendError> {
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), BackendError> {
        match insert(&self.blobs, &self.path, Bytes::from(self.buf))? {
            Published::Created => Ok(()),
            Published::Exists => Err(BackendError::Exists),
        }
    }

    async fn abort(self: Box<Self>) {}
}

#[async_trait::async_trait]
impl Backend for Reduced {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: false,
            conditional_create: false,
            overwrite: false,
            ranged_get: false,
            signed_urls: false,
            prefix_lookup: true,
            remote: false,
            evicts: false,
        }
    }

    async fn put(
        &self,
        path: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<Published, BackendError> {
        match mode {
            PutMode::Create => insert(&self.blobs, path, bytes),
            PutMode::Overwrite => Err(BackendError::Unsupported("replace an object")),
        }
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        Ok(Box::new(Writer {
            blobs: Arc::clone(&self.blobs),
            path: path.to_string(),
            buf: Vec::new(),
        }))
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>, BackendError> {
        let map = self
            .blobs
            .lock()
            .map_err(|_| BackendError::Unsupported("recover"))?;
        Ok(map.get(path).map(|(b, _)| b.clone()))
    }

    async fn get_stream(
        &self,
        path: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, BackendError> {
        let bytes = self.get(path).await?.ok_or(BackendError::NotFound)?;
        Ok(futures::stream::once(async move { Ok(bytes) }).boxed())
    }

    async fn get_range(&self, _path: &str, _range: Range<u64>) -> Result<Bytes, BackendError> {
        Err(BackendError::Unsupported("read byte ranges"))
    }

    async fn head(&self, path: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let map = self
            .blobs
            .lock()
            .map_err(|_| BackendError::Unsupported("recover"))?;
        Ok(map.get(path).map(|(b, t)| ObjectInfo {
            path: path.to_string(),
            size: b.len() as u64,
            modified: *t,
        }))
    }

    async fn list(&self, _prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        Err(BackendError::Unsupported("list objects"))
    }

    async fn delete(&self, path: &str) -> Result<(), BackendError> {
        let mut map = self
            .blobs
            .lock()
            .map_err(|_| BackendError::Unsupported("recover"))?;
        map.remove(path);
        Ok(())
    }

    async fn sign(&self, _path: &str, _expires: Duration) -> Result<String, BackendError> {
        Err(BackendError::Unsupported("sign links"))
    }

    /// The service's own lookup: only the newest key of the folder starting with the prefix.
    async fn newest(&self, dir: &str, name_prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let map = self
            .blobs
            .lock()
            .map_err(|_| BackendError::Unsupported("recover"))?;
        let folder = format!("{}/", dir.trim_end_matches('/'));
        Ok(map
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(&folder)
                    .is_some_and(|n| !n.contains('/') && n.starts_with(name_prefix))
            })
            .max_by(|a, b| a.1.1.cmp(&b.1.1).then_with(|| a.0.cmp(b.0)))
            .map(|(k, (b, t))| ObjectInfo {
                path: k.clone(),
                size: b.len() as u64,
                modified: *t,
            })
            .into_iter()
            .collect())
    }
}
