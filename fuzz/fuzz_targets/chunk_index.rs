#![no_main]
//! Fuzz target `chunk_index`: any bytes read as the chunk index of a format-2 entry, both as
//! stored (zstd) and as its JSON (compressed here), as a restore reads it. Beyond "no panic":
//! - an index that decodes holds only references a restore may follow without checking
//!   again: every block in a listed pack, every chunk within its block's raw bytes (and the
//!   block within the limits), every file's chunks in range and adding up to its size,
//!   folders and links without data;
//! - it encodes and decodes back to itself;
//! - checked against a manifest (`decode_index`), it is accepted when the manifest lists its
//!   packs with room for every block, and refused when a pack is missing or one byte short,
//!   or when the manifest's digest is not the index's;
//! - its exclude patterns build a glob set or are refused, without a panic.

use ferry_core::chunks::index::{self, Index, Kind};
use ferry_core::chunks::{BLOCK_RAW_MAX, BLOCK_STORED_MAX, PackRef, decode_index};
use ferry_core::manifest::DataRef;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn consistent(ix: &Index) {
    for b in &ix.blocks {
        assert!(
            b.pack() < ix.packs.len(),
            "a block names a pack the index lacks"
        );
        assert!(b.stored() > 0 && b.stored() <= BLOCK_STORED_MAX);
        assert!(b.raw() <= BLOCK_RAW_MAX);
        assert!(b.offset().checked_add(b.stored()).is_some());
    }
    for c in &ix.chunks {
        let block = ix
            .blocks
            .get(c.block())
            .expect("a chunk names a block the index lacks");
        assert!(
            !c.is_empty() && c.range().end <= block.raw(),
            "a chunk outside its block"
        );
    }
    for e in &ix.entries {
        match e.kind {
            Kind::File => {
                let total: u64 = e
                    .chunks
                    .iter()
                    .map(|&c| {
                        ix.chunks
                            .get(c as usize)
                            .expect("a file names a missing chunk")
                            .len()
                    })
                    .sum();
                assert_eq!(total, e.size, "a file's chunks do not add up to its size");
                assert!(e.target.is_none());
            }
            Kind::Dir => assert!(e.size == 0 && e.chunks.is_empty() && e.target.is_none()),
            Kind::Symlink | Kind::Hardlink => {
                assert!(e.size == 0 && e.chunks.is_empty() && e.target.is_some())
            }
        }
    }
}

fn data_ref(stored: &[u8]) -> DataRef {
    DataRef {
        path: "p/data/fuzz.index.zst".into(),
        size: stored.len() as u64,
        sha256: format!("{:x}", Sha256::digest(stored)),
    }
}

/// The packs of `ix` as a manifest lists them, `short` bytes shorter than its blocks reach.
fn pack_refs(ix: &Index, short: u64) -> Vec<PackRef> {
    ix.packs
        .iter()
        .enumerate()
        .map(|(p, path)| {
            let end = ix
                .blocks
                .iter()
                .filter(|b| b.pack() == p)
                .map(|b| b.span().end)
                .max()
                .unwrap_or(0);
            PackRef {
                path: path.clone(),
                size: end.saturating_sub(short),
                used: Vec::new(),
            }
        })
        .collect()
}

fn run(stored: &[u8]) {
    let Ok(ix) = index::decode(stored) else {
        return;
    };
    consistent(&ix);
    let again = index::decode(&index::encode(&ix)).expect("an index decodes once encoded");
    assert_eq!(again, ix, "encode and decode changed the index");
    let _ = ferry_core::glob::set(&ix.excludes);

    let data = data_ref(stored);
    let packs = pack_refs(&ix, 0);
    // Names the index repeats are one pack to the manifest: the first entry's room is checked.
    let distinct = {
        let mut p = ix.packs.clone();
        p.sort();
        p.dedup();
        p.len() == ix.packs.len()
    };
    if distinct {
        let read =
            decode_index(stored, &data, &packs).expect("a manifest with room for every block");
        assert_eq!(read, ix);
    }
    if let Some((missing, rest)) = packs.split_first() {
        if !rest.iter().any(|r| r.path == missing.path) {
            assert!(
                decode_index(stored, &data, rest).is_err(),
                "a pack missing from the manifest"
            );
        }
    }
    if distinct && ix.blocks.iter().any(|b| b.span().end > 0) {
        assert!(
            decode_index(stored, &data, &pack_refs(&ix, 1)).is_err(),
            "a block past its pack's end"
        );
    }
    let mut wrong = data.clone();
    wrong.sha256 = format!("{:x}", Sha256::digest(b"another object"));
    assert!(
        decode_index(stored, &wrong, &packs).is_err(),
        "a digest that is not the index's"
    );
}

fuzz_target!(|bytes: &[u8]| {
    run(bytes);
    // The same bytes as the index's JSON, so that the parser sees them whole.
    if let Ok(stored) = zstd::bulk::compress(bytes, 1) {
        run(&stored);
    }
});
