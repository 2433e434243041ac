//! What a chunked save may reference instead of uploading: the chunks of the entries this job
//! restored (remembered in its state), else of the newest entry under the save's key and
//! restore keys. Every pack of the base is looked up first, so a pack pruned meanwhile is not
//! referenced.

use std::collections::HashMap;

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
    let mut known = Known::default();
    let mut bases: Vec<(String, DataRef, Vec<PackRef>)> = Vec::new();
    if let Some(dir) = &req.state_dir {
        for r in state::restored(dir, &req.project) {
            if !overlap(&r.paths, roots) {
                continue;
            }
            // The copy the restore kept, else the store's (the entry may be gone since).
            match state::index_copy(dir, &r.data)
                .and_then(|b| chunks::decode_index(&b, &r.data, &r.packs).ok())
            {
                Some(index) => known.add(&index, &r.packs),
                None => bases.push((r.key, r.data, r.packs)),
            }
        }
    }
    // What the job restored, as far as this store still holds it: a job may have restored
    // from another store, or the packs may have been pruned since.
    add_bases(store, &mut known, bases, warnings).await;
    if !known.is_empty() {
        return known;
    }
    // Else the newest entry under the save's key and restore keys.
    let mut bases = Vec::new();
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
    match restore::find(store, &lookup, chrono::Utc::now(), &mut ignored, &mut untrusted).await
    {
        Ok(Some((m, _))) if m.encoding == Some(Encoding::Chunked) => {
            if overlap(&m.body.tree.paths, roots) {
                bases.push((m.body.key, m.data, m.body.tree.packs));
            }
        }
        Ok(_) => {}
        Err(e) => warnings.push(format!(
            "could not look for an earlier entry to share chunks with ({e}); every chunk is uploaded"
        )),
    }
    add_bases(store, &mut known, bases, warnings).await;
    known
}

/// Adds the chunks of `bases` to `known`, then keeps only the packs the store holds (at the
/// size recorded).
async fn add_bases(
    store: &Store,
    known: &mut Known,
    bases: Vec<(String, DataRef, Vec<PackRef>)>,
    warnings: &mut Vec<String>,
) {
    for (key, data, packs) in bases {
        match chunks::read_index(store, &data, &packs).await {
            Ok(index) => known.add(&index, &packs),
            Err(e) => warnings.push(format!(
                "could not read the chunks of cache {key} ({e}); its chunks are uploaded again"
            )),
        }
    }
    let present = present(store, &known.pack_paths()).await;
    known.keep_packs(&|p, size| present.get(p) == Some(&Some(size)));
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
