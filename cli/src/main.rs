//! The `ferry` binary: parse, then settle, then run one command.

mod cli;
mod commands;
mod errors;
mod output;
mod settings;

use clap::Parser;

use crate::errors::CliError;

/// For a restore, keeps memory that glibc's malloc got from the kernel in the process instead
/// of handing it back after every large `free`. A chunked restore decompresses blocks on one
/// thread and frees them on another, and with glibc's defaults the threads' heaps gave about
/// 225 MiB back (`madvise(MADV_DONTNEED)`) during a restore of a 460 MB `target/`, only to
/// fault it in again: 40,000 page faults against 6,000 for the same tree in format 1, and
/// 11,000 with these thresholds. Saves keep the defaults: their buffers hold a steady size,
/// and these thresholds raised their peak memory by about 10 MiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune_malloc() {
    // SAFETY: `mallopt` only sets malloc's parameters; `main` calls it before it starts any
    // other thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if cli.command.restores() {
        tune_malloc();
    }
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
