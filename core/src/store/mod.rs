//! The store: where every entry's manifest and data live, behind one interface that ferry
//! owns.
//!
//! [`Backend`] is the set of operations ferry needs of a store: streamed put, conditional
//! create, get and ranged get, head, list by prefix, delete, sign a URL, and "the newest
//! objects whose names start with P", which an object store answers by listing and a
//! key-value service answers itself. Each backend declares what it can do
//! ([`Capabilities`]); the modes ask, and never test which backend they hold. [`Store`] is
//! what the modes use: a backend plus the URL it was opened with, so every error names the
//! store and what to check.
//!
//! Object stores (local folder, memory, S3, GCS, Azure) are one implementation over the
//! `object_store` crate (`object.rs`); each backend file only turns a URL and the environment
//! into one. Nothing outside this folder names `object_store`. GitHub's Actions cache and
//! artifact services, which are not object stores, are a backend of their own (`gha/`).

mod azure;
mod cloud;
mod gcs;
mod gha;
mod local;
mod memory;
mod object;
mod s3;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use url::Url;

use crate::env_vars::Environment;

/// What a store can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Lists objects by prefix.
    pub list: bool,
    /// Creates an object only if absent, atomically under concurrency; without it a create
    /// can only say "exists" when asked one writer at a time.
    pub conditional_create: bool,
    /// Replaces an existing object; without it objects are immutable once written.
    pub overwrite: bool,
    /// Reads byte ranges of an object.
    pub ranged_get: bool,
    /// Makes links to an object that work without ferry.
    pub signed_urls: bool,
    /// Answers "the newest objects whose names start with P" itself, without a listing.
    pub prefix_lookup: bool,
    /// Reached over the network: worth several requests in flight.
    pub remote: bool,
    /// Removes objects by itself, by its own record of when each was last read (GitHub's
    /// cache service evicts what went unused for a week, or the least recently used over a
    /// size limit): ferry writes no used markers there, and an entry whose data went before
    /// its manifest is absent rather than broken.
    pub evicts: bool,
}

/// Whether a put may replace what is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    Overwrite,
    /// Only if nothing is there (atomic where [`Capabilities::conditional_create`]).
    Create,
}

/// The outcome of a conditional create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// This call created the object.
    Created,
    /// Another writer created it first; nothing was changed.
    Exists,
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its path below ferry's prefix in the store.
    pub path: String,
    pub size: u64,
    /// When the store last wrote it, by the store's clock (whole seconds on some stores).
    pub modified: DateTime<Utc>,
}

impl ObjectInfo {
    /// The last part of the path.
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

/// A failed store operation, as a backend reports it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    Exists,
    /// The store refused to write (a read-only token, a cache mode that forbids writes).
    #[error("refused: {0}")]
    Denied(String),
    #[error("the store cannot {0}")]
    Unsupported(&'static str),
    #[error("{0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(e))
    }
}

/// A streamed write of a new object: nothing is visible at its path until `finish`.
#[async_trait::async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), BackendError>;
    async fn finish(self: Box<Self>) -> Result<(), BackendError>;
    /// Gives up; nothing is left at the path (best effort).
    async fn abort(self: Box<Self>);
}

/// The operations ferry needs of a store. Paths are below ferry's prefix in the store,
/// `/`-separated.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    fn capabilities(&self) -> Capabilities;

    /// A file on this machine holding `path`, for transfers that skip the async layer.
    fn local_path(&self, _path: &str) -> Option<PathBuf> {
        None
    }

    async fn put(&self, path: &str, bytes: Bytes, mode: PutMode)
    -> Result<Published, BackendError>;

    /// Starts a streamed write of a new object at `path`.
    async fn writer(&self, path: &str) -> Result<Box<dyn ObjectWriter>, BackendError>;

    /// The whole object; `None` when it does not exist.
    async fn get(&self, path: &str) -> Result<Option<Bytes>, BackendError>;

    /// The object's bytes as they arrive.
    async fn get_stream(
        &self,
        path: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, BackendError>;

    /// Bytes `range` of the object.
    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes, BackendError>;

    /// Bytes `range` of the object, in place of what `buf` held: a caller fetching many
    /// ranges keeps a few buffers rather than a fresh one for each.
    async fn get_range_into(
        &self,
        path: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        let bytes = self.get_range(path, range).await?;
        buf.clear();
        buf.extend_from_slice(&bytes);
        Ok(())
    }

    async fn head(&self, path: &str) -> Result<Option<ObjectInfo>, BackendError>;

    /// Every object whose path starts with `prefix` (a folder ends with `/`).
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError>;

    /// Deletes `path`; deleting what is not there is not an error.
    async fn delete(&self, path: &str) -> Result<(), BackendError>;

    /// A link to `path` that works without ferry for `expires`.
    async fn sign(&self, path: &str, expires: Duration) -> Result<String, BackendError>;

    /// The objects in folder `dir` whose names start with `name_prefix`, newest first by the
    /// store's clock. An object store answers by listing the folder; a service with a lookup
    /// of its own may answer with only the newest.
    async fn newest(&self, dir: &str, name_prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let folder = format!("{}/", dir.trim_end_matches('/'));
        let listed = self.list(&format!("{folder}{name_prefix}")).await?;
        Ok(newest_first(listed, &folder, name_prefix))
    }

    /// What a restore that found nothing should tell the user about this store's lookups
    /// (scoping, delays), if anything.
    fn miss_note(&self) -> Option<&'static str> {
        None
    }
}

/// The objects of `listed` directly in `folder` (ending in `/`) whose names start with
/// `name_prefix`, newest first by the store's clock (ties by name, last first).
pub(crate) fn newest_first(
    listed: Vec<ObjectInfo>,
    folder: &str,
    name_prefix: &str,
) -> Vec<ObjectInfo> {
    let mut found: Vec<ObjectInfo> = listed
        .into_iter()
        .filter(|o| {
            o.path
                .strip_prefix(folder)
                .is_some_and(|n| !n.contains('/') && n.starts_with(name_prefix))
        })
        .collect();
    found.sort_by(|a, b| {
        b.modified
            .cmp(&a.modified)
            .then_with(|| b.path.cmp(&a.path))
    });
    found
}

/// Errors of the store, each naming the store URL and what to check.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("failed to open store {url}: {reason}; {hint}")]
    Open {
        url: String,
        reason: String,
        hint: &'static str,
    },
    #[error("failed to {op} {path} in store {url}: {source}; {hint}")]
    Request {
        op: &'static str,
        path: String,
        url: String,
        hint: &'static str,
        #[source]
        source: Box<BackendError>,
    },
    #[error("store {url} cannot make links that work without ferry: {reason}")]
    CannotSign { url: String, reason: String },
}

impl StoreError {
    /// True when the store refused something it was allowed to refuse (a read-only token, a
    /// cache mode that forbids saves or restores).
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            StoreError::Request { source, .. } if matches!(**source, BackendError::Denied(_))
        )
    }

    /// Why the store refused, when it did (see [`StoreError::is_denied`]).
    pub fn denied_reason(&self) -> Option<&str> {
        match self {
            StoreError::Request { source, .. } => match &**source {
                BackendError::Denied(why) => Some(why),
                _ => None,
            },
            _ => None,
        }
    }

    /// True when the object asked for is not in the store.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::Request { source, .. } if matches!(**source, BackendError::NotFound)
        )
    }

    /// True when this kind of store cannot do what was asked (with the settings it has).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            StoreError::Request { source, .. } if matches!(**source, BackendError::Unsupported(_))
        )
    }
}

/// Where a store reports values that must not appear in logs (the signatures of the signed
/// URLs a service hands out), so the caller can mask them (`::add-mask::` on GitHub Actions).
pub type SecretSink = Arc<dyn Fn(&str) + Send + Sync>;

/// How to open a store, beyond its URL and the environment.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Told every secret the store comes to hold.
    pub secrets: Option<SecretSink>,
}

/// Where transfers report the bytes they move, for a progress bar.
pub trait Progress: Send + Sync {
    /// A transfer of `bytes` more is known to be coming (a download's size).
    fn expect(&self, bytes: u64);
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);
}

/// A store of entries: a backend and the URL it was opened with.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    url: String,
    hint: &'static str,
    progress: Option<Arc<dyn Progress>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// The default local store: `$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`.
pub fn default_store_url(env: &Environment) -> Option<String> {
    use crate::env_vars::{HOME, XDG_CACHE_HOME};
    if let Some(xdg) = env.get(XDG_CACHE_HOME) {
        return Some(format!("{xdg}/ferry"));
    }
    env.get(HOME).map(|home| format!("{home}/.cache/ferry"))
}

impl Store {
    /// Opens the store named by `url`, reading credentials from `env`.
    ///
    /// Nothing is contacted yet: a store that cannot be reached fails on first use, with an
    /// error that names the URL and the variables to check.
    pub fn open(url: &str, env: &Environment) -> Result<Self, StoreError> {
        Self::open_with(url, env, &OpenOptions::default())
    }

    /// [`Store::open`], with options.
    pub fn open_with(
        url: &str,
        env: &Environment,
        options: &OpenOptions,
    ) -> Result<Self, StoreError> {
        if let Some(parsed) = Url::parse(url).ok().filter(|u| u.scheme() == "gha") {
            let backend = gha::build(url, &parsed, env, options.secrets.clone())?;
            return Ok(Self::with_backend(url, backend, gha::HINT));
        }
        let (parts, remote) = if url.starts_with("memory:") {
            (memory::build(), false)
        } else if let Some(parsed) = Url::parse(url).ok().filter(|u| u.scheme().len() > 1) {
            match parsed.scheme() {
                "file" => (local::build_from_url(url, &parsed)?, false),
                "s3" => (s3::build(url, &parsed, env)?, true),
                "gs" => (gcs::build(url, &parsed, env)?, true),
                "az" => (azure::build(url, &parsed, env)?, true),
                other => {
                    return Err(StoreError::InvalidUrl {
                        url: url.to_string(),
                        reason: format!(
                            "unknown scheme {other:?}; use a path, file://, s3://, gs://, az://, gha:// or memory://"
                        ),
                    });
                }
            }
        } else {
            (local::build_from_path(url, env)?, false)
        };
        let hint = parts.hint;
        Ok(Self::with_backend(
            url,
            Arc::new(object::ObjectBackend::new(parts, remote)),
            hint,
        ))
    }

    /// A store over any backend (another kind of store, or a test's).
    pub fn with_backend(url: &str, backend: Arc<dyn Backend>, hint: &'static str) -> Self {
        Self {
            backend,
            url: url.to_string(),
            hint,
            progress: None,
        }
    }

    /// The same store, reporting the bytes its transfers move to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Where transfers report bytes moved, if anywhere.
    pub(crate) fn progress(&self) -> Option<Arc<dyn Progress>> {
        self.progress.clone()
    }

    /// The URL the store was opened with, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// What a restore that found nothing should add about this store's lookups, if anything.
    pub fn miss_note(&self) -> Option<&'static str> {
        self.backend.miss_note()
    }

    /// True for stores reached over the network (worth parallel requests).
    pub fn is_remote(&self) -> bool {
        self.capabilities().remote
    }

    /// The file behind `rel` on a local store, for transfers that skip the async layer.
    pub fn local_path(&self, rel: &str) -> Option<PathBuf> {
        self.backend.local_path(rel)
    }

    pub(crate) fn request_error(
        &self,
        op: &'static str,
        rel: &str,
        source: BackendError,
    ) -> StoreError {
        StoreError::Request {
            op,
            path: rel.to_string(),
            url: self.url.clone(),
            hint: self.hint,
            source: Box::new(source),
        }
    }

    /// Writes `bytes` at `rel` only if nothing is there (atomic, first write wins).
    pub async fn create(&self, rel: &str, bytes: Bytes) -> Result<Published, StoreError> {
        match self.backend.put(rel, bytes, PutMode::Create).await {
            Ok(p) => Ok(p),
            Err(BackendError::Exists) => Ok(Published::Exists),
            Err(e) => Err(self.request_error("publish", rel, e)),
        }
    }

    /// Writes `bytes` at `rel`, replacing what is there (atomic).
    pub async fn overwrite(&self, rel: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.backend
            .put(rel, bytes, PutMode::Overwrite)
            .await
            .map(|_| ())
            .map_err(|e| self.request_error("write", rel, e))
    }

    /// Reads a small object whole; `None` when it does not exist.
    pub async fn read(&self, rel: &str) -> Result<Option<Bytes>, StoreError> {
        self.backend
            .get(rel)
            .await
            .map_err(|e| self.request_error("read", rel, e))
    }

    /// Reads an object expected to hold `size` bytes, refusing (without reading on) one that
    /// holds more: a data object replaced by a huge one is never read whole.
    pub async fn read_exactly(&self, rel: &str, size: u64) -> Result<Option<Bytes>, StoreError> {
        let mut stream = match self.backend.get_stream(rel).await {
            Ok(s) => s,
            Err(BackendError::NotFound) => return Ok(None),
            Err(e) => return Err(self.request_error("read", rel, e)),
        };
        let mut out =
            bytes::BytesMut::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 24));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.request_error("read", rel, e))?;
            if out.len() as u64 + chunk.len() as u64 > size {
                return Err(self.request_error(
                    "read",
                    rel,
                    BackendError::Other(
                        format!("the object holds more than the {size} bytes its manifest records")
                            .into(),
                    ),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out.freeze()))
    }

    /// The object's listing record; `None` when it does not exist.
    pub async fn head(&self, rel: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.backend
            .head(rel)
            .await
            .map_err(|e| self.request_error("look up", rel, e))
    }

    /// Every object below the folder `rel` (the whole store for `""`).
    pub async fn list(&self, rel: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let folder = rel.trim_end_matches('/');
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        self.backend
            .list(&prefix)
            .await
            .map_err(|e| self.request_error("list", rel, e))
    }

    /// The objects of folder `dir` whose names start with `name_prefix`, newest first.
    pub async fn newest(
        &self,
        dir: &str,
        name_prefix: &str,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        self.backend
            .newest(dir, name_prefix)
            .await
            .map_err(|e| self.request_error("look up", dir, e))
    }

    /// Every object of folder `dir` whose name starts with `name_prefix`, newest first, by
    /// listing: where the store's own lookup ([`Store::newest`]) gives only the newest and
    /// the older ones are wanted too.
    pub async fn list_newest(
        &self,
        dir: &str,
        name_prefix: &str,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        let folder = format!("{}/", dir.trim_end_matches('/'));
        let listed = self
            .backend
            .list(&format!("{folder}{name_prefix}"))
            .await
            .map_err(|e| self.request_error("list", dir, e))?;
        Ok(newest_first(listed, &folder, name_prefix))
    }

    /// Deletes `rel`; deleting what is not there is not an error.
    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match self.backend.delete(rel).await {
            Ok(()) | Err(BackendError::NotFound) => Ok(()),
            Err(e) => Err(self.request_error("delete", rel, e)),
        }
    }

    /// A link to `rel` that works without ferry: pre-signed on cloud stores, `file://` locally.
    pub async fn link(&self, rel: &str, expires: Duration) -> Result<String, StoreError> {
        if !self.capabilities().signed_urls {
            return Err(StoreError::CannotSign {
                url: self.url.clone(),
                reason: "this kind of store has no links; use a local, S3, GCS or Azure store"
                    .into(),
            });
        }
        self.backend
            .sign(rel, expires)
            .await
            .map_err(|e| self.request_error("sign a link to", rel, e))
    }

    /// Bytes `range` of the object at `rel`.
    pub async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.backend
            .get_range(rel, range)
            .await
            .map_err(|e| self.request_error("download", rel, e))
    }

    /// Bytes `range` of the object at `rel`, in place of what `buf` held.
    pub async fn get_range_into(
        &self,
        rel: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        self.backend
            .get_range_into(rel, range, buf)
            .await
            .map_err(|e| self.request_error("download", rel, e))
    }

    /// The object's bytes as they arrive.
    pub async fn get_stream(
        &self,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, StoreError> {
        self.backend
            .get_stream(rel)
            .await
            .map_err(|e| self.request_error("download", rel, e))
    }

    /// A streamed write of a new object at `rel`; nothing is there until it finishes.
    pub async fn writer(&self, rel: &str) -> Result<Box<dyn ObjectWriter>, StoreError> {
        self.backend
            .writer(rel)
            .await
            .map_err(|e| self.request_error("upload", rel, e))
    }
}
