//! What the S3, GCS and Azure backends share: how ferry talks HTTP to a cloud store.
//!
//! Timeouts bound each request and each silence, never a whole transfer: big objects move
//! as 16 MiB parts and ranges (see `transfer`), each its own request, so a slow link makes a
//! long upload, not a failed one. Failed requests are retried with exponential backoff on
//! connection errors, 408, 429 and 5xx by `object_store`; [`RetryAfter`] adds the wait a
//! throttling server asks for in `Retry-After`, which `object_store` 0.14 does not read.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use url::Url;

use super::StoreError;

/// Time to open a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while reading a response before the request counts as stalled.
/// reqwest also counts the time spent sending the request body against it
/// (seanmonstar/reqwest#2784), so it must cover one 16 MiB part at a slow uplink:
/// 120 s is about 140 KB/s.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on one request, body included. One request carries at most one 16 MiB part or
/// range, or a small manifest, so this is minutes of slack at slow CI bandwidths; a GET
/// cut off by it resumes from where it stopped (object_store retries streaming bodies).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Idle pooled connections are closed before typical load balancers drop them silently.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Longest `Retry-After` honoured; a longer one is treated as this (the retry budget below
/// would run out anyway).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// HTTP client settings common to the three clouds.
pub(crate) fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_read_timeout(IDLE_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .with_allow_http(allow_http)
}

/// Retries: about a minute of backoff in ten attempts, within three minutes per request,
/// so a store that is restarting is waited for, and one that is down fails in bounded time.
///
/// `object_store` draws each pause at random between `init_backoff` and `base` times the
/// previous one, so on average a pause grows by `base / 2` only: base 3 makes that 1.5x
/// (0.25 s, 0.5, 0.9, 1.4, 2.3, 3.6, 5.5, 8, 13, 19 s), where base 2 would add barely a
/// tenth of a second per attempt and give up on a dead server within seconds.
pub(crate) fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            base: 3.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    }
}

/// Builds the `reqwest` client `object_store` would, wrapped in [`RetryAfter`].
#[derive(Debug, Default)]
pub(crate) struct Connector;

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(RetryAfter { inner }))
    }
}

/// Waits out a `Retry-After` (seconds or an HTTP date) on a 429 or 5xx answer before
/// handing it to `object_store`, whose retry loop then adds its own backoff: the server's
/// wish is a lower bound on the pause, as RFC 9110 asks.
#[derive(Debug)]
pub(crate) struct RetryAfter {
    inner: HttpClient,
}

impl HttpService for RetryAfter {
    fn call<'a, 'b>(
        &'a self,
        req: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let resp = self.inner.execute(req).await?;
            let status = resp.status().as_u16();
            if status == 429 || status >= 500 {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                if let Some(wait) = wait {
                    tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
                }
            }
            Ok(resp)
        })
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 section 10.2.3).
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Whether `host` names this machine, where plain http cannot be read by anyone else.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks an endpoint URL from the environment: https anywhere, http only on loopback
/// unless `any_http` (explicit emulator settings). Returns whether http must be allowed.
pub(crate) fn check_endpoint(
    raw: &str,
    var: &str,
    endpoint: &str,
    any_http: bool,
    hint: &'static str,
) -> Result<(Url, bool), StoreError> {
    let parsed = Url::parse(endpoint).map_err(|e| StoreError::Open {
        url: raw.to_string(),
        reason: format!(
            "{var}={endpoint:?} is not a URL ({e}); give one such as https://host:port"
        ),
        hint,
    })?;
    match parsed.scheme() {
        "https" => Ok((parsed, false)),
        "http" if any_http || parsed.host_str().is_some_and(is_loopback) => Ok((parsed, true)),
        "http" => Err(StoreError::Open {
            url: raw.to_string(),
            reason: format!(
                "{var}={endpoint:?} uses plain http to another machine, which would expose \
                 the data; use https (plain http is allowed only for localhost and 127.0.0.1)"
            ),
            hint,
        }),
        other => Err(StoreError::Open {
            url: raw.to_string(),
            reason: format!("{var}={endpoint:?} has scheme {other:?}; use https://"),
            hint,
        }),
    }
}

/// The bucket (or container) and the prefix of `s3://bucket/prefix`-style URLs.
///
/// Credentials, queries and fragments are refused: secrets in a store URL would end up in
/// logs and messages, and settings belong in the cloud's own variables.
pub(crate) fn bucket_and_prefix(
    raw: &str,
    url: &Url,
    example: &str,
) -> Result<(String, String), StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: raw.to_string(),
        reason,
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials do not belong in the store URL; use the cloud's environment variables"
                .into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(format!(
            "a store URL takes no ?query or #fragment; write it as {example}"
        )));
    }
    let bucket = match url.host_str() {
        Some(h) if !h.is_empty() => percent_decode(h).map_err(invalid)?,
        _ => {
            return Err(invalid(format!(
                "the bucket name is missing; write it as {example}"
            )));
        }
    };
    let prefix = percent_decode(url.path().trim_matches('/')).map_err(invalid)?;
    Ok((bucket, prefix))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?} has a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once %-escapes are decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .expect("valid date")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["minio", "10.0.0.1", "example.com", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn http_only_on_loopback() {
        let ok = |e| check_endpoint("s3://b", "AWS_ENDPOINT_URL", e, false, "hint");
        assert!(matches!(ok("https://minio.example:9000"), Ok((_, false))));
        assert!(matches!(ok("http://127.0.0.1:9000"), Ok((_, true))));
        assert!(matches!(ok("http://localhost:9000"), Ok((_, true))));
        let err = ok("http://minio:9000").expect_err("plain http to another host");
        assert!(err.to_string().contains("AWS_ENDPOINT_URL"), "{err}");
        assert!(ok("ftp://x").is_err());
        assert!(ok("not a url").is_err());
    }

    #[test]
    fn bucket_and_prefix_of_urls() {
        let parse = |s: &str| {
            let u = Url::parse(s).expect("url");
            bucket_and_prefix(s, &u, "s3://bucket/prefix")
        };
        assert_eq!(parse("s3://b").expect("ok"), ("b".into(), "".into()));
        assert_eq!(parse("s3://b/").expect("ok"), ("b".into(), "".into()));
        assert_eq!(
            parse("s3://b/ci/cache/").expect("ok"),
            ("b".into(), "ci/cache".into())
        );
        assert_eq!(
            parse("s3://b/a%20b").expect("ok"),
            ("b".into(), "a b".into())
        );
        assert!(parse("s3://key:secret@b/x").is_err());
        assert!(parse("s3://b/x?region=eu").is_err());
        assert!(parse("s3:///x").is_err());
    }
}
