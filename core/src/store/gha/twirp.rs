//! Twirp JSON calls to GitHub's results service (`POST {origin}/twirp/<service>/<method>`),
//! with the retries GitHub's own clients make and the one they do not: a 429 waits out the
//! service's `Retry-After` (bounded) before asking again.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::backoff;

pub(crate) const CACHE_SERVICE: &str = "github.actions.results.api.v1.CacheService";
pub(crate) const ARTIFACT_SERVICE: &str = "github.actions.results.api.v1.ArtifactService";

/// Attempts of one call that fails for a reason worth another try (5xx, an unreadable
/// answer, no connection): GitHub's clients make five.
const ATTEMPTS: u32 = 5;
/// Rate-limited answers waited out before giving up.
const RATE_LIMITED_ATTEMPTS: u32 = 3;
/// Longest `Retry-After` waited; a longer wish is waited this long, then asked again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Bound on one call: the answers are small JSON objects.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed call, after retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The service answered with a Twirp error.
    #[error("{method} answered {status} {code}: {msg}{}", retry_after.map(|s| format!(" (it asked to wait {s}s)")).unwrap_or_default())]
    Service {
        method: String,
        status: u16,
        code: String,
        msg: String,
        retry_after: Option<u64>,
    },
    /// The service could not be reached, or its answers could not be read.
    #[error("{method} failed after {ATTEMPTS} attempts: {reason}")]
    Transport { method: String, reason: String },
}

#[derive(serde::Deserialize)]
struct TwirpError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    msg: String,
}

/// A client of one results service: its origin and the job's runtime token.
pub(crate) struct Twirp {
    http: reqwest::Client,
    /// `ACTIONS_RESULTS_URL`'s origin: both of GitHub's clients drop any path it has.
    origin: Url,
    token: String,
}

impl Twirp {
    pub(crate) fn new(http: reqwest::Client, origin: Url, token: String) -> Self {
        Self {
            http,
            origin,
            token,
        }
    }

    /// Calls `service`'s `method` with `request`, retrying 5xx, unreadable answers and lost
    /// connections with backoff, and 429 after the wait the service asks for.
    pub(crate) async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        service: &str,
        method: &str,
        request: &Q,
    ) -> Result<A, CallError> {
        let mut url = self.origin.clone();
        url.set_path(&format!("/twirp/{service}/{method}"));
        let body = serde_json::to_vec(request).map_err(|e| CallError::Transport {
            method: method.to_string(),
            reason: format!("the request could not be written: {e}"),
        })?;
        let transport = |reason: String| CallError::Transport {
            method: method.to_string(),
            reason,
        };
        let mut attempt = 0;
        let mut rate_limited = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .post(url.clone())
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(CALL_TIMEOUT)
                .body(body.clone())
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(_) if attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(transport(e.without_url().to_string())),
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::store::cloud::parse_retry_after(v, chrono::Utc::now()));
            let text = match resp.bytes().await {
                Ok(t) => t,
                Err(_) if attempt < ATTEMPTS => {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(transport(e.without_url().to_string())),
            };
            if (200..300).contains(&status) {
                match serde_json::from_slice(&text) {
                    Ok(answer) => return Ok(answer),
                    // GitHub's clients take an unreadable answer for a passing fault.
                    Err(_) if attempt < ATTEMPTS => {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    Err(e) => return Err(transport(format!("its answer is not JSON: {e}"))),
                }
            }
            let error: Option<TwirpError> = serde_json::from_slice(&text).ok();
            if status == 429 && rate_limited < RATE_LIMITED_ATTEMPTS {
                rate_limited += 1;
                attempt -= 1;
                let wait = retry_after
                    .unwrap_or_else(|| backoff(rate_limited))
                    .min(MAX_RETRY_AFTER);
                tokio::time::sleep(wait).await;
                continue;
            }
            let transient = matches!(status, 500 | 502 | 503 | 504) || error.is_none();
            if transient && status != 429 && attempt < ATTEMPTS {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let error = error.unwrap_or(TwirpError {
                code: String::new(),
                msg: String::from_utf8_lossy(&text[..text.len().min(300)]).into_owned(),
            });
            return Err(CallError::Service {
                method: method.to_string(),
                status,
                code: error.code,
                msg: error.msg,
                retry_after: retry_after.map(|d| d.as_secs()),
            });
        }
    }
}
