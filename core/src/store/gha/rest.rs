//! What only GitHub's REST API can do for the `gha://` store, with `GITHUB_TOKEN`: list and
//! delete caches, and find artifacts of other runs. Spoken through octocrab; a 429 (or a 403
//! with `Retry-After`) is waited out, 5xx retried.

use std::time::Duration;

use octocrab::Octocrab;
use octocrab::models::actions::{ActionsCacheItem, ActionsCacheList};
use octocrab::models::workflows::WorkflowListArtifact;
use serde::de::DeserializeOwned;

use super::backoff;

/// Entries per page, GitHub's maximum.
const PER_PAGE: usize = 100;
const ATTEMPTS: u32 = 4;
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A failed REST call, after retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestError {
    #[error("GitHub's REST API answered {status} to {what}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("GitHub's REST API could not be reached for {what}: {reason}")]
    Transport { what: String, reason: String },
}

impl RestError {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            RestError::Status { status, .. } => Some(*status),
            RestError::Transport { .. } => None,
        }
    }
}

#[derive(serde::Deserialize)]
struct ArtifactList {
    artifacts: Vec<WorkflowListArtifact>,
}

#[derive(serde::Deserialize)]
struct Message {
    #[serde(default)]
    message: String,
}

/// A REST client for one repository.
pub(crate) struct Rest {
    api: String,
    token: String,
    /// Made on first use: octocrab's client starts a task, so it needs the async runtime,
    /// and opening a store does not.
    crab: tokio::sync::OnceCell<Octocrab>,
    /// `/repos/{owner}/{repo}`.
    repo_route: String,
}

fn query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl Rest {
    /// A client of `api` (`GITHUB_API_URL`) for `repository` (`owner/repo`) with `token`.
    pub(crate) fn new(api: &str, token: &str, repository: &str) -> Result<Self, String> {
        let (owner, repo) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| format!("GITHUB_REPOSITORY={repository:?} is not owner/repo"))?;
        http::Uri::try_from(api)
            .map_err(|e| format!("GITHUB_API_URL={api:?} is not a URL: {e}"))?;
        Ok(Self {
            api: api.to_string(),
            token: token.to_string(),
            crab: tokio::sync::OnceCell::new(),
            repo_route: format!("/repos/{owner}/{repo}"),
        })
    }

    async fn crab(&self, what: &str) -> Result<&Octocrab, RestError> {
        self.crab
            .get_or_try_init(|| async {
                Octocrab::builder()
                    .base_uri(self.api.as_str())
                    .and_then(|b| {
                        b.personal_token(self.token.clone())
                            .add_header(
                                http::header::HeaderName::from_static("x-github-api-version"),
                                "2022-11-28".to_string(),
                            )
                            .build()
                    })
                    .map_err(|e| RestError::Transport {
                        what: what.to_string(),
                        reason: format!("cannot set up GitHub's REST client: {e}"),
                    })
            })
            .await
    }

    /// Sends one request (`delete` or get) to `route`, waiting out rate limits and retrying
    /// server errors; the answer's status and body.
    async fn send(
        &self,
        delete: bool,
        route: &str,
        what: &str,
    ) -> Result<(u16, String, Option<String>), RestError> {
        let transport = |reason: String| RestError::Transport {
            what: what.to_string(),
            reason,
        };
        let crab = self.crab(what).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = if delete {
                crab._delete(route, None::<&()>).await
            } else {
                crab._get(route).await
            };
            let resp = match sent {
                Ok(r) => r,
                Err(_) if attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(transport(e.to_string())),
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::store::cloud::parse_retry_after(v, chrono::Utc::now()));
            let location = resp
                .headers()
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = match crab.body_to_string(resp).await {
                Ok(b) => b,
                Err(_) if attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(transport(e.to_string())),
            };
            let limited = status == 429 || (status == 403 && retry_after.is_some());
            if attempt < ATTEMPTS && (limited || matches!(status, 500 | 502 | 503 | 504)) {
                let wait = match retry_after {
                    Some(w) if limited => w.min(MAX_RETRY_AFTER),
                    _ => backoff(attempt),
                };
                tokio::time::sleep(wait).await;
                continue;
            }
            if status < 400 {
                return Ok((status, body, location));
            }
            let message = serde_json::from_str::<Message>(&body)
                .map(|m| m.message)
                .unwrap_or_else(|_| body.chars().take(300).collect());
            return Err(RestError::Status {
                what: what.to_string(),
                status,
                message,
            });
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, route: &str, what: &str) -> Result<T, RestError> {
        let (_, body, _) = self.send(false, route, what).await?;
        serde_json::from_str(&body).map_err(|e| RestError::Transport {
            what: what.to_string(),
            reason: format!("its answer could not be read: {e}"),
        })
    }

    /// Every cache whose key starts with `key_prefix` (in `git_ref` only, when given),
    /// newest first.
    pub(crate) async fn list_caches(
        &self,
        key_prefix: &str,
        git_ref: Option<&str>,
    ) -> Result<Vec<ActionsCacheItem>, RestError> {
        let mut out = Vec::new();
        for page in 1.. {
            let page_text = page.to_string();
            let per_page = PER_PAGE.to_string();
            let mut pairs = vec![
                ("key", key_prefix),
                ("sort", "created_at"),
                ("direction", "desc"),
                ("per_page", per_page.as_str()),
                ("page", page_text.as_str()),
            ];
            if let Some(r) = git_ref {
                pairs.push(("ref", r));
            }
            let route = format!("{}/actions/caches?{}", self.repo_route, query(&pairs));
            let list: ActionsCacheList = self.get_json(&route, "listing caches").await?;
            let n = list.actions_caches.len();
            out.extend(list.actions_caches);
            if n < PER_PAGE {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes the cache entry `id`; one already gone is not an error.
    pub(crate) async fn delete_cache(&self, id: i64) -> Result<(), RestError> {
        let route = format!("{}/actions/caches/{id}", self.repo_route);
        match self.send(true, &route, "deleting a cache").await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every unexpired artifact of workflow run `run` (`GITHUB_RUN_ID`'s kind of id).
    pub(crate) async fn run_artifacts(
        &self,
        run: u64,
    ) -> Result<Vec<WorkflowListArtifact>, RestError> {
        self.artifacts(
            &format!("{}/actions/runs/{run}/artifacts", self.repo_route),
            &[],
        )
        .await
    }

    /// Every unexpired artifact of the repository named exactly `name`, newest first.
    pub(crate) async fn artifacts_named(
        &self,
        name: &str,
    ) -> Result<Vec<WorkflowListArtifact>, RestError> {
        self.artifacts(
            &format!("{}/actions/artifacts", self.repo_route),
            &[("name", name)],
        )
        .await
    }

    async fn artifacts(
        &self,
        base: &str,
        filter: &[(&str, &str)],
    ) -> Result<Vec<WorkflowListArtifact>, RestError> {
        let mut out = Vec::new();
        for page in 1.. {
            let page_text = page.to_string();
            let per_page = PER_PAGE.to_string();
            let mut pairs = filter.to_vec();
            pairs.push(("per_page", per_page.as_str()));
            pairs.push(("page", page_text.as_str()));
            let route = format!("{base}?{}", query(&pairs));
            let list: ArtifactList = match self.get_json(&route, "listing artifacts").await {
                Ok(l) => l,
                // A run GitHub does not know has no artifacts.
                Err(e) if e.status() == Some(404) => break,
                Err(e) => return Err(e),
            };
            let n = list.artifacts.len();
            out.extend(list.artifacts.into_iter().filter(|a| !a.expired));
            if n < PER_PAGE {
                break;
            }
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.created_at));
        Ok(out)
    }

    /// Where artifact `id`'s bytes can be fetched without a token: the signed URL GitHub
    /// redirects its download to.
    pub(crate) async fn artifact_location(&self, id: u64) -> Result<String, RestError> {
        let route = format!("{}/actions/artifacts/{id}/zip", self.repo_route);
        let (status, _, location) = self.send(false, &route, "downloading an artifact").await?;
        location.ok_or_else(|| RestError::Status {
            what: "downloading an artifact".into(),
            status,
            message: "the answer named no download location".into(),
        })
    }
}
