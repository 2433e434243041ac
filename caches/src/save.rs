//! `ferry cache save`: pack the paths and publish them under a key, first write wins.

use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_core::archive::{self, Format, PlanError};
use ferry_core::entry::{self, Encoding, PackRequest, Written};
use ferry_core::manifest::{self, Envelope, Kind};
use ferry_core::store::{Published, Store};
use ferry_core::trust::sign::Trust;
use serde::Serialize;
use std::path::PathBuf;

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
    /// Format 2 (chunked) or format 1 (one archive, compressed as `format` says).
    pub encoding: Encoding,
    pub format: Format,
    pub level: Option<i32>,
    pub ttl: Duration,
    /// Replace an existing entry instead of skipping.
    pub force: bool,
    /// The scope saved to (`None`: the project-wide scope).
    pub scope: Option<String>,
    /// Format 2: where to look for an entry to share chunks with when the job restored none:
    /// the newest under these keys or prefixes (and the key's own), in the save's scope, then
    /// in these scopes (read, never written).
    pub restore_keys: Vec<String>,
    pub fallback_scopes: Vec<Option<String>>,
    /// Folder of the job state that remembers what the job restored (none: nothing is).
    pub state_dir: Option<PathBuf>,
    /// Signs the manifest when this job holds a key.
    pub trust: Trust,
    pub at: PathContext,
}

/// What a save did.
#[derive(Debug, Clone, Serialize)]
pub struct SaveOutcome {
    pub saved: bool,
    /// Why nothing was saved: `exists`, or `denied` when the store refused the write (a
    /// read-only token, a cache mode that forbids saves): not an error for the job.
    pub reason: Option<&'static str>,
    /// What the store said when it refused the write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denied: Option<String>,
    pub key: String,
    /// What the save put in the store (all zero when it saved nothing).
    #[serde(flatten)]
    pub written: Written,
    /// `chunked`, `zstd`, `gzip` or `tar`.
    pub format: String,
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
        denied: None,
        key: req.key.clone(),
        written: Written::default(),
        format: format_name(req.encoding, req.format),
        seconds: started.elapsed().as_secs_f64(),
        expires: None,
        warnings,
    };
    // An existing key is skipped, unless it has expired, or its data was evicted by a store
    // that evicts: it is a miss for every restore, so a save replaces it as `--force` would
    // rather than leave the key dead.
    let evicts = store.capabilities().evicts;
    let mut replace = req.force;
    let existing = if req.force {
        None
    } else {
        match store.head(&manifest_rel).await {
            Ok(found) => found,
            // A job that may save but not look up: the publish says whether the key is taken.
            Err(e) if e.is_denied() => None,
            Err(e) => return Err(e.into()),
        }
    };
    if existing.is_some() {
        match crate::read_for_lookup(store, &manifest_rel).await? {
            Lookup::Found(r)
                if crate::effective_expiry(store, &layout, &r.manifest)
                    .await
                    .is_some_and(|t| t <= Utc::now()) =>
            {
                replace = true;
            }
            Lookup::Found(r) if evicts && store.head(&r.manifest.data.path).await?.is_none() => {
                replace = true;
            }
            Lookup::Gone => {}
            _ => return Ok(skipped(Vec::new())),
        }
    }
    match publish(store, &req, &layout, &manifest_rel, replace, started).await {
        Err(CacheError::Store(e)) if e.is_denied() => Ok(SaveOutcome {
            saved: false,
            reason: Some("denied"),
            denied: e.denied_reason().map(str::to_string),
            key: req.key.clone(),
            written: Written::default(),
            format: format_name(req.encoding, req.format),
            seconds: started.elapsed().as_secs_f64(),
            expires: None,
            warnings: Vec::new(),
        }),
        Ok(Err(lost)) => Ok(skipped(lost)),
        Ok(Ok(outcome)) => Ok(outcome),
        Err(e) => Err(e),
    }
}

/// Packs and publishes the entry; `Err` (with the packing's warnings) when another save
/// published the key first.
async fn publish(
    store: &Store,
    req: &SaveRequest,
    layout: &Layout,
    manifest_rel: &str,
    replace: bool,
    started: Instant,
) -> Result<Result<SaveOutcome, Vec<String>>, CacheError> {
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
    let mut warnings = plan.warnings.clone();
    let encoding = req.encoding;
    let data_rel = layout.data(entry::data_extension(encoding, req.format));
    let known = match encoding {
        Encoding::Chunked => {
            crate::base::known(store, req, &plan.manifest_roots, &mut warnings).await
        }
        Encoding::Tar => Default::default(),
    };
    let packed = entry::pack(
        store,
        &data_rel,
        PackRequest {
            plan,
            encoding,
            compression: req.format,
            level: req.level,
            packs_dir: layout.packs_dir(),
            known,
        },
    )
    .await?;
    // A pack shared with an earlier entry must still be there when this one is published.
    let shared: Vec<(String, u64)> = packed
        .tree
        .packs
        .iter()
        .filter(|p| !packed.new_packs.contains(&p.path))
        .map(|p| (p.path.clone(), p.size))
        .collect();
    if !shared.is_empty() {
        let present = crate::base::present(store, &shared).await;
        if let Some((gone, _)) = shared
            .iter()
            .find(|(p, s)| present.get(p) != Some(&Some(*s)))
        {
            packed.discard(store).await;
            return Err(CacheError::PackGone { pack: gone.clone() });
        }
    }

    let now = Utc::now();
    let expires = now + chrono::Duration::seconds(req.ttl.as_secs() as i64);
    let manifest = Envelope {
        format: encoding.format_version(),
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
        store.overwrite(manifest_rel, bytes).await?;
    } else if store.create(manifest_rel, bytes).await? == Published::Exists {
        // A store that cannot delete keeps the unpublished data until it evicts it.
        packed.discard(store).await;
        return Ok(Err(warnings));
    }
    if !store.capabilities().evicts {
        let _ = store.delete(&layout.used(&req.key)).await;
    }
    Ok(Ok(SaveOutcome {
        saved: true,
        reason: None,
        denied: None,
        written: packed.written(),
        format: format_name(req.encoding, req.format),
        key: req.key.clone(),
        seconds: started.elapsed().as_secs_f64(),
        expires: Some(expires),
        warnings,
    }))
}

/// The name `--format` gives an encoding and compression.
pub fn format_name(encoding: Encoding, format: Format) -> String {
    match encoding {
        Encoding::Chunked => "chunked".into(),
        Encoding::Tar => format.to_string(),
    }
}
