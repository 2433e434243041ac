//! `ferry workspace ls`: the layers of one run.

use chrono::{DateTime, Utc};
use ferry_core::store::Store;
use serde::Serialize;

use crate::{Layout, WorkspaceError};

/// One layer as `ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    pub id: String,
    pub job: String,
    /// Number of regular files.
    pub files: u64,
    /// Bytes stored (the compressed archive).
    pub bytes: u64,
    /// Bytes of file content before compression.
    pub unpacked_bytes: u64,
    pub parents: Vec<String>,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
}

/// Every layer of `workflow`, oldest first.
pub async fn list(
    store: &Store,
    project: &str,
    workflow: &str,
) -> Result<Vec<LayerSummary>, WorkspaceError> {
    let layers = crate::read_layers(
        store,
        &Layout::new(project, workflow),
        &ferry_core::trust::sign::Trust::default(),
    )
    .await?;
    Ok(layers
        .into_iter()
        .map(|m| LayerSummary {
            id: m.body.id,
            job: m.body.job,
            files: m.body.tree.files,
            bytes: m.body.tree.stored_bytes(&m.data),
            unpacked_bytes: m.body.tree.unpacked_bytes,
            parents: m.body.parents,
            created: m.created,
            expires: m.expires,
        })
        .collect())
}
