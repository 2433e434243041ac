//! The chunks a saving job knows the store holds: those of the entries it restored (or found
//! under its restore keys), each with the block and pack it lies in. A save references these
//! where they are instead of uploading them again.

use std::collections::HashMap;

use super::index::{Block, Index, Steps};
use super::{ChunkHash, PackRef};

/// Where a known chunk lies: a block of [`Known::blocks`], an offset and length in it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place {
    pub block: u32,
    pub offset: u32,
    pub len: u32,
}

/// Chunks the store holds as far as the saving job knows, by hash.
#[derive(Debug, Default, Clone)]
pub struct Known {
    /// Packs, with the sizes their manifests record.
    pub(crate) packs: Vec<(String, u64)>,
    pub(crate) blocks: Vec<Block>,
    /// Where the steps of those blocks end, for those whose index records it: `(step, ends)`.
    pub(crate) steps: HashMap<u32, (u32, Vec<u32>)>,
    pub(crate) chunks: HashMap<ChunkHash, Place>,
}

impl Known {
    /// Adds the chunks of one entry: its index, and the packs its manifest lists (a pack the
    /// manifest does not list is not trusted to exist and its chunks are left out).
    pub fn add(&mut self, index: &Index, packs: &[PackRef]) {
        let mut pack_of: Vec<Option<u32>> = Vec::with_capacity(index.packs.len());
        for path in &index.packs {
            let Some(size) = packs.iter().find(|p| &p.path == path).map(|p| p.size) else {
                pack_of.push(None);
                continue;
            };
            let i = match self.packs.iter().position(|(p, _)| p == path) {
                Some(i) => i,
                None => {
                    self.packs.push((path.clone(), size));
                    self.packs.len() - 1
                }
            };
            pack_of.push(Some(i as u32));
        }
        let mut block_of: HashMap<usize, u32> = HashMap::new();
        for c in &index.chunks {
            if self.chunks.contains_key(c.hash()) {
                continue;
            }
            let Some(b) = index.blocks.get(c.block()) else {
                continue;
            };
            let Some(Some(pack)) = pack_of.get(b.pack()) else {
                continue;
            };
            if b.span().end > self.packs[*pack as usize].1 {
                continue;
            }
            let block = *block_of.entry(c.block()).or_insert_with(|| {
                self.blocks.push(Block(*pack, b.1, b.2, b.3));
                let known = (self.blocks.len() - 1) as u32;
                if let Some(Steps(_, step, ends)) = index.steps_of(c.0) {
                    self.steps.insert(known, (*step, ends.clone()));
                }
                known
            });
            self.chunks.insert(
                *c.hash(),
                Place {
                    block,
                    offset: c.1,
                    len: c.2,
                },
            );
        }
    }

    /// Forgets the chunks of packs that are gone from the store.
    pub fn keep_packs(&mut self, present: &dyn Fn(&str, u64) -> bool) {
        let gone: Vec<bool> = self.packs.iter().map(|(p, s)| !present(p, *s)).collect();
        if !gone.iter().any(|g| *g) {
            return;
        }
        let blocks = &self.blocks;
        self.chunks
            .retain(|_, place| !gone[blocks[place.block as usize].pack()]);
    }

    /// The packs whose chunks are known.
    pub fn pack_paths(&self) -> Vec<(String, u64)> {
        self.packs.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// How many chunks are known.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub(crate) fn get(&self, hash: &ChunkHash) -> Option<Place> {
        self.chunks.get(hash).copied()
    }
}
