//! `ferry cache save`: pack the paths and publish them under a key, first write wins.

use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_core::archive::{self, Format, PlanError};
use ferry_core::entry::{self, Encoding, PackRequest};
use ferry_core::manifest::{self, Envelope, Kind};
use ferry_core::store::{Published, Store};
use ferry_core::trust::sign::Trust;
use serde::Serialize;

use ferry_core::paths::PathContext;

use crate::{CacheBody, CacheError, Layout, Lookup};

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
    /// The scope saved to (`None`: the project-wide scope).
    pub scope: Option<String>,
    /// Signs the manifest when this job holds a key.
    pub trust: Trust,
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
    let layout = Layout::new(&req.project, req.scope.as_deref());
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
    // An existing key is skipped, unless it has expired: it is a miss for every restore, so
    // a save replaces it as `--force` would rather than leave the key dead until prune.
    let mut replace = req.force;
    if !req.force && store.head(&manifest_rel).await?.is_some() {
        match crate::read_for_lookup(store, &manifest_rel).await? {
            Lookup::Found(r)
                if crate::effective_expiry(store, &layout, &r.manifest)
                    .await
                    .is_some_and(|t| t <= Utc::now()) =>
            {
                replace = true;
            }
            Lookup::Gone => {}
            _ => return Ok(skipped(Vec::new())),
        }
    }

    let plan = archive::plan(&req.paths, &req.excludes, &req.at).map_err(|e| match e {
        PlanError::InvalidPath { path, reason } => CacheError::InvalidPath { path, reason },
        PlanError::Glob(g) => CacheError::Glob(g),
    })?;
    if plan.roots.is_empty() {
        return Err(CacheError::NothingToSave {
            key: req.key.clone(),
            paths: req.paths.join(", "),
            cwd: req.at.cwd.display().to_string(),
        });
    }
    let warnings = plan.warnings.clone();
    let encoding = Encoding::Tar;
    let data_rel = layout.data(entry::data_extension(encoding, req.format));
    let packed = entry::pack(
        store,
        &data_rel,
        PackRequest {
            plan,
            encoding,
            compression: req.format,
            level: req.level,
            packs_dir: String::new(),
            known: Default::default(),
        },
    )
    .await?;

    let now = Utc::now();
    let expires = now + chrono::Duration::seconds(req.ttl.as_secs() as i64);
    let manifest = Envelope {
        format: manifest::FORMAT_VERSION,
        kind: Kind::Cache,
        created: now,
        expires: Some(expires),
        data: packed.data.clone(),
        encoding: Some(encoding),
        signature: None,
        body: CacheBody {
            key: req.key.clone(),
            tree: packed.tree.clone(),
            ttl_seconds: req.ttl.as_secs(),
        },
    };
    let bytes = req.trust.seal(manifest::encode(&manifest));
    if replace {
        // The replaced archive is left for `ferry prune`, so a restore already reading it
        // finishes; it is no longer referenced and goes after the grace period.
        store.overwrite(&manifest_rel, bytes).await?;
    } else if store.create(&manifest_rel, bytes).await? == Published::Exists {
        store.delete(&data_rel).await?;
        return Ok(skipped(warnings));
    }
    let _ = store.delete(&layout.used(&req.key)).await;
    Ok(SaveOutcome {
        saved: true,
        reason: None,
        key: req.key,
        bytes: packed.data.size,
        files: packed.tree.files,
        unpacked_bytes: packed.tree.unpacked_bytes,
        format: req.format,
        seconds: started.elapsed().as_secs_f64(),
        expires: Some(expires),
        warnings,
    })
}
