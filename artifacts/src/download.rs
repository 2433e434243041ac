//! `ferry artifacts download`: bring stored files back with their modes, checking every digest.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_core::manifest::DataRef;
use ferry_core::store::Store;
use ferry_core::{glob, manifest, paths, transfer, unpack};
use futures::StreamExt;
use serde::Serialize;

use crate::{ArtifactError, ArtifactManifest, CONCURRENCY, Layout, SMALL, Target};

/// What to download.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    pub project: String,
    pub target: Target,
    /// Only stored paths matching this glob (`**` crosses folders); all when absent.
    pub pattern: Option<String>,
    /// Folder the stored paths are written below. Folders below it are made without following
    /// symlinks; files lose setuid and setgid bits.
    pub to: PathBuf,
    /// Which signatures to require.
    pub trust: ferry_core::trust::sign::Trust,
}

/// What a download did.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadOutcome {
    pub run: String,
    pub job: String,
    pub to: String,
    /// Stored paths written.
    pub artifacts: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Writes every matching artifact of the run and job below `to`, at its stored path.
///
/// Each file is written under a temporary name, checked against the size and SHA-256 its
/// manifest records, given its recorded mode and only then renamed into place: a file that
/// fails the check is never left in the target. Other files still arrive; the first failure
/// (an integrity failure before any other) is returned.
pub async fn download(
    store: &Store,
    req: DownloadRequest,
) -> Result<DownloadOutcome, ArtifactError> {
    let started = Instant::now();
    let layout = Layout::new(&req.project);
    let wanted = Wanted::new(req.pattern.as_deref())?;
    // A pattern that is a stored path, whatever characters it holds, is that file: one read.
    let exactly = match req.pattern.as_deref().map(paths::normalize) {
        Some(p) if p != "." => exact(store, &layout, &req, &p).await?,
        _ => None,
    };
    let chosen: Vec<ArtifactManifest> = match (exactly, wanted.below()) {
        (Some(m), _) => vec![m],
        // A folder: only the names below it are listed and read.
        (None, Some(path)) => {
            let below = format!("{path}/");
            crate::read_below(store, &layout, &req.target, &req.trust, Some(&below)).await?
        }
        (None, None) => crate::read_below(store, &layout, &req.target, &req.trust, wanted.base())
            .await?
            .into_iter()
            .filter(|m| wanted.matches(&m.body.path))
            .collect(),
    };
    if chosen.is_empty() {
        return Err(ArtifactError::NoMatch {
            run: req.target.run,
            job: req.target.job,
            pattern: req.pattern,
        });
    }
    // Every folder is made first, one part at a time and never through a symlink (a link
    // where a folder goes is replaced by the folder), so no file lands outside `to`.
    let folders: Vec<String> = chosen
        .iter()
        .filter_map(|m| m.body.path.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let to = req.to.clone();
    tokio::task::spawn_blocking(move || {
        unpack::make_folders(&to, folders.iter().map(String::as_str))
    })
    .await
    .map_err(|_| ArtifactError::Io {
        op: "create the folders of",
        path: req.to.display().to_string(),
        source: std::io::Error::other("the thread making folders stopped"),
    })?
    .map_err(|e| ArtifactError::Folder {
        to: req.to.display().to_string(),
        source: Box::new(e),
    })?;
    let results: Vec<Result<(String, u64), ArtifactError>> = futures::stream::iter(chosen)
        .map(|m| fetch(store, m, &req.to))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut written = Vec::with_capacity(results.len());
    let mut failure: Option<ArtifactError> = None;
    for r in results {
        match r {
            Ok(w) => written.push(w),
            Err(e) => {
                let worse = matches!(e, ArtifactError::Digest { .. })
                    && !matches!(failure, Some(ArtifactError::Digest { .. }));
                if failure.is_none() || worse {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    written.sort();
    Ok(DownloadOutcome {
        run: req.target.run,
        job: req.target.job,
        to: req.to.display().to_string(),
        files: written.len() as u64,
        bytes: written.iter().map(|(_, n)| n).sum(),
        artifacts: written.into_iter().map(|(p, _)| p).collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Which stored paths a download takes: all, those matching a glob, or (a pattern without
/// glob syntax) that path and everything below it, so `download reports` takes a folder.
enum Wanted {
    All,
    Glob(globset::GlobMatcher, Option<String>),
    Below(String),
}

impl Wanted {
    /// The folder a pattern without glob syntax names.
    fn below(&self) -> Option<&str> {
        match self {
            Self::Below(p) if p != "." => Some(p),
            _ => None,
        }
    }

    /// What every matching stored path starts with, when a pattern says (a glob's folder).
    fn base(&self) -> Option<&str> {
        match self {
            Self::Glob(_, base) => base.as_deref(),
            _ => None,
        }
    }

    fn new(pattern: Option<&str>) -> Result<Self, ArtifactError> {
        let Some(p) = pattern else {
            return Ok(Self::All);
        };
        let p = paths::normalize(p);
        Ok(if glob::is_glob(&p) {
            let base = glob::literal_base(&p);
            let base = (base != ".").then(|| format!("{base}/"));
            Self::Glob(glob::matcher(&p)?, base)
        } else {
            Self::Below(p)
        })
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::All => true,
            Self::Glob(g, _) => g.is_match(path),
            Self::Below(p) => p == "." || paths::is_within(path, p),
        }
    }
}

/// The artifact stored at exactly `path`, read alone.
async fn exact(
    store: &Store,
    layout: &Layout,
    req: &DownloadRequest,
    path: &str,
) -> Result<Option<ArtifactManifest>, ArtifactError> {
    let rel = layout.manifest(&req.target, path);
    let Some(bytes) = store.read(&rel).await? else {
        return Ok(None);
    };
    if let Err(why) = req.trust.check(&bytes) {
        return Err(ArtifactError::Untrusted {
            manifest: rel,
            why: why.to_string(),
        });
    }
    let m: ArtifactManifest = manifest::decode(&bytes, &rel)?;
    if m.body.path != path {
        return Ok(None);
    }
    if !crate::is_plain(&m.body.path) {
        return Err(ArtifactError::UnsafePath {
            manifest: rel,
            path: m.body.path,
        });
    }
    Ok(Some(m))
}

/// Brings one artifact to a temporary file beside its destination (one request when small,
/// streamed otherwise), checks it and renames it into place.
async fn fetch(
    store: &Store,
    m: ArtifactManifest,
    to: &Path,
) -> Result<(String, u64), ArtifactError> {
    let dest = to.join(&m.body.path);
    let parent = dest.parent().unwrap_or(to).to_path_buf();
    let file_name = m.body.path.rsplit('/').next().unwrap_or("artifact");
    let landing = Landing {
        tmp: parent.join(format!(".{file_name}.ferry-{}.part", manifest::new_id())),
        dest,
        path: m.body.path.clone(),
        mode: unpack::restored_mode(m.body.mode),
        expected: m.data.clone(),
    };
    let size = if m.data.size <= SMALL {
        let bytes = store
            .read(&m.data.path)
            .await?
            .ok_or_else(|| ArtifactError::DataMissing {
                path: m.body.path.clone(),
                object: m.data.path.clone(),
            })?;
        tokio::task::spawn_blocking(move || {
            landing.land(|file| {
                file.write_all(&bytes)?;
                Ok((bytes.len() as u64, crate::sha256_hex(&bytes)))
            })
        })
        .await
        .map_err(|_| ArtifactError::Internal("the thread writing a file stopped"))??
    } else {
        transfer::download(store, &m.data.path, m.data.size, move |mut reader| {
            landing.land(|file| {
                std::io::copy(&mut reader, file)?;
                reader.finish()
            })
        })
        .await?
    };
    Ok((m.body.path, size))
}

/// Where one artifact lands: a temporary file beside its destination, renamed into place only
/// once its size and SHA-256 match the manifest.
struct Landing {
    /// The stored path, for messages.
    path: String,
    dest: PathBuf,
    tmp: PathBuf,
    mode: u32,
    expected: DataRef,
}

impl Landing {
    /// Creates the temporary file, lets `fill` write it (returning the size and SHA-256 of what
    /// it wrote), checks those, sets the mode and renames the file into place. On any failure
    /// the temporary file is removed and the destination is left as it was.
    fn land(
        self,
        fill: impl FnOnce(&mut File) -> std::io::Result<(u64, String)>,
    ) -> Result<u64, ArtifactError> {
        let result = self.try_land(fill);
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }

    fn try_land(
        &self,
        fill: impl FnOnce(&mut File) -> std::io::Result<(u64, String)>,
    ) -> Result<u64, ArtifactError> {
        let io = |op| {
            move |source| ArtifactError::Io {
                op,
                path: self.dest.display().to_string(),
                source,
            }
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.tmp)
            .map_err(io("create a temporary file for"))?;
        let (size, sha256) = fill(&mut file).map_err(io("download"))?;
        drop(file);
        if size != self.expected.size || sha256 != self.expected.sha256 {
            return Err(ArtifactError::Digest {
                path: self.path.clone(),
                dest: self.dest.display().to_string(),
                expected: self.expected.sha256.clone(),
                actual: sha256,
                expected_size: self.expected.size,
                actual_size: size,
            });
        }
        fs::set_permissions(&self.tmp, fs::Permissions::from_mode(self.mode))
            .map_err(io("set the mode of"))?;
        fs::rename(&self.tmp, &self.dest).map_err(io("move into place"))?;
        Ok(size)
    }
}
