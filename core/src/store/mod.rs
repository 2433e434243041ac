//! The store: where every entry's manifest and data live.
//!
//! A `--store` URL becomes a [`Store`]: an `Arc<dyn ObjectStore>` from the `object_store`
//! crate plus the prefix ferry owns inside it. Each backend file only builds the object store
//! from a URL and the environment; everything else (publishing, listing, streaming) is shared.

mod azure;
mod cloud;
mod gcs;
mod local;
mod memory;
mod s3;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use crate::env_vars::Environment;

/// What a backend file hands back: the object store and where ferry's objects start in it.
pub(crate) struct Backend {
    pub objects: Arc<dyn ObjectStore>,
    /// Present where the backend can pre-sign URLs.
    pub signer: Option<Arc<dyn Signer>>,
    /// Folder of a local store, for `file://` links.
    pub local_root: Option<PathBuf>,
    /// Prefix inside the bucket or container (may be empty).
    pub prefix: String,
    /// Which variables to check when the store cannot be reached.
    pub hint: &'static str,
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
        source: Box<object_store::Error>,
    },
    #[error("store {url} cannot make links that work without ferry: {reason}")]
    CannotSign { url: String, reason: String },
}

/// The outcome of a conditional create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// This call created the object.
    Created,
    /// Another writer created it first; nothing was changed.
    Exists,
}

/// A store of entries: one object store and ferry's prefix in it.
#[derive(Clone)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    local_root: Option<PathBuf>,
    prefix: String,
    url: String,
    hint: &'static str,
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
        let backend = if url.starts_with("memory:") {
            memory::build()
        } else if let Some(parsed) = Url::parse(url).ok().filter(|u| u.scheme().len() > 1) {
            match parsed.scheme() {
                "file" => local::build_from_url(url, &parsed)?,
                "s3" => s3::build(url, &parsed, env)?,
                "gs" => gcs::build(url, &parsed, env)?,
                "az" => azure::build(url, &parsed, env)?,
                other => {
                    return Err(StoreError::InvalidUrl {
                        url: url.to_string(),
                        reason: format!(
                            "unknown scheme {other:?}; use a path, file://, s3://, gs://, az:// or memory://"
                        ),
                    });
                }
            }
        } else {
            local::build_from_path(url, env)?
        };
        Ok(Self {
            objects: backend.objects,
            signer: backend.signer,
            local_root: backend.local_root,
            prefix: backend.prefix.trim_matches('/').to_string(),
            url: url.to_string(),
            hint: backend.hint,
        })
    }

    /// The URL the store was opened with, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object-store path of `rel` (a `/`-separated path below ferry's prefix).
    pub fn path(&self, rel: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// `rel` of an object-store path, the inverse of [`Store::path`].
    pub fn relative(&self, path: &Path) -> String {
        let s = path.as_ref();
        if self.prefix.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(&self.prefix)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| s.to_string())
        }
    }

    /// True for stores reached over the network (worth parallel ranged reads).
    pub fn is_remote(&self) -> bool {
        self.local_root.is_none() && !self.url.starts_with("memory:")
    }

    /// The file behind `rel` on a local store, for transfers that skip the async layer.
    pub fn local_path(&self, rel: &str) -> Option<PathBuf> {
        let root = self.local_root.as_ref()?;
        let mut p = root.clone();
        for part in self.path(rel).parts() {
            p.push(part.as_ref());
        }
        Some(p)
    }

    /// The object store itself, for streaming transfers.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    pub(crate) fn request_error(
        &self,
        op: &'static str,
        rel: &str,
        source: object_store::Error,
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
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .objects
            .put_opts(&self.path(rel), PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(Published::Created),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Published::Exists),
            Err(e) => Err(self.request_error("publish", rel, e)),
        }
    }

    /// Writes `bytes` at `rel`, replacing what is there (atomic).
    pub async fn overwrite(&self, rel: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.objects
            .put(&self.path(rel), PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.request_error("write", rel, e))
    }

    /// Reads a small object whole; `None` when it does not exist.
    pub async fn read(&self, rel: &str) -> Result<Option<Bytes>, StoreError> {
        match self.objects.get(&self.path(rel)).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => Ok(Some(b)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.request_error("read", rel, e)),
            },
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.request_error("read", rel, e)),
        }
    }

    /// The metadata of `rel`; `None` when it does not exist.
    pub async fn head(&self, rel: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match self.objects.head(&self.path(rel)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.request_error("look up", rel, e)),
        }
    }

    /// Every object below the folder `rel`, with paths made relative again.
    pub async fn list(&self, rel: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = self.path(rel);
        let mut stream = self.objects.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(mut meta) => {
                    meta.location = Path::from(self.relative(&meta.location));
                    out.push(meta);
                }
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(self.request_error("list", rel, e)),
            }
        }
        Ok(out)
    }

    /// Deletes `rel`; deleting what is not there is not an error.
    pub async fn delete(&self, rel: &str) -> Result<(), StoreError> {
        match self.objects.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.request_error("delete", rel, e)),
        }
    }

    /// A link to `rel` that works without ferry: pre-signed on cloud stores, `file://` locally.
    pub async fn link(&self, rel: &str, expires: Duration) -> Result<String, StoreError> {
        if let Some(root) = &self.local_root {
            let mut p = root.clone();
            for part in self.path(rel).parts() {
                p.push(part.as_ref());
            }
            let url = Url::from_file_path(&p).map_err(|()| StoreError::CannotSign {
                url: self.url.clone(),
                reason: format!("{} is not an absolute path", p.display()),
            })?;
            return Ok(url.to_string());
        }
        match &self.signer {
            Some(signer) => signer
                .signed_url(object_store::signer::Method::GET, &self.path(rel), expires)
                .await
                .map(|u| u.to_string())
                .map_err(|e| self.request_error("sign a link to", rel, e)),
            None => Err(StoreError::CannotSign {
                url: self.url.clone(),
                reason: "this kind of store has no links; use a local, S3, GCS or Azure store"
                    .into(),
            }),
        }
    }
}
