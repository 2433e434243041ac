//! `ferry artifacts upload`: store files one object each, with their modes and digests.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use ferry_core::manifest::{self, DataRef, Envelope, Kind};
use ferry_core::paths::{self, PathContext};
use ferry_core::store::{Published, Store};
use ferry_core::transfer;
use ferry_core::trust::sign::Trust;
use ferry_core::units::Ttl;
use futures::StreamExt;
use serde::Serialize;

use crate::{ArtifactBody, ArtifactError, CONCURRENCY, Layout, SMALL, Target, is_plain};

/// What to upload.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub project: String,
    pub target: Target,
    /// Files and folders as given.
    pub paths: Vec<String>,
    /// Prefix of the stored paths: a folder's contents go below it, a file as `PREFIX/NAME`.
    pub destination: Option<String>,
    pub ttl: Ttl,
    /// Replace artifacts already stored at the same paths.
    pub overwrite: bool,
    /// Signs the manifests when this job holds a key.
    pub trust: Trust,
    pub at: PathContext,
}

/// One file stored.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    #[serde(with = "crate::octal")]
    pub mode: u32,
    /// An artifact was stored at this path before and has been replaced.
    pub replaced: bool,
    /// Its content was uploaded; `false` when the store held the same content already.
    pub stored: bool,
}

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct UploadOutcome {
    pub run: String,
    pub job: String,
    /// Every file stored, by stored path.
    pub artifacts: Vec<Uploaded>,
    pub files: u64,
    pub bytes: u64,
    /// Bytes of content uploaded: files whose content the store held already are not.
    pub uploaded_bytes: u64,
    pub expires: Option<DateTime<Utc>>,
    pub seconds: f64,
    /// Things skipped: folders with no files, links to nothing, special files.
    pub warnings: Vec<String>,
}

/// A file to upload and the path it is stored at.
#[derive(Debug)]
struct Source {
    stored: String,
    given: String,
    fs_path: PathBuf,
    mode: u32,
    /// Size when planned: whether it goes as one request or streamed.
    size: u64,
}

/// Stores every file of the request under its stored path in the run and job.
///
/// All paths are checked before anything is written: a path already stored for the run and
/// job fails the whole upload (naming every such path) unless `overwrite`. Each file's bytes
/// are written first and its manifest published last, with a conditional create, so an
/// artifact is there whole or not at all, and of two jobs racing for a path one wins.
/// A replaced artifact's old bytes are left for `ferry prune`, so a download already reading
/// them finishes.
pub async fn upload(store: &Store, req: UploadRequest) -> Result<UploadOutcome, ArtifactError> {
    let started = Instant::now();
    let layout = Layout::new(&req.project);
    let (paths_given, destination, at) =
        (req.paths.clone(), req.destination.clone(), req.at.clone());
    let (sources, warnings) =
        tokio::task::spawn_blocking(move || plan(&paths_given, destination.as_deref(), &at))
            .await
            .map_err(|_| ArtifactError::Internal("the thread planning the upload stopped"))??;

    let stored_names: HashSet<String> = store
        .list(&layout.target_dir(&req.target))
        .await?
        .into_iter()
        .map(|m| m.name().to_string())
        .collect();
    let existing: HashSet<String> = sources
        .iter()
        .filter(|s| stored_names.contains(&format!("{}.json", manifest::object_name(&s.stored))))
        .map(|s| s.stored.clone())
        .collect();
    if !existing.is_empty() && !req.overwrite {
        let mut paths: Vec<String> = existing.into_iter().collect();
        paths.sort();
        return Err(ArtifactError::AlreadyStored {
            run: req.target.run.clone(),
            job: req.target.job.clone(),
            paths,
        });
    }

    let created = Utc::now();
    let (expires, ttl_seconds) = match req.ttl {
        Ttl::After(d) => (
            Some(created + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)),
            Some(d.as_secs()),
        ),
        Ttl::Never => (None, None),
    };
    let publish = Publish {
        store,
        layout: &layout,
        target: &req.target,
        created,
        expires,
        ttl_seconds,
        overwrite: req.overwrite,
        trust: &req.trust,
    };
    let results: Vec<Result<Uploaded, ArtifactError>> = futures::stream::iter(sources)
        .map(|s| {
            let replaced = existing.contains(&s.stored);
            publish.one(s, replaced)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut artifacts = Vec::with_capacity(results.len());
    let mut lost_races = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(u) => artifacts.push(u),
            Err(ArtifactError::AlreadyStored { paths, .. }) => lost_races.extend(paths),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if !lost_races.is_empty() {
        lost_races.sort();
        return Err(ArtifactError::AlreadyStored {
            run: req.target.run,
            job: req.target.job,
            paths: lost_races,
        });
    }
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(UploadOutcome {
        run: req.target.run,
        job: req.target.job,
        files: artifacts.len() as u64,
        bytes: artifacts.iter().map(|a| a.size).sum(),
        uploaded_bytes: artifacts.iter().filter(|a| a.stored).map(|a| a.size).sum(),
        artifacts,
        expires,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// What every file of one upload shares.
struct Publish<'a> {
    store: &'a Store,
    layout: &'a Layout,
    target: &'a Target,
    created: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
    ttl_seconds: Option<u64>,
    overwrite: bool,
    trust: &'a Trust,
}

impl Publish<'_> {
    /// Writes one file into a new data object (one request when small, streamed otherwise),
    /// then publishes its manifest.
    async fn one(&self, src: Source, replaced: bool) -> Result<Uploaded, ArtifactError> {
        let fs_path = src.fs_path.clone();
        let shown = fs_path.display().to_string();
        let io = move |source| ArtifactError::Io {
            op: "read",
            path: shown,
            source,
        };
        // Small files are read whole once; larger ones are hashed first and read again only
        // when the store does not hold their content yet.
        let (small, size, sha256) = if src.size <= SMALL {
            let io = io.clone();
            let path = fs_path.clone();
            tokio::task::spawn_blocking(move || {
                let bytes = std::fs::read(&path).map_err(io)?;
                let sha256 = crate::sha256_hex(&bytes);
                let size = bytes.len() as u64;
                Ok::<_, ArtifactError>((Some(bytes), size, sha256))
            })
            .await
            .map_err(|_| ArtifactError::Internal("the thread reading a file stopped"))??
        } else {
            let io = io.clone();
            let path = fs_path.clone();
            tokio::task::spawn_blocking(move || {
                let (size, sha256) = crate::sha256_file(&path).map_err(io)?;
                Ok::<_, ArtifactError>((None, size, sha256))
            })
            .await
            .map_err(|_| ArtifactError::Internal("the thread reading a file stopped"))??
        };
        // Content is stored once per project, named by its SHA-256 (and the file's name, so
        // a link still downloads under it): the same file uploaded by many runs is one object.
        let data_rel = self.layout.blob(&sha256, &src.stored);
        let held = self
            .store
            .head(&data_rel)
            .await?
            .is_some_and(|info| info.size == size);
        let data = DataRef {
            path: data_rel.clone(),
            size,
            sha256: sha256.clone(),
        };
        if !held {
            match small {
                Some(bytes) => {
                    self.store.create(&data_rel, bytes.into()).await?;
                }
                None => {
                    let ((), written) = transfer::upload(self.store, &data_rel, move |out| {
                        let mut file = File::open(&fs_path).map_err(io.clone())?;
                        std::io::copy(&mut (&mut file).take(size), out).map_err(io)?;
                        Ok::<_, ArtifactError>(())
                    })
                    .await?;
                    if written != data {
                        // The file changed between hashing and uploading: what was written
                        // is not the content its name says.
                        self.store.delete(&data_rel).await?;
                        return Err(ArtifactError::Io {
                            op: "upload",
                            path: src.fs_path.display().to_string(),
                            source: std::io::Error::other("it changed while it was being uploaded"),
                        });
                    }
                }
            }
        }
        let manifest = Envelope {
            format: manifest::FORMAT_VERSION,
            kind: Kind::Artifact,
            created: self.created,
            expires: self.expires,
            data: data.clone(),
            encoding: None,
            signature: None,
            body: ArtifactBody {
                run: self.target.run.clone(),
                job: self.target.job.clone(),
                path: src.stored.clone(),
                mode: src.mode,
                ttl_seconds: self.ttl_seconds,
            },
        };
        let rel = self.layout.manifest(self.target, &src.stored);
        let bytes = self.trust.seal(manifest::encode(&manifest));
        if self.overwrite {
            self.store.overwrite(&rel, bytes).await?;
        } else if self.store.create(&rel, bytes).await? == Published::Exists {
            // The content stays: other artifacts may share it, and prune removes it once none do.
            return Err(ArtifactError::AlreadyStored {
                run: self.target.run.clone(),
                job: self.target.job.clone(),
                paths: vec![src.stored],
            });
        }
        Ok(Uploaded {
            path: src.stored,
            size: data.size,
            sha256: data.sha256,
            mode: src.mode,
            replaced,
            stored: !held,
        })
    }
}

/// Turns the given paths into files and their stored paths, by CircleCI's rules: a folder's
/// contents go below the destination (or below the folder's own name), a file becomes
/// `DESTINATION/NAME` (or keeps its own path).
fn plan(
    given: &[String],
    destination: Option<&str>,
    at: &PathContext,
) -> Result<(Vec<Source>, Vec<String>), ArtifactError> {
    let destination = destination.map(prefix_of).transpose()?;
    let mut by_stored: BTreeMap<String, Source> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut add = |src: Source| match by_stored.get(&src.stored) {
        Some(other) => Err(ArtifactError::InvalidPath {
            path: src.stored.clone(),
            reason: format!(
                "both {} and {} would be stored there; upload them with different --destination values",
                other.given, src.given
            ),
        }),
        None => {
            by_stored.insert(src.stored.clone(), src);
            Ok(())
        }
    };
    for raw in given.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        at.check(raw).map_err(|reason| ArtifactError::InvalidPath {
            path: raw.to_string(),
            reason,
        })?;
        let name = paths::normalize(raw);
        let fs_path = at.resolve(&name);
        let meta = std::fs::metadata(&fs_path).map_err(|_| ArtifactError::Missing {
            path: raw.to_string(),
            cwd: at.cwd.display().to_string(),
        })?;
        if meta.is_file() {
            let stored = match &destination {
                Some(d) => join(d, name.rsplit('/').next().unwrap_or(&name)),
                None => own_name(&name)?,
            };
            add(Source {
                stored,
                given: raw.to_string(),
                mode: meta.permissions().mode() & 0o7777,
                size: meta.len(),
                fs_path,
            })?;
            continue;
        }
        if !meta.is_dir() {
            return Err(ArtifactError::InvalidPath {
                path: raw.to_string(),
                reason: "it is neither a file nor a folder".into(),
            });
        }
        let prefix = match &destination {
            Some(d) => d.clone(),
            None => own_name(&name)?,
        };
        let mut found = false;
        for entry in walkdir::WalkDir::new(&fs_path)
            .follow_links(false)
            .min_depth(1)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| ArtifactError::Io {
                op: "read the folder",
                path: e.path().unwrap_or(&fs_path).display().to_string(),
                source: e.into(),
            })?;
            if entry.file_type().is_dir() {
                continue;
            }
            let shown = entry.path().display().to_string();
            // A link to a file is stored as that file's bytes; people want the content.
            let meta = match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_file() => m,
                Ok(_) => {
                    warnings.push(format!("{shown} is not a regular file; skipped"));
                    continue;
                }
                Err(_) => {
                    warnings.push(format!("{shown} is a link to nothing; skipped"));
                    continue;
                }
            };
            let rel = entry.path().strip_prefix(&fs_path).unwrap_or(entry.path());
            let rel = paths::to_slash(rel).map_err(|reason| ArtifactError::InvalidPath {
                path: shown.clone(),
                reason,
            })?;
            found = true;
            add(Source {
                stored: join(&prefix, &rel),
                given: shown,
                mode: meta.permissions().mode() & 0o7777,
                size: meta.len(),
                fs_path: entry.path().to_path_buf(),
            })?;
        }
        if !found {
            warnings.push(format!(
                "folder {raw:?} holds no files; nothing uploaded from it"
            ));
        }
    }
    Ok((by_stored.into_values().collect(), warnings))
}

/// The stored prefix `--destination` names (`""` for the top).
fn prefix_of(destination: &str) -> Result<String, ArtifactError> {
    let n = paths::normalize(destination.trim());
    let n = n.trim_start_matches('/');
    if n.is_empty() || n == "." {
        return Ok(String::new());
    }
    if !is_plain(n) {
        return Err(ArtifactError::InvalidPath {
            path: destination.to_string(),
            reason: "--destination must stay inside the run's artifacts (no `..`)".into(),
        });
    }
    Ok(n.to_string())
}

/// The stored path of a path given without `--destination`: itself, made relative.
fn own_name(name: &str) -> Result<String, ArtifactError> {
    let rel = if name == "~" {
        ""
    } else {
        name.strip_prefix("~/")
            .unwrap_or(name)
            .trim_start_matches('/')
    };
    let rel = if rel == "." { "" } else { rel };
    if !rel.is_empty() && !is_plain(rel) {
        return Err(ArtifactError::InvalidPath {
            path: name.to_string(),
            reason: "it leads out of the current folder; name it in the store with --destination"
                .into(),
        });
    }
    Ok(rel.to_string())
}

fn join(prefix: &str, rel: &str) -> String {
    if prefix.is_empty() {
        rel.to_string()
    } else {
        format!("{prefix}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_named_as_circleci_names_them() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("out/junit"))?;
        std::fs::write(dir.path().join("out/junit/r.txt"), "r")?;
        let at = PathContext {
            cwd: dir.path().to_path_buf(),
            env: ferry_core::env_vars::Environment::default(),
        };
        let stored = |given: &[&str], dest: Option<&str>| -> Result<Vec<String>, ArtifactError> {
            let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
            Ok(plan(&given, dest, &at)?
                .0
                .into_iter()
                .map(|s| s.stored)
                .collect())
        };
        assert_eq!(stored(&["out"], Some("D"))?, ["D/junit/r.txt"]);
        assert_eq!(stored(&["out/junit/r.txt"], Some("D"))?, ["D/r.txt"]);
        assert_eq!(stored(&["out/junit/r.txt"], None)?, ["out/junit/r.txt"]);
        assert_eq!(stored(&["./out/"], None)?, ["out/junit/r.txt"]);
        assert_eq!(stored(&["out"], Some("."))?, ["junit/r.txt"]);
        assert!(
            stored(&["out/junit/r.txt", "out/junit"], Some("D")).is_err(),
            "two sources for D/r.txt"
        );
        assert!(stored(&["nothing-here"], None).is_err());
        Ok(())
    }
}
