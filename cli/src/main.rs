//! The `ferry` binary: parse, then settle, then run one command.

mod cli;
mod commands;
mod errors;
mod output;
mod settings;

use clap::Parser;

use crate::errors::CliError;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let json = cli.global.json;
    let result = settings::settle(cli).and_then(|(globals, action)| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(CliError::Runtime)?;
        runtime.block_on(commands::run(&globals, action))
    });
    match result {
        Ok(()) => std::process::ExitCode::from(errors::ExitCode::Success as u8),
        Err(err) => {
            let code = err.exit_code();
            eprintln!("error: {}", errors::report(&err));
            if json {
                let mut obj = serde_json::json!({
                    "error": errors::report(&err),
                    "exit_code": code as u8,
                });
                // Errors about many paths name a few in the message; JSON carries them all.
                if let CliError::Artifacts(ferry_artifacts::ArtifactError::AlreadyStored {
                    paths,
                    ..
                }) = &err
                {
                    obj["paths"] = paths.clone().into();
                }
                if let CliError::CacheMiss { key, .. } | CliError::UntrustedMiss { key, .. } = &err
                {
                    obj["hit"] = "miss".into();
                    obj["key"] = key.as_str().into();
                    obj["matched_key"] = serde_json::Value::Null;
                }
                println!("{obj}");
            }
            std::process::ExitCode::from(code as u8)
        }
    }
}
