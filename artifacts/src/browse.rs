//! A project's artifacts for people browsing a store (`ferry ui`): its runs and jobs from one
//! listing, one job's files a folder at a time, and one file's record for previews and
//! downloads. Object names encode stored paths (`docs/FORMAT.md`, "Names"), so a folder's
//! contents are known from the listing and only the manifests of the files shown are read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ferry_core::manifest::{self, DataRef};
use ferry_core::paths;
use ferry_core::store::Store;
use futures::StreamExt;
use serde::Serialize;

use crate::{ARTIFACTS_DIR, ArtifactEntry, ArtifactError, ArtifactManifest, Layout, Target};

/// One job of a run as the listing shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobSummary {
    pub job: String,
    pub files: usize,
    /// When its newest manifest was written, by the store's clock.
    pub newest: DateTime<Utc>,
}

/// One run with artifacts.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run: String,
    pub jobs: Vec<JobSummary>,
    pub newest: DateTime<Utc>,
}

/// Every run of the project with artifacts, newest first, from one listing (no manifest read).
pub async fn runs(store: &Store, project: &str) -> Result<Vec<RunSummary>, ArtifactError> {
    let base = format!("{}/{ARTIFACTS_DIR}/runs/", manifest::project_dir(project));
    let mut by_run: BTreeMap<String, BTreeMap<String, JobSummary>> = BTreeMap::new();
    for info in store.list(&base).await? {
        let parts: Vec<&str> = info.path[base.len()..].split('/').collect();
        let [run, job, name] = parts.as_slice() else {
            continue;
        };
        if !name.ends_with(".json") {
            continue;
        }
        let decode = |s: &str| paths::decode_part(s).unwrap_or_else(|| s.to_string());
        let job = decode(job);
        let summary = by_run
            .entry(decode(run))
            .or_default()
            .entry(job.clone())
            .or_insert(JobSummary {
                job,
                files: 0,
                newest: info.modified,
            });
        summary.files += 1;
        summary.newest = summary.newest.max(info.modified);
    }
    let mut out: Vec<RunSummary> = by_run
        .into_iter()
        .map(|(run, jobs)| {
            let jobs: Vec<JobSummary> = jobs.into_values().collect();
            RunSummary {
                newest: jobs.iter().map(|j| j.newest).max().unwrap_or_default(),
                run,
                jobs,
            }
        })
        .collect();
    out.sort_by(|a, b| b.newest.cmp(&a.newest).then_with(|| a.run.cmp(&b.run)));
    Ok(out)
}

/// A subfolder of a folder.
#[derive(Debug, Clone, Serialize)]
pub struct SubFolder {
    pub name: String,
    /// Files anywhere below it.
    pub files: usize,
}

/// One folder of a job's stored paths.
#[derive(Debug, Clone, Serialize)]
pub struct Folder {
    /// The folder, `""` for the top; no trailing `/`.
    pub path: String,
    pub folders: Vec<SubFolder>,
    /// The page of files directly in it, by name.
    pub files: Vec<ArtifactEntry>,
    /// Files directly in it, all pages.
    pub total_files: usize,
    /// Files of the whole job.
    pub job_files: usize,
}

/// One listed manifest and the stored path its name gives.
struct Named {
    rel: String,
    /// `None` when the name was cut (a path over 160 characters): its manifest tells.
    path: Option<String>,
}

/// The folder `folder` of a run's and job's stored paths: its subfolders, and the page
/// `offset..offset + limit` of its files (by name), reading only those files' manifests.
pub async fn browse(
    store: &Store,
    project: &str,
    target: &Target,
    folder: &str,
    offset: usize,
    limit: usize,
) -> Result<Folder, ArtifactError> {
    let layout = Layout::new(project);
    let folder = folder.trim_matches('/').to_string();
    let mut named: Vec<Named> = store
        .list(&layout.target_dir(target))
        .await?
        .into_iter()
        .filter(|i| i.path.ends_with(".json"))
        .map(|i| {
            let name = i.name().trim_end_matches(".json");
            let readable = name.rsplit_once('.').map_or(name, |(r, _)| r);
            // A name cut short may end up to two characters early (never inside an `=XX`).
            let whole = readable.len() < manifest::NAME_CHARS - 2;
            Named {
                path: whole.then(|| paths::decode_part(readable)).flatten(),
                rel: i.path,
            }
        })
        .collect();
    // Cut names are rare (paths over 160 characters): their manifests say where they are.
    let cut: Vec<String> = named
        .iter()
        .filter(|n| n.path.is_none())
        .map(|n| n.rel.clone())
        .collect();
    if !cut.is_empty() {
        let found = read_manifests(store, cut).await?;
        for n in named.iter_mut().filter(|n| n.path.is_none()) {
            n.path = found
                .iter()
                .find(|(rel, _)| *rel == n.rel)
                .map(|(_, m)| m.body.path.clone());
        }
    }
    let job_files = named.iter().filter(|n| n.path.is_some()).count();
    let below = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let mut folders: BTreeMap<String, usize> = BTreeMap::new();
    let mut here: Vec<(String, String)> = Vec::new();
    for n in named {
        let Some(p) = n.path else { continue };
        let Some(rest) = p.strip_prefix(&below) else {
            continue;
        };
        match rest.split_once('/') {
            Some((sub, _)) => *folders.entry(sub.to_string()).or_insert(0) += 1,
            None => here.push((p.clone(), n.rel)),
        }
    }
    here.sort();
    let total_files = here.len();
    let page: Vec<String> = here
        .into_iter()
        .skip(offset)
        .take(limit.max(1))
        .map(|(_, rel)| rel)
        .collect();
    let mut files: Vec<ArtifactEntry> = read_manifests(store, page)
        .await?
        .into_iter()
        .map(|(_, m)| ArtifactEntry::from(m))
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Folder {
        path: folder,
        folders: folders
            .into_iter()
            .map(|(name, files)| SubFolder { name, files })
            .collect(),
        files,
        total_files,
        job_files,
    })
}

/// The manifests at `rels` that exist and hold plain paths, with their object paths.
async fn read_manifests(
    store: &Store,
    rels: Vec<String>,
) -> Result<Vec<(String, ArtifactManifest)>, ArtifactError> {
    let read: Vec<Result<Option<(String, ArtifactManifest)>, ArtifactError>> =
        futures::stream::iter(rels)
            .map(|rel| async move {
                let Some(bytes) = store.read(&rel).await? else {
                    return Ok(None);
                };
                let m: ArtifactManifest = manifest::decode(&bytes, &rel)?;
                Ok(crate::is_plain(&m.body.path).then_some((rel, m)))
            })
            .buffered(if store.is_remote() {
                crate::REMOTE_MANIFEST_READS
            } else {
                crate::CONCURRENCY
            })
            .collect()
            .await;
    read.into_iter().filter_map(Result::transpose).collect()
}

/// One stored file: what `ls` shows, and its data object.
#[derive(Debug, Clone)]
pub struct Stored {
    pub entry: ArtifactEntry,
    pub data: DataRef,
    /// Signed by this key, as recorded (not checked).
    pub signed_by: Option<String>,
}

/// The record of the artifact stored at `path` for the run and job; `None` when there is
/// none. Reads its one manifest.
pub async fn find(
    store: &Store,
    project: &str,
    target: &Target,
    path: &str,
) -> Result<Option<Stored>, ArtifactError> {
    let rel = Layout::new(project).manifest(target, path);
    let Some(bytes) = store.read(&rel).await? else {
        return Ok(None);
    };
    let m: ArtifactManifest = manifest::decode(&bytes, &rel)?;
    if m.body.path != path || !crate::is_plain(&m.body.path) {
        return Ok(None);
    }
    Ok(Some(Stored {
        data: m.data.clone(),
        signed_by: m.signature.as_ref().map(|s| s.key.clone()),
        entry: ArtifactEntry::from(m),
    }))
}
