//! `ferry workspace persist | attach | ls`.

use ferry_core::units::format_size;
use ferry_workspace_layers::{AttachRequest, PersistRequest};
use serde_json::json;

use crate::errors::CliError;
use crate::settings::Globals;

pub async fn persist(globals: &Globals, request: PersistRequest) -> Result<(), CliError> {
    let persisting = format!(
        "persisting a layer of job {} to workflow {}",
        request.job, request.workflow
    );
    let (store, bar) = globals.open_store_with_bar(persisting)?;
    let out = &globals.output;
    let result = ferry_workspace_layers::persist(&store, request).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = result?;
    out.step_summary(
        "ferry workspace persist",
        &["workflow", "job", "layer", "files", "stored", "seconds"],
        &[
            outcome.workflow.clone(),
            outcome.job.clone(),
            outcome.id.clone(),
            outcome.written.files.to_string(),
            format_size(outcome.written.bytes),
            format!("{:.2}", outcome.seconds),
        ],
    );
    for w in &outcome.warnings {
        out.warn(w);
    }
    out.info(format!(
        "persisted layer {} of job {} to workflow {} in {}: {} files, {} uploaded, {} stored ({} unpacked), {} in {:.2}s",
        outcome.id,
        outcome.job,
        outcome.workflow,
        out.store,
        outcome.written.files,
        format_size(outcome.written.uploaded_bytes),
        format_size(outcome.written.bytes),
        format_size(outcome.written.unpacked_bytes),
        match outcome.parents.len() {
            0 => "no parents".to_string(),
            1 => "1 parent".to_string(),
            n => format!("{n} parents"),
        },
        outcome.seconds
    ));
    out.result(&outcome);
    Ok(())
}

pub async fn attach(globals: &Globals, request: AttachRequest) -> Result<(), CliError> {
    let attaching = format!("attaching the workspace of workflow {}", request.workflow);
    let (store, bar) = globals.open_store_with_bar(attaching)?;
    let out = &globals.output;
    if request.job.is_none() {
        out.warn(
            "no job name (--job, FERRY_JOB, GITHUB_JOB or CIRCLE_JOB): a later persist will not name these layers as its parents",
        );
    }
    let result = ferry_workspace_layers::attach(&store, request).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = result?;
    out.step_summary(
        "ferry workspace attach",
        &["workflow", "layers", "files", "downloaded", "seconds"],
        &[
            outcome.workflow.clone(),
            outcome.layers.len().to_string(),
            outcome.files.to_string(),
            format_size(outcome.bytes),
            format!("{:.2}", outcome.seconds),
        ],
    );
    for w in &outcome.warnings {
        out.warn(w);
    }
    if !outcome.layers.is_empty() {
        let mut jobs: Vec<&str> = Vec::new();
        for l in &outcome.layers {
            if !jobs.contains(&l.job.as_str()) {
                jobs.push(&l.job);
            }
        }
        out.info(format!(
            "attached {} layer{} of workflow {} from {} (jobs {}) at {}: {} files, {} downloaded in {:.2}s",
            outcome.layers.len(),
            if outcome.layers.len() == 1 { "" } else { "s" },
            outcome.workflow,
            out.store,
            jobs.join(", "),
            outcome.at.display(),
            outcome.files,
            format_size(outcome.bytes),
            outcome.seconds
        ));
    }
    for l in &outcome.layers {
        out.detail(format!("  layer {} of job {}", l.id, l.job));
    }
    out.result(&outcome);
    Ok(())
}

pub async fn ls(globals: &Globals, workflow: &str) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let layers = ferry_workspace_layers::list(&store, &globals.project, workflow).await?;
    if globals.output.json {
        globals
            .output
            .result(&json!({ "workflow": workflow, "layers": layers }));
    } else if layers.is_empty() {
        globals
            .output
            .info(format!("no layers in workflow {workflow}"));
    } else {
        for l in &layers {
            eprintln!(
                "{}\tjob {}\t{} files\t{}\tparents {}\tcreated {}\texpires {}",
                l.id,
                l.job,
                l.files,
                format_size(l.bytes),
                if l.parents.is_empty() {
                    "-".to_string()
                } else {
                    l.parents.join(",")
                },
                l.created.format("%Y-%m-%d %H:%M:%S"),
                l.expires
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "never".into()),
            );
        }
    }
    Ok(())
}
