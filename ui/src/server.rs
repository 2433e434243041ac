//! The HTTP server: routes, the security headers every response carries, and binding.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ferry_core::store::Store;
use maud::Markup;

use crate::access::{self, Access};
use crate::{UiError, UiRequest, assets, pages};

/// What every handler shares.
pub(crate) struct AppState {
    pub store: Store,
    pub req: UiRequest,
    pub access: Access,
}

pub(crate) type App = Arc<AppState>;

/// The policy of ferry's own pages: nothing from elsewhere, no inline script or style, frames
/// only from this server (artifact previews), never framed by another page.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    frame-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A page's response.
pub(crate) fn html_page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // Raw artifact files set their own (sandboxing) policy.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn router(app: App) -> Router {
    let access = app.access.clone();
    Router::new()
        .route("/", get(pages::home::show))
        .route("/assets/{name}", get(assets::serve))
        .route("/p/{project}/caches", get(pages::caches::show))
        .route("/p/{project}/caches/charts", get(pages::caches::charts))
        .route("/p/{project}/caches/delete", post(pages::caches::delete))
        .route("/p/{project}/workspaces", get(pages::workspaces::runs))
        .route(
            "/p/{project}/workspaces/{workflow}",
            get(pages::workspaces::run),
        )
        .route("/p/{project}/artifacts", get(pages::artifacts::runs))
        .route(
            "/p/{project}/artifacts/{run}/{job}",
            get(pages::artifacts::folder),
        )
        .route(
            "/p/{project}/artifacts/{run}/{job}/file",
            get(pages::artifacts::file),
        )
        .route(
            "/p/{project}/artifacts/{run}/{job}/download",
            get(pages::artifacts::download),
        )
        .route(
            "/raw/{key}/{project}/{run}/{job}/{*path}",
            get(pages::artifacts::raw),
        )
        .route("/p/{project}/usage", get(pages::usage::show))
        .route("/p/{project}/usage/prune", get(pages::usage::prune))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(access, access::guard))
        .layer(middleware::from_fn(headers))
        .with_state(app)
}

/// A bound page server, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    app: App,
    addr: SocketAddr,
}

/// Binds the page server for `store`.
pub async fn bind(store: Store, req: UiRequest) -> Result<Server, UiError> {
    let listener = tokio::net::TcpListener::bind(req.listen)
        .await
        .map_err(|source| UiError::Bind {
            addr: req.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| UiError::Bind {
        addr: req.listen,
        source,
    })?;
    let access = Access::new(addr, req.allow_delete)?;
    Ok(Server {
        listener,
        app: Arc::new(AppState { store, req, access }),
        addr,
    })
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open: with the token when one is required.
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            format!("127.0.0.1:{}", self.addr.port())
        } else {
            self.addr.to_string()
        };
        match &self.app.access.token {
            Some(t) => format!("http://{host}/?token={t}"),
            None => format!("http://{host}/"),
        }
    }

    /// True when requests need the token.
    pub fn needs_token(&self) -> bool {
        self.app.access.token.is_some()
    }

    /// Serves until interrupted (Ctrl-C or SIGTERM).
    pub async fn run(self) -> Result<(), UiError> {
        axum::serve(self.listener, router(self.app))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(UiError::Serve)
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
