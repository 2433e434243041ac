//! The caches' half of `gha://`: each object is an entry of GitHub's cache service.
//!
//! An object at path `P` is the entry keyed `P#<generation>` under ferry's own version (so
//! actions/cache never restores ferry's entries, nor ferry its). The service never replaces
//! an entry, and a lookup gives the newest entry whose key starts with what was asked, so:
//! - a create is generation `0`, and the service's 409 for a key taken (even one still
//!   uploading) is "exists": first write wins;
//! - an overwrite (`cache save --force`, a used-up key saved again) is a new generation
//!   named by its time, which every later lookup of `P#` finds first; the older generation
//!   is never found again and GitHub evicts it once a week has passed unused;
//! - a read asks for `P#` (and the same as its first restore key, which GitHub's service may
//!   be the one to match); a prefix lookup asks for `dir/name-prefix` and gives the one
//!   newest object, which is what a prefix restore wants.
//!
//! Listing and deleting need the REST API (`GITHUB_TOKEN`): listings show the branches this
//! job can read, own branch first (the ones its lookups search), deletes reach only the
//! job's own branch, so `ferry prune` and `cache rm` on one branch never touch another's.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::blob::BlobError;
use super::twirp::{CACHE_SERVICE, CallError};
use super::{Shared, call_error};
use crate::store::{BackendError, ObjectInfo, ObjectWriter, Published, PutMode};

/// The generation of an object created once.
const FIRST: &str = "0";
/// The content type of cache blobs.
const CONTENT_TYPE: &str = "application/octet-stream";
/// How long a signed download URL is reused within one ferry run before asking again.
const URL_REUSE: Duration = Duration::from_secs(300);
/// The longest key the service takes.
const MAX_KEY: usize = 512;

/// ferry's version of its cache entries: any string, the same for every ferry that writes this
/// store format, and unlike the SHA-256 of paths and compression actions/cache uses.
fn version() -> String {
    format!("{:x}", Sha256::digest(b"ferry gha:// store, format 1"))
}

#[derive(Serialize)]
struct CreateRequest<'a> {
    key: &'a str,
    version: &'a str,
}

#[derive(Deserialize)]
struct CreateResponse {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    signed_upload_url: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct FinalizeRequest<'a> {
    key: &'a str,
    version: &'a str,
    size_bytes: String,
}

#[derive(Deserialize)]
struct FinalizeResponse {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct LookupRequest<'a> {
    key: &'a str,
    restore_keys: Vec<&'a str>,
    version: &'a str,
}

#[derive(Deserialize)]
struct LookupResponse {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    signed_download_url: String,
    #[serde(default)]
    matched_key: String,
}

/// A found entry: its signed download URL and when it was handed out.
#[derive(Clone)]
struct Found {
    url: String,
    at: Instant,
}

pub(crate) struct CacheService {
    shared: Arc<Shared>,
    prefix: String,
    version: String,
    /// Download URLs of paths found in this run, reused for ranged reads of one object.
    found: Mutex<HashMap<String, Found>>,
}

/// The path of a cache key of ours: the key without its `#generation`.
fn path_of(key: &str) -> Option<&str> {
    key.rsplit_once('#').map(|(p, _)| p)
}

/// A generation for an overwrite: its time, so generations read in order, and a random part.
fn new_generation() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        &crate::manifest::new_id()[..8]
    )
}

fn denied_by_mode(mode: &Option<&'static str>, what: &str) -> BackendError {
    BackendError::Denied(format!(
        "ACTIONS_CACHE_MODE={} does not let this job {what} caches",
        mode.unwrap_or("?")
    ))
}

/// A refused upload URL or a blob gone, as the user should read it.
fn blob_error(e: BlobError, doing: &str) -> BackendError {
    match e.status() {
        Some(404) => BackendError::NotFound,
        Some(403) => BackendError::Other(
            format!(
                "{e} while {doing}: the signed URL GitHub's cache service handed out was refused \
                 (it may have expired)"
            )
            .into(),
        ),
        _ => BackendError::Other(format!("{e} while {doing}").into()),
    }
}

impl CacheService {
    pub(crate) fn new(shared: Arc<Shared>, prefix: String) -> Self {
        Self {
            shared,
            prefix,
            version: version(),
            found: Mutex::new(HashMap::new()),
        }
    }

    fn rel(&self, full: &str) -> String {
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&self.prefix)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| full.to_string())
        }
    }

    fn key(&self, full: &str, generation: &str) -> Result<String, BackendError> {
        let key = format!("{full}#{generation}");
        if key.len() > MAX_KEY {
            return Err(BackendError::Other(
                format!(
                    "{full} is too long for a key of GitHub's cache service ({} of {MAX_KEY} \
                     characters); use a shorter key or store prefix",
                    key.len()
                )
                .into(),
            ));
        }
        Ok(key)
    }

    fn may_read(&self) -> Result<(), BackendError> {
        let mode = self.shared.cache_mode;
        if mode.read {
            Ok(())
        } else {
            Err(denied_by_mode(&mode.raw, "restore"))
        }
    }

    fn may_write(&self) -> Result<(), BackendError> {
        let mode = self.shared.cache_mode;
        if mode.write {
            Ok(())
        } else {
            Err(denied_by_mode(&mode.raw, "save"))
        }
    }

    fn forget(&self, full: &str) {
        if let Ok(mut found) = self.found.lock() {
            found.remove(full);
        }
    }

    /// Asks the service for the newest entry whose key starts with `lookup`; the key it
    /// matched and where to download it.
    async fn lookup(&self, lookup: &str) -> Result<Option<(String, String)>, BackendError> {
        self.may_read()?;
        let answer: Result<LookupResponse, CallError> = self
            .shared
            .twirp
            .call(
                CACHE_SERVICE,
                "GetCacheEntryDownloadURL",
                &LookupRequest {
                    key: lookup,
                    // GitHub's service may match restore keys only (tests/gha/PROTOCOL.md,
                    // open questions): asking again as the first one is harmless either way.
                    restore_keys: vec![lookup],
                    version: &self.version,
                },
            )
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(CallError::Service {
                status: 403, msg, ..
            }) if msg.starts_with("cache read denied") => {
                return Err(BackendError::Denied(msg));
            }
            Err(e) => return Err(call_error(e)),
        };
        if !answer.ok || answer.signed_download_url.is_empty() {
            return Ok(None);
        }
        if !answer.matched_key.starts_with(lookup) {
            return Ok(None);
        }
        self.shared.mask_url(&answer.signed_download_url);
        Ok(Some((answer.matched_key, answer.signed_download_url)))
    }

    /// Where to download the object at `full`, asking the service unless this run asked
    /// recently; `fresh` always asks.
    async fn url(&self, full: &str, fresh: bool) -> Result<Option<String>, BackendError> {
        if !fresh {
            if let Some(f) = self.found.lock().ok().and_then(|m| m.get(full).cloned()) {
                if f.at.elapsed() < URL_REUSE {
                    return Ok(Some(f.url));
                }
            }
        }
        let lookup = self.key(full, "")?;
        let Some((_, url)) = self.lookup(&lookup).await? else {
            self.forget(full);
            return Ok(None);
        };
        if let Ok(mut found) = self.found.lock() {
            found.insert(
                full.to_string(),
                Found {
                    url: url.clone(),
                    at: Instant::now(),
                },
            );
        }
        Ok(Some(url))
    }

    /// Runs `read` on the object's URL, once more with a fresh URL if the blob service
    /// refuses the one reused (expired).
    async fn with_url<T, F, Fut>(&self, full: &str, read: F) -> Result<Option<T>, BackendError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, BlobError>>,
    {
        let Some(url) = self.url(full, false).await? else {
            return Ok(None);
        };
        match read(url).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.status() == Some(403) => {
                let Some(url) = self.url(full, true).await? else {
                    return Ok(None);
                };
                read(url)
                    .await
                    .map(Some)
                    .map_err(|e| blob_error(e, "downloading"))
            }
            Err(e) if e.status() == Some(404) => {
                self.forget(full);
                Ok(None)
            }
            Err(e) => Err(blob_error(e, "downloading")),
        }
    }

    /// Reserves `key`: its upload URL, or why not.
    async fn create(&self, key: &str) -> Result<String, BackendError> {
        self.may_write()?;
        let answer: CreateResponse = match self
            .shared
            .twirp
            .call(
                CACHE_SERVICE,
                "CreateCacheEntry",
                &CreateRequest {
                    key,
                    version: &self.version,
                },
            )
            .await
        {
            Ok(a) => a,
            Err(CallError::Service { status: 409, .. }) => return Err(BackendError::Exists),
            Err(e) => return Err(call_error(e)),
        };
        if !answer.ok {
            return Err(refused(answer.message, "reserve", key));
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
        let generation = match mode {
            PutMode::Create => FIRST.to_string(),
            PutMode::Overwrite => new_generation(),
        };
        let key = self.key(full, &generation)?;
        let url = match self.create(&key).await {
            Ok(u) => u,
            Err(BackendError::Exists) if mode == PutMode::Create => return Ok(Published::Exists),
            Err(e) => return Err(e),
        };
        let size = bytes.len() as u64;
        self.shared
            .blobs
            .put_blob(&url, bytes, CONTENT_TYPE)
            .await
            .map_err(|e| blob_error(e, "uploading"))?;
        let commit = CacheCommit {
            shared: Arc::clone(&self.shared),
            version: self.version.clone(),
            key,
        };
        super::writer::Commit::publish(&commit, size, String::new()).await?;
        self.forget(full);
        Ok(Published::Created)
    }

    pub(crate) async fn writer(&self, full: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        let key = self.key(full, FIRST)?;
        let url = self.create(&key).await?;
        let this = CacheCommit {
            shared: Arc::clone(&self.shared),
            version: self.version.clone(),
            key,
        };
        Ok(Box::new(super::writer::BlockWriter::new(
            Arc::clone(&self.shared),
            url,
            CONTENT_TYPE,
            Box::new(this),
        )))
    }

    pub(crate) async fn get(&self, full: &str) -> Result<Option<Bytes>, BackendError> {
        let blobs = &self.shared.blobs;
        self.with_url(full, |url| async move {
            let resp = blobs.get(&url).await?;
            resp.bytes()
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
            .with_url(full, |url| async move { blobs.get(&url).await })
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
        self.with_url(full, |url| {
            let range = range.clone();
            async move { blobs.get_range(&url, range).await }
        })
        .await?
        .ok_or(BackendError::NotFound)
    }

    pub(crate) async fn head(&self, full: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let blobs = &self.shared.blobs;
        let found = self
            .with_url(full, |url| async move { blobs.head(&url).await })
            .await?
            .flatten();
        Ok(found.map(|(size, modified)| ObjectInfo {
            path: self.rel(full),
            size,
            modified,
        }))
    }

    pub(crate) async fn sign(&self, full: &str) -> Result<String, BackendError> {
        self.url(full, true).await?.ok_or(BackendError::NotFound)
    }

    /// The newest object of folder `full_dir` whose name starts with `name_prefix`: the one
    /// the service's own lookup finds.
    pub(crate) async fn newest(
        &self,
        full_dir: &str,
        name_prefix: &str,
    ) -> Result<Vec<ObjectInfo>, BackendError> {
        let lookup = format!("{full_dir}/{name_prefix}");
        let Some((matched, url)) = self.lookup(&lookup).await? else {
            return Ok(Vec::new());
        };
        let Some(path) = path_of(&matched) else {
            return Ok(Vec::new());
        };
        let in_folder = path
            .strip_prefix(&format!("{full_dir}/"))
            .is_some_and(|n| !n.contains('/') && n.starts_with(name_prefix));
        if !in_folder {
            return Ok(Vec::new());
        }
        let Some((size, modified)) = self
            .shared
            .blobs
            .head(&url)
            .await
            .map_err(|e| blob_error(e, "looking up"))?
        else {
            // Found, then evicted before it could be read: not there.
            return Ok(Vec::new());
        };
        if let Ok(mut found) = self.found.lock() {
            found.insert(
                path.to_string(),
                Found {
                    url,
                    at: Instant::now(),
                },
            );
        }
        Ok(vec![ObjectInfo {
            path: self.rel(path),
            size,
            modified,
        }])
    }

    /// Every object whose path starts with `full_prefix`, as the REST API lists them: the
    /// branches this job reads, its own first, each path once.
    pub(crate) async fn list(&self, full_prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let rest = self
            .shared
            .rest("list caches without GITHUB_TOKEN and GITHUB_REPOSITORY; pass the token to ferry (the action does by default; in a `run:` step set `env: GITHUB_TOKEN: ${{ github.token }}`)")?;
        let entries = rest
            .list_caches(full_prefix, None)
            .await
            .map_err(BackendError::other)?;
        let readable = &self.shared.claims.readable_refs;
        let rank = |r: &Option<String>| {
            r.as_ref()
                .and_then(|r| readable.iter().position(|x| x == r))
                .unwrap_or(usize::MAX)
        };
        // Newest first (as listed): the first entry of a path in the best-ranked ref wins.
        let mut best: HashMap<String, (usize, ObjectInfo)> = HashMap::new();
        for e in entries {
            if e.version != self.version {
                continue;
            }
            let Some(path) = path_of(&e.key) else {
                continue;
            };
            if !path.starts_with(full_prefix) {
                continue;
            }
            let r = rank(&e.r#ref);
            if !readable.is_empty() && r == usize::MAX {
                continue;
            }
            let info = ObjectInfo {
                path: self.rel(path),
                size: e.size_in_bytes.max(0) as u64,
                modified: e.created_at,
            };
            match best.get(path) {
                Some((have, _)) if *have <= r => {}
                _ => {
                    best.insert(path.to_string(), (r, info));
                }
            }
        }
        let mut out: Vec<ObjectInfo> = best.into_values().map(|(_, i)| i).collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Deletes every generation of `full` on this job's own branch, through the REST API.
    pub(crate) async fn delete(&self, full: &str) -> Result<(), BackendError> {
        let rest = self
            .shared
            .rest("delete caches without GITHUB_TOKEN and GITHUB_REPOSITORY; pass the token to ferry (the action does by default; in a `run:` step set `env: GITHUB_TOKEN: ${{ github.token }}`)")?;
        self.forget(full);
        let own = self.shared.claims.own_ref.as_deref();
        let entries = rest
            .list_caches(&self.key(full, "")?, own)
            .await
            .map_err(BackendError::other)?;
        for e in entries {
            if e.version == self.version && path_of(&e.key) == Some(full) {
                rest.delete_cache(e.id).await.map_err(BackendError::other)?;
            }
        }
        Ok(())
    }
}

/// A refusal in an `ok: false` answer: a denied write is [`BackendError::Denied`].
fn refused(message: String, doing: &str, key: &str) -> BackendError {
    if message.starts_with("cache write denied") {
        BackendError::Denied(message)
    } else {
        BackendError::Other(
            format!("GitHub's cache service would not {doing} {key}: {message}").into(),
        )
    }
}

/// Publishing a streamed cache entry once its blob is committed.
struct CacheCommit {
    shared: Arc<Shared>,
    version: String,
    key: String,
}

#[async_trait::async_trait]
impl super::writer::Commit for CacheCommit {
    async fn publish(&self, size: u64, _sha256: String) -> Result<(), BackendError> {
        let answer: FinalizeResponse = self
            .shared
            .twirp
            .call(
                CACHE_SERVICE,
                "FinalizeCacheEntryUpload",
                &FinalizeRequest {
                    key: &self.key,
                    version: &self.version,
                    size_bytes: size.to_string(),
                },
            )
            .await
            .map_err(call_error)?;
        if !answer.ok {
            return Err(refused(answer.message, "publish", &self.key));
        }
        Ok(())
    }

    /// A reservation never published cannot be released; it stops blocking its key after a
    /// day (GitHub's rule), and nothing reads it meanwhile.
    async fn abandon(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_a_generation_that_lookups_drop() {
        assert_eq!(
            path_of("ferry-v1/p/caches/keys/k.json#0"),
            Some("ferry-v1/p/caches/keys/k.json")
        );
        assert_eq!(path_of("no-generation"), None);
        let a = new_generation();
        assert!(a.len() < 40 && !a.contains('#') && !a.contains('/'), "{a}");
        assert_eq!(version().len(), 64);
    }
}
