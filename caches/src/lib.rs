//! Caches: immutable, branch-global entries saved under a key and restored by exact key or
//! by prefix, the most recently saved winning.
//!
//! Layout in the store (see `docs/FORMAT.md`):
//! `ferry-v1/<project>/caches/keys/<name>.json` is the manifest of a key,
//! `ferry-v1/<project>/caches/data/<id>.tar.zst` its archive, and
//! `ferry-v1/<project>/caches/used/<name>.json` records the last restore hit.

mod manage;
mod restore;
mod save;

use chrono::{DateTime, Utc};
use ferry_core::archive::{ArchiveError, Format};
use ferry_core::manifest::{self, Envelope, ManifestError};
use ferry_core::retention::{CACHE_KEYS_DIR, CACHE_USED_DIR, CACHES_DIR, DATA_DIR};
use ferry_core::store::StoreError;
use ferry_core::transfer::TransferError;
use serde::{Deserialize, Serialize};

pub use ferry_core::paths::PathContext;
pub use manage::{CacheEntry, list, remove};
pub use restore::{Hit, RestoreOutcome, RestoreRequest, restore};
pub use save::{SaveOutcome, SaveRequest, save};

/// The fields a cache manifest adds to the common envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheBody {
    /// The rendered key, exactly.
    pub key: String,
    pub compression: Format,
    /// The saved paths as entry-name roots: every archive entry lies within one of them.
    pub paths: Vec<String>,
    /// Symlinks that point out of the saved paths, as `[entry, target]`.
    #[serde(default)]
    pub links_out: Vec<(String, String)>,
    pub files: u64,
    /// Bytes of file content before compression.
    pub unpacked_bytes: u64,
    /// Files, folders and symlinks in the archive; a restore refuses more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_count: Option<u64>,
    pub ttl_seconds: u64,
}

/// A cache manifest.
pub type CacheManifest = Envelope<CacheBody>;

/// The last restore hit of a key, which pushes its expiry forward.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Used {
    pub key: String,
    pub last_used: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

/// Errors of the cache commands.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Glob(#[from] ferry_core::glob::GlobError),
    #[error(
        "nothing to save for key {key:?}: no file matches {paths}; check the --path values (relative to {cwd})"
    )]
    NothingToSave {
        key: String,
        paths: String,
        cwd: String,
    },
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("no cache with key {}; `ferry cache ls` lists the keys", keys.join(", "))]
    NotFound { keys: Vec<String> },
}

impl From<TransferError<ArchiveError>> for CacheError {
    fn from(e: TransferError<ArchiveError>) -> Self {
        match e {
            TransferError::Store(s) => CacheError::Store(s),
            TransferError::Local(a) => CacheError::Archive(a),
        }
    }
}

/// Where the caches of a project live.
pub(crate) struct Layout {
    dir: String,
}

impl Layout {
    pub(crate) fn new(project: &str) -> Self {
        Self {
            dir: format!("{}/{CACHES_DIR}", manifest::project_dir(project)),
        }
    }
    pub(crate) fn keys_dir(&self) -> String {
        format!("{}/{CACHE_KEYS_DIR}", self.dir)
    }
    pub(crate) fn manifest(&self, key: &str) -> String {
        format!(
            "{}/{CACHE_KEYS_DIR}/{}.json",
            self.dir,
            manifest::object_name(key)
        )
    }
    /// Beside the manifest, under the same name: `ferry prune` finds it there.
    pub(crate) fn used(&self, key: &str) -> String {
        format!(
            "{}/{CACHE_USED_DIR}/{}.json",
            self.dir,
            manifest::object_name(key)
        )
    }
    pub(crate) fn data(&self, format: Format) -> String {
        format!(
            "{}/{DATA_DIR}/{}.{}",
            self.dir,
            manifest::new_id(),
            format.extension()
        )
    }
}

pub(crate) async fn read_manifest(
    store: &ferry_core::store::Store,
    rel: &str,
) -> Result<Option<CacheManifest>, CacheError> {
    match store.read(rel).await? {
        Some(bytes) => Ok(Some(manifest::decode(&bytes, rel)?)),
        None => Ok(None),
    }
}
