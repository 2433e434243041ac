//! Saving a chunked entry: walk the roots (the same walk as a tar archive), cut each file into
//! chunks, keep the chunks the store already holds where they are, and gather the new ones
//! into blocks that a pool of threads compresses and one writer appends, in order, to new
//! packs of about [`PACK_TARGET`] bytes. The index goes last. Nothing is in memory whole but
//! the index; every pack is streamed.
//!
//! Threads: the walker (reads, cuts, hashes and dedupes), one compressor per core, a thread
//! putting compressed blocks back in order, and the pack writers of `transfer::upload`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use futures::StreamExt;

use super::index::{self, Block, Chunk, Entry, INDEX_VERSION, Index, Kind, Steps};
use super::known::Known;
use super::{
    BLOCK_TARGET, BLOCK_TARGET_LARGE, CHUNK_MAX, ChunkHash, ChunkerParams, Cutter, LARGE_FILE,
    PACK_TARGET, PackRef, merge_ranges,
};
use crate::archive::{self, ArchiveError, EntryKind, PackSpec, PackStats};
use crate::entry::EntryError;
use crate::manifest::DataRef;
use crate::store::Store;
use crate::transfer;

/// Where and how a save writes its chunks.
pub struct ChunkedPack {
    /// Folder new packs are written to.
    pub packs_dir: String,
    /// The index object to write.
    pub index_rel: String,
    /// Chunks the store already holds, as far as this job knows.
    pub known: Known,
    /// zstd level of the blocks.
    pub level: i32,
    /// Roots saved whole (plain paths) and the exclude patterns, recorded in the index.
    pub whole_roots: Vec<String>,
    pub excludes: Vec<String>,
}

/// What a chunked save wrote.
#[derive(Debug, Clone)]
pub struct PackOutcome {
    /// The index object.
    pub data: DataRef,
    /// Every pack the entry references, with the ranges it uses.
    pub packs: Vec<PackRef>,
    /// Packs this save wrote (to remove if it does not publish).
    pub new_packs: Vec<String>,
    /// Bytes written to the store: new packs and the index.
    pub uploaded_bytes: u64,
    /// Objects written: new packs and the index.
    pub objects_written: u64,
    /// Bytes of file content found in the store already.
    pub reused_bytes: u64,
    pub stats: PackStats,
    pub listing: Vec<(String, EntryKind)>,
}

/// New blocks by sequence number, raw, as the walker sends them.
type RawBlocks = Receiver<(u32, Vec<u8>)>;

/// A compressed block: its stored bytes, its raw length, and where its steps end.
type Compressed = (Vec<u8>, u32, Vec<u32>);

/// Raw blocks waiting for a compressor, and compressed ones waiting for the writer. The
/// compressors are the slow stage (the walker cuts and hashes several times faster), so two
/// keep them busy; on a slow link every queue is full, and each holds up to two blocks of
/// a large file (about 1 MiB raw).
const QUEUE: usize = 2;
/// Bytes read from a file at a time; at least four of the largest chunk.
const READ_BUF: usize = 1024 * 1024;
/// The most raw bytes a block can gather: it is sent once it reaches its target, so the
/// chunk that takes it there, at most [`CHUNK_MAX`] bytes, starts below the target.
const BLOCK_CAPACITY: usize = BLOCK_TARGET_LARGE + CHUNK_MAX as usize;
/// Match tables of the blocks at level 3, the default: 2^16 hash and 2^15 chain entries.
/// zstd's level 3 sizes them for a stream when its input passes 256 KiB (2^17 and 2^16,
/// 768 KiB together), but a block is at most about 1.25 MiB. With the smaller tables a cold
/// save of a 460 MB `target/` took 10% less processor time, and one of `node_modules` 6%
/// less, for 0.25% more bytes stored (bench/README.md).
const LEVEL3_HASH_LOG: u32 = 16;
const LEVEL3_CHAIN_LOG: u32 = 15;
/// Spare buffers a [`Pool`] keeps: more than the blocks in flight between two stages.
const POOL_MAX: usize = 8;

/// Buffers handed back once their block has moved on, so the next block reuses memory the
/// process already has: with a fresh buffer for every block, raw and compressed, a cold
/// save of a 460 MB `target/` took three times the page faults of a format-1 save.
#[derive(Clone, Default)]
struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// An empty buffer of at least `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut v = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        v.clear();
        v.reserve(capacity);
        v
    }

    fn give(&self, v: Vec<u8>) {
        if let Ok(mut p) = self.0.lock() {
            if p.len() < POOL_MAX {
                p.push(v);
            }
        }
    }
}

/// Where a chunk of the new index lies while the save runs.
#[derive(Clone, Copy)]
enum Loc {
    /// In new block `seq`.
    New { seq: u32 },
    /// In block `block` of [`Known::blocks`].
    Known { block: u32 },
}

struct NewChunk {
    loc: Loc,
    offset: u32,
    len: u32,
    hash: ChunkHash,
}

/// What the walker made.
struct Walked {
    entries: Vec<Entry>,
    chunks: Vec<NewChunk>,
    stats: PackStats,
    listing: Vec<(String, EntryKind)>,
    reused_bytes: u64,
}

struct Walker<'a> {
    cutter: Cutter,
    known: &'a Known,
    seen: HashMap<ChunkHash, u32>,
    chunks: Vec<NewChunk>,
    block: Vec<u8>,
    seq: u32,
    tx: SyncSender<(u32, Vec<u8>)>,
    /// Raw buffers the compressors are done with.
    spare: Pool,
    reused_bytes: u64,
    /// Raw bytes the current block gathers before it is sent: [`BLOCK_TARGET`], or
    /// [`BLOCK_TARGET_LARGE`] while a large file is cut (its blocks hold nothing else).
    target: usize,
}

fn stopped() -> ArchiveError {
    ArchiveError::Write(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the upload stopped",
    ))
}

impl Walker<'_> {
    fn chunk(&mut self, data: &[u8]) -> Result<u32, ArchiveError> {
        let hash = ChunkHash::of(data);
        if let Some(&i) = self.seen.get(&hash) {
            return Ok(i);
        }
        let len = data.len() as u32;
        let (loc, offset) = match self.known.get(&hash) {
            Some(p) if p.len == len => {
                self.reused_bytes += u64::from(len);
                (Loc::Known { block: p.block }, p.offset)
            }
            _ => {
                let offset = self.block.len() as u32;
                self.block.extend_from_slice(data);
                let loc = Loc::New { seq: self.seq };
                if self.block.len() >= self.target {
                    self.flush()?;
                }
                (loc, offset)
            }
        };
        let i = self.chunks.len() as u32;
        self.chunks.push(NewChunk {
            loc,
            offset,
            len,
            hash,
        });
        self.seen.insert(hash, i);
        Ok(i)
    }

    fn flush(&mut self) -> Result<(), ArchiveError> {
        if self.block.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.block, self.spare.take(BLOCK_CAPACITY));
        self.tx.send((self.seq, full)).map_err(|_| stopped())?;
        self.seq += 1;
        Ok(())
    }

    /// Cuts exactly `size` bytes of the file into chunks. A file that shrinks while it is
    /// read is an error; one that grows is cut at `size`, as a tar header fixes it.
    fn file(&mut self, path: &Path, size: u64, buf: &mut [u8]) -> Result<Vec<u32>, ArchiveError> {
        let io = |op: &'static str| {
            let path = path.display().to_string();
            move |source| ArchiveError::Io { op, path, source }
        };
        let mut file = File::open(path).map_err(io("open"))?.take(size);
        // A large file's new chunks have blocks of their own: a restore that needs the file
        // fetches only its bytes, and prune finds them dead together.
        let large = size >= LARGE_FILE;
        if large {
            self.flush()?;
            self.target = BLOCK_TARGET_LARGE;
        }
        let mut out = Vec::new();
        let (mut start, mut filled) = (0usize, 0usize);
        let mut left = size;
        let max = self.cutter.max();
        loop {
            if filled - start < max && left > 0 {
                buf.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
                while filled < buf.len() && left > 0 {
                    let n = file.read(&mut buf[filled..]).map_err(io("read"))?;
                    if n == 0 {
                        return Err(io("read")(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "it shrank while it was being saved",
                        )));
                    }
                    filled += n;
                    left -= n as u64;
                }
            }
            if start == filled {
                break;
            }
            let n = self.cutter.cut(&buf[start..filled]);
            out.push(self.chunk(&buf[start..start + n])?);
            start += n;
        }
        if large {
            self.flush()?;
            self.target = BLOCK_TARGET;
        }
        Ok(out)
    }
}

/// Walks the spec and cuts every file, sending new blocks to `tx`.
fn walk(
    spec: &PackSpec,
    known: &Known,
    tx: SyncSender<(u32, Vec<u8>)>,
    spare: Pool,
) -> Result<Walked, ArchiveError> {
    let mut w = Walker {
        cutter: Cutter::default(),
        known,
        seen: HashMap::new(),
        chunks: Vec::new(),
        block: spare.take(BLOCK_CAPACITY),
        seq: 0,
        tx,
        spare,
        reused_bytes: 0,
        target: BLOCK_TARGET,
    };
    let mut entries = Vec::new();
    let mut stats = PackStats::default();
    let mut listing = Vec::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let mut buf = vec![0u8; READ_BUF];
    archive::walk(spec, &mut |name, path, meta| {
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        let mtime = meta.mtime();
        let (entry, kind) = if ft.is_dir() {
            stats.dirs += 1;
            let e = Entry {
                name: name.to_string(),
                kind: Kind::Dir,
                mode,
                mtime,
                size: 0,
                chunks: Vec::new(),
                target: None,
            };
            (e, EntryKind::Dir)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path).map_err(|source| ArchiveError::Io {
                op: "read the link",
                path: path.display().to_string(),
                source,
            })?;
            let target = target
                .to_str()
                .ok_or_else(|| ArchiveError::Io {
                    op: "pack",
                    path: path.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "link target is not UTF-8",
                    ),
                })?
                .to_string();
            stats.symlinks += 1;
            links.insert(name.to_string(), target.clone());
            let e = Entry {
                name: name.to_string(),
                kind: Kind::Symlink,
                mode: 0,
                mtime,
                size: 0,
                chunks: Vec::new(),
                target: Some(target),
            };
            (e, EntryKind::Symlink)
        } else if ft.is_file() && meta.nlink() > 1 && inodes.contains_key(&(meta.dev(), meta.ino()))
        {
            // Another name of a file already stored: a hard link to its first name.
            let first = inodes[&(meta.dev(), meta.ino())].clone();
            stats.files += 1;
            let e = Entry {
                name: name.to_string(),
                kind: Kind::Hardlink,
                mode: 0,
                mtime,
                size: 0,
                chunks: Vec::new(),
                target: Some(first),
            };
            (e, EntryKind::File)
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                inodes.insert((meta.dev(), meta.ino()), name.to_string());
            }
            let size = meta.len();
            let chunks = w.file(path, size, &mut buf)?;
            stats.files += 1;
            stats.bytes += size;
            let e = Entry {
                name: name.to_string(),
                kind: Kind::File,
                mode,
                mtime,
                size,
                chunks,
                target: None,
            };
            (e, EntryKind::File)
        } else {
            // Sockets, fifos and devices are not cache material, as in a tar entry.
            return Ok(());
        };
        stats.entries += 1;
        listing.push((name.to_string(), kind));
        entries.push(entry);
        Ok(())
    })?;
    w.flush()?;
    stats.links_out = archive::links_out(&links, &spec.paths);
    Ok(Walked {
        entries,
        chunks: w.chunks,
        stats,
        listing,
        reused_bytes: w.reused_bytes,
    })
}

/// Compresses raw blocks from `rx` until it closes, giving each raw buffer back to the first
/// pool (the walker's) and taking buffers for the compressed ones from the second (which
/// the pack writers fill again).
fn compress(
    rx: Arc<Mutex<RawBlocks>>,
    tx: SyncSender<(u32, Compressed)>,
    level: i32,
    (raw_pool, compressed): (Pool, Pool),
) -> Result<(), ArchiveError> {
    use zstd::zstd_safe::CParameter;
    let mut z = zstd::zstd_safe::CCtx::create();
    let mut params = vec![CParameter::CompressionLevel(level)];
    if level == 3 {
        params.extend([
            CParameter::HashLog(LEVEL3_HASH_LOG),
            CParameter::ChainLog(LEVEL3_CHAIN_LOG),
        ]);
    }
    for p in params {
        z.set_parameter(p).map_err(zstd_error)?;
    }
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return Err(stopped()),
        };
        let Ok((seq, raw)) = next else {
            return Ok(());
        };
        let mut out = compressed.take(stepped_bound(raw.len()));
        let mut ends = compress_stepped(&mut z, &raw, &mut out)?;
        // A large file's blocks come back whole or not at all: where their steps end is
        // left out of the index, which every restore reads.
        if raw.len() >= BLOCK_TARGET_LARGE {
            ends = Vec::new();
        }
        let len = raw.len() as u32;
        raw_pool.give(raw);
        tx.send((seq, (out, len, ends))).map_err(|_| stopped())?;
    }
}

fn zstd_error(code: usize) -> ArchiveError {
    ArchiveError::Write(std::io::Error::other(
        zstd::zstd_safe::get_error_name(code).to_string(),
    ))
}

/// Room for a block compressed in steps: zstd's bound, plus a block header for every step.
pub(crate) fn stepped_bound(raw: usize) -> usize {
    zstd::zstd_safe::compress_bound(raw) + 3 * raw.div_ceil(super::STEP) + 64
}

/// Compresses `raw` into one zstd frame in `out` (which has [`stepped_bound`] room), ending
/// a zstd block after every [`super::STEP`] raw bytes, and returns where in `out` each step
/// but the last ends: a restore that needs the start of the block fetches and decompresses
/// only the steps that carry it. The frame compresses as one (matches reach back across
/// steps), and zstd blocks this short adapt their entropy tables better: cold saves of
/// `target/` stored 268,930,221 bytes against 273,157,645 in one go, of `node_modules`
/// 98,379,691 against 98,502,706, for 3–10% more processor time (4 alternating saves each).
/// A restore into a `node_modules` with 2% of its files removed or appended to fetched
/// 11,921,609 bytes instead of 16,240,833.
pub(crate) fn compress_stepped(
    z: &mut zstd::zstd_safe::CCtx<'static>,
    raw: &[u8],
    out: &mut Vec<u8>,
) -> Result<Vec<u32>, ArchiveError> {
    use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective as EndDirective;
    use zstd::zstd_safe::{InBuffer, OutBuffer, ResetDirective};
    z.reset(ResetDirective::SessionOnly).map_err(zstd_error)?;
    z.set_pledged_src_size(Some(raw.len() as u64))
        .map_err(zstd_error)?;
    out.clear();
    let mut output = OutBuffer::around(out);
    let steps = raw.len().div_ceil(super::STEP).max(1);
    let mut ends = Vec::with_capacity(steps - 1);
    for k in 0..steps {
        let piece = raw.get(k * super::STEP..).unwrap_or_default();
        let piece = &piece[..piece.len().min(super::STEP)];
        let directive = if k + 1 == steps {
            EndDirective::ZSTD_e_end
        } else {
            EndDirective::ZSTD_e_flush
        };
        let mut input = InBuffer::around(piece);
        loop {
            let before = (input.pos(), output.pos());
            let left = z
                .compress_stream2(&mut output, &mut input, directive)
                .map_err(zstd_error)?;
            if left == 0 && input.pos() == piece.len() {
                break;
            }
            if (input.pos(), output.pos()) == before {
                return Err(ArchiveError::Internal {
                    what: "a compressed block outgrew its buffer".into(),
                });
            }
        }
        if k + 1 < steps {
            ends.push(output.pos() as u32);
        }
    }
    Ok(ends)
}

/// Puts compressed blocks back in the walker's order.
fn reorder(rx: Receiver<(u32, Compressed)>, tx: tokio::sync::mpsc::Sender<Compressed>) {
    let mut pending: BTreeMap<u32, Compressed> = BTreeMap::new();
    let mut next = 0u32;
    for (seq, block) in rx {
        pending.insert(seq, block);
        while let Some(b) = pending.remove(&next) {
            if tx.blocking_send(b).is_err() {
                return;
            }
            next += 1;
        }
    }
}

/// Saves the spec's tree as a chunked entry: new packs first, then the index. On failure
/// every pack written is removed (best effort) and no index is written.
pub async fn pack(
    store: &Store,
    spec: PackSpec,
    target: ChunkedPack,
) -> Result<PackOutcome, EntryError> {
    let ChunkedPack {
        packs_dir,
        index_rel,
        known,
        level,
        whole_roots,
        excludes,
    } = target;
    let known = Arc::new(known);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (raw_tx, raw_rx) = sync_channel::<(u32, Vec<u8>)>(QUEUE);
    let (z_tx, z_rx) = sync_channel::<(u32, Compressed)>(QUEUE);
    let (ordered_tx, ordered_rx) = tokio::sync::mpsc::channel::<Compressed>(QUEUE);
    let (raw_pool, compressed_pool) = (Pool::default(), Pool::default());
    let walker = {
        let (known, spare) = (Arc::clone(&known), raw_pool.clone());
        std::thread::spawn(move || walk(&spec, &known, raw_tx, spare))
    };
    let raw_rx = Arc::new(Mutex::new(raw_rx));
    let compressors: Vec<_> = (0..threads)
        .map(|_| {
            let (rx, tx) = (Arc::clone(&raw_rx), z_tx.clone());
            let pools = (raw_pool.clone(), compressed_pool.clone());
            std::thread::spawn(move || compress(rx, tx, level, pools))
        })
        .collect();
    drop(z_tx);
    let orderer = std::thread::spawn(move || reorder(z_rx, ordered_tx));

    // Blocks by sequence number: (pack, offset, stored, raw), and where their steps end.
    let mut placed: Vec<(Block, Vec<u32>)> = Vec::new();
    let mut new_packs: Vec<(String, u64)> = Vec::new();
    let mut upload_error: Option<EntryError> = None;
    // A pack's upload finishes (its last parts, then the object's completion) while the next
    // pack fills, so a remote link never waits for a round trip per pack; the store bounds
    // the parts in flight across both.
    let ordered_rx = Arc::new(tokio::sync::Mutex::new(ordered_rx));
    // Set when an upload failed: the pack still filling stops at its next block.
    let failed = Arc::new(AtomicBool::new(false));
    let mut uploads = futures::stream::FuturesOrdered::new();
    let mut filling = 0u32;
    'packs: loop {
        let first = loop {
            tokio::select! {
                first = async { ordered_rx.lock().await.recv().await } => break first,
                Some(done) = uploads.next(), if !uploads.is_empty() => {
                    if let Err(e) = record(done, &mut placed, &mut new_packs) {
                        upload_error = Some(e);
                        break 'packs;
                    }
                }
            }
        };
        let Some(first) = first else {
            break;
        };
        let rel = format!("{packs_dir}/{}.pack", crate::manifest::new_id());
        let pack_no = filling;
        filling += 1;
        let (filled_tx, mut filled) = tokio::sync::oneshot::channel::<()>();
        let (rx, stop, store) = (Arc::clone(&ordered_rx), Arc::clone(&failed), store.clone());
        let spare = compressed_pool.clone();
        uploads.push_back(async move {
            let result = transfer::upload_unhashed(&store, &rel, move |out| {
                let mut rx = rx.blocking_lock();
                let mut locs = Vec::new();
                let mut written = 0u64;
                let mut next = Some(first);
                while let Some((data, raw, ends)) = next.take() {
                    if stop.load(Ordering::Relaxed) {
                        return Err(stopped());
                    }
                    out.write_all(&data).map_err(ArchiveError::Write)?;
                    locs.push((Block(pack_no, written, data.len() as u32, raw), ends));
                    written += data.len() as u64;
                    spare.give(data);
                    if written < PACK_TARGET {
                        next = rx.blocking_recv();
                    }
                }
                drop(rx);
                let _ = filled_tx.send(());
                Ok::<_, ArchiveError>(locs)
            })
            .await;
            (rel, result)
        });
        // The next pack starts once this one has all its blocks (or its upload ended early);
        // meanwhile the uploads are driven, and one that finishes is recorded.
        loop {
            tokio::select! {
                _ = &mut filled => break,
                Some(done) = uploads.next(), if !uploads.is_empty() => {
                    if let Err(e) = record(done, &mut placed, &mut new_packs) {
                        upload_error = Some(e);
                        break 'packs;
                    }
                }
            }
        }
        while uploads.len() > 1 {
            let Some(done) = uploads.next().await else {
                break;
            };
            if let Err(e) = record(done, &mut placed, &mut new_packs) {
                upload_error = Some(e);
                break 'packs;
            }
        }
    }
    if upload_error.is_some() {
        failed.store(true, Ordering::Relaxed);
    }
    while let Some(done) = uploads.next().await {
        if let Err(e) = record(done, &mut placed, &mut new_packs) {
            upload_error.get_or_insert(e);
        }
    }
    drop(ordered_rx);
    // Whatever happened, the threads end: the walker's sends fail once the writer stopped.
    let joined = tokio::task::spawn_blocking(move || {
        let walked = walker.join();
        let compressed: Vec<_> = compressors.into_iter().map(|c| c.join()).collect();
        let _ = orderer.join();
        (walked, compressed)
    })
    .await;
    let cleanup = |packs: &[(String, u64)]| {
        let store = store.clone();
        let packs: Vec<String> = packs.iter().map(|(p, _)| p.clone()).collect();
        async move {
            for p in packs {
                let _ = store.delete(&p).await;
            }
        }
    };
    let internal = |what: &str| {
        EntryError::Archive(ArchiveError::Internal {
            what: what.to_string(),
        })
    };
    let (walked, compressed) = match joined {
        Ok(j) => j,
        Err(_) => {
            cleanup(&new_packs).await;
            return Err(internal("the threads packing the data stopped"));
        }
    };
    // The walker's own error names the file; a store error explains a stopped walker.
    let walked = match (walked, upload_error) {
        (_, Some(e)) => {
            cleanup(&new_packs).await;
            return Err(e);
        }
        (Ok(Ok(w)), None) => w,
        (Ok(Err(e)), None) => {
            cleanup(&new_packs).await;
            return Err(e.into());
        }
        (Err(_), None) => {
            cleanup(&new_packs).await;
            return Err(internal("the thread reading the files stopped"));
        }
    };
    for c in compressed {
        let failed = match c {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(EntryError::Archive(e)),
            Err(_) => Some(internal("a thread compressing the data stopped")),
        };
        if let Some(e) = failed {
            cleanup(&new_packs).await;
            return Err(e);
        }
    }
    let blocks_sent = walked_blocks(&walked);
    if placed.len() as u64 != u64::from(blocks_sent) {
        cleanup(&new_packs).await;
        return Err(internal(
            "blocks went missing between the compressors and the packs",
        ));
    }

    let (index, packs) = build_index(
        walked.entries,
        &walked.chunks,
        &placed,
        &new_packs,
        &known,
        whole_roots,
        excludes,
    );
    let stored = index::encode(&index);
    let data = DataRef {
        path: index_rel.clone(),
        size: stored.len() as u64,
        sha256: sha256_hex(&stored),
    };
    if let Err(e) = store.create(&index_rel, stored.into()).await {
        cleanup(&new_packs).await;
        return Err(e.into());
    }
    let new_bytes: u64 = new_packs.iter().map(|(_, s)| s).sum();
    Ok(PackOutcome {
        uploaded_bytes: new_bytes + data.size,
        objects_written: new_packs.len() as u64 + 1,
        data,
        packs,
        new_packs: new_packs.into_iter().map(|(p, _)| p).collect(),
        reused_bytes: walked.reused_bytes,
        stats: walked.stats,
        listing: walked.listing,
    })
}

type PackUpload = (
    String,
    Result<(Vec<(Block, Vec<u32>)>, u64), transfer::TransferError<ArchiveError>>,
);

/// Notes a finished pack upload: its blocks and the pack, or the error that ended it.
fn record(
    (rel, result): PackUpload,
    placed: &mut Vec<(Block, Vec<u32>)>,
    new_packs: &mut Vec<(String, u64)>,
) -> Result<(), EntryError> {
    let (locs, size) = result.map_err(EntryError::from)?;
    placed.extend(locs);
    new_packs.push((rel, size));
    Ok(())
}

/// How many new blocks the walker sent.
fn walked_blocks(w: &Walked) -> u32 {
    w.chunks
        .iter()
        .filter_map(|c| match c.loc {
            Loc::New { seq } => Some(seq + 1),
            Loc::Known { .. } => None,
        })
        .max()
        .unwrap_or(0)
}

/// The index of the walked tree and the packs it references (new ones first).
fn build_index(
    entries: Vec<Entry>,
    walked_chunks: &[NewChunk],
    placed: &[(Block, Vec<u32>)],
    new_packs: &[(String, u64)],
    known: &Known,
    whole_roots: Vec<String>,
    excludes: Vec<String>,
) -> (Index, Vec<PackRef>) {
    let mut packs: Vec<(String, u64)> = new_packs.to_vec();
    let mut blocks: Vec<Block> = placed.iter().map(|(b, _)| *b).collect();
    let mut steps: Vec<Steps> = placed
        .iter()
        .enumerate()
        .filter(|(_, (_, ends))| !ends.is_empty())
        .map(|(i, (_, ends))| Steps(i as u32, super::STEP as u32, ends.clone()))
        .collect();
    let mut known_block: HashMap<u32, u32> = HashMap::new();
    let mut known_pack: HashMap<u32, u32> = HashMap::new();
    let chunks: Vec<Chunk> = walked_chunks
        .iter()
        .map(|c| {
            let block = match c.loc {
                Loc::New { seq } => seq,
                Loc::Known { block } => *known_block.entry(block).or_insert_with(|| {
                    let b = known.blocks[block as usize];
                    let pack = *known_pack.entry(b.0).or_insert_with(|| {
                        packs.push(known.packs[b.pack()].clone());
                        (packs.len() - 1) as u32
                    });
                    blocks.push(Block(pack, b.1, b.2, b.3));
                    let new = (blocks.len() - 1) as u32;
                    if let Some((step, ends)) = known.steps.get(&block) {
                        steps.push(Steps(new, *step, ends.clone()));
                    }
                    new
                }),
            };
            Chunk(block, c.offset, c.len, c.hash)
        })
        .collect();
    let mut used: Vec<Vec<(u64, u64)>> = vec![Vec::new(); packs.len()];
    for b in &blocks {
        used[b.pack()].push((b.span().start, b.span().end));
    }
    let refs = packs
        .iter()
        .zip(used)
        .map(|((path, size), used)| PackRef {
            path: path.clone(),
            size: *size,
            used: merge_ranges(used),
        })
        .collect();
    let index = Index {
        version: INDEX_VERSION,
        chunker: ChunkerParams::default(),
        packs: packs.into_iter().map(|(p, _)| p).collect(),
        blocks,
        chunks,
        entries,
        whole_roots,
        excludes,
        steps,
    };
    (index, refs)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}
