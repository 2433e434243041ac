//! Getting the blocks a restore needs: which blocks to load and in what order (a plan that
//! the reading side replays exactly), the byte ranges that carry them (adjacent blocks of a
//! pack in one request), and the threads and tasks that fetch those ranges, decompress each
//! block and check every chunk of it the restore uses against its hash.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;

use super::index::Index;
use crate::archive::ArchiveError;
use crate::store::{Store, StoreError};

/// Decompressed blocks kept for reuse while a restore runs.
const RESIDENT_BLOCKS: usize = 8;
/// Bytes of chunks kept in memory because a later file uses them again (a file stored
/// twice, a `LICENSE` in many packages). Five restores of `node_modules` into an empty
/// folder peaked at 67.6–71.5 MiB with 2 MiB, 72.9–75.5 MiB with 8 MiB, and took as long
/// (the rest wait in a temporary file, in the page cache).
const RETAINED_BYTES: usize = 2 * 1024 * 1024;
/// Bytes of such chunks a restore may write to a temporary file once those in memory reach
/// `RETAINED_BYTES`, rather than fetch their blocks again: `node_modules` from
/// `bench/corpora.py` holds 21 MiB of chunks used more than once, and refetching what did
/// not fit in memory downloaded 108 MiB for 94 MiB stored.
const SPILLED_BYTES: u64 = 1024 * 1024 * 1024;
/// Unneeded bytes between two blocks still fetched in one request rather than two.
pub(crate) const GAP: u64 = 64 * 1024;
/// The largest request. Through a 125 MB/s link, 1 MiB requests four at a time keep it as
/// busy as 2 MiB six at a time, and a restore of `node_modules` peaks 13 MiB lower.
const RANGE_MAX: u64 = 1024 * 1024;
/// Requests in flight on a remote store.
const REMOTE_CONCURRENCY: usize = 4;
/// Requests in flight fetching ahead of the plan ([`Early`]): each carries the blocks of a
/// few small files, and the requests' time, not their bytes, bounds the fetch (the 98%
/// restore of `node_modules` through the bench's lane: 0.370 s with 8 against 0.460 s with
/// 4, and 0.423 s against 0.445 s, medians of 10 and 12 alternating rounds).
/// `@actions/cache` downloads 8 ranges at a time by default too (`downloadConcurrency`).
const EARLY_CONCURRENCY: usize = 8;
/// Threads decompressing and checking blocks.
const DECOMPRESSORS: usize = 4;
/// Decompressed blocks queued for the reading side.
const DECOMPRESSED_QUEUE: usize = 4;
/// Decompressed blocks each decompressing thread may finish before the reading side asks
/// for them.
const WORKER_AHEAD: usize = 4;

/// Where a chunk kept for reuse is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    Memory,
    /// In the restore's temporary file.
    Spilled,
}

/// Where the next use of a chunk comes from, as decided by [`Residency::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// From the chunks kept for reuse.
    pub retained: bool,
    /// Its block must be taken from the stream of loads first.
    pub load: bool,
    /// Keep a copy of the chunk after this use, there.
    pub retain: Option<Held>,
    /// A kept chunk's last use: forget it after this one.
    pub release: bool,
}

/// Which blocks are at hand and which chunks are kept (in memory or in a temporary file):
/// replayed identically by the plan (to know what to load) and by the reader (to know what
/// it gets), so both agree on every load without talking to each other.
pub(crate) struct Residency {
    blocks: VecDeque<u32>,
    retained: HashMap<u32, Held>,
    memory_bytes: usize,
    spilled_bytes: u64,
    uses_left: Vec<u32>,
}

impl Residency {
    /// `uses[c]`: how many times chunk `c` is read in this restore.
    pub fn new(uses: Vec<u32>) -> Self {
        Self {
            blocks: VecDeque::new(),
            retained: HashMap::new(),
            memory_bytes: 0,
            spilled_bytes: 0,
            uses_left: uses,
        }
    }

    /// The next use of chunk `c` (of `len` bytes, in block `block`); `evicted` gets the
    /// blocks no longer at hand.
    pub fn next(&mut self, c: u32, block: u32, len: usize, evicted: &mut Vec<u32>) -> Step {
        let left = &mut self.uses_left[c as usize];
        *left = left.saturating_sub(1);
        let left = *left;
        if let Some(&held) = self.retained.get(&c) {
            let release = left == 0;
            if release {
                self.retained.remove(&c);
                if held == Held::Memory {
                    self.memory_bytes -= len;
                }
            }
            return Step {
                retained: true,
                load: false,
                retain: None,
                release,
            };
        }
        let load = match self.blocks.iter().position(|&b| b == block) {
            Some(i) => {
                self.blocks.remove(i);
                self.blocks.push_back(block);
                false
            }
            None => {
                self.blocks.push_back(block);
                if self.blocks.len() > RESIDENT_BLOCKS {
                    evicted.extend(self.blocks.pop_front());
                }
                true
            }
        };
        // A spilled chunk's bytes stay in the file after its last use: the file only grows.
        let retain = if left == 0 {
            None
        } else if self.memory_bytes + len <= RETAINED_BYTES {
            self.memory_bytes += len;
            Some(Held::Memory)
        } else if self.spilled_bytes + len as u64 <= SPILLED_BYTES {
            self.spilled_bytes += len as u64;
            Some(Held::Spilled)
        } else {
            None
        };
        if let Some(held) = retain {
            self.retained.insert(c, held);
        }
        Step {
            retained: false,
            load,
            retain,
            release: false,
        }
    }
}

/// The blocks to load, in order, for reading `files` (each a list of chunks) in order.
pub(crate) fn plan_loads(index: &Index, files: &[&[u32]]) -> Vec<u32> {
    let mut uses = vec![0u32; index.chunks.len()];
    for f in files {
        for &c in *f {
            uses[c as usize] += 1;
        }
    }
    let mut r = Residency::new(uses);
    let mut loads = Vec::new();
    let mut evicted = Vec::new();
    for f in files {
        for &c in *f {
            let chunk = &index.chunks[c as usize];
            let step = r.next(c, chunk.0, chunk.2 as usize, &mut evicted);
            if step.load {
                loads.push(chunk.0);
            }
            evicted.clear();
        }
    }
    loads
}

/// Raw bytes of the blocks zstd cuts a frame into when nothing ends them sooner
/// (`ZSTD_BLOCKSIZE_MAX`): a frame's first `n` such blocks decompress from the compressed
/// bytes before the next one's start.
const ZSTD_BLOCK: usize = 128 * 1024;

/// The stored bytes of block `b` fetched for a restore that reads the chunks `uses` of it:
/// up to the end of the step that carries them when the index records the block's steps
/// (see [`Index::steps`]); else the whole block, or, when they end in an early zstd block
/// of the frame, an estimate of the compressed bytes that carry the zstd blocks up to there
/// (the block's share of its raw bytes, with room to spare). An estimate or a recorded end
/// that turns out short is completed with a second request for the rest of the block. A
/// `node_modules` restore with 2% of its files removed needs one small file of each of
/// hundreds of blocks.
pub(crate) fn fetched_len(index: &Index, b: u32, uses: &[u32]) -> u64 {
    let need = need(index, uses);
    let block = &index.blocks[b as usize];
    let (raw, stored) = (block.raw(), block.stored());
    if let Some(end) = index.step_end(b, need) {
        return end;
    }
    let through = need.div_ceil(ZSTD_BLOCK).max(1) * ZSTD_BLOCK;
    if through >= raw {
        return stored;
    }
    let share = stored * through as u64 / raw as u64;
    let estimate = share + share / 8 + 1024;
    if estimate >= stored - stored / 8 {
        stored
    } else {
        estimate
    }
}

/// One request: bytes `span` of pack `pack`, carrying `blocks` (block, offset in the span,
/// its stored bytes in the span: all of them or the start of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub pack: usize,
    pub span: Range<u64>,
    pub blocks: Vec<(u32, usize, usize)>,
}

/// Groups consecutive loads of blocks of one pack at most `gap` bytes apart into requests;
/// `fetched[b]` is how many of block `b`'s stored bytes to fetch (see [`fetched_len`]). A
/// block for which `alone` is true gets a request of its own.
pub(crate) fn requests(
    index: &Index,
    loads: &[u32],
    fetched: &[u64],
    gap: u64,
    alone: impl Fn(u32) -> bool,
) -> Vec<Request> {
    let mut out: Vec<Request> = Vec::new();
    let mut last_alone = false;
    for &b in loads {
        let block = &index.blocks[b as usize];
        let len = fetched[b as usize];
        let span = block.offset()..block.offset() + len;
        let this_alone = alone(b);
        let joins = !this_alone && !last_alone;
        last_alone = this_alone;
        if let Some(last) = out.last_mut().filter(|_| joins) {
            if last.pack == block.pack()
                && span.start >= last.span.end
                && span.start - last.span.end <= gap
                && span.end - last.span.start <= RANGE_MAX
            {
                last.blocks
                    .push((b, (span.start - last.span.start) as usize, len as usize));
                last.span.end = span.end;
                continue;
            }
        }
        out.push(Request {
            pack: block.pack(),
            span: span.clone(),
            blocks: vec![(b, 0, len as usize)],
        });
    }
    out
}

/// A block's stored bytes (all of them or their start), fetched before the plan was made:
/// `at` of what one request of [`Early`] brings.
#[derive(Clone)]
pub(crate) struct EarlyBlock {
    bytes: futures::future::Shared<futures::future::BoxFuture<'static, EarlyBytes>>,
    at: Range<usize>,
}

type EarlyBytes = Result<bytes::Bytes, Arc<StoreError>>;

/// The most stored bytes fetched ahead of the plan: they wait in memory until the restore
/// writes the files they carry.
const EARLY_MAX: u64 = 16 * 1024 * 1024;

/// Fetching ahead of the plan, from a store read by ranges over a network: while the files
/// on disk are checked, each file found to need all of its chunks (missing, or holding none
/// of them) is sent here, and the blocks carrying its chunks are fetched at once (nearby
/// blocks of one pack in one request, as [`requests`] groups them), up to [`EARLY_MAX`]
/// bytes. A block a request passes over is taken from it too, as far as it carries it. The check of a restore into a folder holding most of its entry otherwise delays
/// the first request by the time it takes to look at every file.
pub(crate) struct Early {
    pub tx: tokio::sync::mpsc::UnboundedSender<usize>,
    task: tokio::task::JoinHandle<(HashMap<u32, EarlyBlock>, u64)>,
}

impl Early {
    pub(crate) fn start(store: &Store, index: Arc<Index>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let store = store.clone();
        let task = tokio::spawn(async move {
            let mut early: HashMap<u32, EarlyBlock> = HashMap::new();
            let mut fetched = vec![0u64; index.blocks.len()];
            let mut total = 0u64;
            let permits = Arc::new(tokio::sync::Semaphore::new(EARLY_CONCURRENCY));
            // The blocks in the order they lie in the packs.
            let place = |b: u32| {
                let block = &index.blocks[b as usize];
                (block.pack(), block.offset())
            };
            let mut by_place: Vec<u32> = (0..index.blocks.len() as u32).collect();
            by_place.sort_unstable_by_key(|&b| place(b));
            let mut files = Vec::new();
            while rx.recv_many(&mut files, 1024).await > 0 {
                if total >= EARLY_MAX {
                    files.clear();
                    continue;
                }
                let mut uses: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
                for i in files.drain(..) {
                    for &c in &index.entries[i].chunks {
                        let b = index.chunks[c as usize].0;
                        if !early.contains_key(&b) {
                            uses.entry(b).or_default().push(c);
                        }
                    }
                }
                for (&b, uses) in &uses {
                    fetched[b as usize] = fetched_len(&index, b, uses);
                }
                let loads: Vec<u32> = uses.into_keys().collect();
                for r in requests(&index, &loads, &fetched, GAP, |_| false) {
                    if total >= EARLY_MAX {
                        break;
                    }
                    total += r.span.end - r.span.start;
                    let (store, permits) = (store.clone(), Arc::clone(&permits));
                    let path = index.packs[r.pack].clone();
                    let span = r.span.clone();
                    let bytes: futures::future::BoxFuture<'static, EarlyBytes> =
                        Box::pin(async move {
                            let _permit = permits.acquire_owned().await;
                            store.get_range(&path, span).await.map_err(Arc::new)
                        });
                    let bytes = futures::FutureExt::shared(bytes);
                    tokio::spawn(bytes.clone());
                    // Every block that starts in the range, as far as the range carries it:
                    // those the range was asked for, and those it passes over.
                    let from = by_place.partition_point(|&b| place(b) < (r.pack, r.span.start));
                    for &b in by_place[from..]
                        .iter()
                        .take_while(|&&b| place(b) < (r.pack, r.span.end))
                    {
                        let block = &index.blocks[b as usize];
                        let end = block.span().end.min(r.span.end);
                        let at =
                            (block.offset() - r.span.start) as usize..(end - r.span.start) as usize;
                        let bytes = bytes.clone();
                        early.entry(b).or_insert(EarlyBlock { bytes, at });
                    }
                }
            }
            (early, total)
        });
        Early { tx, task }
    }

    /// The blocks fetched ahead (in flight or done), and the bytes asked for: once the
    /// check has ended (and with it every sender).
    pub(crate) async fn finish(self) -> (HashMap<u32, EarlyBlock>, u64) {
        drop(self.tx);
        self.task.await.unwrap_or_default()
    }
}

impl EarlyBlock {
    /// Its stored bytes as fetched.
    pub(crate) fn len(&self) -> u64 {
        (self.at.end - self.at.start) as u64
    }

    /// Its bytes, copied into `buf`: fewer than [`EarlyBlock::len`] when the store gave fewer.
    async fn into_buf(self, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let bytes = self.bytes.await.map_err(|e| clone_store_error(&e))?;
        let end = self.at.end.min(bytes.len());
        buf.clear();
        buf.extend_from_slice(&bytes[self.at.start.min(end)..end]);
        Ok(())
    }
}

/// A decompressed, checked block, or why there is none.
pub(crate) type Loaded = Result<(u32, bytes::Bytes), ArchiveError>;

/// The fetched bytes of one request.
type Fetched = Result<(usize, Vec<u8>), Failure>;

/// Buffers that fetched ranges are read into, given back once their blocks are decompressed,
/// so that a restore from a remote store keeps as many as are in use at once rather than
/// allocating one for each request: a restore of `node_modules` into an empty folder through
/// the 125 MB/s lane peaked at 78.6–85.6 MiB (median 81.8) against 81.2–94.3 MiB (median 84.6)
/// with a fresh buffer for each, in as much time (8 alternating runs each).
#[derive(Clone, Default)]
struct Buffers(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_default()
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.0.lock() {
            free.push(buf);
        }
    }
}

/// What a decompressing thread is handed: a request's fetched bytes, or (every pack is on
/// this machine) the request alone, whose bytes the thread reads itself into a buffer it
/// keeps, rather than a fresh buffer for every range, filled on another thread.
enum Job {
    Fetched(Fetched),
    Local(usize),
}

/// Why fetching stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    Store(StoreError),
    Data(ArchiveError),
}

/// Files of packs on this machine (a local store, or packs downloaded whole from a store
/// without ranged reads), by pack.
pub(crate) type LocalPacks = Vec<Option<PathBuf>>;

/// Fetches every request in order and decompresses and checks its blocks on a thread of its
/// own; the blocks arrive on the returned receiver in load order. `uses[b]` lists the chunks
/// of block `b` this restore reads, each checked against its hash.
/// `refetched` counts the bytes of second requests for the rest of blocks fetched in part.
pub(crate) fn start(
    store: &Store,
    index: Arc<Index>,
    reqs: Vec<Request>,
    local: LocalPacks,
    uses: Arc<Vec<Vec<u32>>>,
    refetched: Arc<AtomicU64>,
    mut early: HashMap<u32, EarlyBlock>,
) -> (
    std::sync::mpsc::Receiver<Loaded>,
    tokio::task::JoinHandle<Option<Failure>>,
) {
    let (fetched_tx, mut fetched_rx) = tokio::sync::mpsc::channel::<Fetched>(2);
    // The rest of a block fetched in part is read by the thread decompressing it: from the
    // pack's file, or through a task of its own (the fetching task may be waiting on that
    // very thread to take its next request).
    let all_local = local.iter().all(Option::is_some);
    let local = Arc::new(local);
    let (rest, rest_server) = if all_local {
        (Rest::Local(Arc::clone(&local)), None)
    } else {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RestRequest>();
        let (store, index) = (store.clone(), Arc::clone(&index));
        let server = tokio::spawn(async move {
            let mut failure = None;
            while let Some((pack, span, reply)) = rx.recv().await {
                let got = store.get_range(&index.packs[pack], span).await;
                if let Err(e) = &got {
                    failure.get_or_insert_with(|| clone_store_error(e));
                }
                let _ = reply.send(got);
            }
            failure
        });
        (Rest::Remote(tx), Some(server))
    };
    let (loaded_tx, loaded_rx) = std::sync::mpsc::sync_channel::<Loaded>(DECOMPRESSED_QUEUE);
    let reqs = Arc::new(reqs);
    // The progress bar (or, in a CI log with -v, the line saying data moves) counts the
    // ranges fetched, as a format-1 restore counts its archive's bytes.
    let progress = store.progress();
    if let Some(p) = &progress {
        p.expect(reqs.iter().map(|r| r.span.end - r.span.start).sum());
    }
    let local = all_local.then_some(local);
    let buffers = Buffers::default();
    // Decompression runs beside fetching and beside the writing of files, on a few threads:
    // request `i` goes to worker `i % n`, and the results are taken back in the same turn,
    // so blocks reach the reader in load order with no reordering buffer.
    {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, DECOMPRESSORS);
        let mut inputs = Vec::with_capacity(workers);
        let mut outputs = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (in_tx, in_rx) = std::sync::mpsc::sync_channel::<Job>(1);
            // Blocks go back one by one, a few ahead: a request carries up to 2 MiB of
            // stored blocks, several times that unpacked, and whole requests waiting on
            // every worker were most of a restore's memory.
            let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<Loaded>(WORKER_AHEAD);
            let (index, reqs, uses) = (Arc::clone(&index), Arc::clone(&reqs), Arc::clone(&uses));
            let (rest, refetched) = (rest.clone(), Arc::clone(&refetched));
            let (local, progress) = (local.clone(), progress.clone());
            let buffers = buffers.clone();
            std::thread::spawn(move || {
                // One context per thread, reused for every block it decompresses.
                let mut z = zstd::zstd_safe::DCtx::try_create();
                // Ranges of local packs are read into one buffer, kept from one to the next.
                let mut own = Vec::new();
                let mut files = HashMap::new();
                for job in in_rx {
                    let mut fetched = None;
                    let next = match (job, &local) {
                        (Job::Fetched(Ok((i, bytes))), _) => Ok((i, &fetched.insert(bytes)[..])),
                        (Job::Fetched(Err(e)), _) => Err(e),
                        (Job::Local(i), Some(local)) => {
                            let r = &reqs[i];
                            read_own(&index, local, &mut files, r, &mut own)
                                .map(|()| {
                                    if let Some(p) = &progress {
                                        p.advance(own.len() as u64);
                                    }
                                    (i, &own[..])
                                })
                                .map_err(Failure::Data)
                        }
                        (Job::Local(_), None) => Err(Failure::Data(ArchiveError::Internal {
                            what: "a pack to read here has no file here".into(),
                        })),
                    };
                    let failure = match (next, z.as_mut()) {
                        (Ok((i, bytes)), Some(z)) => {
                            for &(b, off, len) in &reqs[i].blocks {
                                let fetched = Fetch {
                                    bytes,
                                    at: off..off + len,
                                    rest: &rest,
                                    refetched: &refetched,
                                };
                                let loaded = decompress(z, &index, b, fetched, &uses[b as usize])
                                    .map(|d| (b, bytes::Bytes::from(d)));
                                let failed = loaded.is_err();
                                if out_tx.send(loaded).is_err() || failed {
                                    return;
                                }
                            }
                            if let Some(buf) = fetched.take() {
                                buffers.give(buf);
                            }
                            continue;
                        }
                        (Ok(_), None) => ArchiveError::Internal {
                            what: "no zstd decompressor".into(),
                        },
                        (Err(Failure::Data(e)), _) => e,
                        (Err(Failure::Store(e)), _) => ArchiveError::Corrupt {
                            detail: format!("the store failed: {e}"),
                        },
                    };
                    let _ = out_tx.send(Err(failure));
                    return;
                }
            });
            inputs.push(in_tx);
            outputs.push(out_rx);
        }
        // Only the decompressing threads ask for rests: the server stops when they end.
        drop(rest);
        let count = reqs.len();
        std::thread::spawn(move || {
            if all_local {
                for n in 0..count {
                    if inputs[n % workers].send(Job::Local(n)).is_err() {
                        return;
                    }
                }
                return;
            }
            let mut n = 0usize;
            while let Some(next) = fetched_rx.blocking_recv() {
                if inputs[n % workers].send(Job::Fetched(next)).is_err() {
                    return;
                }
                n += 1;
            }
        });
        // Request `n` comes back from worker `n % workers` as its blocks, one by one, or as
        // the error that ended it.
        let order = Arc::clone(&reqs);
        std::thread::spawn(move || {
            for (n, req) in order.iter().enumerate() {
                for _ in &req.blocks {
                    let Ok(loaded) = outputs[n % workers].recv() else {
                        return;
                    };
                    let failed = loaded.is_err();
                    if loaded_tx.send(loaded).is_err() || failed {
                        return;
                    }
                }
            }
        });
    }
    let store = store.clone();
    let task = tokio::spawn(async move {
        // Local packs are read by the decompressing threads.
        if all_local {
            return None;
        }
        let concurrency = if store.is_remote() {
            REMOTE_CONCURRENCY
        } else {
            2
        };
        let futs: Vec<_> = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let store = store.clone();
                let path = index.packs[r.pack].clone();
                let span = r.span.clone();
                let buffers = buffers.clone();
                // A block fetched ahead is taken at its first load.
                let ahead = match r.blocks[..] {
                    [(b, ..)] => early.remove(&b),
                    _ => None,
                };
                async move {
                    let mut buf = buffers.take();
                    match ahead {
                        Some(block) => block.into_buf(&mut buf).await,
                        None => store.get_range_into(&path, span, &mut buf).await,
                    }
                    .map(|()| (i, buf))
                }
            })
            .collect();
        let mut stream = futures::stream::iter(futs).buffered(concurrency);
        while let Some(r) = stream.next().await {
            if let (Some(p), Ok((_, b))) = (&progress, &r) {
                p.advance(b.len() as u64);
            }
            let r = match r {
                Ok((i, b)) if b.len() as u64 == reqs[i].span.end - reqs[i].span.start => Ok((i, b)),
                Ok((i, b)) => Err(Failure::Data(short(
                    &index.packs[reqs[i].pack],
                    &reqs[i].span,
                    b.len(),
                ))),
                Err(e) => Err(Failure::Store(e)),
            };
            let failure = match &r {
                Err(Failure::Store(e)) => Some(Failure::Store(clone_store_error(e))),
                _ => None,
            };
            if fetched_tx.send(r).await.is_err() {
                return None;
            }
            if failure.is_some() {
                return failure;
            }
        }
        // The decompressing threads end once their last request is taken, and with them
        // the rests they asked for.
        drop(fetched_tx);
        match rest_server {
            Some(server) => server.await.ok().flatten().map(Failure::Store),
            None => None,
        }
    });
    (loaded_rx, task)
}

/// A request for the rest of a block: bytes `span` of pack `pack`, and where to answer.
type RestRequest = (
    usize,
    Range<u64>,
    tokio::sync::oneshot::Sender<Result<bytes::Bytes, StoreError>>,
);

/// How a decompressing thread gets the rest of a block fetched in part.
#[derive(Clone)]
enum Rest {
    /// From the packs' files on this machine.
    Local(Arc<LocalPacks>),
    /// From the store, through a task that fetches it.
    Remote(tokio::sync::mpsc::UnboundedSender<RestRequest>),
}

impl Rest {
    /// Bytes `span` of pack `pack`, all of them.
    fn get(&self, index: &Index, pack: usize, span: Range<u64>) -> Result<Vec<u8>, ArchiveError> {
        let path = &index.packs[pack];
        let want = (span.end - span.start) as usize;
        match self {
            Rest::Local(files) => read_local_range(&open_local(index, files, pack)?, path, &span),
            Rest::Remote(tx) => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let stopped = || ArchiveError::Internal {
                    what: "the task fetching the rest of blocks stopped".into(),
                };
                tx.send((pack, span.clone(), reply))
                    .map_err(|_| stopped())?;
                match answer.blocking_recv().map_err(|_| stopped())? {
                    Ok(b) if b.len() == want => Ok(b.to_vec()),
                    Ok(b) => Err(short(path, &span, b.len())),
                    Err(e) => Err(ArchiveError::Corrupt {
                        detail: format!("the store failed: {e}"),
                    }),
                }
            }
        }
    }
}

/// A block's stored bytes as fetched: `at` of `bytes`, all of them or their start.
struct Fetch<'a> {
    bytes: &'a [u8],
    at: Range<usize>,
    rest: &'a Rest,
    refetched: &'a AtomicU64,
}

/// A store error, kept for the caller while a copy of its message goes to the reader.
fn clone_store_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Request {
            op,
            path,
            url,
            hint,
            source,
        } => StoreError::Request {
            op,
            path: path.clone(),
            url: url.clone(),
            hint,
            source: Box::new(crate::store::BackendError::Other(source.to_string().into())),
        },
        other => StoreError::InvalidUrl {
            url: String::new(),
            reason: other.to_string(),
        },
    }
}

fn short(pack: &str, span: &Range<u64>, got: usize) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: format!(
            "pack {pack} gave {got} bytes for bytes {}..{} (truncated?)",
            span.start, span.end
        ),
    }
}

/// The file of pack `pack` on this machine, opened.
fn open_local(
    index: &Index,
    local: &LocalPacks,
    pack: usize,
) -> Result<std::fs::File, ArchiveError> {
    let path = &index.packs[pack];
    let on_disk = local[pack].as_ref().ok_or_else(|| ArchiveError::Internal {
        what: format!("no local file for pack {path}"),
    })?;
    std::fs::File::open(on_disk).map_err(|e| ArchiveError::Corrupt {
        detail: format!("pack {path} cannot be opened: {e}"),
    })
}

/// Bytes `span` of the local file of pack `path`, all of them.
fn read_local_range(
    file: &std::fs::File,
    path: &str,
    span: &Range<u64>,
) -> Result<Vec<u8>, ArchiveError> {
    let mut buf = Vec::new();
    read_local_into(file, path, span, &mut buf)?;
    Ok(buf)
}

/// [`read_local_range`] into `buf`, which keeps its room for the next range.
fn read_local_into(
    file: &std::fs::File,
    path: &str,
    span: &Range<u64>,
    buf: &mut Vec<u8>,
) -> Result<(), ArchiveError> {
    use std::os::unix::fs::FileExt;
    buf.resize((span.end - span.start) as usize, 0);
    file.read_exact_at(buf, span.start)
        .map_err(|_| short(path, span, 0))
}

/// Request `r`'s bytes of a pack on this machine, read into `buf`; the packs' files are
/// opened once, into `files`.
fn read_own(
    index: &Index,
    local: &LocalPacks,
    files: &mut HashMap<usize, std::fs::File>,
    r: &Request,
    buf: &mut Vec<u8>,
) -> Result<(), ArchiveError> {
    let file = match files.entry(r.pack) {
        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
        std::collections::hash_map::Entry::Vacant(v) => v.insert(open_local(index, local, r.pack)?),
    };
    read_local_into(file, &index.packs[r.pack], &r.span, buf)
}

/// Decompresses block `b` as fetched and checks the chunks `uses` of it. A block fetched
/// in part whose start does not reach the last of those chunks is completed first.
fn decompress(
    z: &mut zstd::zstd_safe::DCtx<'static>,
    index: &Index,
    b: u32,
    fetched: Fetch<'_>,
    uses: &[u32],
) -> Result<Vec<u8>, ArchiveError> {
    let block = &index.blocks[b as usize];
    let pack = &index.packs[block.pack()];
    let got = fetched.bytes.get(fetched.at.clone()).ok_or_else(|| {
        short(
            pack,
            &block.span(),
            fetched.bytes.len().saturating_sub(fetched.at.start),
        )
    })?;
    if got.len() as u64 >= block.stored() {
        return decompress_whole(z, index, b, got, uses);
    }
    // Only the start of the block was fetched: it carries the chunks this restore reads,
    // unless the estimate of where they end fell short.
    if let Ok(raw) = decompress_start(z, got, need(index, uses)) {
        if check_chunks(index, pack, block.offset(), &raw, uses).is_ok() {
            return Ok(raw);
        }
    }
    let rest = block.offset() + got.len() as u64..block.span().end;
    let len = rest.end - rest.start;
    let mut whole = Vec::with_capacity(block.stored() as usize);
    whole.extend_from_slice(got);
    whole.extend(fetched.rest.get(index, block.pack(), rest)?);
    fetched.refetched.fetch_add(len, Ordering::Relaxed);
    decompress_whole(z, index, b, &whole, uses)
}

/// How far into its block's raw bytes the chunks `uses` reach.
fn need(index: &Index, uses: &[u32]) -> usize {
    uses.iter()
        .map(|&c| index.chunks[c as usize].range().end)
        .max()
        .unwrap_or(0)
}

/// The first `need` raw bytes of a zstd frame from the start of its compressed bytes.
fn decompress_start(
    z: &mut zstd::zstd_safe::DCtx<'static>,
    stored: &[u8],
    need: usize,
) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut raw = vec![0u8; need];
    zstd::stream::read::Decoder::with_context(stored, z).read_exact(&mut raw)?;
    Ok(raw)
}

/// Decompresses block `b` from all its stored bytes and checks the chunks `uses` of it.
fn decompress_whole(
    z: &mut zstd::zstd_safe::DCtx<'static>,
    index: &Index,
    b: u32,
    stored: &[u8],
    uses: &[u32],
) -> Result<Vec<u8>, ArchiveError> {
    let block = &index.blocks[b as usize];
    let pack = &index.packs[block.pack()];
    let bad = |e: std::io::Error| ArchiveError::Corrupt {
        detail: format!(
            "block at {} of pack {pack} does not decompress: {e}",
            block.offset()
        ),
    };
    // Only as much of the block as the chunks this restore reads reach is decompressed (a
    // restore that needs one small file of it stops early).
    let need = need(index, uses);
    if need < block.raw() {
        let raw = decompress_start(z, stored, need).map_err(bad)?;
        check_chunks(index, pack, block.offset(), &raw, uses)?;
        return Ok(raw);
    }
    let mut raw = Vec::with_capacity(block.raw());
    z.decompress(&mut raw, stored)
        .map_err(|code| bad(std::io::Error::other(zstd::zstd_safe::get_error_name(code))))?;
    if raw.len() != block.raw() {
        return Err(ArchiveError::Corrupt {
            detail: format!(
                "block at {} of pack {pack} holds {} bytes, its index says {}",
                block.offset(),
                raw.len(),
                block.raw()
            ),
        });
    }
    check_chunks(index, pack, block.offset(), &raw, uses)?;
    Ok(raw)
}

/// Checks every chunk of `uses` in a block's raw bytes against its hash.
fn check_chunks(
    index: &Index,
    pack: &str,
    offset: u64,
    raw: &[u8],
    uses: &[u32],
) -> Result<(), ArchiveError> {
    for &c in uses {
        let chunk = &index.chunks[c as usize];
        if raw.get(chunk.range()).map(super::ChunkHash::of) != Some(*chunk.hash()) {
            return Err(ArchiveError::Corrupt {
                detail: format!(
                    "chunk {} in the block at {offset} of pack {pack} does not match its hash",
                    chunk.hash().to_hex(),
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::index::{Block, Chunk, INDEX_VERSION};
    use crate::chunks::{ChunkHash, ChunkerParams};

    fn index(blocks: Vec<Block>, chunks: Vec<(u32, u32)>) -> Index {
        Index {
            version: INDEX_VERSION,
            chunker: ChunkerParams::default(),
            packs: vec!["a".into(), "b".into()],
            blocks,
            chunks: chunks
                .into_iter()
                .map(|(b, len)| Chunk(b, 0, len, ChunkHash::of(b"")))
                .collect(),
            entries: vec![],
            whole_roots: vec![],
            excludes: vec![],
            steps: vec![],
        }
    }

    #[test]
    fn a_block_is_loaded_once_while_it_is_at_hand_and_reused_chunks_are_kept() {
        let i = index(
            (0..40).map(|n| Block(0, n * 100, 100, 1000)).collect(),
            (0..40).map(|n| (n, 10)).collect(),
        );
        // Chunk 0 is read first and last, with 30 other blocks between: it is kept.
        let middle: Vec<u32> = (1..31).collect();
        let files: Vec<&[u32]> = vec![&[0], &middle, &[0, 30]];
        let loads = plan_loads(&i, &files);
        assert_eq!(
            loads,
            (0..31).collect::<Vec<_>>(),
            "chunk 0 is kept, block 30 at hand"
        );
    }

    #[test]
    fn chunks_kept_past_the_memory_share_are_spilled_and_never_loaded_again() {
        // Three chunks of half the memory share read first and last, with 30 other blocks
        // between: two fill the memory share, the third goes to the temporary file.
        let big = RETAINED_BYTES as u32 / 2;
        let i = index(
            (0..33).map(|n| Block(0, n * 100, 100, big)).collect(),
            (0..33).map(|n| (n, if n < 3 { big } else { 10 })).collect(),
        );
        let middle: Vec<u32> = (3..33).collect();
        let files: Vec<&[u32]> = vec![&[0, 1, 2], &middle, &[2, 1, 0]];
        assert_eq!(plan_loads(&i, &files), (0..33).collect::<Vec<_>>());
        let mut r = Residency::new(vec![2, 2, 2]);
        let mut evicted = Vec::new();
        let held: Vec<_> = (0..3)
            .map(|c| r.next(c, c, big as usize, &mut evicted).retain)
            .collect();
        assert_eq!(
            held,
            [Some(Held::Memory), Some(Held::Memory), Some(Held::Spilled)]
        );
    }

    #[test]
    fn adjacent_blocks_of_one_pack_share_a_request_and_others_do_not() {
        let i = index(
            vec![
                Block(0, 0, 100, 1000),
                Block(0, 100, 100, 1000),
                Block(0, 100 + 100 + GAP + 1, 100, 1000),
                Block(1, 300, 100, 1000),
            ],
            vec![],
        );
        let whole: Vec<u64> = i.blocks.iter().map(|b| b.stored()).collect();
        let r = requests(&i, &[0, 1, 2, 3, 0], &whole, GAP, |_| false);
        let spans: Vec<_> = r.iter().map(|r| (r.pack, r.span.clone())).collect();
        assert_eq!(
            spans,
            [
                (0, 0..200),
                (0, 100 + 100 + GAP + 1..100 + 100 + GAP + 101),
                (1, 300..400),
                (0, 0..100)
            ]
        );
        assert_eq!(r[0].blocks, [(0, 0, 100), (1, 100, 100)]);
        // A block fetched ahead of the plan is a request of its own; with no gap allowed,
        // only blocks that touch share one.
        let r = requests(&i, &[0, 1, 2, 3, 0], &whole, GAP, |b| b == 1);
        let spans: Vec<_> = r.iter().map(|r| (r.pack, r.span.clone())).collect();
        assert_eq!(spans[..2], [(0, 0..100), (0, 100..200)]);
        let r = requests(&i, &[0, 1, 2], &whole, 0, |_| false);
        let spans: Vec<_> = r.iter().map(|r| r.span.clone()).collect();
        assert_eq!(spans, [0..200, 100 + 100 + GAP + 1..100 + 100 + GAP + 101]);
    }

    #[test]
    fn a_block_saved_in_steps_is_fetched_and_unpacked_only_up_to_the_step_its_chunks_end_in() {
        use crate::chunks::STEP;
        use crate::chunks::index::Steps;
        // 100 KiB that compresses, unevenly: a restore cannot guess where a step ends.
        let raw: Vec<u8> = (0..100 * 1024u32)
            .map(|n| {
                if n < 30_000 {
                    (n * 7919 % 251) as u8
                } else {
                    (n % 7) as u8
                }
            })
            .collect();
        let mut z = zstd::zstd_safe::CCtx::create();
        let mut stored = Vec::with_capacity(crate::chunks::pack::stepped_bound(raw.len()));
        let ends =
            crate::chunks::pack::compress_stepped(&mut z, &raw, &mut stored).expect("compressed");
        assert_eq!(ends.len(), raw.len().div_ceil(STEP) - 1);
        let mut i = index(
            vec![Block(0, 0, stored.len() as u32, raw.len() as u32)],
            vec![],
        );
        let chunk = |at: usize, len: usize| {
            Chunk(0, at as u32, len as u32, ChunkHash::of(&raw[at..at + len]))
        };
        i.chunks = vec![
            chunk(100, 200),
            chunk(2 * STEP + 5, 300),
            chunk(raw.len() - 10, 10),
        ];
        i.steps = vec![Steps(0, STEP as u32, ends.clone())];
        let mut d = zstd::zstd_safe::DCtx::try_create().expect("a decompressor");
        for (c, step) in [(0u32, Some(0)), (1, Some(2)), (2, None)] {
            let len = fetched_len(&i, 0, &[c]);
            match step {
                Some(k) => assert_eq!(len, u64::from(ends[k]), "chunk {c}"),
                None => assert_eq!(len, stored.len() as u64, "chunk {c}"),
            }
            let got = decompress_start(&mut d, &stored[..len as usize], need(&i, &[c]))
                .expect("the fetched start unpacks");
            assert_eq!(got[..], raw[..need(&i, &[c])], "chunk {c}");
            check_chunks(&i, "a", 0, &got, &[c]).expect("checked");
        }
        // Without its steps, the same block's start is an estimate.
        i.steps.clear();
        assert_ne!(fetched_len(&i, 0, &[0]), u64::from(ends[0]));
    }
}
