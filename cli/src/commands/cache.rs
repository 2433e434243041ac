//! `ferry cache save | restore | ls | rm`.

use ferry_caches::{ExportRequest, Hit, RestoreRequest, SaveRequest};
use ferry_core::units::format_size;
use serde_json::json;

use crate::errors::CliError;
use crate::settings::Globals;

pub async fn save(globals: &Globals, request: SaveRequest) -> Result<(), CliError> {
    let key = request.key.clone();
    let (store, bar) = globals.open_store_with_bar(format!("saving cache {key}"))?;
    let out = &globals.output;
    let result = ferry_caches::save(&store, request).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = result?;
    out.step_summary(
        "ferry cache save",
        &["key", "saved", "files", "stored", "unpacked", "seconds"],
        &[
            key.clone(),
            if outcome.saved {
                "yes".into()
            } else {
                "no (exists)".into()
            },
            outcome.written.files.to_string(),
            format_size(outcome.written.bytes),
            format_size(outcome.written.unpacked_bytes),
            format!("{:.2}", outcome.seconds),
        ],
    );
    for w in &outcome.warnings {
        out.warn(w);
    }
    if outcome.saved {
        out.info(format!(
            "saved cache {key} to {}: {} files, {} uploaded in {} objects, {} stored ({} unpacked, {}) in {:.2}s",
            out.store,
            outcome.written.files,
            format_size(outcome.written.uploaded_bytes),
            outcome.written.objects_written,
            format_size(outcome.written.bytes),
            format_size(outcome.written.unpacked_bytes),
            outcome.format,
            outcome.seconds
        ));
    } else if outcome.reason == Some("denied") {
        // A job that may not save caches (a read-only token, ACTIONS_CACHE_MODE) is not a
        // failed job: the warning says why nothing was saved.
        out.warn(format!(
            "cache {key} not saved to {}: {}",
            out.store,
            outcome
                .denied
                .as_deref()
                .unwrap_or("the store refused the write")
        ));
    } else {
        out.info(format!(
            "cache {key} exists; not saved to {} (use --force to replace it)",
            out.store
        ));
    }
    out.result(&outcome);
    Ok(())
}

pub async fn restore(
    globals: &Globals,
    request: RestoreRequest,
    fail_on_miss: bool,
) -> Result<(), CliError> {
    let key = request.key.clone();
    let restore_keys = request.restore_keys.clone();
    let (store, bar) = globals.open_store_with_bar(format!("restoring cache {key}"))?;
    let out = &globals.output;
    let result = ferry_caches::restore(&store, request).await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let outcome = result?;
    for w in &outcome.warnings {
        out.warn(w);
    }
    let matched = outcome.matched_key.clone().unwrap_or_default();
    out.step_summary(
        "ferry cache restore",
        &[
            "key",
            "hit",
            "matched key",
            "files",
            "downloaded",
            "seconds",
        ],
        &[
            key.clone(),
            match outcome.hit {
                Hit::Exact => "exact",
                Hit::Partial => "partial",
                Hit::Miss => "miss",
            }
            .into(),
            if matched.is_empty() {
                "-".into()
            } else {
                matched.clone()
            },
            outcome.files.to_string(),
            format_size(outcome.bytes),
            format!("{:.2}", outcome.seconds),
        ],
    );
    out.github_outputs(&[
        (
            "cache-hit",
            if outcome.hit == Hit::Exact {
                "true"
            } else {
                "false"
            },
        ),
        ("cache-primary-key", &key),
        ("cache-matched-key", &matched),
    ])
    .map_err(CliError::GithubOutput)?;
    match outcome.hit {
        Hit::Miss => out.warn(format!(
            "no cache matched key {key}{} in {}{}",
            if restore_keys.is_empty() {
                String::new()
            } else {
                format!(" or restore keys {}", restore_keys.join(", "))
            },
            out.store,
            store
                .miss_note()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )),
        _ if outcome.lookup_only => out.info(format!(
            "cache {matched} would be restored ({:?} hit)",
            outcome.hit
        )),
        hit => out.info(format!(
            "restored cache {matched} from {} ({} hit): {} files{}, {} downloaded in {:.2}s",
            out.store,
            if hit == Hit::Exact {
                "exact"
            } else {
                "partial"
            },
            outcome.files,
            if outcome.kept_files > 0 || outcome.removed > 0 {
                format!(
                    " ({} already in place, {} extra removed)",
                    outcome.kept_files, outcome.removed
                )
            } else {
                String::new()
            },
            format_size(outcome.bytes),
            outcome.seconds
        )),
    }
    if outcome.hit == Hit::Miss && fail_on_miss {
        // The error object printed by main is the one JSON result; it carries the miss.
        if outcome.untrusted > 0 {
            return Err(CliError::UntrustedMiss {
                key,
                skipped: outcome.untrusted,
            });
        }
        return Err(CliError::CacheMiss { key, restore_keys });
    }
    out.result(&outcome);
    Ok(())
}

pub async fn ls(globals: &Globals, prefix: Option<&str>) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let listing = ferry_caches::list(&store, &globals.project, prefix, &globals.trust)
        .await
        .map_err(CliError::from)?;
    for w in &listing.warnings {
        globals.output.warn(w);
    }
    let entries = &listing.caches;
    if globals.output.json {
        globals.output.result(&json!({
            "project": globals.project,
            "caches": entries,
            "warnings": listing.warnings,
        }));
    } else if entries.is_empty() {
        globals.output.info(format!(
            "no caches in project {} in {}",
            globals.project, globals.output.store
        ));
    } else {
        for e in entries {
            eprintln!(
                "{}{}\t{}\t{} files\tcreated {}\tlast used {}\texpires {}",
                e.scope
                    .as_ref()
                    .map(|s| format!("[{s}] "))
                    .unwrap_or_default(),
                e.key,
                format_size(e.bytes),
                e.files,
                e.created.format("%Y-%m-%d %H:%M:%S"),
                e.last_used
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into()),
                e.expires
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "never".into()),
            );
        }
    }
    Ok(())
}

pub async fn rm(globals: &Globals, scope: Option<&str>, keys: &[String]) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let removed = ferry_caches::remove(&store, &globals.project, scope, keys).await?;
    for k in &removed {
        globals.output.info(format!("removed cache {k}"));
    }
    globals.output.result(&json!({ "removed": removed }));
    Ok(())
}

pub async fn export(globals: &Globals, request: ExportRequest) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let to_stdout = request.out.is_none();
    let outcome = ferry_caches::export(&store, request).await?;
    globals.output.info(format!(
        "exported cache {} ({}, {} files){}",
        outcome.key,
        outcome.format,
        outcome.files,
        outcome
            .out
            .as_ref()
            .map(|o| format!(" to {o}"))
            .unwrap_or_default()
    ));
    // Standard output carries the tar stream itself; the JSON result goes only with a file.
    if !to_stdout {
        globals.output.result(&outcome);
    }
    Ok(())
}
