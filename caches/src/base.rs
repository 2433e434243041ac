//! What a chunked save may reference instead of uploading: the chunks of the entries this job
//! restored (remembered in its state), else of the newest entry under the save's key and
//! restore keys. Every pack of the base is looked up first, so a pack pruned meanwhile is not
//! referenced.

use std::collections::HashMap;

use ferry_core::chunks::index::Index;
use ferry_core::chunks::{self, Known, PackRef};
use ferry_core::entry::Encoding;
use ferry_core::manifest::DataRef;
use ferry_core::paths;
use ferry_core::store::Store;
use futures::StreamExt;

use crate::restore::{self, RestoreRequest};
use crate::{SaveRequest, state};

/// True when a root of `a` and a root of `b` hold one another.
fn overlap(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| paths::is_within(x, y) || paths::is_within(y, x))
    })
}

/// The chunks the store holds as far as this job knows, for a save of `roots`.
pub(crate) async fn known(
    store: &Store,
    req: &SaveRequest,
    roots: &[String],
    warnings: &mut Vec<String>,
) -> Known {
    let mut found: Vec<(Index, Vec<PackRef>)> = Vec::new();
    let mut to_read: Vec<(String, DataRef, Vec<PackRef>)> = Vec::new();
    if let Some(dir) = &req.state_dir {
        // Newest first, so a chunk held by several restored entries is taken from the latest.
        for r in state::restored(dir, &req.project).into_iter().rev() {
            if !overlap(&r.paths, roots) {
                continue;
            }
            // The copy the restore kept, else the store's (the entry may be gone since).
            match state::index_copy(dir, &r.data)
                .and_then(|b| chunks::decode_index(&b, &r.data, &r.packs).ok())
            {
                Some(index) => found.push((index, r.packs)),
                None => to_read.push((r.key, r.data, r.packs)),
            }
        }
    }
    read_indexes(store, to_read, &mut found, warnings).await;
    // What the job restored, as far as this store still holds it: a job may have restored
    // from another store, or the packs may have been pruned since.
    let known = held(store, found).await;
    if !known.is_empty() {
        return known;
    }
    // Else the newest entry under the save's key and restore keys.
    let mut to_read = Vec::new();
    let lookup = RestoreRequest {
        project: req.project.clone(),
        key: req.key.clone(),
        restore_keys: req.restore_keys.clone(),
        exact: false,
        lookup_only: true,
        keep_root_links: false,
        scope: req.scope.clone(),
        fallback_scopes: req.fallback_scopes.clone(),
        expected_paths: Vec::new(),
        max_age: None,
        trust: req.trust.clone(),
        at: req.at.clone(),
        state_dir: None,
    };
    let mut ignored = Vec::new();
    let mut untrusted = 0;
    match restore::find(store, &lookup, chrono::Utc::now(), &mut ignored, &mut untrusted).await {
        Ok(Some((m, _))) if m.encoding == Some(Encoding::Chunked) => {
            if overlap(&m.body.tree.paths, roots) {
                to_read.push((m.body.key, m.data, m.body.tree.packs));
            }
        }
        Ok(_) => {}
        Err(e) => warnings.push(format!(
            "could not look for an earlier entry to share chunks with ({e}); every chunk is uploaded"
        )),
    }
    let mut found = Vec::new();
    read_indexes(store, to_read, &mut found, warnings).await;
    held(store, found).await
}

/// Reads the index of each entry from the store.
async fn read_indexes(
    store: &Store,
    entries: Vec<(String, DataRef, Vec<PackRef>)>,
    found: &mut Vec<(Index, Vec<PackRef>)>,
    warnings: &mut Vec<String>,
) {
    for (key, data, packs) in entries {
        match chunks::read_index(store, &data, &packs).await {
            Ok(index) => found.push((index, packs)),
            Err(e) => warnings.push(format!(
                "could not read the chunks of cache {key} ({e}); its chunks are uploaded again"
            )),
        }
    }
}

/// The chunks of `entries` that lie in packs the store holds (at the size recorded): each
/// entry's packs are looked up first, so a chunk whose first-found pack is gone is still
/// taken from another entry that has it.
async fn held(store: &Store, entries: Vec<(Index, Vec<PackRef>)>) -> Known {
    let mut all: Vec<(String, u64)> = entries
        .iter()
        .flat_map(|(_, packs)| packs.iter().map(|p| (p.path.clone(), p.size)))
        .collect();
    all.sort();
    all.dedup();
    let present = present(store, &all).await;
    let mut known = Known::default();
    for (index, mut packs) in entries {
        packs.retain(|p| present.get(&p.path) == Some(&Some(p.size)));
        known.add(&index, &packs);
    }
    known
}

/// The size of each pack in the store, `None` when it is gone (or cannot be looked up).
pub(crate) async fn present(
    store: &Store,
    packs: &[(String, u64)],
) -> HashMap<String, Option<u64>> {
    futures::stream::iter(packs.iter().map(|(p, _)| p.clone()))
        .map(|p| async move {
            let size = store.head(&p).await.ok().flatten().map(|i| i.size);
            (p, size)
        })
        .buffer_unordered(16)
        .collect()
        .await
}
