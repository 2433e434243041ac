//! Workspaces: a project's runs, and one run's layers drawn as a graph (parents to children,
//! one lane per job) with each layer's files and the clashes an attach refuses, from the same
//! plan `ferry workspace attach` follows (`ferry_workspace_layers::plan_attach`).

use std::collections::HashSet;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use ferry_workspace_layers::{Clash, WorkspaceError};
use maud::{Markup, html};
use serde::Deserialize;

use crate::graph::{LayerNode, layer_svg};
use crate::html::{self, Tab, project_base, query, seg, size, when};
use crate::pages::{PageError, can_list, page_of, signature_cell};
use crate::server::{App, html_page};

const PER_PAGE: usize = 50;

fn files(n: u64) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}
/// Entries of one layer listed before "and N more".
const ENTRIES_SHOWN: usize = 500;

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
            html::page(&app, Some(&project), Tab::Workspaces, "Workspaces", body),
        ),
        Err(e) => e.into_page(&app, Some(&project), Tab::Workspaces),
    }
}

async fn render_runs(app: &App, project: &str, q: &RunsQuery) -> Result<Markup, PageError> {
    can_list(app, "the workspaces of a project")?;
    let runs = ferry_workspace_layers::runs(&app.store, project)
        .await
        .map_err(|e| PageError::from_error("the workspaces of a project", &e))?;
    let (page_no, offset) = page_of(q.page, PER_PAGE);
    let now = Utc::now();
    let base = format!("{}/workspaces", project_base(project));
    Ok(html! {
        @if runs.is_empty() {
            p.empty { "No workspace layers in project " code { (project) } "." }
        } @else {
            table #runs {
                thead { tr { th { "workflow run" } th { "layers" } th { "stored" } th { "last layer" } } }
                tbody {
                    @for r in runs.iter().skip(offset).take(PER_PAGE) {
                        tr data-workflow=(r.workflow) {
                            td { a href=(format!("{base}/{}", seg(&r.workflow))) { code { (r.workflow) } } }
                            td.num { (r.layers) }
                            td.num { (size(r.bytes)) }
                            td { (when(Some(r.newest), now, "")) }
                        }
                    }
                }
            }
        }
        (html::pager(&base, page_no, PER_PAGE, runs.len()))
    })
}

#[derive(Debug, Default)]
pub(crate) struct RunQuery {
    /// `--from` jobs: only their layers and ancestors.
    from: Vec<String>,
}

pub(crate) async fn run(
    State(app): State<App>,
    Path((project, workflow)): Path<(String, String)>,
    raw: axum::extract::RawQuery,
) -> Response {
    let q = RunQuery {
        from: url::form_urlencoded::parse(raw.0.unwrap_or_default().as_bytes())
            .filter(|(k, v)| k == "from" && !v.is_empty())
            .map(|(_, v)| v.into_owned())
            .collect(),
    };
    let title = format!("Workspace of run {workflow}");
    match render_run(&app, &project, &workflow, &q).await {
        Ok(body) => html_page(
            StatusCode::OK,
            html::page(&app, Some(&project), Tab::Workspaces, &title, body),
        ),
        Err(e) => e.into_page(&app, Some(&project), Tab::Workspaces),
    }
}

async fn render_run(
    app: &App,
    project: &str,
    workflow: &str,
    q: &RunQuery,
) -> Result<Markup, PageError> {
    can_list(app, "the layers of a run")?;
    let run = ferry_workspace_layers::inspect(&app.store, project, workflow, &q.from)
        .await
        .map_err(|e| PageError::from_error("the layers of a run", &e))?;
    if run.layers.is_empty() {
        return Err(PageError::NotFound(format!(
            "Run {workflow} has no workspace layers in project {project}."
        )));
    }
    let now = Utc::now();
    let plan = &run.plan;
    let clashing: HashSet<&str> = plan
        .conflicts
        .iter()
        .flat_map(|c| [c.first.id.as_str(), c.second.id.as_str()])
        .collect();
    let selected: HashSet<usize> = plan.ordered.iter().copied().collect();
    // Drawn in attach order (parents first), then any layer the selection left out.
    let mut draw: Vec<usize> = plan.ordered.clone();
    draw.extend((0..run.layers.len()).filter(|i| !selected.contains(i)));
    let nodes: Vec<LayerNode> = draw
        .iter()
        .map(|&i| {
            let l = &run.layers[i];
            LayerNode {
                id: l.body.id.clone(),
                job: l.body.job.clone(),
                parents: l.body.parents.clone(),
                detail: format!(
                    "{} · {} · {}",
                    files(l.body.tree.files),
                    size(l.data.size),
                    l.created.format("%H:%M:%S")
                ),
                clash: clashing.contains(l.body.id.as_str()),
                selected: selected.contains(&i),
            }
        })
        .collect();
    let jobs: Vec<String> = {
        let mut j: Vec<String> = run.layers.iter().map(|l| l.body.job.clone()).collect();
        j.sort();
        j.dedup();
        j
    };
    let base = format!("{}/workspaces/{}", project_base(project), seg(workflow));
    let attach_words = if q.from.is_empty() {
        "ferry workspace attach".to_string()
    } else {
        format!(
            "ferry workspace attach {}",
            q.from
                .iter()
                .map(|f| format!("--from {f}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let message = (!plan.conflicts.is_empty()).then(|| {
        WorkspaceError::Conflict {
            workflow: workflow.to_string(),
            conflicts: plan.conflicts.clone(),
        }
        .to_string()
    });
    Ok(html! {
        form.filter method="get" action=(base) {
            span { "attach only the layers of " }
            @for j in &jobs {
                label.check { input type="checkbox" name="from" value=(j) checked[q.from.contains(j)]; " " (j) }
            }
            button type="submit" { "show" }
            @if !q.from.is_empty() { a href=(base) { "every job" } }
        }
        @if !plan.missing.is_empty() {
            (html::notice("Some jobs have no layer in this run.", &plan.missing.join(", ")))
        }
        p.summary {
            (run.layers.len()) " layers by " (jobs.len()) " jobs; " code { (attach_words) } " applies "
            (plan.ordered.len()) " of them, parents first"
            @if plan.conflicts.is_empty() { " without clashes." } @else { span.bad { " — and refuses: " (plan.conflicts.len()) " clash" @if plan.conflicts.len() != 1 { "es" } "." } }
        }
        div.graph-wrap { (layer_svg(&nodes)) }
        @if let Some(m) = &message {
            section #conflicts {
                h2 { "Clashing paths" }
                table.conflicts {
                    thead { tr { th { "path" } th { "clash" } th { "first" } th { "second" } } }
                    tbody {
                        @for c in &plan.conflicts {
                            tr data-path=(c.path) {
                                td { code { (c.path) } }
                                td { (match c.clash { Clash::SamePath => "same path in layers side by side", Clash::FileAndFolder => "a file in one, a folder in the other" }) }
                                td { a href=(format!("#layer-{}", c.first.id)) { (c.first.job) } " " span.muted { (c.first.id) } }
                                td { a href=(format!("#layer-{}", c.second.id)) { (c.second.job) } " " span.muted { (c.second.id) } }
                            }
                        }
                    }
                }
                details { summary { "what attach prints" } pre { (m) } }
            }
        }
        section #layers {
            h2 { "Layers" }
            @for &i in &draw {
                @let l = &run.layers[i];
                @let entries: Vec<(&str, ferry_core::archive::EntryKind)> = l.body.entries.iter().collect();
                details.layer id=(format!("layer-{}", l.body.id)) open[clashing.contains(l.body.id.as_str())] {
                    summary {
                        strong { (l.body.job) } " " code { (l.body.id) }
                        " · " (files(l.body.tree.files)) " · " (size(l.data.size)) " stored, " (size(l.body.tree.unpacked_bytes)) " unpacked · created " (when(Some(l.created), now, ""))
                        @if !selected.contains(&i) { " · " span.muted { "not applied by this attach" } }
                    }
                    dl.meta {
                        dt { "parents" }
                        dd { @if l.body.parents.is_empty() { span.muted { "none" } } @for p in &l.body.parents { a href=(format!("#layer-{p}")) { code { (p) } } " " } }
                        dt { "expires" } dd { (when(l.expires, now, "never")) }
                        dt { "signature" } dd { (signature_cell(l.signature.as_ref().map(|s| s.key.as_str()), None)) }
                    }
                    table.files {
                        thead { tr { th { "path" } th { "kind" } } }
                        tbody {
                            @for (path, kind) in entries.iter().take(ENTRIES_SHOWN) {
                                tr { td { code { (path) } } td { (format!("{kind:?}").to_lowercase()) } }
                            }
                        }
                    }
                    @if entries.len() > ENTRIES_SHOWN { p.muted { "and " (entries.len() - ENTRIES_SHOWN) " more entries" } }
                }
            }
        }
        p { a href=(format!("{}/workspaces{}", project_base(project), query(&[]))) { "← every run" } }
    })
}
