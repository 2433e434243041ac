//! Caches: immutable, branch-global entries saved under a key and restored by exact key or
//! by prefix, the most recently saved winning.
//!
//! Layout in the store (see `docs/FORMAT.md`):
//! `ferry-v1/<project>/caches/keys/<name>.json` is the manifest of a key,
//! `ferry-v1/<project>/caches/data/<id>.tar.zst` its archive, and
//! `ferry-v1/<project>/caches/used/<name>.json` records the last restore hit. A named scope
//! keeps the same three folders below `ferry-v1/<project>/scopes/<scope>/caches/`, so a
//! bucket policy can keep a job's writes inside its own scope.

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
pub use manage::{CacheEntry, Listing, list, remove};
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
    #[error(
        "refused cache {key}: it holds {} but this restore expects only {}; nothing was restored (a forged or mistaken entry; check --path and the key)",
        roots.join(", "), expected.join(", ")
    )]
    UnexpectedPaths {
        key: String,
        roots: Vec<String>,
        expected: Vec<String>,
    },
}

impl From<TransferError<ArchiveError>> for CacheError {
    fn from(e: TransferError<ArchiveError>) -> Self {
        match e {
            TransferError::Store(s) => CacheError::Store(s),
            TransferError::Local(a) => CacheError::Archive(a),
        }
    }
}

/// Where the caches of a project's scope live: the project-wide scope (`None`, as CircleCI
/// shares caches across branches) or a named one.
pub(crate) struct Layout {
    dir: String,
}

impl Layout {
    pub(crate) fn new(project: &str, scope: Option<&str>) -> Self {
        let project_dir = manifest::project_dir(project);
        Self {
            dir: match scope {
                None => format!("{project_dir}/{CACHES_DIR}"),
                Some(s) => format!(
                    "{project_dir}/{SCOPES_DIR}/{}/{CACHES_DIR}",
                    ferry_core::paths::encode_part(s)
                ),
            },
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

/// The folder of named scopes inside a project.
pub const SCOPES_DIR: &str = "scopes";

pub(crate) async fn read_manifest(
    store: &ferry_core::store::Store,
    rel: &str,
) -> Result<Option<CacheManifest>, CacheError> {
    match store.read(rel).await? {
        Some(bytes) => Ok(Some(manifest::decode(&bytes, rel)?)),
        None => Ok(None),
    }
}

/// A manifest as read, with its bytes (for signature checks).
pub(crate) struct Read {
    pub manifest: CacheManifest,
    pub bytes: bytes::Bytes,
}

/// What a lookup found at a manifest's place.
pub(crate) enum Lookup {
    Found(Box<Read>),
    /// Listed, then deleted before it was read.
    Gone,
    /// There but unusable (unreadable, a newer format): the warning that says so. One bad
    /// object never breaks lookups of the others.
    Unusable(String),
}

/// Reads a manifest for a lookup; only a failing store is an error.
pub(crate) async fn read_for_lookup(
    store: &ferry_core::store::Store,
    rel: &str,
) -> Result<Lookup, CacheError> {
    let Some(bytes) = store.read(rel).await? else {
        return Ok(Lookup::Gone);
    };
    Ok(match manifest::decode::<CacheBody>(&bytes, rel) {
        Ok(manifest) => Lookup::Found(Box::new(Read { manifest, bytes })),
        Err(e) => Lookup::Unusable(format!("skipped {e}")),
    })
}
