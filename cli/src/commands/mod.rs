//! One file per command; each takes settled values and a store.

mod artifacts;
mod cache;
mod key;
mod prune;
mod workspace;

use crate::cli::Command;
use crate::errors::CliError;
use crate::settings::Globals;

pub async fn run(globals: &Globals, command: Command) -> Result<(), CliError> {
    match command {
        Command::Cache(c) => cache::run(globals, c).await,
        Command::Key(args) => key::run(globals, &args),
        Command::Workspace(c) => workspace::run(globals, c).await,
        Command::Artifacts(c) => artifacts::run(globals, c).await,
        Command::Prune(args) => prune::run(globals, &args).await,
        Command::Keygen => key::keygen(globals),
    }
}
