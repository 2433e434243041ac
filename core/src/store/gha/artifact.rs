//! The workspaces' and artifacts' half of `gha://`: each object is one artifact of the current
//! workflow run, so it shows on the run's page and downloads with actions/download-artifact.
//!
//! An object's artifact name is its path with every `/` shown as a space
//! (`ferry-v1 acme=2Fapp workspaces 1234 layers 20260102T030405.000001Z-71cd855e19e9.json`):
//! readable, within GitHub's name rules (no `/`, `\`, `:`, `"`, `<`, `>`, `|`, `*`, `?`), and
//! turned back into the path when listed. Objects are uploaded unzipped, with their own
//! content type, so a download gets the object's bytes under that name. Names are unique in a
//! run (the service's 409 makes creates first-write-wins); a replaced artifact is deleted and
//! uploaded again.
//!
//! The artifact service sees the current run only. With `GITHUB_TOKEN`, reads of what is not
//! there go to the REST API: a folder of another run (`.../artifacts/runs/<run>/...`,
//! `.../workspaces/<run>/...`, where `<run>` is a `GITHUB_RUN_ID` other than this one) is
//! listed from that run, and any other object is looked up by name in the repository.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use super::blob::BlobError;
use super::twirp::{ARTIFACT_SERVICE, CallError};
use super::writer::{BlockWriter, Commit};
use super::{Shared, call_error, is_format_folder};
use crate::store::{BackendError, ObjectInfo, ObjectWriter, Published, PutMode};

/// The upload format of `@actions/artifact` 6, which knows unzipped artifacts.
const ARTIFACT_VERSION: u32 = 7;
/// GitHub's longest artifact name.
const MAX_NAME: usize = 256;
/// Characters GitHub's artifact client refuses in names.
const FORBIDDEN: &[char] = &['"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/'];

/// Where an artifact lives: this run (named by the job that uploaded it, which the service
/// wants told), or another run, reached by its id through the REST API.
#[derive(Debug, Clone)]
enum Place {
    Here { job: String },
    Elsewhere { id: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    place: Place,
    size: u64,
    created: chrono::DateTime<chrono::Utc>,
}

#[derive(Serialize)]
struct Ids<'a> {
    workflow_run_backend_id: &'a str,
    workflow_job_run_backend_id: &'a str,
}

#[derive(Serialize)]
struct CreateRequest<'a> {
    #[serde(flatten)]
    ids: Ids<'a>,
    name: &'a str,
    version: u32,
    mime_type: &'a str,
}

#[derive(Deserialize)]
struct CreateResponse {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    signed_upload_url: String,
}

#[derive(Serialize)]
struct FinalizeRequest<'a> {
    #[serde(flatten)]
    ids: Ids<'a>,
    name: &'a str,
    size: String,
    hash: String,
}

#[derive(Deserialize)]
struct FinalizeResponse {
    #[serde(default)]
    ok: bool,
}

#[derive(Serialize)]
struct ListRequest<'a> {
    #[serde(flatten)]
    ids: Ids<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_filter: Option<&'a str>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    artifacts: Vec<Listed>,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    workflow_job_run_backend_id: String,
    name: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Serialize)]
struct NameRequest<'a> {
    #[serde(flatten)]
    ids: Ids<'a>,
    name: &'a str,
}

#[derive(Deserialize)]
struct SignedUrlResponse {
    #[serde(default)]
    signed_url: String,
}

/// The content type an object is uploaded with: never zip, so every download of it is the
/// object itself.
fn content_type(full: &str) -> &'static str {
    if full.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// The artifact name of the object at `full`.
pub(crate) fn name_of(full: &str) -> Result<String, BackendError> {
    let name = full.replace('/', " ");
    if name.len() > MAX_NAME {
        return Err(BackendError::Other(
            format!(
                "{full} is too long for a name in GitHub's artifact service ({} of {MAX_NAME} \
                 characters); use shorter paths, a shorter job name or a shorter store prefix",
                name.len()
            )
            .into(),
        ));
    }
    if let Some(c) = name.chars().find(|c| FORBIDDEN.contains(c)) {
        return Err(BackendError::Other(
            format!("{full} holds {c:?}, which GitHub's artifact names cannot").into(),
        ));
    }
    Ok(name)
}

/// The path of a ferry artifact named `name` (the inverse of [`name_of`]).
fn full_of(name: &str) -> String {
    name.replace(' ', "/")
}

/// The run of a folder that names one (`<format>/<project>/artifacts/runs/<run>/...` or
/// `<format>/<project>/workspaces/<run>/...`), when it is a run id other than this one.
fn other_run(full: &str, this_run: Option<u64>) -> Option<u64> {
    let segments: Vec<&str> = full.split('/').collect();
    let i = segments.iter().position(|s| is_format_folder(s))?;
    let run = match segments.get(i + 2..)? {
        ["artifacts", "runs", run, ..] => run,
        ["workspaces", run, ..] => run,
        _ => return None,
    };
    let run: u64 = run.parse().ok()?;
    (Some(run) != this_run && this_run.is_some()).then_some(run)
}

fn parse_time(text: Option<&str>) -> chrono::DateTime<chrono::Utc> {
    text.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc))
}

fn blob_error(e: BlobError, doing: &str) -> BackendError {
    match e.status() {
        Some(404) => BackendError::NotFound,
        Some(403) => BackendError::Other(
            format!(
                "{e} while {doing}: the signed URL GitHub's artifact service handed out was \
                 refused (it may have expired)"
            )
            .into(),
        ),
        _ => BackendError::Other(format!("{e} while {doing}").into()),
    }
}

pub(crate) struct ArtifactService {
    shared: Arc<Shared>,
    prefix: String,
    /// What this run learnt of each name from the service's listings.
    entries: Mutex<HashMap<String, Entry>>,
}

impl ArtifactService {
    pub(crate) fn new(shared: Arc<Shared>, prefix: String) -> Self {
        Self {
            shared,
            prefix,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn ids(&self) -> Ids<'_> {
        Ids {
            workflow_run_backend_id: &self.shared.claims.run_backend_id,
            workflow_job_run_backend_id: &self.shared.claims.job_backend_id,
        }
    }

    fn ids_of<'a>(&'a self, job: &'a str) -> Ids<'a> {
        Ids {
            workflow_run_backend_id: &self.shared.claims.run_backend_id,
            workflow_job_run_backend_id: job,
        }
    }

    fn rel(&self, full: &str) -> Option<String> {
        if self.prefix.is_empty() {
            Some(full.to_string())
        } else {
            full.strip_prefix(&format!("{}/", self.prefix))
                .map(str::to_string)
        }
    }

    fn remember(&self, name: &str, entry: Entry) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(name.to_string(), entry);
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(name);
        }
    }

    /// This run's artifacts (named `name` only, when given), remembered for later reads.
    async fn list_here(&self, name: Option<&str>) -> Result<Vec<(String, Entry)>, BackendError> {
        let answer: ListResponse = self
            .shared
            .twirp
            .call(
                ARTIFACT_SERVICE,
                "ListArtifacts",
                &ListRequest {
                    ids: self.ids(),
                    name_filter: name,
                },
            )
            .await
            .map_err(call_error)?;
        let found: Vec<(String, Entry)> = answer
            .artifacts
            .into_iter()
            .map(|a| {
                let entry = Entry {
                    place: Place::Here {
                        job: a.workflow_job_run_backend_id,
                    },
                    size: a.size.parse().unwrap_or(0),
                    created: parse_time(a.created_at.as_deref()),
                };
                (a.name, entry)
            })
            .collect();
        for (n, e) in &found {
            self.remember(n, e.clone());
        }
        Ok(found)
    }

    /// Where the artifact `name` of the object at `full` is: this run, else (with a token)
    /// another run or anywhere in the repository.
    async fn entry(&self, full: &str, name: &str) -> Result<Option<Entry>, BackendError> {
        if let Some(e) = self.entries.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(Some(e));
        }
        if let Some((_, e)) = self.list_here(Some(name)).await?.into_iter().next() {
            return Ok(Some(e));
        }
        let Some(rest) = &self.shared.rest else {
            return Ok(None);
        };
        let found = match other_run(full, self.shared.run_id) {
            Some(run) => rest.run_artifacts(run).await,
            None => rest.artifacts_named(name).await,
        }
        .map_err(BackendError::other)?;
        let mut hit = None;
        for a in found {
            let entry = Entry {
                place: Place::Elsewhere {
                    id: a.id.into_inner(),
                },
                size: a.size_in_bytes as u64,
                created: a.created_at,
            };
            if a.name == name && hit.is_none() {
                hit = Some(entry.clone());
            }
            self.remember(&a.name, entry);
        }
        Ok(hit)
    }

    /// A signed URL to read the artifact at `entry`.
    async fn download_url(&self, name: &str, entry: &Entry) -> Result<String, BackendError> {
        let url = match &entry.place {
            Place::Here { job } => {
                let answer: SignedUrlResponse = match self
                    .shared
                    .twirp
                    .call(
                        ARTIFACT_SERVICE,
                        "GetSignedArtifactURL",
                        &NameRequest {
                            ids: self.ids_of(job),
                            name,
                        },
                    )
                    .await
                {
                    Ok(a) => a,
                    Err(CallError::Service { status: 404, .. }) => {
                        self.forget(name);
                        return Err(BackendError::NotFound);
                    }
                    Err(e) => return Err(call_error(e)),
                };
                answer.signed_url
            }
            Place::Elsewhere { id } => self
                .shared
                .rest("read other runs' artifacts")?
                .artifact_location(*id)
                .await
                .map_err(|e| match e.status() {
                    Some(404 | 410) => BackendError::NotFound,
                    _ => BackendError::other(e),
                })?,
        };
        self.shared.mask_url(&url);
        Ok(url)
    }

    /// Runs `read` on a fresh signed URL of the object at `full`; `None` when absent.
    async fn read<T, F, Fut>(&self, full: &str, read: F) -> Result<Option<T>, BackendError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, BlobError>>,
    {
        let name = name_of(full)?;
        let Some(entry) = self.entry(full, &name).await? else {
            return Ok(None);
        };
        let url = match self.download_url(&name, &entry).await {
            Ok(u) => u,
            Err(BackendError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        match read(url).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.status() == Some(404) => {
                self.forget(&name);
                Ok(None)
            }
            Err(e) => Err(blob_error(e, "downloading")),
        }
    }

    async fn create(&self, name: &str, mime: &str) -> Result<String, BackendError> {
        let answer: CreateResponse = match self
            .shared
            .twirp
            .call(
                ARTIFACT_SERVICE,
                "CreateArtifact",
                &CreateRequest {
                    ids: self.ids(),
                    name,
                    version: ARTIFACT_VERSION,
                    mime_type: mime,
                },
            )
            .await
        {
            Ok(a) => a,
            Err(CallError::Service { status: 409, .. }) => return Err(BackendError::Exists),
            Err(CallError::Service {
                status: 400, msg, ..
            }) if msg.contains("limit") => {
                return Err(BackendError::Other(
                    format!(
                        "GitHub's artifact service refused another artifact ({msg}): a job may \
                         upload at most 500, and on gha:// each file ferry stores as an \
                         artifact counts twice (its bytes and its manifest)"
                    )
                    .into(),
                ));
            }
            Err(e) => return Err(call_error(e)),
        };
        if !answer.ok || answer.signed_upload_url.is_empty() {
            return Err(BackendError::Other(
                format!("GitHub's artifact service would not create {name:?}").into(),
            ));
        }
        self.shared.mask_url(&answer.signed_upload_url);
        Ok(answer.signed_upload_url)
    }

    pub(crate) async fn put(
        &self,
        full: &str,
        bytes: Bytes,
        mode: PutMode,
    ) -> Result<Published, BackendError> {
        let name = name_of(full)?;
        let mime = content_type(full);
        let url = match self.create(&name, mime).await {
            Ok(u) => u,
            Err(BackendError::Exists) if mode == PutMode::Create => return Ok(Published::Exists),
            Err(BackendError::Exists) => {
                self.delete(full).await?;
                match self.create(&name, mime).await {
                    Ok(u) => u,
                    Err(BackendError::Exists) => {
                        return Err(BackendError::Other(
                            format!("{name:?} was uploaded again by another job while this one replaced it").into(),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let size = bytes.len() as u64;
        let sha256 = {
            use sha2::Digest;
            format!("{:x}", sha2::Sha256::digest(&bytes))
        };
        self.shared
            .blobs
            .put_blob(&url, bytes, mime)
            .await
            .map_err(|e| blob_error(e, "uploading"))?;
        let commit = ArtifactCommit {
            shared: Arc::clone(&self.shared),
            name: name.clone(),
            url,
        };
        commit.publish(size, sha256).await?;
        self.forget(&name);
        Ok(Published::Created)
    }

    pub(crate) async fn writer(&self, full: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        let name = name_of(full)?;
        let mime = content_type(full);
        let url = self.create(&name, mime).await?;
        self.forget(&name);
        Ok(Box::new(BlockWriter::new(
            Arc::clone(&self.shared),
            url.clone(),
            mime,
            Box::new(ArtifactCommit {
                shared: Arc::clone(&self.shared),
                name,
                url,
            }),
        )))
    }

    pub(crate) async fn get(&self, full: &str) -> Result<Option<Bytes>, BackendError> {
        let blobs = &self.shared.blobs;
        self.read(full, |url| async move {
            blobs
                .get(&url)
                .await?
                .bytes()
                .await
                .map_err(|e| BlobError::Transport(e.without_url().to_string()))
        })
        .await
    }

    pub(crate) async fn get_stream(
        &self,
        full: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, BackendError> {
        let blobs = &self.shared.blobs;
        let resp = self
            .read(full, |url| async move { blobs.get(&url).await })
            .await?
            .ok_or(BackendError::NotFound)?;
        Ok(super::blob::body_stream(resp))
    }

    pub(crate) async fn get_range(
        &self,
        full: &str,
        range: Range<u64>,
    ) -> Result<Bytes, BackendError> {
        let blobs = &self.shared.blobs;
        self.read(full, |url| {
            let range = range.clone();
            async move { blobs.get_range(&url, range).await }
        })
        .await?
        .ok_or(BackendError::NotFound)
    }

    pub(crate) async fn head(&self, full: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let name = name_of(full)?;
        let Some(rel) = self.rel(full) else {
            return Ok(None);
        };
        Ok(self.entry(full, &name).await?.map(|e| ObjectInfo {
            path: rel,
            size: e.size,
            modified: e.created,
        }))
    }

    pub(crate) async fn sign(&self, full: &str) -> Result<String, BackendError> {
        let name = name_of(full)?;
        let entry = self
            .entry(full, &name)
            .await?
            .ok_or(BackendError::NotFound)?;
        self.download_url(&name, &entry).await
    }

    /// The objects below `full_prefix`: this run's artifacts, and another run's when the
    /// prefix names one (with a token).
    pub(crate) async fn list(&self, full_prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut found: HashMap<String, Entry> = self.list_here(None).await?.into_iter().collect();
        if let (Some(run), Some(rest)) = (
            other_run(full_prefix, self.shared.run_id),
            &self.shared.rest,
        ) {
            for a in rest.run_artifacts(run).await.map_err(BackendError::other)? {
                let entry = Entry {
                    place: Place::Elsewhere {
                        id: a.id.into_inner(),
                    },
                    size: a.size_in_bytes as u64,
                    created: a.created_at,
                };
                self.remember(&a.name, entry.clone());
                found.entry(a.name).or_insert(entry);
            }
        }
        let mut out: Vec<ObjectInfo> = found
            .into_iter()
            .filter_map(|(name, e)| {
                let full = full_of(&name);
                if !full.starts_with(full_prefix) {
                    return None;
                }
                Some(ObjectInfo {
                    path: self.rel(&full)?,
                    size: e.size,
                    modified: e.created,
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    pub(crate) async fn delete(&self, full: &str) -> Result<(), BackendError> {
        let name = name_of(full)?;
        let job = match self.entry(full, &name).await? {
            None => return Ok(()),
            Some(Entry {
                place: Place::Here { job },
                ..
            }) => job,
            Some(_) => return Err(BackendError::Unsupported("delete another run's artifacts")),
        };
        self.forget(&name);
        match self
            .shared
            .twirp
            .call::<_, serde_json::Value>(
                ARTIFACT_SERVICE,
                "DeleteArtifact",
                &NameRequest {
                    ids: self.ids_of(&job),
                    name: &name,
                },
            )
            .await
        {
            Ok(_) | Err(CallError::Service { status: 404, .. }) => Ok(()),
            Err(e) => Err(call_error(e)),
        }
    }
}

/// Publishing an artifact once its blob is committed, or giving its name back.
struct ArtifactCommit {
    shared: Arc<Shared>,
    name: String,
    url: String,
}

impl ArtifactCommit {
    fn ids(&self) -> Ids<'_> {
        Ids {
            workflow_run_backend_id: &self.shared.claims.run_backend_id,
            workflow_job_run_backend_id: &self.shared.claims.job_backend_id,
        }
    }
}

#[async_trait::async_trait]
impl Commit for ArtifactCommit {
    async fn publish(&self, size: u64, sha256: String) -> Result<(), BackendError> {
        let answer: FinalizeResponse = self
            .shared
            .twirp
            .call(
                ARTIFACT_SERVICE,
                "FinalizeArtifact",
                &FinalizeRequest {
                    ids: self.ids(),
                    name: &self.name,
                    size: size.to_string(),
                    hash: format!("sha256:{sha256}"),
                },
            )
            .await
            .map_err(call_error)?;
        if !answer.ok {
            return Err(BackendError::Other(
                format!(
                    "GitHub's artifact service would not publish {:?}",
                    self.name
                )
                .into(),
            ));
        }
        Ok(())
    }

    /// An artifact still uploading blocks its name for good: it is published empty and then
    /// deleted, which frees the name.
    async fn abandon(&self) {
        if self
            .shared
            .blobs
            .put_blob(&self.url, Bytes::new(), "application/octet-stream")
            .await
            .is_err()
        {
            return;
        }
        if self
            .publish(
                0,
                format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b"")),
            )
            .await
            .is_err()
        {
            return;
        }
        let _ = self
            .shared
            .twirp
            .call::<_, serde_json::Value>(
                ARTIFACT_SERVICE,
                "DeleteArtifact",
                &NameRequest {
                    ids: self.ids(),
                    name: &self.name,
                },
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_paths_with_spaces_and_back() {
        let full =
            "ferry-v1/acme=2Fapp/workspaces/1234/layers/20260102T030405.000001Z-71cd855e19e9.json";
        let name = name_of(full).expect("a name");
        assert_eq!(
            name,
            "ferry-v1 acme=2Fapp workspaces 1234 layers 20260102T030405.000001Z-71cd855e19e9.json"
        );
        assert_eq!(full_of(&name), full);
        assert!(name_of(&"a/".repeat(200)).is_err(), "too long");
        assert!(name_of("a/b:c").is_err(), "a forbidden character");
    }

    #[test]
    fn folders_of_other_runs_are_recognised() {
        let here = Some(1000);
        assert_eq!(
            other_run("ferry-v1/p/artifacts/runs/77/build/", here),
            Some(77)
        );
        assert_eq!(
            other_run("x/ferry-v1/p/workspaces/77/layers/", here),
            Some(77)
        );
        assert_eq!(other_run("ferry-v1/p/workspaces/1000/layers/", here), None);
        assert_eq!(
            other_run("ferry-v1/p/workspaces/wf-label/layers/", here),
            None
        );
        assert_eq!(other_run("ferry-v1/p/artifacts/data/abc/f", here), None);
        assert_eq!(other_run("ferry-v1/p/workspaces/77/layers/", None), None);
    }
}
