//! `ferry cache save`: pack the paths and publish them under a key, first write wins.

use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_core::archive::{self, ArchiveError, Format, PackRoot, PackSpec, PackStats};
use ferry_core::manifest::{self, Envelope, Kind};
use ferry_core::store::{Published, Store};
use ferry_core::{glob, paths, transfer};
use serde::Serialize;

use ferry_core::paths::PathContext;

use crate::{CacheBody, CacheError, Layout};

/// What to save.
#[derive(Debug, Clone)]
pub struct SaveRequest {
    pub project: String,
    /// The rendered key.
    pub key: String,
    /// Paths as given: files, folders, globs; `!GLOB` excludes.
    pub paths: Vec<String>,
    pub excludes: Vec<String>,
    pub format: Format,
    pub level: Option<i32>,
    pub ttl: Duration,
    /// Replace an existing entry instead of skipping.
    pub force: bool,
    pub at: PathContext,
}

/// What a save did.
#[derive(Debug, Clone, Serialize)]
pub struct SaveOutcome {
    pub saved: bool,
    /// Why nothing was saved: `exists`.
    pub reason: Option<&'static str>,
    pub key: String,
    /// Bytes stored (the compressed archive).
    pub bytes: u64,
    pub files: u64,
    /// Bytes of file content before compression.
    pub unpacked_bytes: u64,
    pub format: Format,
    pub seconds: f64,
    pub expires: Option<chrono::DateTime<Utc>>,
    /// Paths that matched nothing.
    pub warnings: Vec<String>,
}

/// Saves the request's paths under its key.
///
/// An existing key is skipped before anything is packed, unless `force`. The data object is
/// written first and the manifest published last with a conditional create, so a reader sees
/// the whole entry or none of it, and of two concurrent saves exactly one publishes.
pub async fn save(store: &Store, req: SaveRequest) -> Result<SaveOutcome, CacheError> {
    let started = Instant::now();
    let layout = Layout::new(&req.project);
    let manifest_rel = layout.manifest(&req.key);
    let skipped = |warnings| SaveOutcome {
        saved: false,
        reason: Some("exists"),
        key: req.key.clone(),
        bytes: 0,
        files: 0,
        unpacked_bytes: 0,
        format: req.format,
        seconds: started.elapsed().as_secs_f64(),
        expires: None,
        warnings,
    };
    if !req.force && store.head(&manifest_rel).await?.is_some() {
        return Ok(skipped(Vec::new()));
    }

    let (roots, manifest_roots, excludes, warnings) = plan(&req)?;
    if roots.is_empty() {
        return Err(CacheError::NothingToSave {
            key: req.key.clone(),
            paths: req.paths.join(", "),
            cwd: req.at.cwd.display().to_string(),
        });
    }
    let spec = PackSpec {
        roots,
        excludes: glob::set(&excludes)?,
    };
    let data_rel = layout.data(req.format);
    let format = req.format;
    let level = req.level.unwrap_or_else(|| format.default_level());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let (stats, data): (PackStats, _) = transfer::upload(store, &data_rel, move |out| {
        let mut w = archive::compressor(format, level, threads, out).map_err(ArchiveError::Write)?;
        let stats = archive::pack(&spec, &mut w)?;
        w.finish_write().map_err(ArchiveError::Write)?;
        Ok::<_, ArchiveError>(stats)
    })
    .await?;

    let now = Utc::now();
    let expires = now + chrono::Duration::seconds(req.ttl.as_secs() as i64);
    let manifest = Envelope {
        format: manifest::FORMAT_VERSION,
        kind: Kind::Cache,
        created: now,
        expires: Some(expires),
        data: data.clone(),
        body: CacheBody {
            key: req.key.clone(),
            compression: format,
            paths: manifest_roots,
            links_out: stats.links_out.clone(),
            files: stats.files,
            unpacked_bytes: stats.bytes,
            ttl_seconds: req.ttl.as_secs(),
        },
    };
    let bytes = manifest::encode(&manifest);
    if req.force {
        let old = crate::read_manifest(store, &manifest_rel).await.ok().flatten();
        store.overwrite(&manifest_rel, bytes).await?;
        // The replaced archive is left for `ferry prune`, so a restore already reading it
        // finishes; it is no longer referenced and goes after the grace period.
        let _ = old;
    } else if store.create(&manifest_rel, bytes).await? == Published::Exists {
        store.delete(&data_rel).await?;
        return Ok(skipped(warnings));
    }
    let _ = store.delete(&layout.used(&req.key)).await;
    Ok(SaveOutcome {
        saved: true,
        reason: None,
        key: req.key,
        bytes: data.size,
        files: stats.files,
        unpacked_bytes: stats.bytes,
        format,
        seconds: started.elapsed().as_secs_f64(),
        expires: Some(expires),
        warnings,
    })
}

type Plan = (Vec<PackRoot>, Vec<String>, Vec<String>, Vec<String>);

/// Turns the given paths into pack roots, manifest roots, exclude patterns and warnings.
fn plan(req: &SaveRequest) -> Result<Plan, CacheError> {
    let mut roots: Vec<PackRoot> = Vec::new();
    let mut manifest_roots = Vec::new();
    let mut excludes: Vec<String> = req.excludes.iter().map(|e| paths::normalize(e)).collect();
    let mut warnings = Vec::new();
    let resolve = |n: &str| req.at.resolve(n);
    for raw in &req.paths {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        if let Some(ex) = raw.strip_prefix('!') {
            excludes.push(paths::normalize(ex));
            continue;
        }
        req.at.check(raw).map_err(|reason| CacheError::InvalidPath { path: raw.to_string(), reason })?;
        let name = paths::normalize(raw);
        if glob::is_glob(&name) {
            let found = glob::expand(&name, &resolve, false)?;
            if found.is_empty() {
                warnings.push(format!("path {raw:?} matches nothing"));
                continue;
            }
            manifest_roots.push(glob::literal_base(&name));
            for f in found {
                roots.push(PackRoot {
                    name: f.name,
                    fs_path: f.fs_path,
                });
            }
        } else {
            let fs_path = resolve(&name);
            if std::fs::symlink_metadata(&fs_path).is_err() {
                warnings.push(format!("path {raw:?} matches nothing"));
                continue;
            }
            manifest_roots.push(name.clone());
            roots.push(PackRoot { name, fs_path });
        }
    }
    // A match inside a folder that is packed whole is packed once, with that folder.
    roots.sort_by(|a, b| a.name.cmp(&b.name));
    let mut kept: Vec<PackRoot> = Vec::new();
    for r in roots {
        if kept.iter().any(|k| k.name != "." && paths::is_within(&r.name, &k.name) && k.fs_path.is_dir())
            || kept.iter().any(|k| k.name == "." && !r.name.starts_with(['/', '~']) && !r.name.starts_with(".."))
        {
            continue;
        }
        kept.push(r);
    }
    manifest_roots.sort();
    manifest_roots.dedup();
    Ok((kept, manifest_roots, excludes, warnings))
}
