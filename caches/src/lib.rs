//! Caches: immutable, branch-global entries saved under a key and restored by exact key or
//! by prefix, the most recently saved winning.
//!
//! Layout in the store (see `docs/FORMAT.md`):
//! `ferry-v1/<project>/caches/keys/<name>.json` is the manifest of a key,
//! `ferry-v1/<project>/caches/data/<id>.tar.zst` its archive, and
//! `ferry-v1/<project>/caches/used/<name>.json` records the last restore hit. A named scope
//! keeps the same three folders below `ferry-v1/<project>/scopes/<scope>/caches/`, so a
//! bucket policy can keep a job's writes inside its own scope.

mod base;
mod export;
mod manage;
mod page;
mod restore;
mod retention;
mod save;
mod state;

use chrono::{DateTime, Utc};
use ferry_core::archive::ArchiveError;
use ferry_core::entry::{EntryError, TreeRecord};
use ferry_core::manifest::{self, Envelope, ManifestError};
use ferry_core::store::{ObjectInfo, Store, StoreError};
use serde::{Deserialize, Serialize};

pub use export::{ExportOutcome, ExportRequest, export};
pub use ferry_core::paths::PathContext;
pub use manage::{CacheEntry, Listing, list, remove};
pub use page::{Page, PageQuery, SortBy, page, stored_by_key, stored_per_day};
pub use restore::{Hit, RestoreOutcome, RestoreRequest, restore};
pub use retention::Caches;
pub use save::{SaveOutcome, SaveRequest, format_name, save};

/// The fields a cache manifest adds to the common envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheBody {
    /// The rendered key, exactly.
    pub key: String,
    /// The tree the data holds.
    #[serde(flatten)]
    pub tree: TreeRecord,
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
        "pack {pack}, which this save shares with an earlier entry, was removed from the store while the save ran; nothing was saved; save again"
    )]
    PackGone { pack: String },
    #[error("refused cache {key}: {why}")]
    Untrusted { key: String, why: String },
    #[error("failed to write the export to {path}: {source}")]
    ExportWrite {
        path: String,
        #[source]
        source: std::io::Error,
    },
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

impl From<EntryError> for CacheError {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::Store(s) => CacheError::Store(s),
            EntryError::Archive(a) => CacheError::Archive(a),
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
    pub(crate) fn used_dir(&self) -> String {
        format!("{}/{CACHE_USED_DIR}", self.dir)
    }
    pub(crate) fn data_dir(&self) -> String {
        format!("{}/{DATA_DIR}", self.dir)
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
    /// Packs of chunked entries saved in this scope (shared by them).
    pub(crate) fn packs_dir(&self) -> String {
        format!("{}/{PACKS_DIR}", self.dir)
    }
    pub(crate) fn data(&self, extension: &str) -> String {
        format!("{}/{DATA_DIR}/{}.{extension}", self.dir, manifest::new_id())
    }
}

/// The folder of named scopes inside a project.
pub const SCOPES_DIR: &str = "scopes";
/// The folder of a scope's caches.
const CACHES_DIR: &str = "caches";
/// Manifests, one `<name>.json` per key.
const CACHE_KEYS_DIR: &str = "keys";
/// Archives, and the indexes of chunked entries.
const DATA_DIR: &str = "data";
/// Packs of chunked entries, shared by the entries of the project.
const PACKS_DIR: &str = "packs";
/// Used markers: `<name>.json` beside the key's manifest of the same name, rewritten on each
/// restore hit.
const CACHE_USED_DIR: &str = "used";

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

/// Everything in a project's caches, every scope, sorted by its place.
#[derive(Default)]
pub(crate) struct Objects {
    /// Manifests, with their scope (`None`: project-wide).
    pub manifests: Vec<(Option<String>, ObjectInfo)>,
    pub data: Vec<ObjectInfo>,
    pub packs: Vec<ObjectInfo>,
    pub used: Vec<ObjectInfo>,
}

/// Lists the project's caches in every scope.
pub(crate) async fn objects(store: &Store, project: &str) -> Result<Objects, StoreError> {
    let project_dir = manifest::project_dir(project);
    let mut out = Objects::default();
    let base = format!("{project_dir}/{CACHES_DIR}/");
    for info in store.list(&base).await? {
        if let Some(rest) = info.path.strip_prefix(&base).map(str::to_string) {
            file_object(&mut out, None, &rest, info);
        }
    }
    let scoped = objects_in_scopes(store, project).await?;
    out.manifests.extend(scoped.manifests);
    out.data.extend(scoped.data);
    out.packs.extend(scoped.packs);
    out.used.extend(scoped.used);
    Ok(out)
}

/// The manifests of every scope, and with `used` the used markers too: only the folders a
/// lookup needs are listed (the data folders, as large as the key folders, are not), the
/// project-wide ones side by side.
pub(crate) async fn listed(
    store: &Store,
    project: &str,
    used: bool,
) -> Result<Objects, StoreError> {
    let project_wide = Layout::new(project, None);
    let keys_dir = project_wide.keys_dir();
    let used_dir = project_wide.used_dir();
    let (keys, used_markers, scoped) = futures::try_join!(
        store.list(&keys_dir),
        async {
            if used {
                store.list(&used_dir).await
            } else {
                Ok(Vec::new())
            }
        },
        // Named scopes are few and small beside the project-wide one: listed whole.
        objects_in_scopes(store, project),
    )?;
    let mut out = Objects::default();
    for info in keys {
        let name = &info.path[keys_dir.len() + 1..];
        if name.ends_with(".json") && !name.contains('/') {
            out.manifests.push((None, info));
        }
    }
    out.manifests.extend(scoped.manifests);
    if used {
        out.used = used_markers;
        out.used.extend(scoped.used);
    }
    Ok(out)
}

/// Lists the project's caches in its named scopes.
pub(crate) async fn objects_in_scopes(store: &Store, project: &str) -> Result<Objects, StoreError> {
    let project_dir = manifest::project_dir(project);
    let mut out = Objects::default();
    let scopes = format!("{project_dir}/{SCOPES_DIR}/");
    for info in store.list(&scopes).await? {
        let Some((scope, rest)) = info
            .path
            .strip_prefix(&scopes)
            .and_then(|r| r.split_once('/'))
            .map(|(s, r)| (s.to_string(), r.to_string()))
        else {
            continue;
        };
        let Some(rest) = rest
            .strip_prefix(&format!("{CACHES_DIR}/"))
            .map(str::to_string)
        else {
            continue;
        };
        let name = ferry_core::paths::decode_part(&scope).unwrap_or(scope);
        file_object(&mut out, Some(name), &rest, info);
    }
    Ok(out)
}

/// Files one object of a scope's caches folder (`rest` is its path below it).
fn file_object(out: &mut Objects, scope: Option<String>, rest: &str, info: ObjectInfo) {
    let Some((folder, name)) = rest.split_once('/') else {
        return;
    };
    match folder {
        CACHE_KEYS_DIR if name.ends_with(".json") && !name.contains('/') => {
            out.manifests.push((scope, info))
        }
        DATA_DIR => out.data.push(info),
        PACKS_DIR if name.ends_with(".pack") && !name.contains('/') => out.packs.push(info),
        CACHE_USED_DIR => out.used.push(info),
        _ => {}
    }
}

/// When a cache expires: its manifest's expiry, pushed forward by its last restore hit (a
/// store that evicts by itself keeps no used markers: its own record of use decides).
pub(crate) async fn effective_expiry(
    store: &Store,
    layout: &Layout,
    m: &CacheManifest,
) -> Option<chrono::DateTime<Utc>> {
    let expires = m.expires?;
    if store.capabilities().evicts {
        return Some(expires);
    }
    let used: Option<Used> = store
        .read(&layout.used(&m.body.key))
        .await
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Some(used.map_or(expires, |u| expires.max(u.expires)))
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
