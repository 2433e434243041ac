//! Store format 2: an entry's files cut into content-defined chunks, each named by its BLAKE3
//! hash, compressed with zstd in blocks and packed into pack objects of tens of MiB; the
//! entry's index (`index.rs`) holds the tree's metadata and each file's chunk list.
//!
//! Packs are shared by the entries of a project: a save ([`pack`]) uploads only the chunks
//! its base (the entries the job restored, else the newest under its restore keys) does not
//! already hold, and references the others where they are. A restore ([`land`]) fetches the
//! index, then the byte ranges of the blocks it needs (adjacent blocks in one request),
//! checks every chunk's hash, and hands each entry to the [`crate::unpack::Lander`], which
//! applies every rule of a format-1 restore; files already on disk with the right content
//! are kept. `docs/FORMAT.md` ("Chunked entries") describes the layout.

mod fetch;
pub mod footprint;
pub mod index;
mod known;
mod pack;
mod read;
mod repack;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use footprint::Footprint;
pub use known::Known;
pub use pack::{ChunkedPack, PackOutcome, pack};
pub use read::{
    ExportSink, LandOutcome, OnDisk, decode_index, export, land, read_index, read_index_bytes,
};
pub use repack::{RepackOutcome, repack};

/// Smallest, average and largest chunk, in bytes. 64 KiB on average is what the measurement
/// behind format 2 used (10–14% of a cargo `target` new after a dependency bump); the
/// minimum keeps the per-chunk overhead of the index small, the maximum bounds memory.
pub const CHUNK_MIN: u32 = 16 * 1024;
pub const CHUNK_AVG: u32 = 64 * 1024;
pub const CHUNK_MAX: u32 = 256 * 1024;

/// Raw bytes gathered into one zstd frame before it is compressed: big enough that small
/// files compress together nearly as well as in one stream, small enough that a restore
/// needing one file of it fetches little else. A restore into a `node_modules` with 2% of
/// its files removed or appended to fetched 32 MiB at 512 KiB, 20 MiB at 256 KiB and
/// 14 MiB at 128 KiB; 128 KiB also cost its cold saves 5–14% more time.
pub const BLOCK_TARGET: usize = 256 * 1024;
/// Raw bytes gathered into one block while a file of [`LARGE_FILE`] bytes or more is cut:
/// its chunks come back together (a restore fetches the whole file or none of it), and a
/// longer frame compresses them nearly as well as one stream does.
pub const BLOCK_TARGET_LARGE: usize = 1024 * 1024;
/// Raw bytes of a block between the points where its zstd frame ends a zstd block (flushes):
/// the start of a block up to any step decompresses from the stored bytes before the next
/// step's, which is what a restore that needs only the block's first files fetches. Each
/// step is a zstd block with tables of its own to build on restore: against 16 KiB, 32 KiB
/// steps took a local restore of `node_modules` into an empty folder from 1.011 s to 0.926 s
/// (processor time 1.685 s to 1.560 s, medians of 10 alternating runs), while its 98%
/// restore through the 125 MB/s lane fetched 12.6 MB instead of 11.9 MB in 0.395 s against
/// 0.426 s (6 alternating runs; bench/README.md).
pub const STEP: usize = 32 * 1024;
/// Files from this size on have their chunks gathered in larger blocks.
pub const LARGE_FILE: u64 = 1024 * 1024;
/// The most raw bytes a block may hold (a reader refuses more).
pub const BLOCK_RAW_MAX: usize = 4 * 1024 * 1024;
/// The most stored bytes a block may hold (a reader refuses more).
pub const BLOCK_STORED_MAX: u64 = 5 * 1024 * 1024;
/// Stored bytes of a pack before the next one is started.
pub const PACK_TARGET: u64 = 32 * 1024 * 1024;

/// A pack an entry references: its object, its size, and the byte ranges of it that the
/// entry's blocks take (`[start, end)`, sorted, adjacent blocks merged). A manifest lists
/// them all, so `ferry prune` knows which packs an entry keeps, and how much of each is
/// still used, without reading its index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRef {
    pub path: String,
    pub size: u64,
    pub used: Vec<(u64, u64)>,
}

impl PackRef {
    /// Bytes of the pack the entry uses.
    pub fn used_bytes(&self) -> u64 {
        self.used.iter().map(|(a, b)| b.saturating_sub(*a)).sum()
    }
}

/// Merges byte ranges: sorted, overlapping and adjacent ones joined.
pub fn merge_ranges(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// How files were cut, as an index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// `fastcdc-2020`: the FastCDC of Xia et al. (2020), normalisation level 1, as the
    /// `fastcdc` crate's `v2020` module implements it.
    pub algorithm: Algorithm,
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    #[serde(rename = "fastcdc-2020")]
    FastCdc2020,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::FastCdc2020,
            min: CHUNK_MIN,
            avg: CHUNK_AVG,
            max: CHUNK_MAX,
        }
    }
}

/// The BLAKE3 hash of a chunk's bytes: its name. Written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkHash(pub [u8; 32]);

impl ChunkHash {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        blake3::Hash::from_hex(s).ok().map(|h| Self(*h.as_bytes()))
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChunkHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChunkHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read from the string as it lies in the input: an index holds one per chunk, and a
        // `Cow<str>` would have copied each into a `String` first.
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = ChunkHash;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a BLAKE3 hash in hex")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ChunkHash, E> {
                ChunkHash::from_hex(s).ok_or_else(|| E::custom("not a BLAKE3 hash"))
            }
        }
        d.deserialize_str(Hex)
    }
}

/// Cuts data into content-defined chunks with fixed parameters: the same bytes always cut
/// the same way, so a file changed in one place keeps its other chunks.
#[derive(Debug, Clone, Copy)]
pub struct Cutter {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
}

impl Default for Cutter {
    fn default() -> Self {
        Self::new(ChunkerParams::default())
    }
}

impl Cutter {
    pub fn new(p: ChunkerParams) -> Self {
        // Normalisation level 1, as `fastcdc::v2020::FastCDC::new` does.
        let bits = fastcdc::v2020::logarithm2(p.avg) as usize;
        Self {
            min: p.min as usize,
            avg: p.avg as usize,
            max: p.max as usize,
            mask_s: fastcdc::v2020::MASKS[bits + 1],
            mask_l: fastcdc::v2020::MASKS[bits - 1],
        }
    }

    /// The length of the next chunk of `data`, which holds everything left of the input or
    /// at least `max` bytes of it (a cut never looks further).
    pub fn cut(&self, data: &[u8]) -> usize {
        let (_, n) = fastcdc::v2020::cut(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        n.max(1).min(data.len())
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn cuts(data: &[u8]) -> Vec<usize> {
        let c = Cutter::default();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = c.cut(&data[pos..]);
            out.push(n);
            pos += n;
        }
        out
    }

    #[test]
    fn chunks_are_within_bounds_and_cut_like_the_fastcdc_crate() {
        let data = noise(4 << 20, 7);
        let ours = cuts(&data);
        let theirs: Vec<usize> =
            fastcdc::v2020::FastCDC::new(&data, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
                .map(|c| c.length)
                .collect();
        assert_eq!(ours, theirs);
        assert_eq!(ours.iter().sum::<usize>(), data.len());
        let (last, rest) = ours.split_last().expect("chunks");
        assert!(*last <= CHUNK_MAX as usize);
        assert!(
            rest.iter()
                .all(|&n| (CHUNK_MIN as usize..=CHUNK_MAX as usize).contains(&n))
        );
        let avg = data.len() / ours.len();
        assert!((32 << 10..128 << 10).contains(&avg), "average {avg}");
    }

    #[test]
    fn an_insertion_changes_only_the_chunks_around_it() {
        let data = noise(2 << 20, 11);
        let mut changed = data[..1_000_000].to_vec();
        changed.extend_from_slice(b"a few inserted bytes");
        changed.extend_from_slice(&data[1_000_000..]);
        let hashes = |d: &[u8]| -> std::collections::HashSet<ChunkHash> {
            let mut pos = 0;
            cuts(d)
                .into_iter()
                .map(|n| {
                    let h = ChunkHash::of(&d[pos..pos + n]);
                    pos += n;
                    h
                })
                .collect()
        };
        let before = hashes(&data);
        let after = hashes(&changed);
        let new = after.difference(&before).count();
        assert!(new <= 2, "{new} new chunks of {}", after.len());
    }

    #[test]
    fn hashes_are_written_as_hex_and_read_back() {
        let h = ChunkHash::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(ChunkHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ChunkHash::from_hex("zz"), None);
        assert_eq!(ChunkHash::from_hex(&"g".repeat(64)), None);
    }
}

#[cfg(test)]
mod round_trip;
