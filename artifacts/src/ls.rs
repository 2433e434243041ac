//! `ferry artifacts ls` and `ferry artifacts url`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_core::store::Store;
use ferry_core::{manifest, paths};
use serde::Serialize;

use crate::{ArtifactError, ArtifactManifest, Layout, Target};

/// One artifact as `ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    #[serde(with = "crate::octal")]
    pub mode: u32,
    pub run: String,
    pub job: String,
    pub created: DateTime<Utc>,
    /// `None`: kept until removed.
    pub expires: Option<DateTime<Utc>>,
}

impl From<ArtifactManifest> for ArtifactEntry {
    fn from(m: ArtifactManifest) -> Self {
        Self {
            path: m.body.path,
            size: m.data.size,
            sha256: m.data.sha256,
            mode: m.body.mode,
            run: m.body.run,
            job: m.body.job,
            created: m.created,
            expires: m.expires,
        }
    }
}

/// Every artifact of the run and job, by stored path.
pub async fn list(
    store: &Store,
    project: &str,
    target: &Target,
) -> Result<Vec<ArtifactEntry>, ArtifactError> {
    let layout = Layout::new(project);
    Ok(crate::read_all(
        store,
        &layout,
        target,
        &ferry_core::trust::sign::Trust::default(),
    )
    .await?
    .into_iter()
    .map(ArtifactEntry::from)
    .collect())
}

/// A link to one artifact's bytes that works without ferry: pre-signed for `expires` on cloud
/// stores, `file://` on a local one.
pub async fn link(
    store: &Store,
    project: &str,
    target: &Target,
    path: &str,
    expires: Duration,
) -> Result<String, ArtifactError> {
    let layout = Layout::new(project);
    let path = paths::normalize(path);
    let rel = layout.manifest(target, &path);
    let not_found = || ArtifactError::NotFound {
        run: target.run.clone(),
        job: target.job.clone(),
        path: path.clone(),
    };
    let bytes = store.read(&rel).await?.ok_or_else(not_found)?;
    let m: ArtifactManifest = manifest::decode(&bytes, &rel)?;
    if m.body.path != path {
        return Err(not_found());
    }
    Ok(store.link(&m.data.path, expires).await?)
}
