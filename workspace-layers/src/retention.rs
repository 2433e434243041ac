//! What `ferry prune` needs to know of workspaces: every layer of every run, when it
//! expires, and its archive.

use ferry_core::manifest::{self, Kind};
use ferry_core::retention::{self, Entry, Retained, Survey};
use ferry_core::store::{Store, StoreError};

use crate::LayerBody;

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
                _ => {}
            }
        }
        for (info, bytes) in retention::read_all(store, manifests).await? {
            match manifest::decode::<LayerBody>(&bytes, &info.path) {
                Ok(m) => survey.entries.push(Entry {
                    kind: Kind::Layer,
                    name: format!(
                        "{} (workflow {} job {})",
                        m.body.id, m.body.workflow, m.body.job
                    ),
                    manifest: info.path,
                    created: m.created,
                    expires: m.expires,
                    last_used: None,
                    data: vec![(m.data.path.clone(), m.data.size)],
                    companions: Vec::new(),
                    evictable: false,
                }),
                Err(e) => {
                    let (protected, warning) = retention::unreadable(&info.path, &bytes, &e);
                    survey.protected.extend(protected);
                    survey.warnings.push(warning);
                }
            }
        }
        Ok(survey)
    }
}
