//! `ferry prune --repack`: packs whose bytes are mostly unused are rewritten. The blocks live
//! entries still use are copied (each checked) into a new pack beside the old one; each of
//! those entries gets a new index pointing there and its manifest is rewritten in place
//! (re-signed with the job's key when it was signed; a signed entry is left alone without
//! one). The old packs are then unused, and the usual two-step pruning removes them, so a
//! restore already reading one finishes.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use serde::Serialize;

use super::index::{self, Block, Index};
use super::{PackRef, merge_ranges, read_index};
use crate::archive::ArchiveError;
use crate::manifest::DataRef;
use crate::retention::RepackCandidate;
use crate::store::Store;
use crate::trust::sign::Trust;

/// Live bytes one prune copies at most (held in memory while a new pack is written).
const REPACK_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// What a repack did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepackOutcome {
    /// Packs whose live blocks were copied out (they are unused now).
    pub packs_rewritten: u64,
    /// Their size.
    pub bytes_before: u64,
    /// Bytes of the new packs.
    pub bytes_written: u64,
    /// Manifests rewritten to the new packs.
    pub entries_rewritten: u64,
    /// Packs or entries left as they were, and why.
    pub warnings: Vec<String>,
}

/// The chunks of a block to check: their ranges in its raw bytes and their hashes.
type ChunkChecks = Vec<(std::ops::Range<usize>, super::ChunkHash)>;

/// One entry to rewrite: its manifest as read, and its index.
struct Affected {
    manifest: String,
    bytes: Bytes,
    json: serde_json::Value,
    data: DataRef,
    packs: Vec<PackRef>,
    index: Index,
}

/// Rewrites the candidate packs; failures become warnings (a repack is an optimisation).
pub async fn repack(store: &Store, candidates: &[RepackCandidate], trust: &Trust) -> RepackOutcome {
    let mut out = RepackOutcome::default();
    if !store.capabilities().overwrite {
        out.warnings.push(
            "this store cannot replace objects, so packs are not repacked (their unused bytes stay until no entry uses them)".into(),
        );
        return out;
    }
    if let Err(e) = run(store, candidates, trust, &mut out).await {
        out.warnings.push(format!("repacking stopped: {e}"));
    }
    out
}

async fn run(
    store: &Store,
    candidates: &[RepackCandidate],
    trust: &Trust,
    out: &mut RepackOutcome,
) -> Result<(), crate::entry::EntryError> {
    let mut chosen: HashSet<String> = candidates.iter().map(|c| c.pack.clone()).collect();
    let manifests: HashSet<&String> = candidates.iter().flat_map(|c| &c.manifests).collect();
    let mut affected = Vec::new();
    for rel in manifests {
        let Some(bytes) = store.read(rel).await? else {
            continue;
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let data: Option<DataRef> = serde_json::from_value(json["data"].clone()).ok();
        let packs: Option<Vec<PackRef>> = serde_json::from_value(json["packs"].clone()).ok();
        let (Some(data), Some(packs)) = (data, packs) else {
            continue;
        };
        if json.get("signature").is_some() && trust.signer.is_none() {
            // It cannot be re-signed: the packs it uses stay as they are.
            for p in &packs {
                if chosen.remove(&p.path) {
                    out.warnings.push(format!(
                        "pack {} is not repacked: {rel} is signed and this prune holds no FERRY_SIGNING_KEY",
                        p.path
                    ));
                }
            }
            continue;
        }
        let index = read_index(store, &data, &packs).await?;
        affected.push(Affected {
            manifest: rel.clone(),
            bytes,
            json,
            data,
            packs,
            index,
        });
    }
    // A run copies at most this much; what is left is repacked by the next prune.
    let mut live_of: HashMap<&str, u64> = HashMap::new();
    for a in &affected {
        let mut seen = HashSet::new();
        for b in &a.index.blocks {
            let path = a.index.packs[b.pack()].as_str();
            if chosen.contains(path) && seen.insert((path, b.offset())) {
                *live_of.entry(path).or_default() += b.stored();
            }
        }
    }
    let mut budget = REPACK_BYTES_MAX;
    for c in candidates {
        let live = live_of.get(c.pack.as_str()).copied().unwrap_or(0);
        if chosen.contains(&c.pack) {
            if live > budget {
                chosen.remove(&c.pack);
            } else {
                budget -= live;
            }
        }
    }
    affected.retain(|a| a.packs.iter().any(|p| chosen.contains(&p.path)));
    if chosen.is_empty() || affected.is_empty() {
        return Ok(());
    }

    // The live blocks of the chosen packs, by folder (a new pack goes beside the old ones).
    let mut live: BTreeMap<String, BTreeMap<(String, u64), Block>> = BTreeMap::new();
    let mut checks: HashMap<(String, u64), ChunkChecks> = HashMap::new();
    for a in &affected {
        for (bi, b) in a.index.blocks.iter().enumerate() {
            let path = &a.index.packs[b.pack()];
            if !chosen.contains(path) {
                continue;
            }
            let folder = path.rsplit_once('/').map_or("", |(f, _)| f).to_string();
            live.entry(folder)
                .or_default()
                .insert((path.clone(), b.offset()), *b);
            let list = checks.entry((path.clone(), b.offset())).or_default();
            for c in a.index.chunks.iter().filter(|c| c.block() == bi) {
                list.push((c.range(), *c.hash()));
            }
        }
    }
    // Where each live block is now: (old pack, old offset) -> (new pack, new offset, size).
    let mut moved: HashMap<(String, u64), (String, u64)> = HashMap::new();
    let mut new_sizes: HashMap<String, u64> = HashMap::new();
    for (folder, blocks) in live {
        let rel = format!("{folder}/{}.pack", crate::manifest::new_id());
        let mut copied: Vec<(Vec<u8>, (String, u64))> = Vec::new();
        let mut z = zstd::bulk::Decompressor::new().map_err(ArchiveError::Write)?;
        for ((pack, offset), b) in &blocks {
            let stored = store.get_range(pack, b.span()).await?;
            let raw = z
                .decompress(&stored, b.raw())
                .map_err(|e| ArchiveError::Corrupt {
                    detail: format!("block at {offset} of pack {pack} does not decompress: {e}"),
                })?;
            for (range, hash) in checks.get(&(pack.clone(), *offset)).into_iter().flatten() {
                if raw.get(range.clone()).map(super::ChunkHash::of) != Some(*hash) {
                    return Err(ArchiveError::Corrupt {
                        detail: format!("a chunk in the block at {offset} of pack {pack} does not match its hash"),
                    }
                    .into());
                }
            }
            copied.push((stored.to_vec(), (pack.clone(), *offset)));
        }
        let mut offset = 0u64;
        let mut payload = Vec::new();
        for (bytes, key) in copied {
            moved.insert(key, (rel.clone(), offset));
            offset += bytes.len() as u64;
            payload.extend_from_slice(&bytes);
        }
        store.create(&rel, payload.into()).await?;
        new_sizes.insert(rel, offset);
        out.bytes_written += offset;
    }
    for p in &chosen {
        out.packs_rewritten += 1;
        out.bytes_before += candidates
            .iter()
            .find(|c| &c.pack == p)
            .map_or(0, |c| c.size);
    }

    for a in affected {
        let (index, packs) = rewrite(&a, &moved, &new_sizes);
        let stored = index::encode(&index);
        let dir = a.data.path.rsplit_once('/').map_or("", |(f, _)| f);
        let data = DataRef {
            path: format!("{dir}/{}.index.zst", crate::manifest::new_id()),
            size: stored.len() as u64,
            sha256: super::pack::sha256_hex(&stored),
        };
        store.create(&data.path, stored.into()).await?;
        let mut json = a.json.clone();
        let signed = json
            .as_object_mut()
            .and_then(|o| o.remove("signature"))
            .is_some();
        json["data"] = serde_json::to_value(&data).unwrap_or_default();
        json["packs"] = serde_json::to_value(&packs).unwrap_or_default();
        let mut bytes = Bytes::from(serde_json::to_vec_pretty(&json).unwrap_or_default());
        if signed {
            bytes = trust.seal(bytes);
        }
        // Only an entry unchanged since it was read is rewritten (a save may replace it).
        if store.read(&a.manifest).await?.as_ref() != Some(&a.bytes) {
            out.warnings.push(format!(
                "{} changed while it was being repacked; left as it is",
                a.manifest
            ));
            let _ = store.delete(&data.path).await;
            continue;
        }
        store.overwrite(&a.manifest, bytes).await?;
        out.entries_rewritten += 1;
    }
    Ok(())
}

/// The entry's index and packs with its blocks in moved packs pointing at their new place,
/// and the packs it no longer uses dropped.
fn rewrite(
    a: &Affected,
    moved: &HashMap<(String, u64), (String, u64)>,
    new_sizes: &HashMap<String, u64>,
) -> (Index, Vec<PackRef>) {
    let mut index = a.index.clone();
    let mut paths: Vec<String> = Vec::new();
    let pack_no = |p: &str, paths: &mut Vec<String>| -> u32 {
        match paths.iter().position(|x| x == p) {
            Some(i) => i as u32,
            None => {
                paths.push(p.to_string());
                (paths.len() - 1) as u32
            }
        }
    };
    for b in &mut index.blocks {
        let old = &a.index.packs[b.pack()];
        let (path, offset) = moved
            .get(&(old.clone(), b.offset()))
            .cloned()
            .unwrap_or_else(|| (old.clone(), b.offset()));
        b.0 = pack_no(&path, &mut paths);
        b.1 = offset;
    }
    index.packs = paths;
    let mut used: Vec<Vec<(u64, u64)>> = vec![Vec::new(); index.packs.len()];
    for b in &index.blocks {
        used[b.pack()].push((b.span().start, b.span().end));
    }
    let refs = index
        .packs
        .iter()
        .zip(used)
        .map(|(path, used)| PackRef {
            path: path.clone(),
            size: new_sizes.get(path).copied().unwrap_or_else(|| {
                a.packs
                    .iter()
                    .find(|p| &p.path == path)
                    .map_or(0, |p| p.size)
            }),
            used: merge_ranges(used),
        })
        .collect();
    (index, refs)
}
