//! The `ferry` binary: parse, then settle, then run one command.

mod cli;
mod commands;
mod errors;
mod output;
mod settings;

use clap::Parser;

use crate::errors::CliError;
use crate::settings::Globals;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let json = cli.global.json;
    let result = Globals::settle(&cli.global).and_then(|globals| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Usage(format!("failed to start the async runtime: {e}")))?;
        runtime.block_on(commands::run(&globals, cli.command))
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
