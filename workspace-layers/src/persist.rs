//! `ferry workspace persist`: pack paths under a root into one new, immutable layer.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_core::archive::{self, Format};
use ferry_core::chunks::{self, Known};
use ferry_core::entry::{self, Encoding, PackRequest, Written};
use ferry_core::env_vars::Environment;
use ferry_core::manifest::{self, Envelope, Kind};
use ferry_core::paths::PathContext;
use ferry_core::store::{Published, Store};
use ferry_core::trust::sign::Trust;
use serde::Serialize;

use crate::{LayerBody, Layout, Listing, WorkspaceError, state};

/// What to persist.
#[derive(Debug, Clone)]
pub struct PersistRequest {
    pub project: String,
    pub workflow: String,
    pub job: String,
    /// The folder the paths are relative to (absolute).
    pub root: PathBuf,
    /// Paths under `root` as given: files, folders, globs; `!GLOB` excludes.
    pub paths: Vec<String>,
    pub ttl: Duration,
    /// Folder of the per-job state files.
    pub state_dir: PathBuf,
    /// Signs the manifest when this job holds a key.
    pub trust: Trust,
    /// Format 2 (chunked, sharing chunks with the layers this job attached) or format 1.
    pub encoding: Encoding,
    /// Compression of a format-1 archive.
    pub format: Format,
}

/// What a persist did.
#[derive(Debug, Clone, Serialize)]
pub struct PersistOutcome {
    pub workflow: String,
    pub job: String,
    pub id: String,
    pub parents: Vec<String>,
    /// What the persist put in the store.
    #[serde(flatten)]
    pub written: Written,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub seconds: f64,
    /// Paths that matched nothing, and a state file that could not be updated.
    pub warnings: Vec<String>,
}

/// Adds one layer to the run: the archive first, then its manifest with a conditional create,
/// so the layer exists exactly when its manifest does. Its parents are what this job attached
/// and persisted before, as its state file records.
pub async fn persist(store: &Store, req: PersistRequest) -> Result<PersistOutcome, WorkspaceError> {
    let started = Instant::now();
    if !req.root.is_dir() {
        return Err(WorkspaceError::InvalidPath {
            path: req.root.display().to_string(),
            reason: "--root must be an existing folder".into(),
        });
    }
    let mut given = Vec::with_capacity(req.paths.len());
    for raw in &req.paths {
        let raw = raw.trim();
        let bare = raw.strip_prefix('!').unwrap_or(raw);
        if !bare.is_empty() {
            crate::check_relative(bare).map_err(|reason| WorkspaceError::InvalidPath {
                path: raw.to_string(),
                reason,
            })?;
        }
        given.push(raw.to_string());
    }
    // Workspace paths are relative (checked above), so no home folder is needed to resolve them.
    let at = PathContext {
        cwd: req.root.clone(),
        env: Environment::default(),
    };
    let plan = archive::plan(&given, &[], &at)?;
    if plan.roots.is_empty() {
        return Err(WorkspaceError::NothingToPersist {
            paths: req.paths.join(", "),
            root: req.root.display().to_string(),
        });
    }
    let state_file = state::path(&req.state_dir, &req.project, &req.workflow, &req.job);
    let mut job_state = state::load(&state_file)?;
    let parents = job_state.parents();

    let layout = Layout::new(&req.project, &req.workflow);
    let now = Utc::now();
    let id = crate::new_layer_id(now);
    let encoding = req.encoding;
    let compression = req.format;
    let data_rel = layout.data(&id, entry::data_extension(encoding, compression));
    let mut warnings = plan.warnings.clone();
    let known = match encoding {
        Encoding::Chunked => known(store, &layout, &parents, &req.trust, &mut warnings).await,
        Encoding::Tar => Known::default(),
    };
    let packed = entry::pack(
        store,
        &data_rel,
        PackRequest {
            plan,
            encoding,
            compression,
            level: None,
            packs_dir: layout.packs_dir(),
            known,
        },
    )
    .await?;
    let mut listing = Listing::default();
    for (name, kind) in &packed.listing {
        listing.push(name, *kind);
    }
    listing.sort();

    let expires = now + chrono::Duration::seconds(req.ttl.as_secs() as i64);
    let manifest = Envelope {
        format: encoding.format_version(),
        kind: Kind::Layer,
        created: now,
        expires: Some(expires),
        data: packed.data.clone(),
        encoding: Some(encoding),
        signature: None,
        body: LayerBody {
            id: id.clone(),
            workflow: req.workflow.clone(),
            job: req.job.clone(),
            parents: parents.clone(),
            tree: packed.tree.clone(),
            entries: listing,
            ttl_seconds: req.ttl.as_secs(),
        },
    };
    if store
        .create(
            &layout.manifest(&id),
            req.trust.seal(manifest::encode(&manifest)),
        )
        .await?
        == Published::Exists
    {
        packed.discard(store).await;
        return Err(WorkspaceError::Exists { id });
    }

    job_state.persisted.push(id.clone());
    if let Err(e) = state::save(&state_file, &job_state) {
        warnings.push(format!(
            "{e}; a later persist in this job will not name layer {id} as its parent"
        ));
    }
    Ok(PersistOutcome {
        workflow: req.workflow,
        job: req.job,
        id,
        parents,
        written: packed.written(),
        created: now,
        expires,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// The chunks of the layers this job attached or persisted before (its parents), which a
/// chunked layer references instead of uploading again. A layer that cannot be read only
/// means more is uploaded.
async fn known(
    store: &Store,
    layout: &Layout,
    parents: &[String],
    trust: &Trust,
    warnings: &mut Vec<String>,
) -> Known {
    let mut known = Known::default();
    if parents.is_empty() {
        return known;
    }
    let layers = match crate::read_layers(store, layout, trust).await {
        Ok(l) => l,
        Err(e) => {
            warnings.push(format!(
                "could not read the run's layers to share their chunks ({e}); every chunk is uploaded"
            ));
            return known;
        }
    };
    for layer in layers
        .iter()
        .filter(|l| parents.contains(&l.body.id) && l.encoding == Some(Encoding::Chunked))
    {
        match chunks::read_index(store, &layer.data, &layer.body.tree.packs).await {
            Ok(index) => known.add(&index, &layer.body.tree.packs),
            Err(e) => warnings.push(format!(
                "could not read the chunks of layer {} ({e}); they are uploaded again",
                layer.body.id
            )),
        }
    }
    known
}
