//! The caches of a project: a sortable, filterable, paged table read through
//! `ferry_caches::page` (only the page's manifests are read), charts of what saves stored per
//! day and of stored bytes by key prefix, and deletes through `ferry_caches::remove`, the code
//! `ferry cache rm` runs.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use ferry_caches::{PageQuery, SortBy};
use maud::{Markup, html};
use serde::Deserialize;

use crate::access::same;
use crate::graph::bar_chart;
use crate::html::{self, Tab, project_base, query, size, when};
use crate::pages::{PageError, can_list, page_of, signature_cell};
use crate::server::{App, html_page};

/// Caches on one page.
pub(crate) const PER_PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CacheQuery {
    #[serde(default)]
    prefix: String,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<usize>,
    /// Set after a delete: how many went.
    deleted: Option<usize>,
}

const SORTS: [(&str, SortBy); 6] = [
    ("created", SortBy::Created),
    ("key", SortBy::Key),
    ("last-used", SortBy::LastUsed),
    ("stored", SortBy::Stored),
    ("unpacked", SortBy::Unpacked),
    ("expires", SortBy::Expires),
];

fn sort_of(name: Option<&str>) -> (&'static str, SortBy) {
    SORTS
        .iter()
        .find(|(n, _)| Some(*n) == name)
        .copied()
        .unwrap_or(SORTS[0])
}

pub(crate) async fn show(
    State(app): State<App>,
    Path(project): Path<String>,
    Query(q): Query<CacheQuery>,
) -> Response {
    match render(&app, &project, &q).await {
        Ok(body) => html_page(
            StatusCode::OK,
            html::page(&app, Some(&project), Tab::Caches, "Caches", body),
        ),
        Err(e) => e.into_page(&app, Some(&project), Tab::Caches),
    }
}

async fn render(app: &App, project: &str, q: &CacheQuery) -> Result<Markup, PageError> {
    can_list(app, "the caches of a project")?;
    let (sort_name, sort) = sort_of(q.sort.as_deref());
    // Newest, biggest and latest first unless asked otherwise; keys A to Z, soonest expiry
    // first.
    let ascending_first = |s: SortBy| matches!(s, SortBy::Key | SortBy::Expires);
    let descending = match q.dir.as_deref() {
        Some("asc") => false,
        Some("desc") => true,
        _ => !ascending_first(sort),
    };
    let (page_no, offset) = page_of(q.page, PER_PAGE);
    let page = ferry_caches::page(
        &app.store,
        project,
        &PageQuery {
            prefix: q.prefix.clone(),
            sort,
            descending,
            offset,
            limit: PER_PAGE,
        },
        &app.req.trust,
    )
    .await
    .map_err(|e| PageError::from_error("the caches of a project", &e))?;
    let now = Utc::now();
    let base = format!("{}/caches", project_base(project));
    let dir_name = if descending { "desc" } else { "asc" };
    let here = format!(
        "{base}{}",
        query(&[
            ("prefix", &q.prefix),
            ("sort", sort_name),
            ("dir", dir_name)
        ])
    );
    let header = |label: &str, name: &str| {
        let (_, s) = sort_of(Some(name));
        let current = s == sort;
        let next_dir = if current {
            if descending { "asc" } else { "desc" }
        } else if ascending_first(s) {
            "asc"
        } else {
            "desc"
        };
        let href = format!(
            "{base}{}",
            query(&[("prefix", &q.prefix), ("sort", name), ("dir", next_dir)])
        );
        let arrow = match (current, descending) {
            (false, _) => "",
            (true, true) => " ▼",
            (true, false) => " ▲",
        };
        html! {
            th aria-sort=(match (current, descending) { (false, _) => "none", (true, true) => "descending", (true, false) => "ascending" }) {
                a.sort data-sort=(name) href=(href)
                    title=(if s.from_listing() { "sort" } else { "sort (reads every manifest of the filtered caches)" }) { (label) (arrow) }
            }
        }
    };
    let deleting = app.access.allow_delete;
    let table = html! {
        table.caches #caches {
            thead { tr {
                @if deleting { th { input #select-all type="checkbox" title="select every cache on this page"; } }
                (header("key", "key"))
                th { "scope" }
                (header("stored", "stored"))
                (header("unpacked", "unpacked"))
                th { "format" }
                (header("created", "created"))
                (header("last used", "last-used"))
                (header("expires", "expires"))
                th { "signature" }
            } }
            tbody {
                @for c in &page.caches {
                    @let expired = c.expires.is_some_and(|e| e <= now);
                    tr.expired[expired] data-key=(c.key) {
                        @if deleting {
                            td { input.pick type="checkbox" name="entry" form="delete-form"
                                value=(format!("{}|{}", c.scope.as_deref().map(ferry_core::paths::encode_part).unwrap_or_default(), c.key))
                                aria-label=(format!("select {}", c.key)); }
                        }
                        td.key { code { (c.key) } }
                        td { (c.scope.as_deref().unwrap_or("default")) }
                        td.num data-bytes=(c.bytes) { (size(c.bytes)) }
                        td.num { (size(c.unpacked_bytes)) " · " (c.files) " file" @if c.files != 1 { "s" } }
                        td { (format!("{:?}", c.compression).to_lowercase()) }
                        td { (when(Some(c.created), now, "")) }
                        td { (when(c.last_used, now, "never restored")) }
                        td { (when(c.expires, now, "never")) @if expired { " " span.badge.danger { "expired" } } }
                        td { (signature_cell(c.signed_by.as_deref(), c.trusted)) }
                    }
                }
            }
        }
    };
    Ok(html! {
        @if let Some(n) = q.deleted {
            div.notice.ok role="status" { "Deleted " (n) " cache" @if n != 1 { "s" } "." }
        }
        form.filter method="get" action=(base) {
            label for="prefix" { "key prefix" }
            input #prefix name="prefix" value=(q.prefix) placeholder="e.g. v1-deps-";
            input type="hidden" name="sort" value=(sort_name);
            input type="hidden" name="dir" value=(dir_name);
            button type="submit" { "filter" }
            @if !q.prefix.is_empty() { a href=(base) { "clear" } }
        }
        p.summary {
            (page.total) " cache" @if page.total != 1 { "s" }
            @if !q.prefix.is_empty() { " with keys starting " code { (q.prefix) } }
            " · " span.muted { (page.manifests_read) " manifests read for this page" }
        }
        @for w in &page.warnings { div.notice { (w) } }
        section.charts #charts data-fragment=(format!("{base}/charts{}", query(&[("prefix", &q.prefix)]))) {
            h2 { "Charts" }
            p.muted { a href=(format!("{base}/charts{}", query(&[("prefix", &q.prefix)]))) { "show" } " bytes stored per day and by key prefix (reads every manifest of these caches)" }
        }
        @if page.caches.is_empty() {
            p.empty { "No caches" @if !q.prefix.is_empty() { " with keys starting " code { (q.prefix) } } "." }
        } @else {
            (table)
            @if deleting {
                form #delete-form.delete method="post" action=(format!("{base}/delete")) {
                    input type="hidden" name="csrf" value=(app.access.csrf);
                    input type="hidden" name="prefix" value=(q.prefix);
                    input type="hidden" name="sort" value=(sort_name);
                    input type="hidden" name="dir" value=(dir_name);
                    input type="hidden" name="page" value=(page_no);
                    button.danger #delete-selected type="submit" { "delete selected" }
                    span.muted { " removes the manifest, archive and used marker, as " code { "ferry cache rm" } " does" }
                }
            }
        }
        (html::pager(&here, page_no, PER_PAGE, page.total))
    })
}

/// The charts: bytes saves stored per day (from a listing of the data folders) and stored
/// bytes by key prefix (every manifest of the filtered caches is read), so this is a fragment
/// the page loads after it is drawn.
pub(crate) async fn charts(
    State(app): State<App>,
    Path(project): Path<String>,
    Query(q): Query<CacheQuery>,
) -> Response {
    let body = match render_charts(&app, &project, &q.prefix).await {
        Ok(m) => m,
        Err(e) => e.notice(),
    };
    html_page(StatusCode::OK, body)
}

/// The group of a key in the chart: everything before its last `-` (keys such as
/// `v1-deps-linux-<hash>` group as `v1-deps-linux-`).
pub(crate) fn key_group(key: &str) -> &str {
    match key.rfind('-') {
        Some(i) if i > 0 => &key[..=i],
        _ => key,
    }
}

async fn render_charts(app: &App, project: &str, prefix: &str) -> Result<Markup, PageError> {
    can_list(app, "the caches of a project")?;
    let now = Utc::now();
    let stored = ferry_caches::stored_per_day(&app.store, project)
        .await
        .map_err(|e| PageError::from_error("the caches of a project", &e))?;
    let data_bytes: u64 = stored.values().sum();
    let days: Vec<(String, u64)> = {
        let since = (now - Duration::days(29)).date_naive();
        let mut by_day: BTreeMap<_, u64> = BTreeMap::new();
        let mut d = since;
        while d <= now.date_naive() {
            by_day.insert(d, 0);
            d = d.succ_opt().unwrap_or(d + Duration::days(1));
        }
        for (day, bytes) in &stored {
            if let Some(b) = by_day.get_mut(day) {
                *b += bytes;
            }
        }
        by_day
            .into_iter()
            .map(|(d, b)| (d.format("%m-%d").to_string(), b))
            .collect()
    };
    let caches = ferry_caches::stored_by_key(&app.store, project, prefix)
        .await
        .map_err(|e| PageError::from_error("the caches of a project", &e))?;
    let mut groups: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for (key, bytes) in &caches {
        let g = groups.entry(key_group(key)).or_default();
        g.0 += bytes;
        g.1 += 1;
    }
    let mut rows: Vec<(&str, (u64, usize))> = groups.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(b.0)));
    let base = format!("{}/caches", project_base(project));
    let max = rows.first().map_or(1, |r| r.1.0.max(1));
    Ok(html! {
        div.charts {
        figure {
            figcaption { "bytes stored by saves per day, last 30 days (all cache data: " (size(data_bytes)) ")" }
            (bar_chart(&days, "stored-per-day"))
        }
        figure #by-prefix {
        figcaption { "stored bytes by key prefix" @if !prefix.is_empty() { " (keys starting " code { (prefix) } ")" } }
        table.prefixes {
            thead { tr { th { "key prefix" } th { "caches" } th { "stored" } th {} } }
            tbody {
                @for (group, (bytes, count)) in rows.iter().take(25) {
                    tr {
                        td { a href=(format!("{base}{}", query(&[("prefix", group)]))) { code { (group) } } }
                        td.num { (count) }
                        td.num { (size(*bytes)) }
                        td.barcell { (crate::graph::hbar(*bytes, max)) }
                    }
                }
            }
        }
        @if rows.len() > 25 { p.muted { (rows.len() - 25) " smaller prefixes not shown" } }
        }
        }
    })
}

/// Deletes the chosen caches: only with `--allow-delete`, only by POST, only with this
/// process's CSRF token.
pub(crate) async fn delete(
    State(app): State<App>,
    Path(project): Path<String>,
    body: Bytes,
) -> Response {
    if !app.access.allow_delete {
        return PageError::Forbidden(
            "This ferry ui is read-only: start it with --allow-delete to delete caches.".into(),
        )
        .into_page(&app, Some(&project), Tab::Caches);
    }
    let mut csrf = None;
    let mut back: Vec<(String, String)> = Vec::new();
    let mut by_scope: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => csrf = Some(v.into_owned()),
            "prefix" | "sort" | "dir" | "page" => back.push((k.into_owned(), v.into_owned())),
            "entry" => {
                let Some((scope, key)) = v.split_once('|') else {
                    continue;
                };
                let scope = (!scope.is_empty())
                    .then(|| ferry_core::paths::decode_part(scope))
                    .flatten();
                by_scope.entry(scope).or_default().push(key.to_string());
            }
            _ => {}
        }
    }
    if !csrf.is_some_and(|t| same(&t, &app.access.csrf)) {
        return PageError::Forbidden(
            "Refused: the form did not carry this page's token (reload the page and try again)."
                .into(),
        )
        .into_page(&app, Some(&project), Tab::Caches);
    }
    let mut deleted = 0;
    for (scope, keys) in &by_scope {
        match ferry_caches::remove(&app.store, &project, scope.as_deref(), keys).await {
            Ok(removed) => deleted += removed.len(),
            // Removed meanwhile (another page, `ferry cache rm`, prune): gone all the same.
            Err(ferry_caches::CacheError::NotFound { keys: missing }) => {
                deleted += keys.len().saturating_sub(missing.len());
            }
            Err(e) => {
                return PageError::from_error("or delete these caches", &e).into_page(
                    &app,
                    Some(&project),
                    Tab::Caches,
                );
            }
        }
    }
    // Back to the list the delete was made from, rebuilt from its known fields only.
    let deleted = deleted.to_string();
    let mut pairs: Vec<(&str, &str)> = back.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    pairs.push(("deleted", &deleted));
    let target = format!("{}/caches{}", project_base(&project), query(&pairs));
    Redirect::to(&target).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_by_everything_before_their_last_dash() {
        assert_eq!(key_group("v1-deps-linux-abc123"), "v1-deps-linux-");
        assert_eq!(key_group("plain"), "plain");
        assert_eq!(key_group("-x"), "-x");
    }

    #[test]
    fn unknown_sorts_fall_back_to_creation() {
        assert_eq!(sort_of(Some("stored")).1, SortBy::Stored);
        assert_eq!(sort_of(Some("<script>")).1, SortBy::Created);
        assert_eq!(sort_of(None).0, "created");
    }
}
