//! `ferry artifacts upload | ls | download | url`.

use ferry_artifacts::{DownloadRequest, Target, UploadRequest};
use ferry_core::units::format_size;
use serde_json::json;

use crate::errors::CliError;
use crate::settings::Globals;

/// `run R job J`, as messages name a keyspace.
fn keyspace(t: &Target) -> String {
    format!("run {} job {}", t.run, t.job)
}

pub async fn upload(globals: &Globals, request: UploadRequest) -> Result<(), CliError> {
    let target = request.target.clone();
    let uploading = format!("uploading artifacts of {}", keyspace(&target));
    let (store, bar) = globals.open_store_with_bar(uploading)?;
    let out = &globals.output;
    let result = ferry_artifacts::upload(&store, request).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = result?;
    out.step_summary(
        "ferry artifacts upload",
        &["run", "job", "files", "bytes", "seconds"],
        &[
            target.run.clone(),
            target.job.clone(),
            outcome.files.to_string(),
            format_size(outcome.bytes),
            format!("{:.2}", outcome.seconds),
        ],
    );
    for w in &outcome.warnings {
        out.warn(w);
    }
    for a in &outcome.artifacts {
        out.detail(format!(
            "{}\t{}\t{:04o}{}",
            a.path,
            format_size(a.size),
            a.mode,
            if a.replaced { "\treplaced" } else { "" }
        ));
    }
    out.info(format!(
        "uploaded {} artifacts ({}) to {} in {} in {:.2}s; kept {}",
        outcome.files,
        format_size(outcome.bytes),
        keyspace(&target),
        out.store,
        outcome.seconds,
        outcome
            .expires
            .map(|t| format!("until {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_else(|| "until removed".into())
    ));
    out.result(&outcome);
    Ok(())
}

pub async fn ls(globals: &Globals, target: Target) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let entries = ferry_artifacts::list(&store, &globals.project, &target).await?;
    let out = &globals.output;
    if out.json {
        out.result(&json!({ "run": target.run, "job": target.job, "artifacts": entries }));
    } else if entries.is_empty() {
        out.info(format!("no artifacts in {}", keyspace(&target)));
    } else {
        for e in &entries {
            eprintln!(
                "{}\t{}\t{}\t{}\texpires {}",
                e.path,
                format_size(e.size),
                e.sha256,
                e.job,
                e.expires
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "never".into()),
            );
        }
        out.info(format!(
            "{} artifacts ({}) in {}",
            entries.len(),
            format_size(entries.iter().map(|e| e.size).sum()),
            keyspace(&target)
        ));
    }
    Ok(())
}

pub async fn download(globals: &Globals, request: DownloadRequest) -> Result<(), CliError> {
    let target = request.target.clone();
    let downloading = format!("downloading artifacts of {}", keyspace(&target));
    let (store, bar) = globals.open_store_with_bar(downloading)?;
    let out = &globals.output;
    let result = ferry_artifacts::download(&store, request).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = result?;
    out.step_summary(
        "ferry artifacts download",
        &["run", "job", "files", "bytes", "seconds"],
        &[
            target.run.clone(),
            target.job.clone(),
            outcome.files.to_string(),
            format_size(outcome.bytes),
            format!("{:.2}", outcome.seconds),
        ],
    );
    out.info(format!(
        "downloaded {} artifacts ({}) of {} from {} to {} in {:.2}s",
        outcome.files,
        format_size(outcome.bytes),
        keyspace(&target),
        out.store,
        outcome.to,
        outcome.seconds
    ));
    out.result(&outcome);
    Ok(())
}

pub async fn url(
    globals: &Globals,
    target: &Target,
    path: &str,
    expires: std::time::Duration,
) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let link = ferry_artifacts::link(&store, &globals.project, target, path, expires).await?;
    // The link stays alone on stdout, with or without --json, so scripts can capture it.
    println!("{link}");
    globals
        .output
        .detail(format!("link to {path} of {}", keyspace(target)));
    Ok(())
}
