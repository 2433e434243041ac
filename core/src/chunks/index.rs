//! The index of a chunked entry: every entry of the tree with its metadata, and for each file
//! the chunks it is made of and where each chunk lies (block of a pack, offset in the block).
//!
//! It is JSON compressed with zstd, so `zstd -dc INDEX | jq` reads it by hand. Reading one
//! is [`decode`]: bounded in size before it is parsed, then checked for consistency (every
//! reference in range, every file's chunks adding up to its size), so that nothing later
//! indexes out of bounds or trusts a number the index made up. The names and link targets
//! are judged later, by the lander, like a tar archive's.

use serde::{Deserialize, Serialize};

use super::{BLOCK_RAW_MAX, BLOCK_STORED_MAX, ChunkHash, ChunkerParams};
use crate::archive::ArchiveError;

/// Layout version of the index.
pub const INDEX_VERSION: u32 = 1;

/// The most an index may unpack to, whatever its manifest says.
pub const INDEX_RAW_MAX: u64 = 1 << 30;

/// One zstd frame of a pack: `(pack, offset, stored bytes, raw bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Block(pub u32, pub u64, pub u32, pub u32);

impl Block {
    pub fn pack(&self) -> usize {
        self.0 as usize
    }
    pub fn offset(&self) -> u64 {
        self.1
    }
    pub fn stored(&self) -> u64 {
        u64::from(self.2)
    }
    pub fn raw(&self) -> usize {
        self.3 as usize
    }
    /// The bytes of its pack the block takes.
    pub fn span(&self) -> std::ops::Range<u64> {
        self.1..self.1 + u64::from(self.2)
    }
}

/// Where the steps of one block end (see [`Index::steps`]): `(block, step, ends)`, `ends[k]`
/// the stored bytes that carry the block's first `(k + 1) · step` raw bytes, for every step
/// but the last (which ends with the block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps(pub u32, pub u32, pub Vec<u32>);

/// The smallest step a reader takes an index's word for.
const STEP_MIN: u32 = 1024;

/// One chunk: `(block, offset in the block's raw bytes, length, BLAKE3 of its bytes)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk(pub u32, pub u32, pub u32, pub ChunkHash);

impl Chunk {
    pub fn block(&self) -> usize {
        self.0 as usize
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.1 as usize..self.1 as usize + self.2 as usize
    }
    pub fn len(&self) -> u64 {
        u64::from(self.2)
    }
    pub fn is_empty(&self) -> bool {
        self.2 == 0
    }
    pub fn hash(&self) -> &ChunkHash {
        &self.3
    }
}

/// What an entry of the tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Another name of a file earlier in the index (`target`), as cargo hard-links the
    /// binaries it builds: stored and restored once, as a hard link.
    Hardlink,
}

/// One entry of the tree, in walk order (folders before what they hold).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    /// Permission bits (files and folders).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mode: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Bytes of a file.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub size: u64,
    /// A file's chunks, in order, as indexes into [`Index::chunks`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<u32>,
    /// A symlink's target, or the file a hard link names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// The index of one chunked entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub version: u32,
    /// How the files were cut (informational: a reader needs only the chunk table).
    pub chunker: ChunkerParams,
    /// The pack objects the blocks lie in, as paths below the store's prefix.
    pub packs: Vec<String>,
    pub blocks: Vec<Block>,
    pub chunks: Vec<Chunk>,
    pub entries: Vec<Entry>,
    /// Roots saved whole (a plain path, not a glob's base): a restore into a folder that
    /// already holds them removes what the entry does not hold below them.
    #[serde(default)]
    pub whole_roots: Vec<String>,
    /// Exclude patterns of the save: a restore never removes names they match.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// For the blocks whose zstd frame ends a zstd block after every `step` raw bytes, where
    /// those end, sorted by block: a restore that needs only the first files of a block
    /// fetches the stored bytes up to the end of the step that carries them, and no more.
    /// Blocks not listed (one step long, or saved before steps were recorded) are fetched
    /// whole or from an estimate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Steps>,
}

impl Index {
    /// The recorded steps of block `b`.
    pub fn steps_of(&self, b: u32) -> Option<&Steps> {
        let at = self.steps.binary_search_by_key(&b, |s| s.0).ok()?;
        self.steps.get(at)
    }

    /// Block `b`'s stored bytes that carry its first `need` raw bytes, when its steps are
    /// recorded and one of them ends before the block does.
    pub fn step_end(&self, b: u32, need: usize) -> Option<u64> {
        let Steps(_, step, ends) = self.steps_of(b)?;
        let k = need.max(1).div_ceil(*step as usize) - 1;
        ends.get(k).map(|&end| u64::from(end))
    }
}

fn corrupt(detail: impl Into<String>) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: format!("chunk index: {}", detail.into()),
    }
}

/// Serialises and compresses an index.
pub fn encode(index: &Index) -> Vec<u8> {
    let json = serde_json::to_vec(index).expect("indexes always serialise");
    zstd::bulk::compress(&json, 3).expect("compressing in memory does not fail")
}

/// Decompresses (at most [`INDEX_RAW_MAX`] bytes), parses and checks an index. Anything
/// inconsistent is [`ArchiveError::Corrupt`]: a restore refuses it before writing anything.
pub fn decode(stored: &[u8]) -> Result<Index, ArchiveError> {
    use std::io::Read;
    let decoder =
        zstd::stream::read::Decoder::new(stored).map_err(|e| corrupt(format!("not zstd: {e}")))?;
    // Sized from the length the frame records, when that is plausible, rather than grown by
    // doubling (which copied a 7 MB index three times over).
    let recorded = zstd::zstd_safe::get_frame_content_size(stored)
        .ok()
        .flatten()
        .filter(|&n| n <= INDEX_RAW_MAX.min(stored.len() as u64 * 64));
    let mut raw = Vec::with_capacity(recorded.map_or(0, |n| n as usize + 1));
    decoder
        .take(INDEX_RAW_MAX + 1)
        .read_to_end(&mut raw)
        .map_err(|e| corrupt(format!("not zstd: {e}")))?;
    if raw.len() as u64 > INDEX_RAW_MAX {
        return Err(corrupt(format!(
            "it unpacks to more than {INDEX_RAW_MAX} bytes"
        )));
    }
    let index: Index =
        serde_json::from_slice(&raw).map_err(|e| corrupt(format!("not an index: {e}")))?;
    check(&index)?;
    Ok(index)
}

/// Every reference of the index in range, every file's chunks adding up to its size.
pub fn check(index: &Index) -> Result<(), ArchiveError> {
    if index.version != INDEX_VERSION {
        return Err(corrupt(format!(
            "layout version {} is not one this ferry reads ({INDEX_VERSION}); upgrade ferry",
            index.version
        )));
    }
    for (i, b) in index.blocks.iter().enumerate() {
        if b.pack() >= index.packs.len() {
            return Err(corrupt(format!(
                "block {i} names pack {} of {}",
                b.0,
                index.packs.len()
            )));
        }
        if b.2 == 0 || b.stored() > BLOCK_STORED_MAX || b.raw() > BLOCK_RAW_MAX {
            return Err(corrupt(format!(
                "block {i} has {} stored and {} raw bytes, outside the limits",
                b.2, b.3
            )));
        }
        if b.offset().checked_add(b.stored()).is_none() {
            return Err(corrupt(format!("block {i} ends past the largest offset")));
        }
    }
    let mut last_block = None;
    for Steps(b, step, ends) in &index.steps {
        let Some(block) = index.blocks.get(*b as usize) else {
            return Err(corrupt(format!(
                "steps name block {b} of {}",
                index.blocks.len()
            )));
        };
        if last_block.is_some_and(|last| last >= *b) {
            return Err(corrupt(format!("steps of block {b} are out of order")));
        }
        last_block = Some(*b);
        let counted = block.raw().div_ceil((*step).max(1) as usize);
        // Every step holds a zstd block of at least a header: none ends at the frame's start.
        let rising = ends.windows(2).all(|w| w[0] < w[1]) && ends.first() != Some(&0);
        if *step < STEP_MIN
            || ends.len() + 1 != counted
            || !rising
            || ends.last().is_some_and(|&end| end >= block.2)
        {
            return Err(corrupt(format!(
                "block {b}'s steps ({} of {step} bytes) do not fit its {} raw and {} stored bytes",
                ends.len(),
                block.3,
                block.2
            )));
        }
    }
    for (i, c) in index.chunks.iter().enumerate() {
        let Some(b) = index.blocks.get(c.block()) else {
            return Err(corrupt(format!(
                "chunk {i} names block {} of {}",
                c.0,
                index.blocks.len()
            )));
        };
        if c.is_empty() || c.range().end > b.raw() {
            return Err(corrupt(format!(
                "chunk {i} ({} bytes at {}) lies outside its block of {} bytes",
                c.2,
                c.1,
                b.raw()
            )));
        }
    }
    for e in &index.entries {
        match e.kind {
            Kind::File => {
                let mut total: u64 = 0;
                for &c in &e.chunks {
                    let chunk = index.chunks.get(c as usize).ok_or_else(|| {
                        corrupt(format!(
                            "{:?} names chunk {c} of {}",
                            e.name,
                            index.chunks.len()
                        ))
                    })?;
                    total = total.saturating_add(chunk.len());
                }
                if total != e.size {
                    return Err(corrupt(format!(
                        "the chunks of {:?} hold {total} bytes, its size is {}",
                        e.name, e.size
                    )));
                }
                if e.target.is_some() {
                    return Err(corrupt(format!("file {:?} has a link target", e.name)));
                }
            }
            Kind::Dir => {
                if e.size != 0 || !e.chunks.is_empty() || e.target.is_some() {
                    return Err(corrupt(format!("folder {:?} carries data", e.name)));
                }
            }
            Kind::Symlink | Kind::Hardlink => {
                if e.size != 0 || !e.chunks.is_empty() || e.target.is_none() {
                    return Err(corrupt(format!(
                        "link {:?} carries data or has no target",
                        e.name
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::{ChunkHash, ChunkerParams};

    fn sample() -> Index {
        Index {
            version: INDEX_VERSION,
            chunker: ChunkerParams::default(),
            packs: vec!["p/packs/a.pack".into()],
            blocks: vec![Block(0, 0, 10, 8)],
            chunks: vec![
                Chunk(0, 0, 5, ChunkHash::of(b"hello")),
                Chunk(0, 5, 3, ChunkHash::of(b"abc")),
            ],
            entries: vec![
                Entry {
                    name: "d".into(),
                    kind: Kind::Dir,
                    mode: 0o755,
                    mtime: 1,
                    size: 0,
                    chunks: vec![],
                    target: None,
                },
                Entry {
                    name: "d/f".into(),
                    kind: Kind::File,
                    mode: 0o644,
                    mtime: 2,
                    size: 8,
                    chunks: vec![0, 1],
                    target: None,
                },
                Entry {
                    name: "d/l".into(),
                    kind: Kind::Symlink,
                    mode: 0,
                    mtime: 3,
                    size: 0,
                    chunks: vec![],
                    target: Some("f".into()),
                },
            ],
            whole_roots: vec!["d".into()],
            excludes: vec![],
            steps: vec![],
        }
    }

    #[test]
    fn an_index_survives_a_round_trip() -> Result<(), ArchiveError> {
        let i = sample();
        assert_eq!(decode(&encode(&i))?, i);
        Ok(())
    }

    #[test]
    fn inconsistent_indexes_are_refused_as_corrupt() {
        type Edit = Box<dyn Fn(&mut Index)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "block names a missing pack",
                Box::new(|i| i.blocks[0].0 = 1),
            ),
            ("block too large", Box::new(|i| i.blocks[0].3 = u32::MAX)),
            ("empty block", Box::new(|i| i.blocks[0].2 = 0)),
            (
                "block past the end",
                Box::new(|i| i.blocks[0].1 = u64::MAX - 2),
            ),
            (
                "chunk names a missing block",
                Box::new(|i| i.chunks[0].0 = 7),
            ),
            ("chunk outside its block", Box::new(|i| i.chunks[1].1 = 6)),
            ("empty chunk", Box::new(|i| i.chunks[1].2 = 0)),
            (
                "file names a missing chunk",
                Box::new(|i| i.entries[1].chunks = vec![0, 9]),
            ),
            ("size that lies", Box::new(|i| i.entries[1].size = 9)),
            (
                "folder with data",
                Box::new(|i| i.entries[0].chunks = vec![0]),
            ),
            (
                "link without target",
                Box::new(|i| i.entries[2].target = None),
            ),
            ("newer layout", Box::new(|i| i.version = 2)),
        ];
        for (what, edit) in cases {
            let mut i = sample();
            edit(&mut i);
            let err = decode(&encode(&i)).expect_err(what);
            assert!(err.is_integrity(), "{what}: {err}");
        }
        for junk in [
            &b""[..],
            b"not zstd",
            &zstd::bulk::compress(b"{\"version\":1}", 1).unwrap_or_default(),
        ] {
            assert!(decode(junk).is_err_and(|e| e.is_integrity()));
        }
    }

    #[test]
    fn steps_are_taken_only_where_they_fit_their_block() {
        let stepped = |steps: Vec<Steps>| {
            let mut i = sample();
            i.blocks[0] = Block(0, 0, 5000, 40_000);
            i.steps = steps;
            i
        };
        let i = decode(&encode(&stepped(vec![Steps(0, 16_384, vec![1000, 3000])])))
            .expect("steps that fit");
        assert_eq!(i.step_end(0, 100), Some(1000));
        assert_eq!(i.step_end(0, 16_384), Some(1000));
        assert_eq!(i.step_end(0, 16_385), Some(3000));
        assert_eq!(
            i.step_end(0, 40_000),
            None,
            "the last step ends with the block"
        );
        assert_eq!(i.step_end(1, 100), None, "a block without steps");
        let cases: Vec<(&str, Vec<Steps>)> = vec![
            ("a missing block", vec![Steps(3, 16_384, vec![1000, 3000])]),
            ("too small a step", vec![Steps(0, 100, vec![1000, 3000])]),
            ("too few ends", vec![Steps(0, 16_384, vec![1000])]),
            ("ends that fall", vec![Steps(0, 16_384, vec![3000, 1000])]),
            ("an end at the start", vec![Steps(0, 16_384, vec![0, 1000])]),
            (
                "an end past the block",
                vec![Steps(0, 16_384, vec![1000, 5000])],
            ),
            (
                "a block twice",
                vec![
                    Steps(0, 16_384, vec![1000, 3000]),
                    Steps(0, 16_384, vec![1000, 3000]),
                ],
            ),
        ];
        for (what, steps) in cases {
            let err = decode(&encode(&stepped(steps))).expect_err(what);
            assert!(err.is_integrity(), "{what}: {err}");
        }
    }
}
