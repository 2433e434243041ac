//! What `ferry prune` needs to know of artifacts: every stored file of every run and job,
//! when it expires (or never), and its data object.

use ferry_core::manifest::{self, Kind};
use ferry_core::retention::{self, Entry, Retained, SharedUse, Survey};
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
                // Content stored once by its digest may be found and shared by a later upload;
                // a data object of a random id (written before) only by its own manifest.
                [crate::DATA_DIR, id, _] if crate::is_digest(id) => survey.shared.push(info),
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
                data: if is_shared(&m.data.path) {
                    Vec::new()
                } else {
                    vec![(m.data.path.clone(), m.data.size)]
                },
                shared: if is_shared(&m.data.path) {
                    vec![SharedUse::whole(m.data.path, m.data.size)]
                } else {
                    Vec::new()
                },
                companions: Vec::new(),
                evictable: false,
            },
        )
        .await?;
        Ok(survey)
    }
}

/// True for a data object named by its content's digest (`data/<sha256>/<name>`).
fn is_shared(path: &str) -> bool {
    let mut parts = path.rsplit('/');
    let _name = parts.next();
    parts.next().is_some_and(crate::is_digest) && parts.next() == Some(crate::DATA_DIR)
}
