//! `ferry artifacts upload | ls | download | url`.

use ferry_artifacts::{DownloadRequest, UploadRequest};
use ferry_core::units::format_size;
use serde_json::json;

use crate::cli::ArtifactsCommand;
use crate::errors::CliError;
use crate::settings::{
    ArtifactsLsSettings, DownloadSettings, Globals, UploadSettings, UrlSettings,
};

pub async fn run(globals: &Globals, command: ArtifactsCommand) -> Result<(), CliError> {
    match command {
        ArtifactsCommand::Upload(args) => {
            upload(globals, UploadSettings::settle(&args, globals)?).await
        }
        ArtifactsCommand::Ls(args) => {
            ls(globals, ArtifactsLsSettings::settle(&args, globals)?).await
        }
        ArtifactsCommand::Download(args) => {
            download(globals, DownloadSettings::settle(&args, globals)?).await
        }
        ArtifactsCommand::Url(args) => url(globals, UrlSettings::settle(&args, globals)?).await,
    }
}

/// `run R job J`, as messages name a keyspace.
fn keyspace(t: &ferry_artifacts::Target) -> String {
    format!("run {} job {}", t.run, t.job)
}

async fn upload(globals: &Globals, s: UploadSettings) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let out = &globals.output;
    let request = UploadRequest {
        project: globals.project.clone(),
        target: s.target.clone(),
        paths: s.paths,
        destination: s.destination,
        ttl: s.ttl,
        overwrite: s.overwrite,
        trust: globals.trust.clone(),
        at: globals.path_context(),
    };
    let uploading = format!("uploading artifacts of {}", keyspace(&s.target));
    let result = out
        .spin(uploading, ferry_artifacts::upload(&store, request))
        .await;
    let outcome = result?;
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
        "uploaded {} artifacts ({}) to {} in {:.2}s; kept {}",
        outcome.files,
        format_size(outcome.bytes),
        keyspace(&s.target),
        outcome.seconds,
        outcome
            .expires
            .map(|t| format!("until {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_else(|| "until removed".into())
    ));
    out.result(&outcome);
    Ok(())
}

async fn ls(globals: &Globals, s: ArtifactsLsSettings) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let entries = ferry_artifacts::list(&store, &globals.project, &s.target).await?;
    let out = &globals.output;
    if out.json {
        out.result(&json!({ "run": s.target.run, "job": s.target.job, "artifacts": entries }));
    } else if entries.is_empty() {
        out.info(format!("no artifacts in {}", keyspace(&s.target)));
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
            keyspace(&s.target)
        ));
    }
    Ok(())
}

async fn download(globals: &Globals, s: DownloadSettings) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let out = &globals.output;
    let request = DownloadRequest {
        project: globals.project.clone(),
        target: s.target.clone(),
        pattern: s.pattern,
        to: s.to,
        trust: globals.trust.clone(),
    };
    let downloading = format!("downloading artifacts of {}", keyspace(&s.target));
    let result = out
        .spin(downloading, ferry_artifacts::download(&store, request))
        .await;
    let outcome = result?;
    out.info(format!(
        "downloaded {} artifacts ({}) of {} to {} in {:.2}s",
        outcome.files,
        format_size(outcome.bytes),
        keyspace(&s.target),
        outcome.to,
        outcome.seconds
    ));
    out.result(&outcome);
    Ok(())
}

async fn url(globals: &Globals, s: UrlSettings) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let link =
        ferry_artifacts::link(&store, &globals.project, &s.target, &s.path, s.expires).await?;
    // The link stays alone on stdout, with or without --json, so scripts can capture it.
    println!("{link}");
    globals
        .output
        .detail(format!("link to {} of {}", s.path, keyspace(&s.target)));
    Ok(())
}
