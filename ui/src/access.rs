//! Who may use the page: loopback by default (with the Host header checked, so a web page
//! that rebinds its name to 127.0.0.1 is refused); any other address only with the token
//! printed at start, given once as `?token=` (then kept in a cookie). Deletes also need
//! `--allow-delete` and this process's CSRF token. Artifact files served for sandboxed
//! frames carry a separate per-process key in their path: a sandboxed document has no origin,
//! so it sends no cookie for the files it loads.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::UiError;

/// The name of the cookie that carries the token.
const COOKIE: &str = "ferry_ui_token";

/// The secrets of one `ferry ui` process.
#[derive(Clone)]
pub(crate) struct Access {
    /// Required on every request when listening beyond loopback.
    pub token: Option<String>,
    /// Required by every delete.
    pub csrf: String,
    /// The path key of raw artifact files.
    pub raw_key: String,
    /// On loopback: the Host values accepted.
    pub hosts: Option<Vec<String>>,
    pub allow_delete: bool,
}

/// 32 random bytes as hex.
pub(crate) fn random_token() -> Result<String, UiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| UiError::Random(e.to_string()))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

impl Access {
    pub(crate) fn new(addr: SocketAddr, allow_delete: bool) -> Result<Self, UiError> {
        let loopback = addr.ip().is_loopback();
        let port = addr.port();
        Ok(Self {
            token: if loopback {
                None
            } else {
                Some(random_token()?)
            },
            csrf: random_token()?,
            raw_key: random_token()?,
            hosts: loopback.then(|| {
                ["127.0.0.1", "localhost", "[::1]"]
                    .iter()
                    .map(|h| format!("{h}:{port}"))
                    .collect()
            }),
            allow_delete,
        })
    }
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

/// Admits a request or refuses it, before any handler runs.
pub(crate) async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    if let Some(hosts) = &access.hosts {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                "ferry ui answers only requests addressed to 127.0.0.1, localhost or [::1]",
            );
        }
    }
    let Some(token) = &access.token else {
        return next.run(req).await;
    };
    // Raw artifact files carry their own key in the path (checked by their handler).
    if req.uri().path().starts_with("/raw/") {
        return next.run(req).await;
    }
    if cookie_token(req.headers()).is_some_and(|t| same(&t, token)) {
        return next.run(req).await;
    }
    if query_token(req.uri().query()).is_some_and(|t| same(&t, token)) {
        let mut resp = next.run(req).await;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        )) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        return resp;
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        "this ferry ui listens beyond loopback: open the URL with ?token= that it printed when it started",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_secret_passes() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert!(!same("", "a"));
    }

    #[test]
    fn the_token_is_read_from_the_cookie_header_and_the_query() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry_ui_token=s3cret; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("s3cret"));
        assert_eq!(query_token(Some("x=1&token=t%20k")).as_deref(), Some("t k"));
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn loopback_needs_no_token_and_other_addresses_do() -> Result<(), UiError> {
        let local = Access::new("127.0.0.1:8080".parse().expect("an address"), false)?;
        assert!(local.token.is_none());
        assert!(
            local
                .hosts
                .as_ref()
                .is_some_and(|h| h.contains(&"localhost:8080".to_string()))
        );
        let wide = Access::new("0.0.0.0:8080".parse().expect("an address"), false)?;
        assert_eq!(wide.token.as_ref().map(String::len), Some(64));
        assert!(wide.hosts.is_none());
        assert_ne!(wide.csrf, wide.raw_key);
        Ok(())
    }
}
