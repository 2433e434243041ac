//! What `ferry prune` needs to know of workspaces: every layer of every run, when it
//! expires, and its archive (or its index and the run's packs it uses).

use ferry_core::manifest::{self, Kind};
use ferry_core::retention::{self, Entry, Retained, SharedUse, Survey};
use ferry_core::store::{Store, StoreError};

use crate::LayerManifest;

/// Workspaces' part in pruning.
pub struct Workspaces;

#[async_trait::async_trait]
impl Retained for Workspaces {
    async fn survey(&self, store: &Store, project: &str) -> Result<Survey, StoreError> {
        let base = format!(
            "{}/{}/",
            manifest::project_dir(project),
            crate::WORKSPACES_DIR
        );
        let mut survey = Survey::default();
        let mut manifests = Vec::new();
        for info in store.list(&base).await? {
            // <workflow>/layers/<id>.json and <workflow>/data/<id>.<ext>
            let parts: Vec<&str> = info.path[base.len()..].split('/').collect();
            match parts.as_slice() {
                [_, "layers", name] if name.ends_with(".json") => manifests.push(info),
                [_, "data", ..] => survey.loose.push(info),
                [_, "packs", name] if name.ends_with(".pack") => survey.shared.push(info),
                _ => {}
            }
        }
        retention::read_entries(store, &mut survey, manifests, |info, m: LayerManifest| {
            Entry {
                kind: Kind::Layer,
                name: format!(
                    "{} (workflow {} job {})",
                    m.body.id, m.body.workflow, m.body.job
                ),
                manifest: info.path,
                created: m.created,
                expires: m.expires,
                last_used: None,
                data: vec![(m.data.path, m.data.size)],
                shared: m.body.tree.packs.into_iter().map(SharedUse::from).collect(),
                companions: Vec::new(),
                evictable: false,
            }
        })
        .await?;
        Ok(survey)
    }
}
