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

/// An entry a save may share chunks with: its key, its index and the packs its manifest lists.
struct Base {
    key: String,
    data: DataRef,
    packs: Vec<PackRef>,
}

/// The chunks the store holds as far as this job knows, for a save of `roots`.
pub(crate) async fn known(
    store: &Store,
    req: &SaveRequest,
    roots: &[String],
    warnings: &mut Vec<String>,
) -> Known {
    if let Some(dir) = &req.state_dir {
        // Newest first, so a chunk held by several restored entries is taken from the latest.
        let restored = state::restored(dir, &req.project)
            .into_iter()
            .rev()
            .filter(|r| overlap(&r.paths, roots))
            .map(|r| Base {
                key: r.key,
                data: r.data,
                packs: r.packs,
            })
            .collect();
        // What the job restored, as far as this store still holds it: a job may have restored
        // from another store, or the packs may have been pruned since.
        let known = held(store, restored, Some(dir), warnings).await;
        if !known.is_empty() {
            return known;
        }
    }
    // Else the newest entry under the save's key and restore keys.
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
        footprints: None,
    };
    let mut ignored = Vec::new();
    let mut untrusted = 0;
    let mut newest = Vec::new();
    match restore::find(store, &lookup, chrono::Utc::now(), &mut ignored, &mut untrusted).await {
        Ok(Some((m, _))) if m.encoding == Some(Encoding::Chunked) => {
            if overlap(&m.body.tree.paths, roots) {
                newest.push(Base {
                    key: m.body.key,
                    data: m.data,
                    packs: m.body.tree.packs,
                });
            }
        }
        Ok(_) => {}
        Err(e) => warnings.push(format!(
            "could not look for an earlier entry to share chunks with ({e}); every chunk is uploaded"
        )),
    }
    held(store, newest, None, warnings).await
}

/// The chunks of `bases` that lie in packs the store holds (at the size recorded). Every
/// pack is looked up first, and only the indexes of entries with a pack still there are read
/// (from the job's copy in `state_dir`, else from the store): a job's state may name entries
/// of another store. A chunk whose first-found pack is gone is still taken from another
/// entry that has it.
async fn held(
    store: &Store,
    bases: Vec<Base>,
    state_dir: Option<&std::path::Path>,
    warnings: &mut Vec<String>,
) -> Known {
    let mut all: Vec<(String, u64)> = bases
        .iter()
        .flat_map(|b| b.packs.iter().map(|p| (p.path.clone(), p.size)))
        .collect();
    all.sort();
    all.dedup();
    let present = present(store, &all).await;
    let mut known = Known::default();
    for Base { key, data, packs } in bases {
        let kept: Vec<PackRef> = packs
            .iter()
            .filter(|p| present.get(&p.path) == Some(&Some(p.size)))
            .cloned()
            .collect();
        if kept.is_empty() {
            continue;
        }
        let copy = state_dir
            .and_then(|dir| state::index_copy(dir, &data))
            .and_then(|b| chunks::decode_index(&b, &data, &packs).ok());
        let index = match copy {
            Some(index) => index,
            None => match chunks::read_index(store, &data, &packs).await {
                Ok(index) => index,
                Err(e) => {
                    warnings.push(format!(
                        "could not read the chunks of cache {key} ({e}); its chunks are uploaded again"
                    ));
                    continue;
                }
            },
        };
        known.add(&index, &kept);
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
