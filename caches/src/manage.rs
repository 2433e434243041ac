//! `ferry cache ls` and `ferry cache rm`.

use chrono::{DateTime, Utc};
use ferry_core::store::Store;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::{CacheError, Layout, Used};

/// One cache as `ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CacheEntry {
    pub key: String,
    /// Bytes stored.
    pub bytes: u64,
    pub files: u64,
    pub created: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub compression: ferry_core::archive::Format,
}

/// Every cache of the project whose key starts with `prefix`, newest first.
pub async fn list(
    store: &Store,
    project: &str,
    prefix: Option<&str>,
) -> Result<Vec<CacheEntry>, CacheError> {
    let layout = Layout::new(project);
    let metas = store.list(&layout.keys_dir()).await?;
    let prefix = prefix.unwrap_or("");
    let wanted: Vec<String> = metas
        .into_iter()
        .filter(|m| {
            m.location
                .filename()
                .is_some_and(|n| ferry_core::manifest::name_may_start_with(n, prefix))
        })
        .map(|m| m.location.to_string())
        .collect();
    let mut entries: Vec<CacheEntry> = futures::stream::iter(wanted)
        .map(|rel| {
            let layout = &layout;
            async move {
                let Some(m) = crate::read_manifest(store, &rel).await? else {
                    return Ok::<_, CacheError>(None);
                };
                let used: Option<Used> = store
                    .read(&layout.used(&m.body.key))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let expires = match (&m.expires, &used) {
                    (Some(e), Some(u)) => Some((*e).max(u.expires)),
                    (e, _) => *e,
                };
                Ok(Some(CacheEntry {
                    key: m.body.key,
                    bytes: m.data.size,
                    files: m.body.files,
                    created: m.created,
                    last_used: used.map(|u| u.last_used),
                    expires,
                    compression: m.body.compression,
                }))
            }
        })
        .buffer_unordered(16)
        .try_filter_map(|e| async move { Ok(e) })
        .try_collect()
        .await?;
    entries.retain(|e| e.key.starts_with(prefix));
    entries.sort_by_key(|e| std::cmp::Reverse(e.created));
    Ok(entries)
}

/// Removes the given keys: manifest first (so the entry is gone at once), then its data.
///
/// Keys that do not exist are reported together after the others are removed.
pub async fn remove(
    store: &Store,
    project: &str,
    keys: &[String],
) -> Result<Vec<String>, CacheError> {
    let layout = Layout::new(project);
    let mut removed = Vec::new();
    let mut missing = Vec::new();
    for key in keys {
        let rel = layout.manifest(key);
        match crate::read_manifest(store, &rel).await? {
            Some(m) if &m.body.key == key => {
                store.delete(&rel).await?;
                store.delete(&m.data.path).await?;
                store.delete(&layout.used(key)).await?;
                removed.push(key.clone());
            }
            _ => missing.push(key.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(CacheError::NotFound { keys: missing });
    }
    Ok(removed)
}
