//! The page frame and the small helpers every page uses. All text goes through `maud`, which
//! escapes it; links are built here from percent-encoded parts, so a key or path can never
//! become markup, a script URL or another route.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use crate::server::App;

/// The tabs of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Home,
    Caches,
    Workspaces,
    Artifacts,
    Usage,
}

/// One path segment, percent-encoded (a `/` inside it too).
pub(crate) fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A query string from pairs, empty values left out.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// The base path of a project's pages.
pub(crate) fn project_base(project: &str) -> String {
    format!("/p/{}", seg(project))
}

/// Bytes as people read them.
pub(crate) fn size(bytes: u64) -> String {
    ferry_core::units::format_size(bytes)
}

/// A time as "3h ago" / "in 2d", with the exact time on hover.
pub(crate) fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>, none: &str) -> Markup {
    let Some(t) = t else {
        return html! { span.muted { (none) } };
    };
    let secs = (now - t).num_seconds();
    let (n, future) = (secs.unsigned_abs(), secs < 0);
    let amount = match n {
        0..60 => format!("{n}s"),
        60..3600 => format!("{}m", n / 60),
        3600..86400 => format!("{}h", n / 3600),
        _ => format!("{}d", n / 86400),
    };
    let text = if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    };
    html! { time datetime=(t.to_rfc3339()) title=(t.format("%Y-%m-%d %H:%M:%S UTC")) { (text) } }
}

/// A notice that a part of the page cannot be shown, and why.
pub(crate) fn notice(title: &str, detail: &str) -> Markup {
    html! {
        div.notice role="status" {
            strong { (title) }
            p { (detail) }
        }
    }
}

/// The whole page: header with the store and project, tabs, then `body`.
pub(crate) fn page(
    app: &App,
    project: Option<&str>,
    tab: Tab,
    title: &str,
    body: Markup,
) -> Markup {
    let tabs: [(Tab, &str, &str); 4] = [
        (Tab::Caches, "Caches", "caches"),
        (Tab::Workspaces, "Workspaces", "workspaces"),
        (Tab::Artifacts, "Artifacts", "artifacts"),
        (Tab::Usage, "Usage", "usage"),
    ];
    let project = project.unwrap_or(&app.req.project);
    let base = project_base(project);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · ferry ui" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "ferry" }
                    span.store title="store" { (app.req.store_url) }
                    form.project method="get" action="/" {
                        label for="project" { "project" }
                        input #project name="project" value=(project) size="24";
                    }
                    @if app.access.allow_delete {
                        span.badge.danger title="started with --allow-delete" { "deletes allowed" }
                    } @else {
                        span.badge title="start with --allow-delete to delete caches" { "read-only" }
                    }
                }
                nav.tabs {
                    @for (t, label, path) in tabs {
                        a class=(if t == tab { "tab current" } else { "tab" }) href=(format!("{base}/{path}")) { (label) }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// Links to the previous and next pages of a list.
pub(crate) fn pager(base_href: &str, page: usize, per_page: usize, total: usize) -> Markup {
    let pages = total.div_ceil(per_page).max(1);
    let link = |p: usize| {
        let sep = if base_href.contains('?') { '&' } else { '?' };
        format!("{base_href}{sep}page={p}")
    };
    html! {
        nav.pager aria-label="pages" {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← previous" } }
            span { "page " (page) " of " (pages) " · " (total) " in all" }
            @if page < pages { a rel="next" href=(link(page + 1)) { "next →" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_percent_encoded() {
        assert_eq!(seg("acme/app"), "acme%2Fapp");
        assert_eq!(seg("a b?#"), "a%20b%3F%23");
        assert_eq!(
            query(&[("prefix", "<x>&y"), ("sort", ""), ("dir", "asc")]),
            "?prefix=%3Cx%3E%26y&dir=asc"
        );
        assert_eq!(query(&[("a", "")]), "");
    }

    #[test]
    fn store_text_is_escaped_in_notices_and_times() {
        let out = notice("<b>x</b>", "\"'><script>alert(1)</script>").into_string();
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
        assert!(out.contains("&lt;b&gt;x&lt;/b&gt;"), "{out}");
    }
}
