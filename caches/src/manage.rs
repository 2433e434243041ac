//! `ferry cache ls` and `ferry cache rm`.

use chrono::{DateTime, Utc};
use ferry_core::manifest;
use ferry_core::store::Store;
use ferry_core::trust::sign::Trust;
use futures::StreamExt;
use serde::Serialize;

use crate::{CacheError, Layout, Lookup, Used};

/// One cache as `ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CacheEntry {
    pub key: String,
    /// The scope it lives in (`None`: project-wide).
    pub scope: Option<String>,
    /// Bytes stored.
    pub bytes: u64,
    pub files: u64,
    /// Bytes of file content before compression.
    pub unpacked_bytes: u64,
    pub created: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub compression: ferry_core::archive::Format,
    /// The public key it is signed with, as recorded (not checked).
    pub signed_by: Option<String>,
    /// With `FERRY_TRUSTED_KEYS` set: whether a trusted key's signature checks out.
    pub trusted: Option<bool>,
}

/// What `ls` found: the caches, newest first, and the objects it passed over.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub caches: Vec<CacheEntry>,
    pub warnings: Vec<String>,
}

/// Every cache of the project, in every scope, whose key starts with `prefix`, newest first.
/// A manifest that cannot be read is passed over with a warning naming it.
pub async fn list(
    store: &Store,
    project: &str,
    prefix: Option<&str>,
    trust: &Trust,
) -> Result<Listing, CacheError> {
    let prefix = prefix.unwrap_or("");
    let wanted: Vec<(Option<String>, String)> = crate::objects(store, project)
        .await?
        .manifests
        .into_iter()
        .filter(|(_, info)| manifest::name_may_start_with(info.name(), prefix))
        .map(|(scope, info)| (scope, info.path))
        .collect();
    let results: Vec<Result<Result<Option<CacheEntry>, String>, CacheError>> =
        futures::stream::iter(wanted)
            .map(|(scope, rel)| async move {
                let r = match crate::read_for_lookup(store, &rel).await? {
                    Lookup::Found(r) => r,
                    Lookup::Gone => return Ok(Ok(None)),
                    Lookup::Unusable(w) => return Ok(Err(w)),
                };
                let m = r.manifest;
                let layout = Layout::new(project, scope.as_deref());
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
                Ok(Ok(Some(CacheEntry {
                    key: m.body.key,
                    scope,
                    bytes: m.data.size,
                    files: m.body.tree.files,
                    unpacked_bytes: m.body.tree.unpacked_bytes,
                    created: m.created,
                    last_used: used.map(|u| u.last_used),
                    expires,
                    compression: m.body.tree.compression,
                    signed_by: m.signature.map(|s| s.key),
                    trusted: trust.trusted.as_ref().map(|k| k.verify(&r.bytes).is_ok()),
                })))
            })
            // Each read is a round trip on a remote store: more of them in flight there.
            .buffer_unordered(if store.is_remote() { 64 } else { 16 })
            .collect()
            .await;
    let mut caches = Vec::new();
    let mut warnings = Vec::new();
    for r in results {
        match r? {
            Ok(Some(e)) if e.key.starts_with(prefix) => caches.push(e),
            Ok(_) => {}
            Err(w) => warnings.push(w),
        }
    }
    caches.sort_by_key(|e| std::cmp::Reverse(e.created));
    warnings.sort();
    Ok(Listing { caches, warnings })
}

/// Removes the given keys of a scope: manifest first (so the entry is gone at once), then
/// its data.
///
/// Keys that do not exist are reported together after the others are removed.
pub async fn remove(
    store: &Store,
    project: &str,
    scope: Option<&str>,
    keys: &[String],
) -> Result<Vec<String>, CacheError> {
    let layout = Layout::new(project, scope);
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
