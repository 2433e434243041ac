//! Artifacts: a project's runs, a job's files a folder at a time (size, mode, SHA-256), and one
//! file with its preview: text, images, HTML reports in a sandboxed frame, JUnit summaries.
//! Downloads are pre-signed links on stores that make them, else served through the page
//! with their digest checked as they stream.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::Utc;
use ferry_artifacts::{Stored, Target};
use futures::StreamExt;
use maud::{Markup, html};
use serde::Deserialize;
use sha2::Digest;

use crate::access::same;
use crate::html::{self, Tab, project_base, query, seg, size, when};
use crate::pages::{PageError, can_list, page_of, signature_cell};
use crate::preview::{self, Kind};
use crate::server::{App, html_page};

const PER_PAGE: usize = 100;
const RUNS_PER_PAGE: usize = 50;
/// How long a pre-signed download link works.
const LINK_LIFETIME: Duration = Duration::from_secs(3600);

/// The policy of an artifact's own bytes: a sandbox without scripts or a same origin, nothing
/// from elsewhere, and framed only by this server's pages.
const RAW_CSP: &str = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
    font-src 'self' data:; media-src 'self'; frame-ancestors 'self'";

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunsQuery {
    page: Option<usize>,
}

pub(crate) async fn runs(
    State(app): State<App>,
    Path(project): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Response {
    match render_runs(&app, &project, &q).await {
        Ok(body) => html_page(
            StatusCode::OK,
            html::page(&app, Some(&project), Tab::Artifacts, "Artifacts", body),
        ),
        Err(e) => e.into_page(&app, Some(&project), Tab::Artifacts),
    }
}

async fn render_runs(app: &App, project: &str, q: &RunsQuery) -> Result<Markup, PageError> {
    can_list(app, "the artifacts of a project")?;
    let runs = ferry_artifacts::runs(&app.store, project)
        .await
        .map_err(|e| PageError::from_error("the artifacts of a project", &e))?;
    let (page_no, offset) = page_of(q.page, RUNS_PER_PAGE);
    let now = Utc::now();
    let base = format!("{}/artifacts", project_base(project));
    Ok(html! {
        @if runs.is_empty() {
            p.empty { "No artifacts in project " code { (project) } "." }
        } @else {
            table #runs {
                thead { tr { th { "run" } th { "jobs (files)" } th { "last upload" } } }
                tbody {
                    @for r in runs.iter().skip(offset).take(RUNS_PER_PAGE) {
                        tr data-run=(r.run) {
                            td { code { (r.run) } }
                            td {
                                @for j in &r.jobs {
                                    a.job href=(format!("{base}/{}/{}", seg(&r.run), seg(&j.job))) { (j.job) } " (" (j.files) ") "
                                }
                            }
                            td { (when(Some(r.newest), now, "")) }
                        }
                    }
                }
            }
        }
        (html::pager(&base, page_no, RUNS_PER_PAGE, runs.len()))
    })
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FolderQuery {
    #[serde(default)]
    dir: String,
    page: Option<usize>,
}

fn job_base(project: &str, target: &Target) -> String {
    format!(
        "{}/artifacts/{}/{}",
        project_base(project),
        seg(&target.run),
        seg(&target.job)
    )
}

/// The folder path as links, top first.
fn breadcrumbs(base: &str, target: &Target, dir: &str) -> Markup {
    let mut links: Vec<(String, &str)> = Vec::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        let up_to = match links.last() {
            Some((prev, _)) => format!("{prev}/{part}"),
            None => part.to_string(),
        };
        links.push((up_to, part));
    }
    html! {
        nav.crumbs {
            a href=(base) { "run " (target.run) " / job " (target.job) }
            @for (path, part) in &links {
                " / " a href=(format!("{base}{}", query(&[("dir", path)]))) { (part) }
            }
        }
    }
}

pub(crate) async fn folder(
    State(app): State<App>,
    Path((project, run, job)): Path<(String, String, String)>,
    Query(q): Query<FolderQuery>,
) -> Response {
    let target = Target { run, job };
    let title = format!("Artifacts of {} / {}", target.run, target.job);
    match render_folder(&app, &project, &target, &q).await {
        Ok(body) => html_page(
            StatusCode::OK,
            html::page(&app, Some(&project), Tab::Artifacts, &title, body),
        ),
        Err(e) => e.into_page(&app, Some(&project), Tab::Artifacts),
    }
}

async fn render_folder(
    app: &App,
    project: &str,
    target: &Target,
    q: &FolderQuery,
) -> Result<Markup, PageError> {
    can_list(app, "the artifacts of a job")?;
    let (page_no, offset) = page_of(q.page, PER_PAGE);
    let folder = ferry_artifacts::browse(&app.store, project, target, &q.dir, offset, PER_PAGE)
        .await
        .map_err(|e| PageError::from_error("the artifacts of a job", &e))?;
    if folder.job_files == 0 {
        return Err(PageError::NotFound(format!(
            "Run {} job {} has no artifacts in project {project}.",
            target.run, target.job
        )));
    }
    let now = Utc::now();
    let base = job_base(project, target);
    let here = format!("{base}{}", query(&[("dir", &folder.path)]));
    let child = |name: &str| {
        if folder.path.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", folder.path)
        }
    };
    Ok(html! {
        (breadcrumbs(&base, target, &folder.path))
        p.summary { (folder.job_files) " files in this job · " (folder.total_files) " in this folder" }
        table.tree #tree {
            thead { tr { th { "name" } th { "size" } th { "mode" } th { "SHA-256" } th { "uploaded" } th { "expires" } th {} } }
            tbody {
                @for f in &folder.folders {
                    tr.folder data-path=(child(&f.name)) {
                        td { a href=(format!("{base}{}", query(&[("dir", &child(&f.name))]))) { "▸ " (f.name) "/" } }
                        td.num.muted { (f.files) " files" } td {} td {} td {} td {} td {}
                    }
                }
                @for f in &folder.files {
                    @let name = f.path.rsplit('/').next().unwrap_or(&f.path);
                    tr.file data-path=(f.path) {
                        td { a.view href=(format!("{base}/file{}", query(&[("path", &f.path)]))) { (name) } }
                        td.num { (size(f.size)) }
                        td { code { (format!("{:04o}", f.mode)) } }
                        td { code.sha title=(f.sha256) { (f.sha256) } }
                        td { (when(Some(f.created), now, "")) }
                        td { (when(f.expires, now, "never")) }
                        td { a.download href=(format!("{base}/download{}", query(&[("path", &f.path)]))) { "download" } }
                    }
                }
            }
        }
        (html::pager(&here, page_no, PER_PAGE, folder.total_files))
    })
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileQuery {
    #[serde(default)]
    path: String,
}

async fn find(app: &App, project: &str, target: &Target, path: &str) -> Result<Stored, PageError> {
    ferry_artifacts::find(&app.store, project, target, path)
        .await
        .map_err(|e| PageError::from_error("this artifact", &e))?
        .ok_or_else(|| {
            PageError::NotFound(format!(
                "No artifact {path:?} in run {} job {}.",
                target.run, target.job
            ))
        })
}

/// The first `limit` bytes of an object (all of it when smaller).
async fn head_bytes(app: &App, data: &str, limit: usize) -> Result<Vec<u8>, PageError> {
    let mut stream = app
        .store
        .get_stream(data)
        .await
        .map_err(|e| PageError::from_error("this artifact's bytes", &e))?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PageError::Failed {
            what: "this artifact's bytes".into(),
            why: e.to_string(),
        })?;
        let room = limit - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn file(
    State(app): State<App>,
    Path((project, run, job)): Path<(String, String, String)>,
    Query(q): Query<FileQuery>,
) -> Response {
    let target = Target { run, job };
    match render_file(&app, &project, &target, &q.path).await {
        Ok(body) => html_page(
            StatusCode::OK,
            html::page(&app, Some(&project), Tab::Artifacts, &q.path, body),
        ),
        Err(e) => e.into_page(&app, Some(&project), Tab::Artifacts),
    }
}

/// Where the raw bytes of an artifact are served (for frames and images): the path keeps the
/// artifact's own folders, so a report's relative links reach its sibling files.
fn raw_href(app: &App, project: &str, target: &Target, path: &str) -> String {
    let parts: Vec<String> = path.split('/').map(seg).collect();
    format!(
        "/raw/{}/{}/{}/{}/{}",
        app.access.raw_key,
        seg(project),
        seg(&target.run),
        seg(&target.job),
        parts.join("/")
    )
}

async fn render_file(
    app: &App,
    project: &str,
    target: &Target,
    path: &str,
) -> Result<Markup, PageError> {
    let stored = find(app, project, target, path).await?;
    let f = &stored.entry;
    let now = Utc::now();
    let base = job_base(project, target);
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let sample = head_bytes(app, &stored.data.path, preview::TEXT_PREVIEW).await?;
    let kind = preview::kind(path, &sample);
    let raw = raw_href(app, project, target, path);
    let preview = match kind {
        Kind::Image => html! { img.preview src=(raw) alt=(format!("preview of {path}")); },
        Kind::Html => html! {
            p.muted { "The report is shown in a sandbox: its scripts do not run and it cannot reach this page." }
            iframe.report #report sandbox="" src=(raw) title=(format!("report {path}")) referrerpolicy="no-referrer" {}
        },
        Kind::JUnit => junit_summary(app, &stored, &sample).await,
        Kind::Text => text_preview(&sample, f.size),
        Kind::Binary => html! { p.muted { "No preview for this kind of file; download it." } },
    };
    Ok(html! {
        (breadcrumbs(&base, target, dir))
        dl.meta #meta {
            dt { "path" } dd { code { (f.path) } }
            dt { "size" } dd data-bytes=(f.size) { (size(f.size)) " (" (f.size) " bytes)" }
            dt { "mode" } dd { code { (format!("{:04o}", f.mode)) } }
            dt { "SHA-256" } dd { code #sha256 { (f.sha256) } }
            dt { "uploaded" } dd { (when(Some(f.created), now, "")) }
            dt { "expires" } dd { (when(f.expires, now, "never")) }
            dt { "signature" } dd { (signature_cell(stored.signed_by.as_deref(), None)) }
        }
        p { a.download #download href=(format!("{base}/download{}", query(&[("path", path)]))) { "download" }
            span.muted { @if app.store.capabilities().signed_urls && app.store.is_remote() { " (a pre-signed link, valid 1h)" } @else { " (served by this page)" } } }
        section.preview #preview data-kind=(format!("{kind:?}").to_lowercase()) { (preview) }
    })
}

fn text_preview(sample: &[u8], total: u64) -> Markup {
    let text = String::from_utf8_lossy(sample);
    html! {
        @if (sample.len() as u64) < total {
            p.muted { "the first " (size(sample.len() as u64)) " of " (size(total)) }
        }
        pre.text #text { (text) }
    }
}

async fn junit_summary(app: &App, stored: &Stored, sample: &[u8]) -> Markup {
    if stored.entry.size > crate::junit::MAX_BYTES {
        return html! {
            (html::notice("Too large to summarise.", &format!("JUnit reports over {} are shown as text only.", size(crate::junit::MAX_BYTES))))
            (text_preview(sample, stored.entry.size))
        };
    }
    let whole = match head_bytes(app, &stored.data.path, crate::junit::MAX_BYTES as usize).await {
        Ok(b) => b,
        Err(e) => return e.notice(),
    };
    match crate::junit::parse(&whole) {
        Err(why) => html! {
            (html::notice("Not a JUnit report this page can read.", &why))
            (text_preview(sample, stored.entry.size))
        },
        Ok(s) => html! {
            div.junit #junit {
                p.totals {
                    span { (s.tests) " tests" } " · "
                    span.bad[s.failures > 0] { (s.failures) " failures" } " · "
                    span.bad[s.errors > 0] { (s.errors) " errors" } " · "
                    span { (s.skipped) " skipped" } " · "
                    span.muted { (s.suites) " suites" }
                }
                @if s.failed.is_empty() {
                    p.good { "No failing cases." }
                } @else {
                    h2 { "Failing cases" }
                    ol.failures {
                        @for f in &s.failed {
                            li.failure data-case=(f.name) {
                                strong { (f.classname) @if !f.classname.is_empty() { "." } (f.name) }
                                " " span.badge.danger { (f.kind) }
                                @if !f.suite.is_empty() { " " span.muted { "in " (f.suite) } }
                                @if !f.message.is_empty() { p.message { (f.message) } }
                                @if !f.text.trim().is_empty() { details { summary { "details" } pre { (f.text.trim()) } } }
                            }
                        }
                    }
                    @if s.more_failed > 0 { p.muted { "and " (s.more_failed) " more failing cases" } }
                }
            }
            details { summary { "the report as text" } (text_preview(sample, stored.entry.size)) }
        },
    }
}

/// Streams an object, checking its size and SHA-256 as it goes: a mismatch ends the response
/// with an error, so a browser never finishes a download of altered bytes.
async fn checked_body(app: &App, stored: &Stored) -> Result<Body, PageError> {
    let stream = app
        .store
        .get_stream(&stored.data.path)
        .await
        .map_err(|e| PageError::from_error("this artifact's bytes", &e))?;
    let expected_size = stored.data.size;
    let expected_sha = stored.data.sha256.clone();
    let state = (stream, sha2::Sha256::new(), 0u64, false);
    let body = futures::stream::unfold(state, move |(mut s, mut h, mut n, done)| {
        let expected_sha = expected_sha.clone();
        async move {
            if done {
                return None;
            }
            match s.next().await {
                Some(Ok(chunk)) => {
                    n += chunk.len() as u64;
                    if n > expected_size {
                        return Some((
                            Err(std::io::Error::other("more bytes than recorded")),
                            (s, h, n, true),
                        ));
                    }
                    h.update(&chunk);
                    Some((Ok::<Bytes, std::io::Error>(chunk), (s, h, n, false)))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e.to_string())), (s, h, n, true))),
                None => {
                    let actual = format!("{:x}", h.clone().finalize());
                    if n != expected_size || actual != expected_sha {
                        Some((
                            Err(std::io::Error::other("digest mismatch")),
                            (s, h, n, true),
                        ))
                    } else {
                        None
                    }
                }
            }
        }
    });
    Ok(Body::from_stream(body))
}

/// A download: a pre-signed link on stores that make them over the network, else the bytes
/// through this page, as an attachment.
pub(crate) async fn download(
    State(app): State<App>,
    Path((project, run, job)): Path<(String, String, String)>,
    Query(q): Query<FileQuery>,
) -> Response {
    let target = Target { run, job };
    let stored = match find(&app, &project, &target, &q.path).await {
        Ok(s) => s,
        Err(e) => return e.into_page(&app, Some(&project), Tab::Artifacts),
    };
    let caps = app.store.capabilities();
    if caps.signed_urls && caps.remote {
        match ferry_artifacts::link(&app.store, &project, &target, &q.path, LINK_LIFETIME).await {
            Ok(url) => {
                if let Ok(v) = HeaderValue::from_str(&url) {
                    return (StatusCode::FOUND, [(header::LOCATION, v)]).into_response();
                }
            }
            Err(e) => {
                return PageError::from_error("a link to this artifact", &e).into_page(
                    &app,
                    Some(&project),
                    Tab::Artifacts,
                );
            }
        }
    }
    let body = match checked_body(&app, &stored).await {
        Ok(b) => b,
        Err(e) => return e.into_page(&app, Some(&project), Tab::Artifacts),
    };
    let name = q.path.rsplit('/').next().unwrap_or("file");
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        seg(name)
    );
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.data.size));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(RAW_CSP),
    );
    resp
}

/// An artifact's bytes for a frame or an image, sandboxed by its policy. The key in the path
/// stands in for the page's token: a sandboxed frame sends no cookie.
pub(crate) async fn raw(
    State(app): State<App>,
    Path((key, project, run, job, path)): Path<(String, String, String, String, String)>,
) -> Response {
    if !same(&key, &app.access.raw_key) {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    }
    let target = Target { run, job };
    let stored = match find(&app, &project, &target, &path).await {
        Ok(s) => s,
        Err(_) => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    let head = head_bytes(&app, &stored.data.path, 512)
        .await
        .unwrap_or_default();
    let kind = preview::content_type(&path, &head);
    let body = match checked_body(&app, &stored).await {
        Ok(b) => b,
        Err(_) => return (StatusCode::BAD_GATEWAY, "the store failed\n").into_response(),
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(RAW_CSP),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.data.size));
    resp
}
