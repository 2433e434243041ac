//! `gha://[prefix]`: GitHub Actions' own cache service and artifact service as one store, so
//! ferry needs no bucket and no secret inside GitHub Actions.
//!
//! It is reached with what the runner gives a JavaScript action, `ACTIONS_RESULTS_URL` and
//! `ACTIONS_RUNTIME_TOKEN` (Twirp JSON, `twirp.rs`); the bytes go to and come from Azure Blob
//! through signed URLs (`blob.rs`); listing and deleting caches and reading other runs'
//! artifacts use the REST API with `GITHUB_TOKEN` (`rest.rs`). `tests/gha/PROTOCOL.md` says
//! what each service does; this store relies on nothing more.
//!
//! Which service keeps an object is decided by its path: everything below a project's
//! `workspaces/` or `artifacts/` folder is an artifact of the current run (`artifact.rs`),
//! everything else (the caches) an entry of the cache service (`cache.rs`). What GitHub's
//! rules make different from an object store is declared in the capabilities, not hidden:
//! the cache service finds only the newest entry under a prefix, evicts entries itself, and
//! lists and deletes only through the REST API; see `docs/stores.md`.

mod artifact;
mod blob;
mod cache;
mod rest;
mod twirp;
mod writer;

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::stream::BoxStream;
use url::Url;

use super::{
    Backend, BackendError, Capabilities, ObjectInfo, ObjectWriter, Published, PutMode, SecretSink,
    StoreError,
};
use crate::env_vars::{
    ACTIONS_CACHE_MODE, ACTIONS_RESULTS_URL, ACTIONS_RUNTIME_TOKEN, Environment, GITHUB_API_URL,
    GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_TOKEN,
};

pub(crate) const HINT: &str = "gha:// works inside a GitHub Actions job: it needs \
    ACTIONS_RESULTS_URL and ACTIONS_RUNTIME_TOKEN, which the runner gives JavaScript actions \
    such as ferry's but not `run:` steps, and GITHUB_TOKEN to list and remove caches \
    (docs/stores.md, \"GitHub\")";

/// Connection set-up, and the longest silence while reading an answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The pause before attempt `attempt + 1`: 0.5 s, doubling, at most 8 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.saturating_sub(1).min(4))
}

/// What the job may do with caches, from `ACTIONS_CACHE_MODE` (unset: both).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheMode {
    pub read: bool,
    pub write: bool,
    pub raw: Option<&'static str>,
}

impl CacheMode {
    fn parse(value: Option<&str>) -> Self {
        let (read, write, raw) = match value {
            Some("read") => (true, false, Some("read")),
            Some("write-only") => (false, true, Some("write-only")),
            Some("none") => (false, false, Some("none")),
            Some("write") => (true, true, Some("write")),
            // Unknown values allow both, as GitHub's client does; the token still decides.
            _ => (true, true, None),
        };
        Self { read, write, raw }
    }
}

/// The claims of the runtime token the store needs: the run and job the artifact service
/// wants named in every call, and the cache scopes (refs) it may read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub run_backend_id: String,
    pub job_backend_id: String,
    /// The ref this job's cache saves go to.
    pub own_ref: Option<String>,
    /// The refs its cache lookups search, in order.
    pub readable_refs: Vec<String>,
}

/// Reads the claims of a runtime token (a JWT; its signature is the service's business).
pub(crate) fn claims(token: &str) -> Result<Claims, String> {
    let bad = || {
        "ACTIONS_RUNTIME_TOKEN is not a runtime token of a GitHub Actions job (no \
         Actions.Results claim)"
            .to_string()
    };
    let payload = token.split('.').nth(1).ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad())?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let scp = value.get("scp").and_then(|v| v.as_str()).unwrap_or("");
    let (run, job) = scp
        .split(' ')
        .map(|s| s.split(':').collect::<Vec<_>>())
        .find(|parts| parts.len() == 3 && parts[0] == "Actions.Results")
        .map(|parts| (parts[1].to_string(), parts[2].to_string()))
        .ok_or_else(bad)?;
    #[derive(serde::Deserialize)]
    struct Scope {
        #[serde(rename = "Scope")]
        scope: String,
        #[serde(rename = "Permission")]
        permission: u32,
    }
    let scopes: Vec<Scope> = value
        .get("ac")
        .and_then(|v| v.as_str())
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let own_ref = scopes
        .iter()
        .find(|s| s.permission & 2 != 0)
        .or_else(|| scopes.first())
        .map(|s| s.scope.clone());
    Ok(Claims {
        run_backend_id: run,
        job_backend_id: job,
        own_ref,
        readable_refs: scopes
            .iter()
            .filter(|s| s.permission & 1 != 0)
            .map(|s| s.scope.clone())
            .collect(),
    })
}

/// What both services share: the HTTP client, the job, the REST client, the secret sink.
pub(crate) struct Shared {
    pub twirp: twirp::Twirp,
    pub blobs: blob::Blobs,
    pub claims: Claims,
    pub cache_mode: CacheMode,
    /// With `GITHUB_TOKEN` and `GITHUB_REPOSITORY`.
    pub rest: Option<rest::Rest>,
    /// `GITHUB_RUN_ID`, when known: reads of other runs go through the REST API.
    pub run_id: Option<u64>,
    secrets: Option<SecretSink>,
    masked: Mutex<HashSet<String>>,
}

impl Shared {
    /// Hands the signature of a signed URL to the secret sink, once. The runner masks the
    /// URL-encoded form of a masked value too, so the decoded signature covers the URL.
    pub(crate) fn mask_url(&self, url: &str) {
        let Some(sink) = &self.secrets else {
            return;
        };
        let Some(sig) = Url::parse(url).ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "sig")
                .map(|(_, v)| v.into_owned())
        }) else {
            return;
        };
        let Ok(mut masked) = self.masked.lock() else {
            return;
        };
        if !sig.is_empty() && masked.insert(sig.clone()) {
            sink(&sig);
        }
    }

    /// The REST client, or an error saying what to set.
    pub(crate) fn rest(&self, what: &'static str) -> Result<&rest::Rest, BackendError> {
        self.rest.as_ref().ok_or(BackendError::Unsupported(what))
    }
}

/// Which service keeps a path (or the paths below a prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Cache,
    Artifact,
    /// A prefix above both.
    Both,
}

/// The folders of a project whose objects are artifacts.
const ARTIFACT_FOLDERS: [&str; 2] = ["workspaces", "artifacts"];

fn is_format_folder(segment: &str) -> bool {
    segment
        .strip_prefix("ferry-v")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The service of a full path (`object`), or of everything below a prefix.
fn route(full: &str, object: bool) -> Route {
    let segments: Vec<&str> = full.split('/').collect();
    let Some(i) = segments.iter().position(|s| is_format_folder(s)) else {
        return if !object && full.trim_matches('/').is_empty() {
            Route::Both
        } else {
            Route::Cache
        };
    };
    // ferry-vN / <project> / <mode folder> / ...
    let decided = if object {
        segments.len() > i + 2
    } else {
        segments.len() > i + 3
    };
    if !decided {
        return Route::Both;
    }
    if ARTIFACT_FOLDERS.contains(&segments[i + 2]) {
        Route::Artifact
    } else {
        Route::Cache
    }
}

/// The `gha://` store.
struct Gha {
    /// The store URL's prefix, below which every path lives (may be empty).
    prefix: String,
    cache: cache::CacheService,
    artifacts: artifact::ArtifactService,
    shared: Arc<Shared>,
    /// Everything this store holds lives in the artifact service (its prefix is below a
    /// project's artifact folders), which lists without a token.
    artifacts_only: bool,
}

/// Builds the `gha://` store of `url` from the job's environment.
pub(crate) fn build(
    raw: &str,
    url: &Url,
    env: &Environment,
    secrets: Option<SecretSink>,
) -> Result<Arc<dyn Backend>, StoreError> {
    let open_err = |reason: String| StoreError::Open {
        url: raw.to_string(),
        reason,
        hint: HINT,
    };
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(StoreError::InvalidUrl {
            url: raw.to_string(),
            reason: "a gha:// store takes only an optional prefix: gha:// or gha://some/prefix"
                .into(),
        });
    }
    let prefix = format!("{}/{}", url.host_str().unwrap_or(""), url.path())
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    if let Some(bad) = prefix.split('/').find(|s| {
        !s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._=-".contains(&b))
    }) {
        return Err(StoreError::InvalidUrl {
            url: raw.to_string(),
            reason: format!(
                "the prefix part {bad:?} holds characters GitHub's names cannot carry; use \
                 letters, digits, `.`, `_`, `=` and `-`"
            ),
        });
    }
    let results = env.get(ACTIONS_RESULTS_URL).ok_or_else(|| {
        open_err(format!(
            "{ACTIONS_RESULTS_URL} is not set (the runner sets it for JavaScript actions, not \
             for `run:` steps)"
        ))
    })?;
    let token = env.get(ACTIONS_RUNTIME_TOKEN).ok_or_else(|| {
        open_err(format!(
            "{ACTIONS_RUNTIME_TOKEN} is not set (the runner sets it for JavaScript actions, not \
             for `run:` steps)"
        ))
    })?;
    let (parsed, _) = super::cloud::check_endpoint(raw, ACTIONS_RESULTS_URL, results, false, HINT)?;
    // Only the origin counts: GitHub's clients build `/twirp/...` as an absolute path.
    let mut origin = parsed.clone();
    origin.set_path("/");
    origin.set_query(None);
    origin.set_fragment(None);
    let claims = claims(token).map_err(open_err)?;
    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(IDLE_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(50))
        .build()
        .map_err(|e| open_err(format!("cannot set up an HTTP client: {e}")))?;
    let rest = match (env.get(GITHUB_TOKEN), env.get(GITHUB_REPOSITORY)) {
        (Some(t), Some(repo)) => {
            let api = env.get(GITHUB_API_URL).unwrap_or("https://api.github.com");
            super::cloud::check_endpoint(raw, GITHUB_API_URL, api, false, HINT)?;
            Some(rest::Rest::new(api, t, repo).map_err(open_err)?)
        }
        _ => None,
    };
    let shared = Arc::new(Shared {
        twirp: twirp::Twirp::new(http.clone(), origin, token.to_string()),
        blobs: blob::Blobs::new(http),
        claims,
        cache_mode: CacheMode::parse(env.get(ACTIONS_CACHE_MODE)),
        rest,
        run_id: env.get(GITHUB_RUN_ID).and_then(|r| r.parse().ok()),
        secrets,
        masked: Mutex::new(HashSet::new()),
    });
    let artifacts_only = route(&format!("{prefix}/x"), true) == Route::Artifact
        && route(&format!("{prefix}/"), false) == Route::Artifact;
    Ok(Arc::new(Gha {
        cache: cache::CacheService::new(Arc::clone(&shared), prefix.clone()),
        artifacts: artifact::ArtifactService::new(Arc::clone(&shared), prefix.clone()),
        prefix,
        shared,
        artifacts_only,
    }))
}

impl Gha {
    fn full(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn route_object(&self, rel: &str) -> Route {
        route(&self.full(rel), true)
    }
}

#[async_trait::async_trait]
impl Backend for Gha {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // The artifact service lists a run's artifacts; caches list only through the
            // REST API, with a token.
            list: self.artifacts_only || self.shared.rest.is_some(),
            // Both services refuse a second entry under one name (409), atomically.
            conditional_create: true,
            // A newer cache entry under the same path wins lookups; an artifact is deleted
            // and uploaded again (docs/stores.md).
            overwrite: true,
            ranged_get: true,
            signed_urls: true,
            // The cache service finds the newest entry under a prefix itself.
            prefix_lookup: true,
            remote: true,
            evicts: true,
        }
    }

    fn miss_note(&self) -> Option<&'static str> {
        Some(
            "on gha:// a job finds only caches saved on its own branch and on the default \
             branch, an entry saved seconds ago may not be found yet, and GitHub evicts \
             entries unused for 7 days (docs/stores.md, \"GitHub\")",
        )
    }

    async fn put(&self, rel: &str, bytes: Bytes, mode: PutMode) -> Result<Published, BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.put(&full, bytes, mode).await,
            _ => self.cache.put(&full, bytes, mode).await,
        }
    }

    async fn writer(&self, rel: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.writer(&full).await,
            _ => self.cache.writer(&full).await,
        }
    }

    async fn get(&self, rel: &str) -> Result<Option<Bytes>, BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.get(&full).await,
            _ => self.cache.get(&full).await,
        }
    }

    async fn get_stream(
        &self,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.get_stream(&full).await,
            _ => self.cache.get_stream(&full).await,
        }
    }

    async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.get_range(&full, range).await,
            _ => self.cache.get_range(&full, range).await,
        }
    }

    async fn head(&self, rel: &str) -> Result<Option<ObjectInfo>, BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.head(&full).await,
            _ => self.cache.head(&full).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let full = self.full(prefix);
        match route(&full, false) {
            Route::Artifact => self.artifacts.list(&full).await,
            Route::Cache => self.cache.list(&full).await,
            Route::Both => {
                let mut all = self.cache.list(&full).await?;
                all.extend(self.artifacts.list(&full).await?);
                Ok(all)
            }
        }
    }

    async fn delete(&self, rel: &str) -> Result<(), BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.delete(&full).await,
            _ => self.cache.delete(&full).await,
        }
    }

    async fn sign(&self, rel: &str, _expires: Duration) -> Result<String, BackendError> {
        let full = self.full(rel);
        match self.route_object(rel) {
            Route::Artifact => self.artifacts.sign(&full).await,
            _ => self.cache.sign(&full).await,
        }
    }

    async fn newest(&self, dir: &str, name_prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let full_dir = self.full(dir.trim_end_matches('/'));
        match route(&format!("{full_dir}/{name_prefix}"), true) {
            Route::Artifact => {
                let listed = self
                    .artifacts
                    .list(&format!("{full_dir}/{name_prefix}"))
                    .await?;
                let folder = format!("{}/", dir.trim_end_matches('/'));
                Ok(super::newest_first(listed, &folder, name_prefix))
            }
            _ => self.cache.newest(&full_dir, name_prefix).await,
        }
    }
}

/// The message of a call the service refused, naming the token when it was the token.
pub(crate) fn call_error(e: twirp::CallError) -> BackendError {
    if let twirp::CallError::Service { status: 401, .. } = &e {
        return BackendError::Other(
            format!(
                "{e}: GitHub's results service no longer accepts this job's runtime token \
                 ({ACTIONS_RUNTIME_TOKEN} lasts about 6 hours from the job's start and cannot \
                 be renewed)"
            )
            .into(),
        );
    }
    if let twirp::CallError::Service {
        status: 429,
        retry_after,
        ..
    } = &e
    {
        return BackendError::Other(
            format!(
                "{e}: rate limited by GitHub's results service{}; try again later",
                retry_after
                    .map(|s| format!(" for {s}s"))
                    .unwrap_or_default()
            )
            .into(),
        );
    }
    BackendError::other(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: serde_json::Value) -> String {
        let enc = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            enc(br#"{"alg":"HS256"}"#),
            enc(claims.to_string().as_bytes()),
            enc(b"sig")
        )
    }

    #[test]
    fn claims_name_the_run_the_job_and_the_cache_scopes() {
        let t = token(serde_json::json!({
            "scp": "Actions.GenericRead:0 Actions.UploadArtifacts:r1:j1 Actions.Results:r1:j1",
            "ac": r#"[{"Scope":"refs/heads/feature","Permission":3},{"Scope":"refs/heads/main","Permission":1}]"#,
        }));
        let c = claims(&t).expect("claims");
        assert_eq!(c.run_backend_id, "r1");
        assert_eq!(c.job_backend_id, "j1");
        assert_eq!(c.own_ref.as_deref(), Some("refs/heads/feature"));
        assert_eq!(c.readable_refs, ["refs/heads/feature", "refs/heads/main"]);
        let read_only = token(serde_json::json!({
            "scp": "Actions.Results:r:j",
            "ac": r#"[{"Scope":"refs/heads/x","Permission":1}]"#,
        }));
        assert_eq!(
            claims(&read_only).expect("claims").own_ref.as_deref(),
            Some("refs/heads/x")
        );
        assert!(claims("not-a-jwt").is_err());
        assert!(
            claims(&token(
                serde_json::json!({"scp": "Actions.Results:only-two"})
            ))
            .is_err()
        );
    }

    #[test]
    fn paths_below_workspaces_and_artifacts_are_artifacts() {
        assert_eq!(route("ferry-v1/p/caches/keys/k.json", true), Route::Cache);
        assert_eq!(
            route("ferry-v1/p/scopes/s/caches/data/d", true),
            Route::Cache
        );
        assert_eq!(
            route("pre/ferry-v1/p/workspaces/1/layers/l.json", true),
            Route::Artifact
        );
        assert_eq!(
            route("ferry-v1/p/artifacts/data/id/f", true),
            Route::Artifact
        );
        assert_eq!(route("ferry-v2/p/artifacts/x", true), Route::Artifact);
        assert_eq!(route("conformance/o/value", true), Route::Cache);
        assert_eq!(route("ferry-v1/p/", false), Route::Both);
        assert_eq!(route("ferry-v1/p/caches/", false), Route::Cache);
        assert_eq!(route("ferry-v1/p/artifacts/", false), Route::Artifact);
        assert_eq!(route("", false), Route::Both);
        assert_eq!(route("l/a/", false), Route::Cache);
    }

    #[test]
    fn cache_modes() {
        let m = CacheMode::parse(Some("read"));
        assert!(m.read && !m.write);
        let m = CacheMode::parse(Some("write-only"));
        assert!(!m.read && m.write);
        let m = CacheMode::parse(Some("none"));
        assert!(!m.read && !m.write);
        let m = CacheMode::parse(None);
        assert!(m.read && m.write);
    }
}
