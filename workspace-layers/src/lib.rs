//! Workspaces: layered, per-workflow-run persistence.
//!
//! Each `persist` adds one immutable layer (a tar + zstd archive of paths under a root, and a
//! manifest listing every entry and the layers the job had attached before: its parents);
//! `attach` lays a run's layers down parents first, after checking from the manifests alone
//! that no two of them clash.
//!
//! Layout in the store (see `docs/FORMAT.md`):
//! `ferry-v1/<project>/workspaces/<workflow>/layers/<id>.json` is the manifest of a layer and
//! `ferry-v1/<project>/workspaces/<workflow>/data/<id>.tar.zst` its archive.

mod attach;
mod browse;
mod graph;
mod list;
mod persist;
mod retention;
mod state;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use ferry_core::archive::{ArchiveError, EntryKind, PlanError};
use ferry_core::entry::{EntryError, TreeRecord};
use ferry_core::manifest::{self, Envelope, ManifestError};
use ferry_core::paths;
use ferry_core::store::{Store, StoreError};
use ferry_core::trust::sign::Trust;
use serde::{Deserialize, Serialize};

pub use attach::{AttachOutcome, AttachRequest, attach};
pub use browse::{RunGraph, RunSummary, inspect, runs};
pub use graph::{AttachPlan, Clash, Conflict, LayerRef, plan_attach};
pub use list::{LayerSummary, list};
pub use persist::{PersistOutcome, PersistRequest, persist};
pub use retention::Workspaces;

/// The folder of a project's workspaces.
pub(crate) const WORKSPACES_DIR: &str = "workspaces";

/// The fields a layer manifest adds to the common envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerBody {
    /// Sorts by creation: a UTC timestamp, then random hex.
    pub id: String,
    pub workflow: String,
    pub job: String,
    /// Layers the job had attached (and its own earlier layers) when it persisted this one.
    pub parents: Vec<String>,
    /// The tree the data holds; its paths are relative to the layer root.
    #[serde(flatten)]
    pub tree: TreeRecord,
    /// Every entry of the archive by kind, so conflicts are found without downloading.
    pub entries: Listing,
    pub ttl_seconds: u64,
}

/// The entry names of a layer's archive, by kind, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    pub files: Vec<String>,
    pub dirs: Vec<String>,
    pub symlinks: Vec<String>,
}

impl Listing {
    pub(crate) fn push(&mut self, name: &str, kind: EntryKind) {
        match kind {
            EntryKind::File => self.files.push(name.to_string()),
            EntryKind::Dir => self.dirs.push(name.to_string()),
            EntryKind::Symlink => self.symlinks.push(name.to_string()),
        }
    }

    pub(crate) fn sort(&mut self) {
        self.files.sort();
        self.dirs.sort();
        self.symlinks.sort();
    }

    /// Every entry with its kind.
    pub fn iter(&self) -> impl Iterator<Item = (&str, EntryKind)> {
        self.files
            .iter()
            .map(|p| (p.as_str(), EntryKind::File))
            .chain(self.dirs.iter().map(|p| (p.as_str(), EntryKind::Dir)))
            .chain(
                self.symlinks
                    .iter()
                    .map(|p| (p.as_str(), EntryKind::Symlink)),
            )
    }
}

/// A layer manifest.
pub type LayerManifest = Envelope<LayerBody>;

/// Errors of the workspace commands.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Glob(#[from] ferry_core::glob::GlobError),
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error(
        "nothing to persist: no file matches {paths} under {root}; check the --path values (relative to --root)"
    )]
    NothingToPersist { paths: String, root: String },
    #[error(
        "workflow {workflow} has no layer of job {}; {}",
        missing.join(", "),
        if known.is_empty() { "it has no layers at all yet".to_string() } else { format!("jobs with layers: {}", known.join(", ")) }
    )]
    UnknownJob {
        workflow: String,
        missing: Vec<String>,
        known: Vec<String>,
    },
    #[error("{}", graph::conflict_message(workflow, conflicts))]
    Conflict {
        workflow: String,
        conflicts: Vec<Conflict>,
    },
    #[error("refused layer {path}: {why}; nothing was attached")]
    Untrusted { path: String, why: String },
    #[error("layer manifest {path} is not safe to attach: {reason}; nothing was attached")]
    UnsafeManifest { path: String, reason: String },
    #[error(
        "layer {id} was published by another writer first; nothing was changed; run persist again"
    )]
    Exists { id: String },
    #[error("failed to {op} the workspace state {path}: {source}; {hint}")]
    State {
        op: &'static str,
        path: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl From<EntryError> for WorkspaceError {
    fn from(e: EntryError) -> Self {
        match e {
            EntryError::Store(s) => WorkspaceError::Store(s),
            EntryError::Archive(a) => WorkspaceError::Archive(a),
        }
    }
}

impl From<PlanError> for WorkspaceError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::InvalidPath { path, reason } => WorkspaceError::InvalidPath { path, reason },
            PlanError::Glob(g) => WorkspaceError::Glob(g),
        }
    }
}

/// Where the layers of one workflow run live.
pub(crate) struct Layout {
    dir: String,
}

impl Layout {
    pub(crate) fn new(project: &str, workflow: &str) -> Self {
        Self {
            dir: format!(
                "{}/{WORKSPACES_DIR}/{}",
                manifest::project_dir(project),
                paths::encode_part(workflow)
            ),
        }
    }
    pub(crate) fn layers_dir(&self) -> String {
        format!("{}/layers", self.dir)
    }
    pub(crate) fn manifest(&self, id: &str) -> String {
        format!("{}/layers/{id}.json", self.dir)
    }
    /// Packs of the run's chunked layers, shared by them.
    pub(crate) fn packs_dir(&self) -> String {
        format!("{}/packs", self.dir)
    }
    pub(crate) fn data(&self, id: &str, extension: &str) -> String {
        format!("{}/data/{id}.{extension}", self.dir)
    }
}

/// A new layer id: `YYYYMMDDTHHMMSS.ffffffZ-<12 hex>`, so ids sort by creation time (to the
/// microsecond, by the persisting machine's clock) and never collide.
pub(crate) fn new_layer_id(now: DateTime<Utc>) -> String {
    let random = manifest::new_id();
    format!("{}-{}", now.format("%Y%m%dT%H%M%S%.6fZ"), &random[..12])
}

/// Every layer manifest of a run, sorted by id (creation order). With trusted keys, a layer
/// not signed by one of them is refused.
pub(crate) async fn read_layers(
    store: &Store,
    layout: &Layout,
    trust: &Trust,
) -> Result<Vec<LayerManifest>, WorkspaceError> {
    use futures::{StreamExt, TryStreamExt};
    let metas = store.list(&layout.layers_dir()).await?;
    let rels: Vec<String> = metas
        .into_iter()
        .map(|m| m.path)
        .filter(|rel| rel.ends_with(".json"))
        .collect();
    let mut layers: Vec<LayerManifest> = futures::stream::iter(rels)
        .map(|rel| async move {
            match store.read(&rel).await? {
                Some(bytes) => {
                    if let Err(why) = trust.check(&bytes) {
                        return Err(WorkspaceError::Untrusted {
                            path: rel,
                            why: why.to_string(),
                        });
                    }
                    Ok::<_, WorkspaceError>(Some(manifest::decode::<LayerBody>(&bytes, &rel)?))
                }
                None => Ok(None),
            }
        })
        .buffer_unordered(16)
        .try_filter_map(|m| async move { Ok(m) })
        .try_collect()
        .await?;
    layers.sort_by(|a, b| a.body.id.cmp(&b.body.id));
    Ok(layers)
}

/// Checks that a persisted path stays below its root: relative, without `~` or a leading `..`.
pub(crate) fn check_relative(name: &str) -> Result<String, String> {
    let normal = paths::normalize(name);
    if name.starts_with('/') {
        Err("workspace paths are relative to --root; give it without the leading /".into())
    } else if name.starts_with('~') {
        Err("workspace paths are relative to --root; `~` is not allowed".into())
    } else if normal == ".." || normal.starts_with("../") {
        Err("workspace paths must stay below --root; `..` climbs out of it".into())
    } else {
        Ok(normal)
    }
}

/// The set of job names, sorted, for messages.
pub(crate) fn job_names<'a>(layers: impl Iterator<Item = &'a LayerManifest>) -> Vec<String> {
    layers
        .map(|l| l.body.job.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_ids_sort_by_creation_time() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000001Z")
            .expect("a time")
            .with_timezone(&Utc);
        let ids: Vec<String> = [0, 1, 999_999, 86_400_000_000i64]
            .into_iter()
            .map(|us| new_layer_id(t0 + chrono::Duration::microseconds(us)))
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids[0].starts_with("20260102T030405.000001Z-"));
        assert_ne!(
            new_layer_id(t0),
            new_layer_id(t0),
            "a random part tells same-time ids apart"
        );
    }

    #[test]
    fn persisted_paths_stay_below_the_root() {
        assert_eq!(check_relative("./dist/"), Ok("dist".to_string()));
        assert_eq!(check_relative("a/../b"), Ok("b".to_string()));
        for bad in ["/etc", "~/x", "..", "../x", "a/../../x"] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
    }
}
