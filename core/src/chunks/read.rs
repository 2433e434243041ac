//! Reading a chunked entry: its index (checked against the manifest's digest and packs),
//! then its blocks, laid down through the [`Lander`] (a restore) or written as a tar stream
//! ([`export`]). Files already on disk with the entry's content are kept, not fetched.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use super::fetch::{self, Failure, Held, Loaded, Residency};
use super::footprint::{FileId, Footprint, content_id};
use super::index::{self, Index, Kind};
use super::{ChunkHash, PackRef};
use crate::archive::ArchiveError;
use crate::entry::EntryError;
use crate::manifest::DataRef;
use crate::store::Store;
use crate::unpack::{Fix, Lander, Mirror, Probe, Prober, Source};

/// Reads an entry's index: exactly its recorded size, its SHA-256 checked, then parsed and
/// checked; every pack it names must be one the manifest lists, and every block must lie
/// within that pack's recorded size. A missing or mismatching index is an integrity failure.
pub async fn read_index(
    store: &Store,
    data: &DataRef,
    packs: &[PackRef],
) -> Result<Index, EntryError> {
    Ok(read_index_bytes(store, data, packs).await?.0)
}

/// [`read_index`], with the index object's bytes as stored (a job keeps them, so that its
/// save knows the chunks even after the entry was pruned).
pub async fn read_index_bytes(
    store: &Store,
    data: &DataRef,
    packs: &[PackRef],
) -> Result<(Index, bytes::Bytes), EntryError> {
    let stored = store
        .read_exactly(&data.path, data.size)
        .await?
        .ok_or_else(|| ArchiveError::Corrupt {
            detail: format!(
                "the chunk index {} is missing from the store; remove the entry and save it again",
                data.path
            ),
        })?;
    let index = decode_on_thread(stored.clone(), data, packs).await?;
    Ok((index, stored))
}

/// [`decode_index`] on a blocking thread.
async fn decode_on_thread(
    stored: bytes::Bytes,
    data: &DataRef,
    packs: &[PackRef],
) -> Result<Index, EntryError> {
    let data = data.clone();
    let packs = packs.to_vec();
    Ok(
        tokio::task::spawn_blocking(move || decode_index(&stored, &data, &packs))
            .await
            .map_err(|_| ArchiveError::Internal {
                what: "the thread reading the index stopped".into(),
            })??,
    )
}

/// Checks an index object's bytes against the manifest's record of them (size, SHA-256)
/// and its packs, and reads it.
pub fn decode_index(
    stored: &[u8],
    data: &DataRef,
    packs: &[PackRef],
) -> Result<Index, ArchiveError> {
    let sha256 = super::pack::sha256_hex(stored);
    if stored.len() as u64 != data.size || sha256 != data.sha256 {
        return Err(ArchiveError::Digest {
            expected: data.sha256.clone(),
            actual: sha256,
            expected_size: data.size,
            actual_size: stored.len() as u64,
        });
    }
    let index = index::decode(stored)?;
    let mut sizes = Vec::with_capacity(index.packs.len());
    for p in &index.packs {
        let size = packs
            .iter()
            .find(|r| &r.path == p)
            .map(|r| r.size)
            .ok_or_else(|| ArchiveError::Corrupt {
                detail: format!("the chunk index names pack {p}, which its manifest does not list"),
            })?;
        sizes.push(size);
    }
    for b in &index.blocks {
        if b.span().end > sizes[b.pack()] {
            return Err(ArchiveError::Corrupt {
                detail: format!(
                    "a block of pack {} ends at {}, past the pack's {} bytes",
                    index.packs[b.pack()],
                    b.span().end,
                    sizes[b.pack()]
                ),
            });
        }
    }
    Ok(index)
}

impl crate::unpack::Names for Index {
    fn names(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(self.entries.iter().map(|e| e.name.as_str()))
    }
}

/// What a restore did besides what the lander counts.
#[derive(Debug, Clone)]
pub struct LandOutcome {
    /// Bytes downloaded: the index and the byte ranges of packs.
    pub downloaded: u64,
    /// The index object as stored.
    pub index: bytes::Bytes,
    /// The index as read, for the restore's [`footprint`](super::footprint) once committed.
    pub decoded: Arc<Index>,
    /// Files kept with nothing set on them, as they were found (by index in `entries`).
    pub unchanged: HashMap<usize, FileId>,
}

/// Where the entries of a chunked entry go.
trait Sink {
    fn dir(&mut self, name: &str, mode: u32, mtime: i64) -> Result<(), ArchiveError>;
    fn symlink(&mut self, name: &str, target: &str, mtime: i64) -> Result<(), ArchiveError>;
    /// The file `(entry, name)`: its place in the index, and its name.
    fn file(
        &mut self,
        file: (usize, &str),
        mode: u32,
        mtime: i64,
        size: u64,
        data: &mut FileReader<'_>,
    ) -> Result<(), ArchiveError>;
    fn keep(
        &mut self,
        name: &str,
        mode: u32,
        mtime: i64,
        size: u64,
        fix: Fix,
    ) -> Result<(), ArchiveError>;
    fn hard_link(&mut self, name: &str, target: &str) -> Result<(), ArchiveError>;
    /// The file the check found at `name`'s place (device and inode), opened for reading.
    fn existing(&mut self, name: &str, dev: u64, ino: u64) -> Result<std::fs::File, ArchiveError>;
}

fn corrupt(e: std::io::Error) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: e.to_string(),
    }
}

impl Sink for Lander {
    fn dir(&mut self, name: &str, mode: u32, mtime: i64) -> Result<(), ArchiveError> {
        Lander::dir(self, name.as_bytes(), mode, mtime)
    }
    fn symlink(&mut self, name: &str, target: &str, mtime: i64) -> Result<(), ArchiveError> {
        Lander::symlink(self, name.as_bytes(), target.as_bytes(), mtime)
    }
    fn file(
        &mut self,
        (entry, name): (usize, &str),
        mode: u32,
        mtime: i64,
        size: u64,
        data: &mut FileReader<'_>,
    ) -> Result<(), ArchiveError> {
        self.record_as(entry);
        // A small file's chunk goes to the writers as it is (a restore of `node_modules`
        // took 0.931 s against 0.991 s copied). A larger file is copied in small pieces,
        // as any other source's: written straight from the blocks (up to 1 MiB each,
        // decompressed on other threads) a restore of `target/` took 0.509 s against
        // 0.469 s (medians of alternating restores).
        if size <= Lander::WHOLE_FILE_MAX {
            let next = &mut || data.next_piece();
            Lander::small_file(self, name.as_bytes(), mode, mtime, size, next, &corrupt)
        } else {
            Lander::file(self, name.as_bytes(), mode, mtime, size, data, &corrupt)
        }
    }
    fn keep(
        &mut self,
        name: &str,
        mode: u32,
        mtime: i64,
        size: u64,
        fix: Fix,
    ) -> Result<(), ArchiveError> {
        Lander::keep(self, name.as_bytes(), mode, mtime, size, fix)
    }
    fn hard_link(&mut self, name: &str, target: &str) -> Result<(), ArchiveError> {
        Lander::hard_link(self, name.as_bytes(), target.as_bytes())
    }
    fn existing(&mut self, name: &str, dev: u64, ino: u64) -> Result<std::fs::File, ArchiveError> {
        Lander::existing_file(self, name, dev, ino)
    }
}

/// What a restore does with the tree already on disk.
#[derive(Debug, Clone, Default)]
pub struct OnDisk<'a> {
    /// Keep files already at their place with the entry's content.
    pub keep: bool,
    /// Make the source's whole roots exactly the entry's (see [`crate::unpack`]).
    pub mirror: bool,
    /// With `keep`, the folder of the footprints that vouch for files without reading them.
    pub footprints: Option<&'a Path>,
    /// A copy of the entry's index kept on this machine (in the job's state), read instead
    /// of the store's when it is the one the manifest records (its size and SHA-256).
    pub index_copy: Option<bytes::Bytes>,
}

/// Lays a chunked entry down through `lander` as its next source, treating what is on disk
/// as `on_disk` says. Nothing is in place until the lander's commit; on an error the lander
/// is dropped.
pub async fn land(
    store: &Store,
    mut lander: Lander,
    mut source: Source,
    data: &DataRef,
    packs: &[PackRef],
    on_disk: OnDisk<'_>,
) -> Result<(Lander, LandOutcome), EntryError> {
    // The footprints are read while the index is fetched and decoded, and the next one
    // takes what the writers record of the files they write.
    let footprint = match on_disk.footprints {
        Some(dir) if on_disk.keep => {
            lander.record_written();
            let dir = dir.to_path_buf();
            let roots: Vec<(String, PathBuf)> = source
                .roots
                .iter()
                .map(|r| (r.clone(), (source.resolve)(r)))
                .collect();
            Some(tokio::task::spawn_blocking(move || {
                Footprint::load(&dir, &roots)
            }))
        }
        _ => None,
    };
    // The roots already folders on disk (not through a link).
    let roots_on_disk: Vec<(String, PathBuf)> = source
        .roots
        .iter()
        .map(|r| (r.clone(), (source.resolve)(r)))
        .filter(|(_, dest)| std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()))
        .collect();
    let found_a_root = !roots_on_disk.is_empty();
    // Each root already a folder on disk is walked for names the entry does not hold from
    // now, while the index is fetched and then while files are checked and fetched; the walk
    // learns the entry's names once the index is read, and the lander takes it at its end.
    // Below a root whose footprint says a mirroring restore of this same entry left it, the
    // walk lists only the folders changed since.
    let prints = on_disk.footprints.filter(|_| on_disk.keep);
    let walks: Vec<_> = if on_disk.mirror {
        roots_on_disk
            .into_iter()
            .map(|(root, dest)| {
                let (tx, rx) = std::sync::mpsc::channel();
                let tag = lander.tag().to_string();
                let name = root.clone();
                let print = prints.map(|dir| (dir.to_path_buf(), data.sha256.clone()));
                let record = print.is_some();
                let walk = std::thread::spawn(move || {
                    let settled = print
                        .and_then(|(dir, index)| Footprint::settled(&dir, &dest, &name, &index));
                    crate::unpack::unknown_below_early(
                        &dest,
                        &name,
                        &tag,
                        rx,
                        settled.as_ref(),
                        record,
                    )
                });
                (root, tx, walk)
            })
            .collect()
    } else {
        Vec::new()
    };
    let copied = match on_disk.index_copy {
        Some(copy) if copy.len() as u64 == data.size => decode_on_thread(copy.clone(), data, packs)
            .await
            .ok()
            .map(|i| (i, copy)),
        _ => None,
    };
    let (index, index_bytes, index_fetched) = match copied {
        Some((index, bytes)) => (index, bytes, 0),
        None => {
            let (index, bytes) = read_index_bytes(store, data, packs).await?;
            (index, bytes, data.size)
        }
    };
    let index = Arc::new(index);
    if on_disk.mirror {
        let roots: Vec<String> = index
            .whole_roots
            .iter()
            .filter(|r| source.roots.contains(r))
            .cloned()
            .collect();
        let excludes = crate::glob::set(&index.excludes).map_err(ArchiveError::from)?;
        // A walk of a root not saved whole is left to stop on its own (its sender dropped).
        let prewalks = walks
            .into_iter()
            .filter(|(root, _, _)| roots.contains(root))
            .map(|(root, tx, walk)| {
                let _ = tx.send(crate::unpack::Known {
                    names: Arc::clone(&index) as Arc<dyn crate::unpack::Names>,
                    excludes: excludes.clone(),
                });
                (root, walk)
            })
            .collect();
        source.mirror = Some(Mirror {
            roots,
            excludes,
            prewalks,
        });
    }
    let footprint = match footprint {
        Some(task) => task.await.unwrap_or_default(),
        None => Footprint::default(),
    };
    let keep_existing = on_disk.keep;
    // Into a folder already there, from a store read by ranges over a network, what the
    // check finds missing is fetched while it goes on (into an empty one, the check is
    // quick and the plan fetches everything).
    let ahead = keep_existing
        && found_a_root
        && store.capabilities().ranged_get
        && index
            .packs
            .first()
            .is_some_and(|p| store.local_path(p).is_none());
    let early = ahead.then(|| fetch::Early::start(store, Arc::clone(&index)));
    let planned = {
        let index = Arc::clone(&index);
        let missing = early.as_ref().map(|e| e.tx.clone());
        tokio::task::spawn_blocking(move || {
            lander.begin(source);
            lander.reserve(index.entries.len());
            let checked = if keep_existing {
                check_files(&mut lander, &index, &footprint, missing)
            } else {
                Checked::default()
            };
            (lander, checked)
        })
        .await
        .map_err(|_| ArchiveError::Internal {
            what: "the thread checking files on disk stopped".into(),
        })?
    };
    let (lander, checked) = planned;
    let unchanged = checked
        .kept
        .iter()
        .filter(|(_, k)| k.fix == Fix::Nothing)
        .map(|(&i, k)| (i, k.id))
        .collect();
    let (lander, downloaded) = feed(store, lander, Arc::clone(&index), checked, early).await?;
    Ok((
        lander,
        LandOutcome {
            downloaded: downloaded + index_fetched,
            index: index_bytes,
            decoded: index,
            unchanged,
        },
    ))
}

/// A file already at its place with the entry's content, kept.
#[derive(Debug, Clone, Copy)]
struct Kept {
    /// What commit sets: its mode or time where they differ from the entry's, and its
    /// length when bytes were appended to it since.
    fix: Fix,
    /// What `lstat` said of it.
    id: FileId,
}

/// A file at its place whose content differs from the entry's but holds some of its chunks
/// at their offsets (a file appended to, or partly rewritten in place): those are copied
/// from it, checked again, rather than fetched.
#[derive(Debug, Clone)]
struct Seed {
    /// For each of the entry's chunks of the file, whether the file on disk holds it.
    local: Vec<bool>,
    dev: u64,
    ino: u64,
}

/// What the check of the files on disk found, by index into `entries`.
#[derive(Debug, Default)]
struct Checked {
    kept: HashMap<usize, Kept>,
    seeds: HashMap<usize, Seed>,
}

/// Checks the files of the index already on disk, on a few threads: each file at its place
/// is read and hashed chunk by chunk against the index, unless `footprint` vouches for it.
/// A file with the entry's content is kept; one holding only some of its chunks at their
/// offsets seeds the file written in its place. The lander takes the folders the check
/// found as its own look at them. Each file found to need all of its chunks (not there, or
/// holding none of them) goes to `missing` at once.
fn check_files(
    lander: &mut Lander,
    index: &Index,
    footprint: &Footprint,
    missing: Option<tokio::sync::mpsc::UnboundedSender<usize>>,
) -> Checked {
    let prober = lander.prober();
    // A file other names link to is written again with them: a hard link is made to a file
    // this restore writes, never to one already on disk.
    let linked: HashSet<&str> = index
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Hardlink)
        .filter_map(|e| e.target.as_deref())
        .collect();
    let mut files: Vec<usize> = index
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::File && !linked.contains(e.name.as_str()))
        .map(|(i, _)| i)
        .collect();
    // The threads take the large files one at a time (largest first), then the rest in the
    // index's order (folder by folder) in runs of `SMALL_RUN`: a share fixed in advance left
    // one thread hashing most of a `target/` whose bytes sit in a few large files, and runs
    // keep each folder to one thread, which opens it once.
    const SMALL_RUN: usize = 32;
    files.sort_by_key(|&i| match index.entries[i].size {
        size if size >= super::LARGE_FILE => (0, u64::MAX - size),
        _ => (1, i as u64),
    });
    let large = files
        .iter()
        .take_while(|&&i| index.entries[i].size >= super::LARGE_FILE)
        .count();
    let runs: Vec<std::ops::Range<usize>> = (0..large)
        .map(|k| k..k + 1)
        .chain(
            (large..files.len())
                .step_by(SMALL_RUN)
                .map(|k| k..(k + SMALL_RUN).min(files.len())),
        )
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (checked, found) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (prober, files, runs, next) = (&prober, &files, &runs, &next);
                let missing = missing.as_ref();
                scope.spawn(move || {
                    let mut buf = vec![0u8; super::CHUNK_MAX as usize];
                    let mut probe = Probe::default();
                    let mut checked = Checked::default();
                    let claimed = std::iter::from_fn(|| {
                        runs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    });
                    for &i in claimed.flat_map(|run| &files[run.clone()]) {
                        let e = &index.entries[i];
                        let needs_all = || {
                            if let Some(tx) = missing {
                                let _ = tx.send(i);
                            }
                        };
                        let Some(stat) = prober.found(&e.name, &mut probe) else {
                            needs_all();
                            continue;
                        };
                        let meta = stat.mode & 0o7777 != crate::unpack::restored_mode(e.mode)
                            || stat.mtime.0 != e.mtime;
                        let kept = Kept {
                            fix: if meta { Fix::Meta } else { Fix::Nothing },
                            id: FileId::of(&stat),
                        };
                        // A file its footprint vouches for is kept unread; any other is read
                        // through a handle that is still the file looked at.
                        if stat.size == e.size
                            && !footprint.is_empty()
                            && footprint.vouches(&e.name, &stat, &content_id(index, &e.chunks))
                        {
                            checked.kept.insert(i, kept);
                            continue;
                        }
                        let Some(file) = Prober::open(&probe, &e.name, &stat) else {
                            needs_all();
                            continue;
                        };
                        let local = chunks_held(file, index, &e.chunks, &mut buf);
                        let whole = local.iter().all(|&held| held);
                        if stat.size == e.size && whole {
                            checked.kept.insert(i, kept);
                        } else if stat.size > e.size && whole && stat.may_cut() {
                            // The entry's content, then bytes appended since: cut back at
                            // commit rather than written again.
                            let (dev, ino) = (stat.dev, stat.ino);
                            let fix = Fix::Cut { dev, ino };
                            checked.kept.insert(i, Kept { fix, ..kept });
                        } else if local.contains(&true) {
                            let (dev, ino) = (stat.dev, stat.ino);
                            checked.seeds.insert(i, Seed { local, dev, ino });
                        } else {
                            needs_all();
                        }
                    }
                    (checked, probe)
                })
            })
            .collect();
        let mut checked = Checked::default();
        let mut found: HashMap<String, _> = HashMap::new();
        for h in handles {
            let (c, probe) = h.join().unwrap_or_default();
            checked.kept.extend(c.kept);
            checked.seeds.extend(c.seeds);
            found.extend(probe.into_folders());
        }
        (checked, found)
    });
    lander.probed(found);
    checked
}

/// For each of `chunks`, whether the file holds its bytes at its offset (read in order, up
/// to the end of the chunks or of the file). A file that holds neither of its first two
/// chunks is taken as rewritten through and not read further: restoring over a rebuilt
/// tree reads at most two chunks of each file it cannot use.
fn chunks_held(
    mut file: std::fs::File,
    index: &Index,
    chunks: &[u32],
    buf: &mut [u8],
) -> Vec<bool> {
    let mut held = Vec::with_capacity(chunks.len());
    for &c in chunks {
        let chunk = &index.chunks[c as usize];
        let Some(buf) = buf.get_mut(..chunk.len() as usize) else {
            break;
        };
        // A short read leaves the offset unknown: nothing after it is compared.
        if file.read_exact(buf).is_err() {
            break;
        }
        held.push(ChunkHash::of(buf) == *chunk.hash());
        if held == [false, false] {
            break;
        }
    }
    held.resize(chunks.len(), false);
    held
}

/// A chunk kept for reuse.
#[derive(Clone)]
enum KeptChunk {
    Memory(bytes::Bytes),
    /// At this offset of the spill file.
    Spilled(u64),
}

/// The blocks arriving from the fetcher and the chunks kept for reuse, replaying the plan's
/// [`Residency`].
struct Blocks {
    rx: Receiver<Loaded>,
    residency: Residency,
    at_hand: std::collections::HashMap<u32, bytes::Bytes>,
    retained: std::collections::HashMap<u32, KeptChunk>,
    /// The temporary file chunks kept for reuse go to once those in memory fill their share
    /// (made at the first), and its length.
    spill: Option<std::fs::File>,
    spill_end: u64,
    evicted: Vec<u32>,
    index: Arc<Index>,
    /// The first failure met, which the sink reports as a read error.
    failure: Option<ArchiveError>,
}

impl Blocks {
    /// The bytes of chunk `c`, a share of the block that holds them.
    fn take(&mut self, c: u32) -> Result<bytes::Bytes, ArchiveError> {
        let chunk = &self.index.chunks[c as usize];
        let block = chunk.0;
        let range = chunk.range();
        let step = self
            .residency
            .next(c, block, range.len(), &mut self.evicted);
        for b in self.evicted.drain(..) {
            self.at_hand.remove(&b);
        }
        if step.retained {
            let kept = if step.release {
                self.retained.remove(&c)
            } else {
                self.retained.get(&c).cloned()
            };
            return match kept {
                Some(KeptChunk::Memory(bytes)) => Ok(bytes),
                Some(KeptChunk::Spilled(at)) => Ok(self.unspill(c, at)?.into()),
                None => Err(ArchiveError::Internal {
                    what: "a kept chunk went missing".into(),
                }),
            };
        }
        if step.load {
            let (b, bytes) = match self.rx.recv() {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(ArchiveError::Corrupt {
                        detail: "the blocks stopped arriving".into(),
                    });
                }
            };
            if b != block {
                return Err(ArchiveError::Internal {
                    what: format!("block {b} arrived where block {block} was planned"),
                });
            }
            self.at_hand.insert(b, bytes);
        }
        let bytes = self
            .at_hand
            .get(&block)
            .cloned()
            .ok_or_else(|| ArchiveError::Internal {
                what: format!("block {block} is not at hand"),
            })?;
        if let Some(held) = step.retain {
            let chunk = &bytes[range.clone()];
            // Without a temporary file (none can be made, or the disk is full) the chunk
            // stays in memory: the restore needs more of it, but goes on.
            let kept = match held {
                Held::Spilled => self.spill(chunk).ok().map(KeptChunk::Spilled),
                Held::Memory => None,
            };
            let kept =
                kept.unwrap_or_else(|| KeptChunk::Memory(bytes::Bytes::copy_from_slice(chunk)));
            self.retained.insert(c, kept);
        }
        Ok(bytes.slice(range))
    }

    /// Appends a chunk to the spill file; returns where it starts.
    fn spill(&mut self, bytes: &[u8]) -> std::io::Result<u64> {
        let file = match &mut self.spill {
            Some(f) => f,
            None => self.spill.insert(tempfile::tempfile()?),
        };
        use std::os::unix::fs::FileExt;
        file.write_all_at(bytes, self.spill_end)?;
        let at = self.spill_end;
        self.spill_end += bytes.len() as u64;
        Ok(at)
    }

    /// Chunk `c` read back from the spill file at `at`, checked against its hash again (the
    /// file is outside the restore's own folders).
    fn unspill(&self, c: u32, at: u64) -> Result<Vec<u8>, ArchiveError> {
        let chunk = &self.index.chunks[c as usize];
        let mut bytes = vec![0u8; chunk.len() as usize];
        use std::os::unix::fs::FileExt;
        let read = match &self.spill {
            Some(f) => f.read_exact_at(&mut bytes, at).is_ok(),
            None => false,
        };
        if !read || ChunkHash::of(&bytes) != *chunk.hash() {
            return Err(ArchiveError::Corrupt {
                detail: format!(
                    "chunk {} changed in the temporary file it was kept in ({}) during the restore",
                    chunk.hash().to_hex(),
                    std::env::temp_dir().display()
                ),
            });
        }
        Ok(bytes)
    }
}

/// A file's bytes, chunk after chunk: from the blocks, or from the file on disk it replaces
/// where that holds the chunk (checked again as it is read).
struct FileReader<'a> {
    blocks: &'a mut Blocks,
    chunks: &'a [u32],
    seed: Option<(&'a [bool], std::fs::File)>,
    name: &'a str,
    next: usize,
    /// Where in the file the next chunk starts.
    at: u64,
    /// What is left of the chunk being read.
    current: bytes::Bytes,
}

impl FileReader<'_> {
    /// Chunk `c`, the `k`th of the file, which starts at `offset`.
    fn chunk(&mut self, k: usize, c: u32, offset: u64) -> Result<bytes::Bytes, ArchiveError> {
        let Some((local, file)) = self.seed.as_mut() else {
            return self.blocks.take(c);
        };
        if !local.get(k).is_some_and(|&held| held) {
            return self.blocks.take(c);
        }
        let chunk = &self.blocks.index.chunks[c as usize];
        let mut bytes = vec![0u8; chunk.len() as usize];
        use std::os::unix::fs::FileExt;
        if file.read_exact_at(&mut bytes, offset).is_err() || ChunkHash::of(&bytes) != *chunk.hash()
        {
            return Err(ArchiveError::changed_meanwhile(self.name));
        }
        Ok(bytes.into())
    }

    /// The rest of the file's current chunk, else its next chunk; `None` at its end.
    fn next_piece(&mut self) -> std::io::Result<Option<bytes::Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        let k = self.next;
        let Some(&c) = self.chunks.get(k) else {
            return Ok(None);
        };
        self.next += 1;
        let offset = self.at;
        self.at += self.blocks.index.chunks[c as usize].len();
        match self.chunk(k, c, offset) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) => {
                let msg = e.to_string();
                self.blocks.failure.get_or_insert(e);
                Err(std::io::Error::other(msg))
            }
        }
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.next_piece()? {
                Some(piece) => self.current = piece,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// Plans the loads for every file not kept, fetches them and hands every entry to `sink`
/// in index order. Returns the sink and the bytes fetched.
async fn feed<S: Sink + Send + 'static>(
    store: &Store,
    sink: S,
    index: Arc<Index>,
    checked: Checked,
    early: Option<fetch::Early>,
) -> Result<(S, u64), EntryError> {
    let Checked { kept, seeds } = checked;
    // The chunks each written file takes from the blocks: all of them, but those its seed
    // holds.
    let fetched: Vec<std::borrow::Cow<[u32]>> = index
        .entries
        .iter()
        .enumerate()
        .filter(|(i, e)| e.kind == Kind::File && !kept.contains_key(i))
        .map(|(i, e)| match seeds.get(&i) {
            Some(seed) => e
                .chunks
                .iter()
                .zip(&seed.local)
                .filter(|&(_, &held)| !held)
                .map(|(&c, _)| c)
                .collect(),
            None => std::borrow::Cow::Borrowed(e.chunks.as_slice()),
        })
        .collect();
    let files: Vec<&[u32]> = fetched.iter().map(|f| f.as_ref()).collect();
    let loads = fetch::plan_loads(&index, &files);
    let mut uses = vec![0u32; index.chunks.len()];
    for f in &files {
        for &c in *f {
            uses[c as usize] += 1;
        }
    }
    let mut block_uses: Vec<Vec<u32>> = vec![Vec::new(); index.blocks.len()];
    for (c, n) in uses.iter().enumerate() {
        if *n > 0 {
            block_uses[index.chunks[c].block()].push(c as u32);
        }
    }
    // A block is fetched whole, or only as far as the chunks read from it need.
    let mut fetched_len: Vec<u64> = block_uses
        .iter()
        .enumerate()
        .map(|(b, uses)| fetch::fetched_len(&index, b as u32, uses))
        .collect();
    // A block fetched ahead is taken as it was fetched, in a request of its own (at its
    // first load; a later one fetches it again). The others are then fetched without the
    // bytes between them, which may be some fetched ahead.
    let (early, early_bytes) = match early {
        Some(early) => early.finish().await,
        None => Default::default(),
    };
    for (&b, ahead) in &early {
        fetched_len[b as usize] = ahead.len();
    }
    let gap = if early.is_empty() { fetch::GAP } else { 0 };
    let reqs = fetch::requests(&index, &loads, &fetched_len, gap, |b| {
        early.contains_key(&b)
    });
    let downloaded: u64 = {
        let mut ahead: HashSet<u32> = early.keys().copied().collect();
        let asked = reqs
            .iter()
            .filter(|r| !matches!(r.blocks[..], [(b, ..)] if ahead.remove(&b)))
            .map(|r| r.span.end - r.span.start);
        early_bytes + asked.sum::<u64>()
    };
    let needed: Vec<usize> = {
        let mut p: Vec<usize> = reqs.iter().map(|r| r.pack).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    check_packs(store, &index, &needed).await?;
    let (local, _temp) = local_packs(store, &index, &needed).await?;
    let refetched = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (rx, fetcher) = fetch::start(
        store,
        Arc::clone(&index),
        reqs,
        local,
        Arc::new(block_uses),
        Arc::clone(&refetched),
        early,
    );
    let residency = Residency::new(uses);
    let fed = {
        let index = Arc::clone(&index);
        tokio::task::spawn_blocking(move || {
            let mut sink = sink;
            let mut blocks = Blocks {
                rx,
                residency,
                at_hand: Default::default(),
                retained: Default::default(),
                spill: None,
                spill_end: 0,
                evicted: Vec::new(),
                index: Arc::clone(&index),
                failure: None,
            };
            let result = (|| {
                for (i, e) in index.entries.iter().enumerate() {
                    match e.kind {
                        Kind::Dir => sink.dir(&e.name, e.mode, e.mtime)?,
                        Kind::Symlink => {
                            sink.symlink(&e.name, e.target.as_deref().unwrap_or_default(), e.mtime)?
                        }
                        Kind::Hardlink => {
                            sink.hard_link(&e.name, e.target.as_deref().unwrap_or_default())?
                        }
                        Kind::File if kept.contains_key(&i) => {
                            let fix = kept.get(&i).map_or(Fix::Meta, |k| k.fix);
                            sink.keep(&e.name, e.mode, e.mtime, e.size, fix)?
                        }
                        Kind::File => {
                            let seed = match seeds.get(&i) {
                                Some(s) => Some((
                                    s.local.as_slice(),
                                    sink.existing(&e.name, s.dev, s.ino)?,
                                )),
                                None => None,
                            };
                            let mut reader = FileReader {
                                blocks: &mut blocks,
                                chunks: &e.chunks,
                                seed,
                                name: &e.name,
                                next: 0,
                                at: 0,
                                current: bytes::Bytes::new(),
                            };
                            sink.file((i, &e.name), e.mode, e.mtime, e.size, &mut reader)?;
                        }
                    }
                }
                Ok::<(), ArchiveError>(())
            })();
            // A failure of the blocks is the cause; the sink's read error only repeats it.
            match (result, blocks.failure.take()) {
                (Ok(()), _) => Ok(sink),
                (Err(_), Some(cause)) => Err(cause),
                (Err(e), None) => Err(e),
            }
        })
        .await
    };
    let fetched = fetcher.await.ok().flatten();
    let sink = match fed {
        Ok(Ok(sink)) => sink,
        Ok(Err(e)) => {
            return Err(match fetched {
                Some(Failure::Store(s)) => EntryError::Store(s),
                _ => EntryError::Archive(e),
            });
        }
        Err(_) => {
            return Err(ArchiveError::Internal {
                what: "the thread restoring files stopped".into(),
            }
            .into());
        }
    };
    let refetched = refetched.load(std::sync::atomic::Ordering::Relaxed);
    Ok((sink, downloaded + refetched))
}

/// Every pack a restore reads must be there with its recorded size: a pack missing or
/// truncated is an integrity failure before anything is fetched.
async fn check_packs(store: &Store, index: &Index, needed: &[usize]) -> Result<(), EntryError> {
    use futures::StreamExt;
    let heads: Vec<_> = futures::stream::iter(needed.iter().copied())
        .map(|p| async move { (p, store.head(&index.packs[p]).await) })
        .buffer_unordered(8)
        .collect()
        .await;
    for (p, head) in heads {
        let path = &index.packs[p];
        match head? {
            None => {
                return Err(ArchiveError::Corrupt {
                    detail: format!(
                        "pack {path} is missing from the store; remove the entry and save it again"
                    ),
                }
                .into());
            }
            Some(info) => {
                let end = index
                    .blocks
                    .iter()
                    .filter(|b| b.pack() == p)
                    .map(|b| b.span().end)
                    .max()
                    .unwrap_or(0);
                if info.size < end {
                    return Err(ArchiveError::Corrupt {
                        detail: format!(
                            "pack {path} holds {} bytes, its blocks reach {end} (truncated); remove the entry and save it again",
                            info.size
                        ),
                    }
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// Packs downloaded whole to temporary files, removed when dropped.
struct TempPacks(Vec<PathBuf>);

impl Drop for TempPacks {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The packs as files on this machine, where they are: a local store's own files, or (on a
/// store without ranged reads) each needed pack downloaded whole to a temporary file.
async fn local_packs(
    store: &Store,
    index: &Index,
    needed: &[usize],
) -> Result<(fetch::LocalPacks, TempPacks), EntryError> {
    let mut out: fetch::LocalPacks = vec![None; index.packs.len()];
    let mut temp = TempPacks(Vec::new());
    let ranged = store.capabilities().ranged_get;
    for &p in needed {
        if let Some(path) = store.local_path(&index.packs[p]) {
            out[p] = Some(path);
        } else if !ranged {
            use futures::StreamExt;
            let file_path =
                std::env::temp_dir().join(format!(".ferry-pack-{}", crate::manifest::new_id()));
            temp.0.push(file_path.clone());
            let mut file = std::fs::File::create(&file_path).map_err(|e| ArchiveError::Io {
                op: "create",
                path: file_path.display().to_string(),
                source: e,
            })?;
            let mut stream = store.get_stream(&index.packs[p]).await?;
            while let Some(piece) = stream.next().await {
                let piece =
                    piece.map_err(|e| store.request_error("download", &index.packs[p], e))?;
                file.write_all(&piece).map_err(|e| ArchiveError::Io {
                    op: "write",
                    path: file_path.display().to_string(),
                    source: e,
                })?;
            }
            out[p] = Some(file_path);
        }
    }
    if needed.iter().any(|&p| out[p].is_none()) {
        // Remote with ranges: none are local.
        out.fill(None);
    }
    Ok((out, temp))
}

/// Writes tar entries of a chunked entry (GNU long names, as format 1 writes them).
pub struct ExportSink<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> ExportSink<W> {
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        Self { builder }
    }

    fn header(kind: tar::EntryType, mode: u32, mtime: i64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(mtime.max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h
    }

    /// The tar stream's end; the writer back.
    pub fn finish(self) -> Result<W, ArchiveError> {
        self.builder.into_inner().map_err(ArchiveError::Write)
    }
}

impl<W: Write> Sink for ExportSink<W> {
    fn dir(&mut self, name: &str, mode: u32, mtime: i64) -> Result<(), ArchiveError> {
        let mut h = Self::header(tar::EntryType::Directory, mode, mtime, 0);
        crate::archive::append_raw(
            &mut self.builder,
            &mut h,
            &format!("{name}/"),
            None,
            std::io::empty(),
        )
        .map_err(ArchiveError::Write)
    }
    fn symlink(&mut self, name: &str, target: &str, mtime: i64) -> Result<(), ArchiveError> {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, mtime, 0);
        crate::archive::append_raw(
            &mut self.builder,
            &mut h,
            name,
            Some(target),
            std::io::empty(),
        )
        .map_err(ArchiveError::Write)
    }
    fn file(
        &mut self,
        (_, name): (usize, &str),
        mode: u32,
        mtime: i64,
        size: u64,
        data: &mut FileReader<'_>,
    ) -> Result<(), ArchiveError> {
        let mut h = Self::header(tar::EntryType::Regular, mode, mtime, size);
        let mut data = data.take(size);
        crate::archive::append_raw(&mut self.builder, &mut h, name, None, &mut data).map_err(|e| {
            ArchiveError::Corrupt {
                detail: e.to_string(),
            }
        })
    }
    fn keep(&mut self, _: &str, _: u32, _: i64, _: u64, _: Fix) -> Result<(), ArchiveError> {
        Err(ArchiveError::Internal {
            what: "an export keeps no files".into(),
        })
    }
    fn existing(&mut self, _: &str, _: u64, _: u64) -> Result<std::fs::File, ArchiveError> {
        Err(ArchiveError::Internal {
            what: "an export reads no files on disk".into(),
        })
    }
    fn hard_link(&mut self, name: &str, target: &str) -> Result<(), ArchiveError> {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0, 0);
        crate::archive::append_raw(
            &mut self.builder,
            &mut h,
            name,
            Some(target),
            std::io::empty(),
        )
        .map_err(ArchiveError::Write)
    }
}

/// Writes a chunked entry as a tar stream to `out`, checking every chunk; the writer back.
pub async fn export<W: Write + Send + 'static>(
    store: &Store,
    data: &DataRef,
    packs: &[PackRef],
    out: W,
) -> Result<W, EntryError> {
    let index = Arc::new(read_index(store, data, packs).await?);
    let (sink, _) = feed(store, ExportSink::new(out), index, Checked::default(), None).await?;
    Ok(sink.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::index::{Chunk, INDEX_VERSION};
    use crate::chunks::{ChunkHash, ChunkerParams};

    #[test]
    fn a_file_holding_neither_of_its_first_two_chunks_is_read_no_further() {
        let parts: [&[u8]; 4] = [b"aaaa", b"bbbb", b"cccc", b"dddd"];
        let index = Index {
            version: INDEX_VERSION,
            chunker: ChunkerParams::default(),
            packs: vec![],
            blocks: vec![],
            chunks: parts
                .iter()
                .map(|p| Chunk(0, 0, p.len() as u32, ChunkHash::of(p)))
                .collect(),
            entries: vec![],
            whole_roots: vec![],
            excludes: vec![],
            steps: vec![],
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let held = |bytes: &[u8]| {
            let path = dir.path().join("f");
            std::fs::write(&path, bytes).expect("write");
            let file = std::fs::File::open(&path).expect("open");
            chunks_held(file, &index, &[0, 1, 2, 3], &mut [0u8; 16])
        };
        assert_eq!(held(b"aaaabbbbccccddddappended"), [true; 4]);
        assert_eq!(held(b"aaaabbbbXXXXdddd"), [true, true, false, true]);
        assert_eq!(held(b"XXXXbbbbccccdddd"), [false, true, true, true]);
        assert_eq!(held(b"aaaabb"), [true, false, false, false]);
        // Rewritten through, though its end matches again: not read past two chunks.
        assert_eq!(held(b"XXXXYYYYccccdddd"), [false; 4]);
    }
}
