//! What `ferry prune` needs to know of artifacts: every stored file of every run and job,
//! when it expires (or never), and its data object.

use ferry_core::manifest::{self, Kind};
use ferry_core::retention::{self, Entry, Retained, Survey};
use ferry_core::store::{Store, StoreError};

use crate::ArtifactManifest;

/// Artifacts' part in pruning.
pub struct Artifacts;

#[async_trait::async_trait]
impl Retained for Artifacts {
    async fn survey(&self, store: &Store, project: &str) -> Result<Survey, StoreError> {
        let base = format!(
            "{}/{}/",
            manifest::project_dir(project),
            crate::ARTIFACTS_DIR
        );
        let mut survey = Survey::default();
        let mut manifests = Vec::new();
        for info in store.list(&base).await? {
            // runs/<run>/<job>/<name>.json and data/<id>/<file name>
            let parts: Vec<&str> = info.path[base.len()..].split('/').collect();
            match parts.as_slice() {
                ["runs", _, _, name] if name.ends_with(".json") => manifests.push(info),
                [crate::DATA_DIR, ..] => survey.loose.push(info),
                _ => {}
            }
        }
        retention::read_entries(
            store,
            &mut survey,
            manifests,
            |info, m: ArtifactManifest| Entry {
                kind: Kind::Artifact,
                name: format!("{} (run {} job {})", m.body.path, m.body.run, m.body.job),
                manifest: info.path,
                created: m.created,
                expires: m.expires,
                last_used: None,
                data: vec![(m.data.path, m.data.size)],
                companions: Vec::new(),
                evictable: false,
            },
        )
        .await?;
        Ok(survey)
    }
}
