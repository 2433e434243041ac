//! `ferry prune`: delete what has expired, then evict least recently used caches over a size.

use ferry_core::manifest::Kind;
use ferry_core::retention::{self, PruneRequest, Reason};
use ferry_core::units::format_size;

use crate::errors::CliError;
use crate::settings::Globals;

pub async fn run(globals: &Globals, request: PruneRequest) -> Result<(), CliError> {
    let store = globals.open_store()?;
    let out = &globals.output;
    let pruning = format!("pruning project {}", globals.project);
    // Each mode says what its entries are; core decides what goes.
    let modes: [&dyn retention::Retained; 3] = [
        &ferry_caches::Caches,
        &ferry_workspace_layers::Workspaces,
        &ferry_artifacts::Artifacts,
    ];
    let result = out
        .spin(pruning, retention::prune(&store, &modes, &request))
        .await;
    let outcome = result?;
    for w in &outcome.warnings {
        out.warn(w);
    }
    let verb = if outcome.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for r in &outcome.removed {
        let reason = match r.reason {
            Reason::Expired => "expired",
            Reason::Evicted => "evicted",
            Reason::Orphaned => "orphaned",
        };
        let kind = match r.kind {
            Some(Kind::Cache) => "cache",
            Some(Kind::Layer) => "layer",
            Some(Kind::Artifact) => "artifact",
            None => "object",
        };
        out.info(format!(
            "{verb} {reason} {kind} {} ({})",
            r.name,
            format_size(r.bytes)
        ));
    }
    let entries = outcome
        .removed
        .iter()
        .filter(|r| r.reason != Reason::Orphaned)
        .count();
    let orphans = outcome.removed.len() - entries;
    out.info(format!(
        "{} {entries} entries and {orphans} orphaned objects ({}) in project {}; {} entries kept, caches hold {}{}",
        if outcome.dry_run { "would prune" } else { "pruned" },
        format_size(outcome.bytes),
        outcome.project,
        outcome.kept,
        format_size(outcome.cache_bytes),
        if outcome.dry_run { "; nothing deleted (dry run)" } else { "" }
    ));
    if !outcome.marked.is_empty() {
        out.info(format!(
            "{} {} shared objects no entry uses (packs, stored content); a prune at least the grace period later deletes them if they are still unused",
            if outcome.dry_run { "would mark" } else { "marked" },
            outcome.marked.len()
        ));
    }
    if outcome.dead.packs > 0 {
        out.info(format!(
            "{} packs ({}) are mostly unused: {} of them no entry needs{}",
            outcome.dead.packs,
            format_size(outcome.dead.bytes),
            format_size(outcome.dead.dead_bytes),
            if outcome.repacked.is_some() {
                ""
            } else {
                "; `ferry prune --repack` rewrites them"
            }
        ));
    }
    if let Some(r) = &outcome.repacked {
        out.info(format!(
            "repacked {} packs ({}) into {}, rewriting {} entries; the old packs go in a later prune",
            r.packs_rewritten,
            format_size(r.bytes_before),
            format_size(r.bytes_written),
            r.entries_rewritten
        ));
    }
    out.result(&outcome);
    Ok(())
}
