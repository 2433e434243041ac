//! The first page: the store, what it can do (and so what the other pages can show), and
//! the project to look at.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::html::{self, Tab, project_base};
use crate::server::{App, html_page};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct HomeQuery {
    project: Option<String>,
}

pub(crate) async fn show(State(app): State<App>, Query(q): Query<HomeQuery>) -> Response {
    if let Some(p) = q
        .project
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        return Redirect::to(&format!("{}/caches", project_base(p))).into_response();
    }
    let caps = app.store.capabilities();
    let base = project_base(&app.req.project);
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let body = html! {
        p { "Store " code { (app.store.url()) } ", project " code { (app.req.project) } "." }
        ul.links {
            li { a href=(format!("{base}/caches")) { "Caches" } " — every cache with its size, last use, expiry and signature" }
            li { a href=(format!("{base}/workspaces")) { "Workspaces" } " — each run's layers as a graph, and what attach would refuse" }
            li { a href=(format!("{base}/artifacts")) { "Artifacts" } " — each run's and job's files, with previews and downloads" }
            li { a href=(format!("{base}/usage")) { "Usage" } " — bytes per mode and project, and what prune would delete now" }
        }
        h2 { "What this store can do" }
        table.caps #capabilities {
            tbody {
                tr { td { "list its objects" } td { (yes_no(caps.list)) } td.muted { @if !caps.list { "the pages that list (caches, runs, usage) say so instead of showing them" } } }
                tr { td { "pre-signed links" } td { (yes_no(caps.signed_urls)) } td.muted { @if caps.signed_urls && caps.remote { "downloads go straight to the store" } @else { "downloads are served through this page" } } }
                tr { td { "reached over the network" } td { (yes_no(caps.remote)) } td {} }
            }
        }
    };
    html_page(
        StatusCode::OK,
        html::page(&app, None, Tab::Home, "ferry ui", body),
    )
}
