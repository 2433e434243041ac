//! `ferry cache restore`: find the best entry for a key and its restore keys and unpack it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_core::chunks;
use ferry_core::entry::{self, Land};
use ferry_core::manifest;
use ferry_core::paths::{self, PathContext};
use ferry_core::store::Store;
use ferry_core::trust::sign::Trust;
use ferry_core::unpack::{LandOptions, Lander};
use futures::StreamExt;
use serde::Serialize;

use crate::{CacheError, CacheManifest, Layout, Lookup, Read, Used};

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
    /// The scope searched first (`None`: the project-wide scope).
    pub scope: Option<String>,
    /// Scopes searched after it, in order, when it has no match (`None`: project-wide).
    pub fallback_scopes: Vec<Option<String>>,
    /// The paths this restore expects (as `--path` gives them); an entry holding anything
    /// else is refused. Empty: any.
    pub expected_paths: Vec<String>,
    /// Entries saved longer ago than this are misses.
    pub max_age: Option<Duration>,
    /// Which signatures to require.
    pub trust: Trust,
    pub at: PathContext,
    /// Folder of the job state that remembers what the job restored, so its save uploads
    /// only new chunks (none: nothing is remembered).
    pub state_dir: Option<std::path::PathBuf>,
    /// Folder of the footprints a chunked restore leaves, which let the next restore into
    /// the same folders keep unchanged files without reading them (none: every file on
    /// disk is read). Outside the job's temporary folder: a self-hosted runner's next job
    /// restores into the tree this one left.
    pub footprints: Option<std::path::PathBuf>,
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
    /// The scope the entry was found in (`None`: project-wide).
    pub scope: Option<String>,
    /// Bytes downloaded (0 with lookup-only or on a miss).
    pub bytes: u64,
    /// Files of the entry now in place (written or kept).
    pub files: u64,
    /// Format 2: files already in place with the entry's content, kept without rewriting.
    pub kept_files: u64,
    /// Format 2: files, links and folders removed because the entry does not hold them.
    pub removed: u64,
    /// `chunked`, `zstd`, `gzip` or `tar` (absent on a miss).
    pub format: Option<String>,
    pub seconds: f64,
    pub lookup_only: bool,
    /// Entries passed over (unreadable, unsigned, expired) and why.
    pub warnings: Vec<String>,
    /// How many entries were passed over because no trusted key signed them.
    pub untrusted: u32,
}

/// Finds and unpacks the entry for the request.
///
/// Each scope is searched in turn (the job's own, then each fallback); in each, each
/// candidate is tried as an exact key, then (unless `exact`) as a prefix, where the most
/// recently saved entry wins. An entry that cannot be used (unreadable, not signed by a
/// trusted key, expired, older than `max_age`) is passed over with a warning and the search
/// goes on. Files are staged under temporary names and moved into place only after the
/// archive's digest matched; on any failure the tree is left as it was.
pub async fn restore(store: &Store, req: RestoreRequest) -> Result<RestoreOutcome, CacheError> {
    let started = Instant::now();
    let mut warnings = Vec::new();
    let mut untrusted = 0;
    let miss = |warnings, untrusted| RestoreOutcome {
        hit: Hit::Miss,
        key: req.key.clone(),
        matched_key: None,
        scope: None,
        bytes: 0,
        files: 0,
        kept_files: 0,
        removed: 0,
        format: None,
        seconds: started.elapsed().as_secs_f64(),
        lookup_only: req.lookup_only,
        warnings,
        untrusted,
    };
    let found = match find(store, &req, Utc::now(), &mut warnings, &mut untrusted).await {
        Ok(found) => found,
        // A job that may not restore (a token without read, ACTIONS_CACHE_MODE) misses.
        Err(CacheError::Store(e)) if e.is_denied() => {
            warnings.push(format!(
                "the store refused the lookup: {}",
                e.denied_reason().unwrap_or("refused")
            ));
            return Ok(miss(warnings, untrusted));
        }
        Err(e) => return Err(e),
    };
    let Some((found, scope)) = found else {
        return Ok(miss(warnings, untrusted));
    };
    let hit = if found.body.key == req.key {
        Hit::Exact
    } else {
        Hit::Partial
    };
    check_expected(&found, &req.expected_paths)?;
    let encoding = found.encoding.unwrap_or_default();
    let format = Some(crate::format_name(encoding, found.body.tree.compression));
    if req.lookup_only {
        return Ok(RestoreOutcome {
            hit,
            key: req.key,
            matched_key: Some(found.body.key),
            scope,
            bytes: 0,
            files: found.body.tree.files,
            kept_files: 0,
            removed: 0,
            format,
            seconds: started.elapsed().as_secs_f64(),
            lookup_only: true,
            warnings,
            untrusted,
        });
    }
    for p in &found.body.tree.paths {
        req.at.check(p).map_err(|reason| CacheError::InvalidPath {
            path: p.clone(),
            reason,
        })?;
    }
    let at = req.at.clone();
    let lander = Lander::new(LandOptions {
        keep_root_links: req.keep_root_links,
    });
    let landed = entry::land(
        store,
        lander,
        Land {
            data: found.data.clone(),
            encoding,
            tree: found.body.tree.clone(),
            resolve: Box::new(move |name: &str| at.resolve(name)),
            max_entries: None,
            keep_existing: true,
            mirror: true,
            footprints: req.footprints.clone(),
            // The copy this job's state keeps of an index it restored before.
            index_copy: req
                .state_dir
                .as_deref()
                .and_then(|dir| crate::state::index_copy(dir, &found.data))
                .map(bytes::Bytes::from),
        },
    )
    .await;
    let (lander, mut landing) = match landed {
        Ok(l) => l,
        // Evicted between the lookup and the download: nothing was written.
        Err(ferry_core::entry::EntryError::Store(e))
            if e.is_not_found() && store.capabilities().evicts =>
        {
            warnings.push(evicted(&found.body.key));
            return Ok(miss(warnings, untrusted));
        }
        Err(e) => return Err(e.into()),
    };
    let mut landed = lander.finish_async().await?;
    // The footprint is put together from what the restore knows of its files while the
    // commit runs, and written on a thread of its own while the store records the hit.
    let footprint = match (req.footprints.clone(), landing.decoded.take()) {
        (Some(dir), Some(index)) => {
            let (at, roots) = (req.at.clone(), found.body.tree.paths.clone());
            let sha256 = found.data.sha256.clone();
            let mut known = std::mem::take(&mut landing.unchanged);
            let written = std::mem::take(&mut landed.written);
            let seen = std::mem::take(&mut landed.folders);
            let staged = landed.staged_folders();
            let prepared = tokio::task::spawn_blocking(move || {
                known.extend(chunks::footprint::written(written));
                let resolve = |n: &str| at.resolve(n);
                // A cache restore mirrors the roots saved whole.
                let laid = chunks::footprint::Laid {
                    index: &index,
                    sha256: &sha256,
                    mirrored: true,
                    seen: &seen,
                    staged: &staged,
                };
                let pending = chunks::footprint::prepare(&dir, &laid, &known, &roots, &resolve);
                (pending, at, dir)
            });
            Some(prepared)
        }
        _ => None,
    };
    let stats = landed.commit_async().await?;
    let footprint = footprint.map(|prepared| {
        tokio::spawn(async move {
            let (pending, at, dir) = prepared.await.map_err(|_| "a stopped thread".to_string())?;
            tokio::task::spawn_blocking(move || {
                pending
                    .and_then(|p| p.publish(&|n: &str| at.resolve(n)))
                    .map_err(|e| format!("{} ({e})", dir.display()))
            })
            .await
            .unwrap_or_else(|_| Err("a stopped thread".into()))
        })
    });
    touch(store, &Layout::new(&req.project, scope.as_deref()), &found).await;
    if let (Some(dir), Some(index)) = (&req.state_dir, &landing.index) {
        let restored = crate::state::Restored {
            scope: scope.clone(),
            key: found.body.key.clone(),
            data: found.data.clone(),
            packs: found.body.tree.packs.clone(),
            paths: found.body.tree.paths.clone(),
        };
        if let Err(e) = crate::state::remember(dir, &req.project, restored, index) {
            warnings.push(format!(
                "could not remember this restore in {} ({e}); a save in this job uploads every chunk",
                dir.display()
            ));
        }
    }
    if let Some(task) = footprint {
        let written = task
            .await
            .unwrap_or_else(|_| Err("a stopped thread".into()));
        if let Err(e) = written {
            warnings.push(format!(
                "could not write this restore's footprint in {e}; the next restore into these folders reads every file"
            ));
        }
    }
    Ok(RestoreOutcome {
        hit,
        key: req.key,
        matched_key: Some(found.body.key),
        scope,
        bytes: landing.downloaded,
        files: stats.files,
        kept_files: stats.kept,
        removed: stats.removed,
        format,
        seconds: started.elapsed().as_secs_f64(),
        lookup_only: false,
        warnings,
        untrusted,
    })
}

/// Refuses an entry holding paths outside those the restore expects (a manifest forged to
/// restore into `~/.ssh` or `/etc`, or a key reused for other paths).
fn check_expected(found: &CacheManifest, expected: &[String]) -> Result<(), CacheError> {
    let bases: Vec<String> = expected
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty() && !p.starts_with('!'))
        .map(|p| ferry_core::glob::literal_base(&paths::normalize(p)))
        .collect();
    if bases.is_empty() {
        return Ok(());
    }
    let outside: Vec<String> = found
        .body
        .tree
        .paths
        .iter()
        .filter(|root| !bases.iter().any(|b| paths::is_within(root, b)))
        .cloned()
        .collect();
    if outside.is_empty() {
        return Ok(());
    }
    Err(CacheError::UnexpectedPaths {
        key: found.body.key.clone(),
        roots: outside,
        expected: bases,
    })
}

/// Why an entry whose data is gone was passed over.
fn evicted(key: &str) -> String {
    format!(
        "skipped cache {key}: its data is no longer in the store, which evicts entries by \
         itself (a miss; the next save stores the key again)"
    )
}

/// Records a restore hit so the entry lives `ttl` past it (best effort: a failure only
/// shortens the entry's life). A store that evicts by itself records use on its own.
async fn touch(store: &Store, layout: &Layout, found: &CacheManifest) {
    if store.capabilities().evicts {
        return;
    }
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

/// The scopes a restore searches, in order, each once.
fn scopes(req: &RestoreRequest) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = Vec::new();
    for s in std::iter::once(&req.scope).chain(req.fallback_scopes.iter()) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// The entry to restore and its scope, passing over what cannot be used.
pub(crate) async fn find(
    store: &Store,
    req: &RestoreRequest,
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
    untrusted: &mut u32,
) -> Result<Option<(CacheManifest, Option<String>)>, CacheError> {
    for scope in scopes(req) {
        let layout = Layout::new(&req.project, scope.as_deref());
        let mut judged: HashSet<String> = HashSet::new();
        for candidate in std::iter::once(&req.key).chain(req.restore_keys.iter()) {
            let rel = layout.manifest(candidate);
            match crate::read_for_lookup(store, &rel).await? {
                Lookup::Found(r) if &r.manifest.body.key == candidate => {
                    judged.insert(rel.clone());
                    if accept(store, req, &layout, &rel, &r, now, warnings, untrusted).await {
                        return Ok(Some((r.manifest, scope)));
                    }
                }
                Lookup::Found(_) | Lookup::Gone => {}
                Lookup::Unusable(w) => {
                    judged.insert(rel.clone());
                    warnings.push(w);
                }
            }
            if req.exact {
                continue;
            }
            // The store gives the names starting with the candidate's, newest first by its own
            // clock, and only those are read: a group at a time, a group being those within a
            // second of its newest (some stores keep whole seconds), ordered by the creation
            // time each manifest records.
            let caps = store.capabilities();
            let prefix = manifest::name_prefix(candidate);
            let mut found = store.newest(&layout.keys_dir(), &prefix).await?;
            // An object store's answer is every match already.
            let mut listed_all = !caps.prefix_lookup;
            loop {
                let mut rest = found.as_slice();
                while let Some(top) = rest.first() {
                    let cut = rest
                        .iter()
                        .position(|o| top.modified - o.modified > chrono::Duration::seconds(1))
                        .unwrap_or(rest.len());
                    let (group, later) = rest.split_at(cut);
                    rest = later;
                    let names: Vec<&str> = group
                        .iter()
                        .map(|o| o.path.as_str())
                        .filter(|p| !judged.contains(*p))
                        .collect();
                    let read: Vec<(&str, Result<Lookup, CacheError>)> = futures::stream::iter(
                        names,
                    )
                    .map(|rel| async move { (rel, crate::read_for_lookup(store, rel).await) })
                    .buffer_unordered(16)
                    .collect()
                    .await;
                    let mut usable: Vec<(String, Read)> = Vec::new();
                    for (rel, r) in read {
                        judged.insert(rel.to_string());
                        match r? {
                            Lookup::Found(r) => usable.push((rel.to_string(), *r)),
                            // Listed, then removed before it was read: passed over.
                            Lookup::Gone => {}
                            Lookup::Unusable(w) => warnings.push(w),
                        }
                    }
                    usable.retain(|(_, r)| r.manifest.body.key.starts_with(candidate.as_str()));
                    usable.sort_by(|(_, a), (_, b)| {
                        b.manifest
                            .created
                            .cmp(&a.manifest.created)
                            .then_with(|| b.manifest.body.key.cmp(&a.manifest.body.key))
                    });
                    for (rel, r) in usable {
                        if accept(store, req, &layout, &rel, &r, now, warnings, untrusted).await {
                            return Ok(Some((r.manifest, scope)));
                        }
                    }
                }
                // A store's own lookup gives only the newest match: when that was passed over
                // and the store can list, the older matches are tried too.
                if listed_all || !caps.list || found.is_empty() {
                    break;
                }
                listed_all = true;
                found = store.list_newest(&layout.keys_dir(), &prefix).await?;
            }
        }
    }
    Ok(None)
}

/// True when the entry may be restored; otherwise says why in `warnings`.
#[allow(clippy::too_many_arguments)]
async fn accept(
    store: &Store,
    req: &RestoreRequest,
    layout: &Layout,
    rel: &str,
    r: &Read,
    now: DateTime<Utc>,
    warnings: &mut Vec<String>,
    untrusted: &mut u32,
) -> bool {
    let m = &r.manifest;
    if let Err(why) = req.trust.check(&r.bytes) {
        *untrusted += 1;
        warnings.push(format!("skipped cache {} ({rel}): {why}", m.body.key));
        return false;
    }
    if let Some(max_age) = req.max_age {
        let age = now - m.created;
        if age.to_std().is_ok_and(|a| a > max_age) {
            warnings.push(format!(
                "skipped cache {}: it was saved at {}, more than --max-age {} ago",
                m.body.key,
                m.created.format("%Y-%m-%d %H:%M:%S UTC"),
                ferry_core::units::format_duration(max_age)
            ));
            return false;
        }
    }
    if let Some(expires) = crate::effective_expiry(store, layout, m).await {
        if expires <= now {
            warnings.push(format!(
                "skipped cache {}: it expired at {} (its ttl is {})",
                m.body.key,
                expires.format("%Y-%m-%d %H:%M:%S UTC"),
                ferry_core::units::format_duration(Duration::from_secs(m.body.ttl_seconds))
            ));
            return false;
        }
    }
    // A store that evicts may have dropped the data and kept the manifest.
    if store.capabilities().evicts {
        match store.head(&m.data.path).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                warnings.push(evicted(&m.body.key));
                return false;
            }
            Err(e) => {
                warnings.push(format!("skipped cache {}: {e}", m.body.key));
                return false;
            }
        }
    }
    true
}
