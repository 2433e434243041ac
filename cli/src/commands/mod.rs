//! One file per command; each takes the request `settings` settled and the globals.

mod artifacts;
mod cache;
mod key;
mod prune;
mod ui;
mod workspace;

use crate::errors::CliError;
use crate::settings::{Action, Globals};

pub async fn run(globals: &Globals, action: Action) -> Result<(), CliError> {
    match action {
        Action::CacheSave(request) => cache::save(globals, request).await,
        Action::CacheRestore {
            request,
            fail_on_miss,
        } => cache::restore(globals, request, fail_on_miss).await,
        Action::CacheLs { prefix } => cache::ls(globals, prefix.as_deref()).await,
        Action::CacheRm { scope, keys } => cache::rm(globals, scope.as_deref(), &keys).await,
        Action::CacheExport(request) => cache::export(globals, request).await,
        Action::WorkspacePersist(request) => workspace::persist(globals, request).await,
        Action::WorkspaceAttach(request) => workspace::attach(globals, request).await,
        Action::WorkspaceLs { workflow } => workspace::ls(globals, &workflow).await,
        Action::ArtifactsUpload(request) => artifacts::upload(globals, request).await,
        Action::ArtifactsLs(target) => artifacts::ls(globals, target).await,
        Action::ArtifactsDownload(request) => artifacts::download(globals, request).await,
        Action::ArtifactsUrl {
            target,
            path,
            expires,
        } => artifacts::url(globals, &target, &path, expires).await,
        Action::Prune(request) => prune::run(globals, request).await,
        Action::Key(key) => key::run(globals, &key),
        Action::Keygen => key::keygen(globals),
        Action::Ui { request, open } => ui::run(globals, request, open).await,
    }
}
