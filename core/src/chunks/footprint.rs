//! Footprints: what a restore left on disk, so that the next restore into the same folder
//! keeps an unchanged file without reading it.
//!
//! After a chunked restore commits, ferry writes one footprint per saved root, outside the
//! tree: each file of the entry below that root with the identity the file system gives it
//! (device, inode, size, modification time) and the content the entry gave it (the BLAKE3
//! of its chunk hashes). A later restore keeps a file without reading it only when the
//! file on disk still has that identity, the entry asks for the same content, and the
//! file's status-change time is older than the footprint. The kernel sets that time on
//! every write, truncation, rename, link and change of times or mode, and nobody can set
//! it back, so any change made to a file after its footprint was written (by a build, a
//! user, or a hostile step) sends it back to be read and hashed as without a footprint;
//! a folder moved or swapped brings inodes the footprint gave other names. A change made
//! while the restore that wrote the footprint was still running is the one it can miss,
//! as git's index can.
//!
//! A footprint that is missing, unreadable or malformed is no footprint: it only ever
//! spares reading a file, never decides what a file holds on its own.

use foldhash::{HashMap, HashMapExt};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::index::{Index, Kind};
use crate::unpack::Stat;

const MAGIC: &[u8] = b"ferry-footprint 1\n";
/// Bytes of one record besides its name: device, inode, size, mtime (seconds and
/// nanoseconds), content.
const FIXED: usize = 8 * 5 + 32;

/// A file as a restore left it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    content: [u8; 32],
    /// When its footprint was written (the footprint file's own mtime).
    stamp: (i64, i64),
}

/// The footprints of the roots a restore lays down, by entry name.
#[derive(Debug, Default)]
pub struct Footprint {
    files: HashMap<String, Seen>,
}

/// A file as the file system names it: what a footprint records of it besides its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
}

impl FileId {
    pub fn of(s: &Stat) -> Self {
        FileId {
            dev: s.dev,
            ino: s.ino,
            size: s.size,
            mtime: s.mtime,
        }
    }
}

/// The files a restore wrote (by index in `entries`) as the lander recorded them
/// ([`crate::unpack::Landed::written`]): regular files, as it made them.
pub fn written(records: Vec<(u32, Stat)>) -> impl Iterator<Item = (usize, FileId)> {
    records
        .into_iter()
        .filter(|(_, s)| s.is_file())
        .map(|(i, s)| (i as usize, FileId::of(&s)))
}

/// What a file of the index holds, as a footprint names it: the BLAKE3 of its chunks'
/// hashes, in order.
pub fn content_id(index: &Index, chunks: &[u32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for &c in chunks {
        if let Some(chunk) = index.chunks.get(c as usize) {
            h.update(&chunk.hash().0);
        }
    }
    *h.finalize().as_bytes()
}

/// The footprint file of the folder `root` is laid down at.
fn file_of(dir: &Path, root: &Path) -> PathBuf {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let id = blake3::hash(root.as_os_str().as_encoded_bytes());
    dir.join(&id.to_hex()[..32])
}

impl Footprint {
    /// The footprints in `dir` of the folders `roots` (each a root's name and where it is)
    /// go to; an unreadable one is left out, and so is that of a folder not on disk (a
    /// restore into an empty target has nothing to keep, and the footprint's names would
    /// only take memory while it fetches everything).
    pub fn load(dir: &Path, roots: &[(String, PathBuf)]) -> Self {
        let mut files = HashMap::new();
        for (root, at) in roots {
            if !fs::metadata(at).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let path = file_of(dir, at);
            // Its time from the handle it is read through: one written over it meanwhile is
            // another file, and stamps only its own records.
            let mut bytes = Vec::new();
            let read = fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes).and_then(|_| f.metadata()));
            let Ok(meta) = read else {
                continue;
            };
            let stamp = (meta.mtime(), meta.mtime_nsec());
            match parse(&bytes, root, stamp) {
                Some(parsed) if files.is_empty() => files = parsed,
                Some(parsed) => files.extend(parsed),
                None => {}
            }
        }
        Footprint { files }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// True when the file `name`, as `now` (its `lstat`) describes it, is the one
    /// a footprint recorded with `content`, untouched since.
    pub fn vouches(&self, name: &str, now: &Stat, content: &[u8; 32]) -> bool {
        let Some(s) = self.files.get(name) else {
            return false;
        };
        s.content == *content
            && s.dev == now.dev
            && s.ino == now.ino
            && s.size == now.size
            && s.mtime == now.mtime
            && now.ctime < s.stamp
    }
}

/// Records below `root`, stamped `stamp`; `None` when the bytes are not a footprint.
fn parse(bytes: &[u8], root: &str, stamp: (i64, i64)) -> Option<HashMap<String, Seen>> {
    let mut rest = bytes.strip_prefix(MAGIC)?;
    // Names of about 64 bytes: sized once rather than grown record by record.
    let mut files = HashMap::with_capacity(rest.len() / (4 + 64 + FIXED));
    let u64_at = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(rest.get(4..4 + len)?).ok()?;
        let f = rest.get(4 + len..4 + len + FIXED)?;
        if !crate::paths::is_within(name, root) {
            return None;
        }
        files.insert(
            name.to_string(),
            Seen {
                dev: u64_at(f, 0)?,
                ino: u64_at(f, 8)?,
                size: u64_at(f, 16)?,
                mtime: (u64_at(f, 24)? as i64, u64_at(f, 32)? as i64),
                content: f.get(40..72)?.try_into().ok()?,
                stamp,
            },
        );
        rest = &rest[4 + len + FIXED..];
    }
    Some(files)
}

/// The footprints of a restore, written under temporary names from what it already knows of
/// its files while its commit runs; [`Pending::publish`] completes them once it has. Dropped
/// unpublished (a commit that failed), it removes them.
#[derive(Debug)]
pub struct Pending {
    roots: Vec<PendingRoot>,
}

#[derive(Debug)]
struct PendingRoot {
    /// Where its footprint goes.
    path: PathBuf,
    /// Where it is written until then, with the records of the files whose identity is known.
    tmp: PathBuf,
    /// The others, looked up once the commit is done: `(name, size, content)`.
    unknown: Vec<(String, u64, [u8; 32])>,
}

/// The footprints of a restore of `index`: one per root in `roots`, into `dir`, each file
/// where `resolve` puts it as the index describes it. Nothing in the restored tree is looked
/// at yet: `known` holds the files (by index in `entries`) whose identity the restore knows,
/// those it kept without setting anything on them, as it found them, and those it wrote, as
/// the lander recorded them; only the others (files kept whose mode or time the commit sets)
/// are looked up, by [`Pending::publish`].
pub fn prepare(
    dir: &Path,
    index: &Index,
    known: &HashMap<usize, FileId>,
    roots: &[String],
    resolve: &(dyn Fn(&str) -> PathBuf + Sync),
) -> std::io::Result<Pending> {
    // A file other names link to is written again with them on every restore (never kept),
    // so neither has a footprint.
    let linked: std::collections::HashSet<&str> = index
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Hardlink)
        .filter_map(|e| e.target.as_deref())
        .collect();
    fs::create_dir_all(dir)?;
    let mut pending = Pending { roots: Vec::new() };
    for root in roots {
        let path = file_of(dir, &resolve(root));
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        let mut out = std::io::BufWriter::new(fs::File::create(&tmp)?);
        let mut unknown = Vec::new();
        pending.roots.push(PendingRoot {
            path,
            tmp,
            unknown: Vec::new(),
        });
        out.write_all(MAGIC)?;
        let files = index.entries.iter().enumerate().filter(|(_, e)| {
            e.kind == Kind::File
                && !linked.contains(e.name.as_str())
                && crate::paths::is_within(&e.name, root)
        });
        for (i, e) in files {
            let content = content_id(index, &e.chunks);
            match known.get(&i) {
                Some(id) => record(&mut out, &e.name, e.size, *id, &content)?,
                None => unknown.push((e.name.clone(), e.size, content)),
            }
        }
        out.flush()?;
        if let Some(r) = pending.roots.last_mut() {
            r.unknown = unknown;
        }
    }
    Ok(pending)
}

/// Writes the record of the file `name` of `size` bytes, when `id` says it has that size.
fn record(
    out: &mut impl Write,
    name: &str,
    size: u64,
    id: FileId,
    content: &[u8; 32],
) -> std::io::Result<()> {
    if id.size != size {
        return Ok(());
    }
    out.write_all(&(name.len() as u32).to_le_bytes())?;
    out.write_all(name.as_bytes())?;
    for v in [
        id.dev,
        id.ino,
        id.size,
        id.mtime.0 as u64,
        id.mtime.1 as u64,
    ] {
        out.write_all(&v.to_le_bytes())?;
    }
    out.write_all(content)
}

impl Pending {
    /// Looks up the files the restore did not know, now that its commit is done, adds them,
    /// and moves each footprint into place with its time set now, by the kernel's clock: the
    /// stamp its records are judged by comes after every change the restore made, and a
    /// change after it gets a later ctime from the same clock.
    pub fn publish(mut self, resolve: &(dyn Fn(&str) -> PathBuf + Sync)) -> std::io::Result<()> {
        // One that fails is removed here, those not reached when `self` drops.
        while let Some(root) = self.roots.pop() {
            if let Err(e) = root.complete(resolve) {
                let _ = fs::remove_file(&root.tmp);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl PendingRoot {
    fn complete(&self, resolve: &(dyn Fn(&str) -> PathBuf + Sync)) -> std::io::Result<()> {
        // Looking each file up by its path is most of the time: a few threads share it.
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4);
        let share = self.unknown.len().div_ceil(threads).max(1);
        let ids: Vec<Option<FileId>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .unknown
                .chunks(share)
                .map(|part| scope.spawn(move || found(part, resolve)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let file = fs::OpenOptions::new().append(true).open(&self.tmp)?;
        let mut out = std::io::BufWriter::new(&file);
        for ((name, size, content), id) in self.unknown.iter().zip(ids) {
            if let Some(id) = id {
                record(&mut out, name, *size, id, content)?;
            }
        }
        out.flush()?;
        drop(out);
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        };
        let omit = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        };
        rustix::fs::futimens(
            &file,
            &rustix::fs::Timestamps {
                last_access: omit,
                last_modification: now,
            },
        )?;
        fs::rename(&self.tmp, &self.path)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        for r in &self.roots {
            let _ = fs::remove_file(&r.tmp);
        }
    }
}

/// What each of `files` is on disk now, as a regular file (none: not one, or not there).
fn found(
    files: &[(String, u64, [u8; 32])],
    resolve: &(dyn Fn(&str) -> PathBuf + Sync),
) -> Vec<Option<FileId>> {
    files
        .iter()
        .map(|(name, ..)| {
            fs::symlink_metadata(resolve(name))
                .ok()
                .filter(|m| m.file_type().is_file())
                .map(|m| FileId::of(&Stat::from(&m)))
        })
        .collect()
}
