//! A project's workspaces for people browsing a store (`ferry ui`): its runs from one listing,
//! and one run's layers with the plan an attach would follow.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ferry_core::manifest;
use ferry_core::store::Store;
use ferry_core::trust::sign::Trust;
use serde::Serialize;

use crate::graph::{AttachPlan, plan_attach};
use crate::{LayerManifest, Layout, WORKSPACES_DIR, WorkspaceError};

/// One workflow run as the listing shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub workflow: String,
    pub layers: usize,
    /// Bytes of the run's layer archives.
    pub bytes: u64,
    /// When its newest object was written, by the store's clock.
    pub newest: DateTime<Utc>,
}

/// Every run of the project with layers, newest first, from one listing (no manifest read).
pub async fn runs(store: &Store, project: &str) -> Result<Vec<RunSummary>, WorkspaceError> {
    let base = format!("{}/{WORKSPACES_DIR}/", manifest::project_dir(project));
    let mut by_run: BTreeMap<String, RunSummary> = BTreeMap::new();
    for info in store.list(&base).await? {
        let parts: Vec<&str> = info.path[base.len()..].split('/').collect();
        let (run, is_layer) = match parts.as_slice() {
            [run, "layers", name] if name.ends_with(".json") => (*run, true),
            [run, "data", ..] => (*run, false),
            _ => continue,
        };
        let workflow = ferry_core::paths::decode_part(run).unwrap_or_else(|| run.to_string());
        let summary = by_run.entry(workflow.clone()).or_insert(RunSummary {
            workflow,
            layers: 0,
            bytes: 0,
            newest: info.modified,
        });
        if is_layer {
            summary.layers += 1;
        } else {
            summary.bytes += info.size;
        }
        summary.newest = summary.newest.max(info.modified);
    }
    let mut out: Vec<RunSummary> = by_run.into_values().filter(|r| r.layers > 0).collect();
    out.sort_by(|a, b| {
        b.newest
            .cmp(&a.newest)
            .then_with(|| a.workflow.cmp(&b.workflow))
    });
    Ok(out)
}

/// One run's layers and what an attach of the `from` jobs (all when empty) would do.
#[derive(Debug, Clone)]
pub struct RunGraph {
    pub workflow: String,
    /// Every layer of the run, sorted by id (creation).
    pub layers: Vec<LayerManifest>,
    /// The attach plan, computed as `attach` computes it.
    pub plan: AttachPlan,
}

/// Reads every layer manifest of `workflow` (signatures are shown, not required) and plans
/// an attach of `from` over them, exactly as `ferry workspace attach` would.
pub async fn inspect(
    store: &Store,
    project: &str,
    workflow: &str,
    from: &[String],
) -> Result<RunGraph, WorkspaceError> {
    let layers =
        crate::read_layers(store, &Layout::new(project, workflow), &Trust::default()).await?;
    let plan = plan_attach(&layers, from);
    Ok(RunGraph {
        workflow: workflow.to_string(),
        layers,
        plan,
    })
}
