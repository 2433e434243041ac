//! Every error the binary can end with, and the one table that maps each to an exit code.

use ferry_artifacts::ArtifactError;
use ferry_caches::CacheError;
use ferry_core::archive::ArchiveError;
use ferry_core::retention::RetentionError;
use ferry_core::store::StoreError;
use ferry_core::template::TemplateError;
use ferry_core::units::UnitError;
use ferry_workspace_layers::WorkspaceError;

/// The exit codes of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    Error = 1,
    Usage = 2,
    CacheMiss = 3,
    WorkspaceConflict = 4,
    Integrity = 5,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Units(#[from] UnitError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    #[error(transparent)]
    Retention(#[from] RetentionError),
    #[error(transparent)]
    Ui(#[from] ferry_ui::UiError),
    #[error("no cache matched key {key:?}{} (--fail-on-miss)", if restore_keys.is_empty() { String::new() } else { format!(" or restore keys {restore_keys:?}") })]
    CacheMiss {
        key: String,
        restore_keys: Vec<String>,
    },
    #[error(transparent)]
    Key(#[from] ferry_core::trust::sign::KeyError),
    #[error(
        "no trusted cache matched key {key:?} (--fail-on-miss): {skipped} entr{} passed over because no key in FERRY_TRUSTED_KEYS signed {}",
        if *skipped == 1 { "y was" } else { "ies were" },
        if *skipped == 1 { "it" } else { "them" }
    )]
    UntrustedMiss { key: String, skipped: u32 },
    #[error("failed to start ferry's async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("failed to write step outputs to $GITHUB_OUTPUT: {0}")]
    GithubOutput(#[source] std::io::Error),
}

fn archive_code(e: &ArchiveError) -> ExitCode {
    match e {
        ArchiveError::Unsafe { .. }
        | ArchiveError::Corrupt { .. }
        | ArchiveError::Digest { .. } => ExitCode::Integrity,
        ArchiveError::Io { .. }
        | ArchiveError::Write(_)
        | ArchiveError::Conflict { .. }
        | ArchiveError::Glob(_)
        | ArchiveError::Internal { .. } => ExitCode::Error,
    }
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) | CliError::Units(_) => ExitCode::Usage,
            CliError::Key(e) => match e {
                ferry_core::trust::sign::KeyError::Malformed { .. } => ExitCode::Usage,
                ferry_core::trust::sign::KeyError::Random(_) => ExitCode::Error,
            },
            CliError::Template(t) => {
                if t.is_usage() {
                    ExitCode::Usage
                } else {
                    ExitCode::Error
                }
            }
            CliError::Store(e) => match e {
                StoreError::InvalidUrl { .. } => ExitCode::Usage,
                StoreError::Open { .. }
                | StoreError::Request { .. }
                | StoreError::CannotSign { .. } => ExitCode::Error,
            },
            CliError::Cache(e) => match e {
                CacheError::Archive(a) => archive_code(a),
                CacheError::InvalidPath { .. } => ExitCode::Usage,
                CacheError::Store(_)
                | CacheError::Manifest(_)
                | CacheError::Glob(_)
                | CacheError::NothingToSave { .. }
                | CacheError::NotFound { .. } => ExitCode::Error,
                CacheError::UnexpectedPaths { .. } | CacheError::Untrusted { .. } => {
                    ExitCode::Integrity
                }
                CacheError::PackGone { .. } | CacheError::ExportWrite { .. } => ExitCode::Error,
            },
            CliError::Workspace(e) => match e {
                WorkspaceError::Conflict { .. } => ExitCode::WorkspaceConflict,
                WorkspaceError::Archive(a) => archive_code(a),
                WorkspaceError::UnsafeManifest { .. } | WorkspaceError::Untrusted { .. } => {
                    ExitCode::Integrity
                }
                WorkspaceError::InvalidPath { .. } => ExitCode::Usage,
                WorkspaceError::Store(_)
                | WorkspaceError::Manifest(_)
                | WorkspaceError::Glob(_)
                | WorkspaceError::NothingToPersist { .. }
                | WorkspaceError::UnknownJob { .. }
                | WorkspaceError::Exists { .. }
                | WorkspaceError::State { .. } => ExitCode::Error,
            },
            CliError::Artifacts(e) => match e {
                ArtifactError::Digest { .. }
                | ArtifactError::UnsafePath { .. }
                | ArtifactError::Untrusted { .. } => ExitCode::Integrity,
                ArtifactError::Folder { source, .. } => archive_code(source),
                ArtifactError::InvalidPath { .. } | ArtifactError::Pattern(_) => ExitCode::Usage,
                ArtifactError::Store(_)
                | ArtifactError::Manifest(_)
                | ArtifactError::Io { .. }
                | ArtifactError::Missing { .. }
                | ArtifactError::AlreadyStored { .. }
                | ArtifactError::NoMatch { .. }
                | ArtifactError::NotFound { .. }
                | ArtifactError::DataMissing { .. }
                | ArtifactError::Internal(_) => ExitCode::Error,
            },
            CliError::Retention(RetentionError::Store { .. }) => ExitCode::Error,
            CliError::Ui(_) => ExitCode::Error,
            CliError::CacheMiss { .. } => ExitCode::CacheMiss,
            CliError::UntrustedMiss { .. } => ExitCode::Integrity,
            CliError::GithubOutput(_) | CliError::Runtime(_) => ExitCode::Error,
        }
    }
}

/// The message and its causes, one per line, without repeating a cause the message holds.
pub fn report(err: &CliError) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(&format!("\n  caused by: {text}"));
        }
        source = s.source();
    }
    msg
}
