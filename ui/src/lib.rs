//! `ferry ui`: a local web server that shows a store — caches, a run's workspace layers as a
//! graph, artifacts with previews, and usage — reading entries only through the mode crates
//! and the core's store interface.
//!
//! Pages are rendered on the server with `maud`, which escapes every value it is given, so
//! keys, paths and report text (all writable by anyone who can write to the store) are never
//! markup. The few scripts (`assets/app.js`) only load page fragments and confirm deletes;
//! nothing is fetched from outside the page's own server.
//!
//! Access (`access.rs`): loopback by default, any other address needs the token printed at
//! start; deleting needs `--allow-delete` and a per-process CSRF token; artifact HTML is served
//! sandboxed (`raw.rs`).

mod access;
mod assets;
mod graph;
mod html;
mod junit;
mod pages;
mod preview;
mod server;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use ferry_core::trust::sign::Trust;

pub use server::{Server, bind};

/// What `ferry ui` was asked for, settled.
#[derive(Debug, Clone)]
pub struct UiRequest {
    /// The store's URL, for the page header.
    pub store_url: String,
    /// The project shown first.
    pub project: String,
    /// Where to listen; a non-loopback address requires the printed token.
    pub listen: SocketAddr,
    /// Allow deleting caches from the page.
    pub allow_delete: bool,
    /// Which signatures count as trusted (`FERRY_TRUSTED_KEYS`), for the signature column.
    pub trust: Trust,
    /// Prune's grace period for unreferenced data, for "what prune would delete now".
    pub prune_grace: Duration,
}

/// Why the page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("failed to listen on {addr}: {source}; pick another port with --listen 127.0.0.1:PORT")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to make a random token: {0}")]
    Random(String),
    #[error("the page server stopped: {0}")]
    Serve(#[source] std::io::Error),
}
