//! `ferry workspace attach`: lay a run's layers down under a folder, parents first, after
//! checking from their manifests that none clash.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use ferry_core::archive::{self, Staged, UnpackSpec};
use ferry_core::store::Store;
use ferry_core::transfer;
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
}

/// What an attach did.
#[derive(Debug, Clone, Serialize)]
pub struct AttachOutcome {
    pub workflow: String,
    pub job: Option<String>,
    pub at: PathBuf,
    /// The layers applied, in the order they were applied.
    pub layers: Vec<LayerRef>,
    /// Bytes downloaded (the compressed archives).
    pub bytes: u64,
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
    let layers = crate::read_layers(store, &layout).await?;
    let (selected, missing) = graph::select(&layers, &req.from);
    if !missing.is_empty() {
        return Err(WorkspaceError::UnknownJob {
            workflow: req.workflow,
            missing,
            known: crate::job_names(layers.iter()),
        });
    }
    let ordered = graph::order(&layers, &selected);
    let conflicts = graph::conflicts(&layers, &ordered);
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

    let mut staged: Option<Staged> = None;
    let mut bytes = 0;
    for &i in &ordered {
        match stage(store, &layers[i], &req.at).await {
            Ok(s) => match &mut staged {
                Some(all) => all.absorb(s),
                None => staged = Some(s),
            },
            Err(e) => {
                if let Some(all) = staged {
                    all.rollback();
                }
                return Err(e);
            }
        }
        bytes += layers[i].data.size;
    }
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
            if let Some(all) = staged {
                all.rollback();
            }
            return Err(e);
        }
    }
    let stats = match staged {
        Some(all) => all.commit()?,
        None => Default::default(),
    };
    Ok(AttachOutcome {
        workflow: req.workflow,
        job: req.job,
        at: req.at,
        layers: applied,
        bytes,
        files: stats.files,
        unpacked_bytes: stats.bytes,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// Streams one layer's archive into a staged unpack under `at`, checking its digest.
async fn stage(
    store: &Store,
    layer: &LayerManifest,
    at: &std::path::Path,
) -> Result<Staged, WorkspaceError> {
    let at = at.to_path_buf();
    let roots = layer.body.paths.clone();
    let links_out: HashSet<(String, String)> = layer.body.links_out.iter().cloned().collect();
    let format = layer.body.compression;
    let expected = layer.data.clone();
    let staged = transfer::download(store, &layer.data.path, layer.data.size, move |reader| {
        let resolve = move |name: &str| at.join(name);
        let spec = UnpackSpec {
            roots,
            links_out,
            resolve: &resolve,
            stage_new_folders: false,
        };
        archive::unpack_checked(&spec, format, reader, &expected)
    })
    .await?;
    Ok(staged)
}

/// Refuses a manifest whose roots would put entries outside the attach folder.
fn check_manifest(layer: &LayerManifest, layout: &Layout) -> Result<(), WorkspaceError> {
    for root in &layer.body.paths {
        crate::check_relative(root).map_err(|reason| WorkspaceError::UnsafeManifest {
            path: layout.manifest(&layer.body.id),
            reason: format!("path {root:?}: {reason}"),
        })?;
    }
    Ok(())
}
