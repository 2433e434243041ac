//! One module per page; each handler reads through the mode crates and renders with `maud`.
//! A part the store cannot show (no listing, no token, a refusal) is a notice on the page
//! that says what and why, never a failed page.

pub(crate) mod artifacts;
pub(crate) mod caches;
pub(crate) mod home;
pub(crate) mod usage;
pub(crate) mod workspaces;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use ferry_core::store::{BackendError, StoreError};
use maud::html;

use crate::html::{self, Tab};
use crate::server::{App, html_page};

/// A page that could not be drawn, or a part of one.
#[derive(Debug)]
pub(crate) enum PageError {
    /// The store cannot do what the page needs (no listing, no token): said plainly.
    Cannot {
        what: String,
        why: String,
    },
    /// Something went wrong reading the store.
    Failed {
        what: String,
        why: String,
    },
    NotFound(String),
    Forbidden(String),
}

impl PageError {
    /// Classifies a mode crate's error met while doing `what`.
    pub(crate) fn from_error(what: &str, e: &(dyn std::error::Error + 'static)) -> Self {
        // A mode's error wraps the store's transparently, so the chain may show the store's
        // error or go straight to the backend's.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            let backend = match err.downcast_ref::<StoreError>() {
                Some(StoreError::Request { source, .. }) => Some(&**source),
                _ => err
                    .downcast_ref::<BackendError>()
                    .or_else(|| err.downcast_ref::<Box<BackendError>>().map(|b| &**b)),
            };
            if matches!(
                backend,
                Some(BackendError::Unsupported(_) | BackendError::Denied(_))
            ) {
                return PageError::Cannot {
                    what: what.to_string(),
                    why: e.to_string(),
                };
            }
            cur = err.source();
        }
        PageError::Failed {
            what: what.to_string(),
            why: e.to_string(),
        }
    }

    /// The notice shown in place of what could not be drawn.
    pub(crate) fn notice(&self) -> maud::Markup {
        match self {
            PageError::Cannot { what, why } => {
                html::notice(&format!("This store cannot show {what}."), why)
            }
            PageError::Failed { what, why } => {
                html::notice(&format!("Failed to read {what} from the store."), why)
            }
            PageError::NotFound(m) | PageError::Forbidden(m) => html::notice(m, ""),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            PageError::Cannot { .. } => StatusCode::OK,
            PageError::Failed { .. } => StatusCode::BAD_GATEWAY,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The whole page, for a handler that could draw nothing else.
    pub(crate) fn into_page(self, app: &App, project: Option<&str>, tab: Tab) -> Response {
        let title = match &self {
            PageError::Cannot { .. } => "Not available on this store",
            PageError::Failed { .. } => "Store error",
            PageError::NotFound(_) => "Not found",
            PageError::Forbidden(_) => "Refused",
        };
        html_page(
            self.status(),
            html::page(app, project, tab, title, self.notice()),
        )
    }
}

/// True when the store lists objects; when it does not, `what` is a notice to show instead.
pub(crate) fn can_list(app: &App, what: &str) -> Result<(), PageError> {
    if app.store.capabilities().list {
        return Ok(());
    }
    Err(PageError::Cannot {
        what: what.to_string(),
        why: format!(
            "{} does not list its objects (with the credentials ferry was given), so ferry ui cannot find them. Entries can still be restored and downloaded by exact key with the ferry CLI.",
            app.store.url()
        ),
    })
}

pub(crate) async fn not_found(State(app): State<App>) -> Response {
    PageError::NotFound("There is no such page.".into()).into_page(&app, None, Tab::Home)
}

/// The 1-based page number of a query, and the offset it starts at.
pub(crate) fn page_of(page: Option<usize>, per_page: usize) -> (usize, usize) {
    let page = page.unwrap_or(1).max(1);
    (page, (page - 1) * per_page)
}

/// A signature's status, as a cell.
pub(crate) fn signature_cell(signed_by: Option<&str>, trusted: Option<bool>) -> maud::Markup {
    let short = |k: &str| {
        let hex = k.rsplit(':').next().unwrap_or(k);
        format!("{}…", &hex[..hex.len().min(12)])
    };
    html! {
        @match (signed_by, trusted) {
            (None, Some(_)) => span.sig.bad title="unsigned; FERRY_TRUSTED_KEYS is set, so a restore skips it" { "unsigned ✗" },
            (None, None) => span.sig.muted { "unsigned" },
            (Some(k), Some(true)) => span.sig.good title=(k) { "trusted ✓ " (short(k)) },
            (Some(k), Some(false)) => span.sig.bad title=(k) { "not trusted ✗ " (short(k)) },
            (Some(k), None) => span.sig title=(format!("{k}; set FERRY_TRUSTED_KEYS to check it")) { "signed " (short(k)) },
        }
    }
}
