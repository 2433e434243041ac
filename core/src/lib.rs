//! ferry's core: the store, archives, key templates, manifests, retention and CI context.
//!
//! The three mode crates (caches, workspace layers, artifacts) build on these pieces and
//! on nothing else of ferry's.

pub mod archive;
pub mod chunks;
pub mod ci;
pub mod entry;
pub mod env_vars;
pub mod glob;
pub mod manifest;
pub mod paths;
pub mod retention;
pub mod store;
pub mod template;
pub mod transfer;
pub mod trust;
pub mod units;
pub mod unpack;
