//! `ferry workspace attach`: lay a run's layers down under a folder, parents first, after
//! checking from their manifests that none clash.

use std::path::PathBuf;
use std::time::Instant;

use ferry_core::entry::{self, Land};
use ferry_core::store::Store;
use ferry_core::unpack::{LandOptions, Lander};
use serde::Serialize;

use crate::graph::{self, LayerRef};
use crate::{LayerManifest, Layout, WorkspaceError, state};

/// What to attach.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    pub project: String,
    pub workflow: String,
    /// The attaching job, whose state file records the layers applied; `None` records nothing.
    pub job: Option<String>,
    /// The folder to lay the layers into (absolute); made if missing.
    pub at: PathBuf,
    /// Only these jobs' layers and their ancestors; empty for every layer of the run.
    pub from: Vec<String>,
    /// Folder of the per-job state files.
    pub state_dir: PathBuf,
    /// Follow a symlink found at a persisted path instead of replacing it with the folder.
    pub keep_root_links: bool,
    /// Which signatures to require.
    pub trust: ferry_core::trust::sign::Trust,
}

/// What an attach did.
#[derive(Debug, Clone, Serialize)]
pub struct AttachOutcome {
    pub workflow: String,
    pub job: Option<String>,
    pub at: PathBuf,
    /// The layers applied, in the order they were applied.
    pub layers: Vec<LayerRef>,
    /// Bytes downloaded (the compressed archives; the indexes and the parts of packs needed).
    pub bytes: u64,
    /// Format 2: files already in place with a layer's content, kept without rewriting.
    pub kept_files: u64,
    pub files: u64,
    /// Bytes of file content written.
    pub unpacked_bytes: u64,
    pub seconds: f64,
    pub warnings: Vec<String>,
}

/// Applies the selected layers under `at`.
///
/// Conflicts are found from the manifests before anything is downloaded; with any, nothing is
/// written. The layers are then downloaded one after another and streamed into one staged
/// unpack (each archive's digest checked), which is moved into place only when every layer has
/// arrived whole, so a failure at any point leaves `at` as it was. A later layer's file
/// replaces its ancestor's at the same path.
pub async fn attach(store: &Store, req: AttachRequest) -> Result<AttachOutcome, WorkspaceError> {
    let started = Instant::now();
    let layout = Layout::new(&req.project, &req.workflow);
    let layers = crate::read_layers(store, &layout, &req.trust).await?;
    let graph::AttachPlan {
        ordered,
        conflicts,
        missing,
    } = graph::plan_attach(&layers, &req.from);
    if !missing.is_empty() {
        return Err(WorkspaceError::UnknownJob {
            workflow: req.workflow,
            missing,
            known: crate::job_names(layers.iter()),
        });
    }
    if !conflicts.is_empty() {
        return Err(WorkspaceError::Conflict {
            workflow: req.workflow,
            conflicts,
        });
    }
    for &i in &ordered {
        check_manifest(&layers[i], &layout)?;
    }
    let state_file = req
        .job
        .as_ref()
        .map(|job| state::path(&req.state_dir, &req.project, &req.workflow, job));
    let mut job_state = match &state_file {
        Some(f) => Some((f, state::load(f)?)),
        None => None,
    };
    let mut warnings = Vec::new();
    if ordered.is_empty() {
        warnings.push(format!(
            "workflow {} has no layers yet; nothing was attached",
            req.workflow
        ));
    }

    let mut lander = Lander::new(LandOptions {
        keep_root_links: req.keep_root_links,
    });
    let mut bytes = 0;
    for &i in &ordered {
        let (next, downloaded) = stage(store, lander, &layers[i], &req.at).await?;
        lander = next;
        bytes += downloaded;
    }
    let landed = lander.finish_async().await?;
    let applied: Vec<LayerRef> = ordered
        .iter()
        .map(|&i| LayerRef {
            id: layers[i].body.id.clone(),
            job: layers[i].body.job.clone(),
        })
        .collect();
    // Recorded before the files move into place: a state that cannot be written fails the
    // attach with the tree untouched, rather than leave a later persist without its parents.
    if let Some((file, st)) = &mut job_state {
        st.add_attached(applied.iter().map(|l| l.id.clone()));
        if let Err(e) = state::save(file, st) {
            landed.rollback();
            return Err(e);
        }
    }
    let stats = landed.commit_async().await?;
    Ok(AttachOutcome {
        workflow: req.workflow,
        job: req.job,
        at: req.at,
        layers: applied,
        bytes,
        files: stats.files,
        unpacked_bytes: stats.bytes,
        kept_files: stats.kept,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// Streams one layer's data into the lander as its next source, checking its digest.
async fn stage(
    store: &Store,
    lander: Lander,
    layer: &LayerManifest,
    at: &std::path::Path,
) -> Result<(Lander, u64), WorkspaceError> {
    let at = at.to_path_buf();
    let land = Land {
        data: layer.data.clone(),
        encoding: layer.encoding.unwrap_or_default(),
        tree: layer.body.tree.clone(),
        resolve: Box::new(move |name: &str| at.join(name)),
        max_entries: Some(layer.body.entries.iter().count() as u64),
        keep_existing: true,
        mirror: false,
        footprints: None,
        index_copy: None,
    };
    let (lander, landing) = entry::land(store, lander, land).await?;
    Ok((lander, landing.downloaded))
}

/// Refuses a manifest whose roots would put entries outside the attach folder.
fn check_manifest(layer: &LayerManifest, layout: &Layout) -> Result<(), WorkspaceError> {
    for root in &layer.body.tree.paths {
        crate::check_relative(root).map_err(|reason| WorkspaceError::UnsafeManifest {
            path: layout.manifest(&layer.body.id),
            reason: format!("path {root:?}: {reason}"),
        })?;
    }
    Ok(())
}
