//! The fake of GitHub's results service (`tests/gha/fake_results.py`) as the tests drive it:
//! new jobs and their runtime tokens, faults, and what it recorded, through its admin API.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde_json::Value;

/// The variables of a `gha` job that ferry's store reads: what the runner gives a JavaScript
/// action for GitHub's services (`ACTIONS_*`), the REST API's, and the fake's admin API. No
/// `GITHUB_ACTIONS`, `GITHUB_RUN_ID` or other CI context.
pub const STORE_VARS: &[&str] = &[
    "ACTIONS_RESULTS_URL",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_CACHE_MODE",
    "GITHUB_TOKEN",
    "GITHUB_API_URL",
    "GITHUB_REPOSITORY",
    "FERRY_GHA_FAKE_URL",
];

/// The fake's admin API, from a `store-gha.env`'s variables.
pub fn admin_url(env: &BTreeMap<String, String>) -> String {
    env.get("FERRY_GHA_FAKE_URL")
        .cloned()
        .expect("store-gha.env names the fake's admin API (FERRY_GHA_FAKE_URL)")
}

/// A new job (`spec` as `POST /_fake/jobs` takes it: `run_id`, `job`, `ref`, `cache_mode`...):
/// the fake's answer, with `env`, `run_id`, `token`.
pub fn new_job(env: &BTreeMap<String, String>, spec: &Value) -> Value {
    admin(env, "POST", "/jobs", Some(spec))
}

/// `base` with the store variables of `job` in place of its own.
pub fn store_vars(base: &BTreeMap<String, String>, job: &Value) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = base
        .iter()
        .filter(|(k, _)| k.as_str() == "FERRY_STORE")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let job_env = job["env"].as_object().expect("the job's environment");
    for name in STORE_VARS {
        if let Some(v) = job_env.get(*name).and_then(Value::as_str) {
            out.insert((*name).to_string(), v.to_string());
        }
    }
    out
}

/// One call to the admin API; panics on anything but 2xx.
pub fn admin(
    env: &BTreeMap<String, String>,
    method: &str,
    route: &str,
    body: Option<&Value>,
) -> Value {
    let url = format!("{}{route}", admin_url(env));
    let body = body.map(Value::to_string).unwrap_or_default();
    let (status, text) = http(method, &url, &body);
    assert!(
        (200..300).contains(&status),
        "{method} {url}: {status} {text}"
    );
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"))
    }
}

/// A plain HTTP/1.1 request to a loopback server; the status and body.
pub fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    http_with(method, url, &[], body)
}

/// [`http`] with extra headers.
pub fn http_with(method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("the fake is plain http on loopback: {url}"));
    let (host_port, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut conn = std::net::TcpStream::connect(host_port).expect("connect to the fake");
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("a read timeout");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("an answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (
        status,
        String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    )
}
