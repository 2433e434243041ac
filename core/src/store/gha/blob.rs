//! The bytes behind both services: Azure Blob block blobs reached through the signed URLs
//! (service SAS, one blob each) that the services hand out.
//!
//! A URL is opaque: only `&comp=...` parameters are appended, never rebuilt. Small objects go
//! up as one Put Blob; streams as Put Block per part and one Put Block List, which is what
//! makes the blob exist. Reads take the whole blob or byte ranges. A failed request is retried
//! on 5xx and lost connections; its error never carries the URL (the signature is a secret).

use std::ops::Range;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;

use super::backoff;

/// The Blob service version asked for: the one the services' SAS URLs are signed with.
const X_MS_VERSION: &str = "2021-08-06";
/// Attempts of one blob request that fails for a reason worth another try.
const ATTEMPTS: u32 = 4;
/// Bound on one request: at most one part of a stream or one range of a read moves in it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// A failed blob request, after retries.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BlobError {
    #[error("the blob service answered {status}{}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status { status: u16, code: Option<String> },
    #[error("the blob service could not be reached: {0}")]
    Transport(String),
}

/// A download's body as a stream of the store's errors (the URL, which carries a signature,
/// left out of them).
pub(crate) fn body_stream(
    resp: reqwest::Response,
) -> futures::stream::BoxStream<'static, Result<Bytes, crate::store::BackendError>> {
    use futures::StreamExt;
    resp.bytes_stream()
        .map(|r| {
            r.map_err(|e| {
                crate::store::BackendError::Other(
                    format!("the download broke off: {}", e.without_url()).into(),
                )
            })
        })
        .boxed()
}

impl BlobError {
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            BlobError::Status { status, .. } => Some(*status),
            BlobError::Transport(_) => None,
        }
    }
}

/// Block blob requests over signed URLs.
pub(crate) struct Blobs {
    http: reqwest::Client,
}

/// `url` with `extra` appended to its query.
fn with_query(url: &str, extra: &str) -> String {
    if url.contains('?') {
        format!("{url}&{extra}")
    } else {
        format!("{url}?{extra}")
    }
}

/// The id of block `n`: base64 of a fixed-width number, so every id of a blob has the same
/// length, as the service requires.
pub(crate) fn block_id(n: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{n:010}"))
}

/// `text` with the characters base64 uses that a query cannot carry escaped.
fn query_escape(text: &str) -> String {
    text.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

impl Blobs {
    pub(crate) fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// Sends the request `build` makes, again on 5xx or a lost connection; any other answer is
    /// returned for the caller to judge, as an error when it is not 2xx.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, BlobError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match build()
                .header("x-ms-version", X_MS_VERSION)
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) if r.status().is_server_error() && attempt < ATTEMPTS => {}
                Ok(r) => {
                    return Err(BlobError::Status {
                        status: r.status().as_u16(),
                        code: r
                            .headers()
                            .get("x-ms-error-code")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                    });
                }
                Err(_) if attempt < ATTEMPTS => {}
                Err(e) => return Err(BlobError::Transport(e.without_url().to_string())),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Put Blob: the whole object in one request.
    pub(crate) async fn put_blob(
        &self,
        url: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), BlobError> {
        self.send(|| {
            self.http
                .put(url)
                .header("x-ms-blob-type", "BlockBlob")
                .header("x-ms-blob-content-type", content_type)
                .header(reqwest::header::CONTENT_LENGTH, body.len())
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Put Block: one part of a stream, invisible until the block list names it.
    pub(crate) async fn put_block(
        &self,
        url: &str,
        id: &str,
        body: Bytes,
    ) -> Result<(), BlobError> {
        let target = with_query(url, &format!("comp=block&blockid={}", query_escape(id)));
        self.send(|| {
            self.http
                .put(&target)
                .header(reqwest::header::CONTENT_LENGTH, body.len())
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// Put Block List: makes the blob exist, holding exactly `ids` in that order.
    pub(crate) async fn put_block_list(
        &self,
        url: &str,
        ids: &[String],
        content_type: &str,
    ) -> Result<(), BlobError> {
        let target = with_query(url, "comp=blocklist");
        let mut xml = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for id in ids {
            xml.push_str("<Latest>");
            xml.push_str(id);
            xml.push_str("</Latest>");
        }
        xml.push_str("</BlockList>");
        let xml = Bytes::from(xml);
        self.send(|| {
            self.http
                .put(&target)
                .header(reqwest::header::CONTENT_TYPE, "application/xml")
                .header("x-ms-blob-content-type", content_type)
                .body(xml.clone())
        })
        .await
        .map(drop)
    }

    /// The blob's size and last modification; `None` when it is gone.
    pub(crate) async fn head(
        &self,
        url: &str,
    ) -> Result<Option<(u64, chrono::DateTime<chrono::Utc>)>, BlobError> {
        match self.send(|| self.http.head(url)).await {
            Ok(r) => {
                let size = r
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let modified = r
                    .headers()
                    .get(reqwest::header::LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                    .map_or_else(chrono::Utc::now, |t| t.with_timezone(&chrono::Utc));
                Ok(Some((size, modified)))
            }
            Err(BlobError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The whole blob, as it arrives; only a 200 answer is taken for it.
    pub(crate) async fn get(&self, url: &str) -> Result<reqwest::Response, BlobError> {
        let r = self.send(|| self.http.get(url)).await?;
        if r.status().as_u16() != 200 {
            return Err(BlobError::Status {
                status: r.status().as_u16(),
                code: Some("an answer other than 200 to a whole read".into()),
            });
        }
        Ok(r)
    }

    /// Bytes `range` of the blob; only a 206 of exactly that length is taken for them.
    pub(crate) async fn get_range(&self, url: &str, range: Range<u64>) -> Result<Bytes, BlobError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .send(|| self.http.get(url).header(reqwest::header::RANGE, &header))
                .await?;
            if r.status().as_u16() != 206 {
                return Err(BlobError::Status {
                    status: r.status().as_u16(),
                    code: Some("an answer other than 206 to a ranged read".into()),
                });
            }
            match r.bytes().await {
                Ok(b) if b.len() as u64 == range.end - range.start => return Ok(b),
                Ok(b) => {
                    return Err(BlobError::Transport(format!(
                        "a ranged read of {} bytes gave {}",
                        range.end - range.start,
                        b.len()
                    )));
                }
                Err(_) if attempt < ATTEMPTS => tokio::time::sleep(backoff(attempt)).await,
                Err(e) => return Err(BlobError::Transport(e.without_url().to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length_and_survive_a_query() {
        let ids: Vec<String> = [0, 7, 49_999].into_iter().map(block_id).collect();
        assert!(ids.iter().all(|i| i.len() == ids[0].len()), "{ids:?}");
        assert_eq!(query_escape("a+b/c="), "a%2Bb%2Fc%3D");
        assert_eq!(
            with_query("https://h/b?sv=1", "comp=block"),
            "https://h/b?sv=1&comp=block"
        );
    }
}
