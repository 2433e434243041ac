//! `ferry cache restore`: find the best entry for a key and its restore keys and unpack it.

use std::collections::HashSet;
use std::time::Instant;

use chrono::Utc;
use ferry_core::archive;
use ferry_core::manifest;
use ferry_core::store::Store;
use ferry_core::transfer;
use ferry_core::unpack::{LandOptions, Lander, Source};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use serde::Serialize;

use ferry_core::paths::PathContext;

use crate::{CacheError, CacheManifest, Layout, Used};

/// What to restore.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub project: String,
    /// The rendered primary key.
    pub key: String,
    /// Rendered fallbacks, tried in order after the key.
    pub restore_keys: Vec<String>,
    /// Match keys exactly; no prefix matching.
    pub exact: bool,
    /// Report the match and download nothing.
    pub lookup_only: bool,
    /// Follow a symlink found at a saved path instead of replacing it with the cache's folder.
    pub keep_root_links: bool,
    pub at: PathContext,
}

/// How well the restore matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hit {
    /// The primary key itself.
    Exact,
    /// A prefix of the key or a restore key.
    Partial,
    Miss,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub hit: Hit,
    pub key: String,
    pub matched_key: Option<String>,
    /// Bytes downloaded (0 with lookup-only or on a miss).
    pub bytes: u64,
    pub files: u64,
    pub seconds: f64,
    pub lookup_only: bool,
}

/// Finds and unpacks the entry for the request.
///
/// Each candidate is tried as an exact key, then (unless `exact`) as a prefix, where the most
/// recently saved entry wins. Files are staged under temporary names and moved into place only
/// after the archive's digest matched; on any failure the tree is left as it was.
pub async fn restore(store: &Store, req: RestoreRequest) -> Result<RestoreOutcome, CacheError> {
    let started = Instant::now();
    let layout = Layout::new(&req.project);
    let Some(found) = find(store, &layout, &req).await? else {
        return Ok(RestoreOutcome {
            hit: Hit::Miss,
            key: req.key,
            matched_key: None,
            bytes: 0,
            files: 0,
            seconds: started.elapsed().as_secs_f64(),
            lookup_only: req.lookup_only,
        });
    };
    let hit = if found.body.key == req.key {
        Hit::Exact
    } else {
        Hit::Partial
    };
    if req.lookup_only {
        return Ok(RestoreOutcome {
            hit,
            key: req.key,
            matched_key: Some(found.body.key),
            bytes: 0,
            files: found.body.files,
            seconds: started.elapsed().as_secs_f64(),
            lookup_only: true,
        });
    }
    for p in &found.body.paths {
        req.at.check(p).map_err(|reason| CacheError::InvalidPath {
            path: p.clone(),
            reason,
        })?;
    }
    let at = req.at.clone();
    let source = Source {
        roots: found.body.paths.clone(),
        links_out: found.body.links_out.iter().cloned().collect::<HashSet<_>>(),
        resolve: Box::new(move |name: &str| at.resolve(name)),
        max_bytes: Some(found.body.unpacked_bytes),
        max_entries: found.body.entry_count,
    };
    let options = LandOptions {
        keep_root_links: req.keep_root_links,
    };
    let format = found.body.compression;
    let expected = found.data.clone();
    let stats = transfer::download(store, &found.data.path, found.data.size, move |reader| {
        let mut lander = Lander::new(options);
        lander.begin(source);
        archive::unpack_checked(&mut lander, format, reader, &expected)?;
        lander.finish()?.commit()
    })
    .await?;
    touch(store, &layout, &found).await;
    Ok(RestoreOutcome {
        hit,
        key: req.key,
        matched_key: Some(found.body.key),
        bytes: found.data.size,
        files: stats.files,
        seconds: started.elapsed().as_secs_f64(),
        lookup_only: false,
    })
}

/// Records a restore hit so the entry lives `ttl` past it (best effort: a failure only
/// shortens the entry's life).
async fn touch(store: &Store, layout: &Layout, found: &CacheManifest) {
    let now = Utc::now();
    let used = Used {
        key: found.body.key.clone(),
        last_used: now,
        expires: now + chrono::Duration::seconds(found.body.ttl_seconds as i64),
    };
    if let Ok(bytes) = serde_json::to_vec(&used) {
        let _ = store
            .overwrite(&layout.used(&found.body.key), bytes.into())
            .await;
    }
}

async fn find(
    store: &Store,
    layout: &Layout,
    req: &RestoreRequest,
) -> Result<Option<CacheManifest>, CacheError> {
    let mut listing: Option<Vec<ObjectMeta>> = None;
    let candidates = std::iter::once(&req.key).chain(req.restore_keys.iter());
    for candidate in candidates {
        if let Some(m) = crate::read_manifest(store, &layout.manifest(candidate)).await? {
            if &m.body.key == candidate {
                return Ok(Some(m));
            }
        }
        if req.exact {
            continue;
        }
        if listing.is_none() {
            listing = Some(store.list(&layout.keys_dir()).await?);
        }
        let names: Vec<String> = listing
            .iter()
            .flatten()
            .filter(|meta| {
                meta.location
                    .filename()
                    .is_some_and(|n| manifest::name_may_start_with(n, candidate))
            })
            .map(|meta| meta.location.to_string())
            .collect();
        // Listing times are coarse on some stores (whole seconds), so the winner is chosen by
        // the creation time each manifest records.
        let manifests: Vec<Option<CacheManifest>> = futures::stream::iter(names)
            .map(|rel| async move { crate::read_manifest(store, &rel).await })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let best = manifests
            .into_iter()
            .flatten()
            .filter(|m| m.body.key.starts_with(candidate.as_str()))
            .max_by(|a, b| {
                a.created
                    .cmp(&b.created)
                    .then_with(|| a.body.key.cmp(&b.body.key))
            });
        if best.is_some() {
            return Ok(best);
        }
    }
    Ok(None)
}
