//! Usage: bytes per mode and per project from one listing of the store, what `ferry prune`
//! would delete now (`ferry_core::retention::plan` over the three modes' surveys, deleting
//! nothing), and a place for the dead bytes in packs once chunked entries exist.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use ferry_core::manifest::{self, Kind};
use ferry_core::retention::{self, Reason, Retained};
use maud::{Markup, html};

use crate::html::{self, Tab, project_base, seg, size, when};
use crate::pages::{PageError, can_list};
use crate::server::{App, html_page};

/// The mode an object belongs to, from its folder below the project (`docs/FORMAT.md`).
fn mode_of(folder: &str) -> &'static str {
    match folder {
        "caches" | ferry_caches::SCOPES_DIR => "caches",
        "workspaces" => "workspaces",
        "artifacts" => "artifacts",
        "packs" => "packs",
        _ => "other",
    }
}

const MODES: [&str; 5] = ["caches", "workspaces", "artifacts", "packs", "other"];

#[derive(Default)]
struct Totals {
    by_mode: BTreeMap<&'static str, (u64, usize)>,
}

impl Totals {
    fn add(&mut self, mode: &'static str, bytes: u64) {
        let e = self.by_mode.entry(mode).or_default();
        e.0 += bytes;
        e.1 += 1;
    }
    fn bytes(&self, mode: &str) -> u64 {
        self.by_mode.get(mode).map_or(0, |e| e.0)
    }
    fn total(&self) -> u64 {
        self.by_mode.values().map(|e| e.0).sum()
    }
}

pub(crate) async fn show(State(app): State<App>, Path(project): Path<String>) -> Response {
    match render(&app, &project).await {
        Ok(body) => html_page(
            StatusCode::OK,
            html::page(&app, Some(&project), Tab::Usage, "Usage", body),
        ),
        Err(e) => e.into_page(&app, Some(&project), Tab::Usage),
    }
}

async fn render(app: &App, project: &str) -> Result<Markup, PageError> {
    can_list(app, "how the store is used")?;
    let root = format!("{}/", manifest::ROOT);
    let all = app
        .store
        .list(manifest::ROOT)
        .await
        .map_err(|e| PageError::from_error("how the store is used", &e))?;
    let mut projects: BTreeMap<String, Totals> = BTreeMap::new();
    let mut store_totals = Totals::default();
    for o in &all {
        let Some(rest) = o.path.strip_prefix(&root) else {
            continue;
        };
        let mut parts = rest.splitn(3, '/');
        let (Some(p), Some(folder)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = ferry_core::paths::decode_part(p).unwrap_or_else(|| p.to_string());
        let mode = mode_of(folder);
        projects.entry(name).or_default().add(mode, o.size);
        store_totals.add(mode, o.size);
    }
    let mine = projects.get(project);
    let packs = mine.map_or(0, |t| t.bytes("packs"));
    let fragment = format!("{}/usage/prune", project_base(project));
    Ok(html! {
        section #by-mode {
            h2 { "Project " code { (project) } }
            @match mine {
                None => p.empty { "Nothing stored for this project." },
                Some(t) => table.usage {
                    thead { tr { th { "mode" } th { "stored" } th { "objects" } } }
                    tbody {
                        @for m in MODES {
                            @if let Some((b, n)) = t.by_mode.get(m) {
                                tr data-mode=(m) { td { (m) } td.num { (size(*b)) } td.num { (n) } }
                            }
                        }
                        tr.total { td { "total" } td.num { (size(t.total())) } td.num { (t.by_mode.values().map(|e| e.1).sum::<usize>()) } }
                    }
                },
            }
        }
        section #prune data-fragment=(fragment) {
            h2 { "What " code { "ferry prune" } " would delete now" }
            p.muted { a href=(fragment) { "show" } " (reads every manifest of this project)" }
        }
        section #packs {
            h2 { "Dead bytes in packs" }
            @if packs == 0 {
                p.muted { "This project holds no chunked entries (store format 2), so no packs. Once chunked entries exist, the bytes of packs that no live entry references show here." }
            } @else {
                p { "Packs hold " (size(packs)) ". Counting their dead bytes needs chunked-entry support in this page, which arrives with store format 2." }
            }
        }
        section #by-project {
            h2 { "Every project in the store" }
            table.usage {
                thead { tr { th { "project" } @for m in MODES { th { (m) } } th { "total" } } }
                tbody {
                    @for (name, t) in &projects {
                        tr data-project=(name) {
                            td { a href=(format!("/p/{}/usage", seg(name))) { code { (name) } } }
                            @for m in MODES { td.num { (size(t.bytes(m))) } }
                            td.num { (size(t.total())) }
                        }
                    }
                    tr.total {
                        td { "store" }
                        @for m in MODES { td.num { (size(store_totals.bytes(m))) } }
                        td.num { (size(store_totals.total())) }
                    }
                }
            }
        }
    })
}

pub(crate) async fn prune(State(app): State<App>, Path(project): Path<String>) -> Response {
    let body = match render_prune(&app, &project).await {
        Ok(m) => m,
        Err(e) => e.notice(),
    };
    html_page(StatusCode::OK, body)
}

async fn render_prune(app: &App, project: &str) -> Result<Markup, PageError> {
    can_list(app, "what prune would delete")?;
    let modes: [&dyn Retained; 3] = [
        &ferry_caches::Caches,
        &ferry_workspace_layers::Workspaces,
        &ferry_artifacts::Artifacts,
    ];
    let mut surveys = Vec::new();
    for m in modes {
        surveys.push(
            m.survey(&app.store, project)
                .await
                .map_err(|e| PageError::from_error("what prune would delete", &e))?,
        );
    }
    let within = manifest::project_dir(project);
    let markers = app
        .store
        .list(&format!("{within}/{}", retention::UNUSED_DIR))
        .await
        .map_err(|e| PageError::from_error("what prune would delete", &e))?;
    let now = Utc::now();
    let plan = retention::plan(
        surveys,
        &markers,
        now,
        None,
        None,
        app.req.prune_grace,
        &within,
    );
    let bytes: u64 = plan.removals.iter().map(|(r, _)| r.bytes).sum();
    Ok(html! {
        p.summary #prune-summary {
            (plan.removals.len()) " to delete (" (size(bytes)) "); " (plan.kept) " entries kept; caches hold " (size(plan.cache_bytes)) "."
        }
        @for w in &plan.warnings { div.notice { (w) } }
        @if !plan.removals.is_empty() {
            table.prune {
                thead { tr { th { "why" } th { "kind" } th { "entry or object" } th { "bytes" } th { "expired" } } }
                tbody {
                    @for (r, _) in plan.removals.iter().take(500) {
                        tr {
                            td { (match r.reason { Reason::Expired => "expired", Reason::Evicted => "evicted", Reason::Orphaned => "orphaned" }) }
                            td { (match r.kind { Some(Kind::Cache) => "cache", Some(Kind::Layer) => "layer", Some(Kind::Artifact) => "artifact", None => "object" }) }
                            td { code { (r.name) } }
                            td.num { (size(r.bytes)) }
                            td { (when(r.expires, now, "")) }
                        }
                    }
                }
            }
            @if plan.removals.len() > 500 { p.muted { "and " (plan.removals.len() - 500) " more" } }
        }
    })
}
