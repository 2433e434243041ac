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
//! A footprint also says which entry the restore laid down (the SHA-256 of its index) and,
//! when the restore made the root exactly the entry's (a mirroring restore of a root saved
//! whole), the entry's folders there with the device and inode the restore left at each
//! name. A later restore of that same entry then trusts a folder with that identity and a
//! ctime older than the footprint to hold the names it left there, and does not list it: a
//! name made, removed or renamed in a folder moves the folder's ctime, as a write moves a
//! file's, and a folder moved in from elsewhere (whose own folders keep their old ctimes)
//! brings inodes the footprint gave other names.
//!
//! A footprint that is missing, unreadable or malformed is no footprint: it only ever
//! spares reading a file or listing a folder, never decides what either holds on its own.

use foldhash::{HashMap, HashMapExt};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::index::{Index, Kind};
use crate::unpack::{Settled, Stat};

const MAGIC: &[u8] = b"ferry-footprint 2\n";
/// The most bytes of the line after [`MAGIC`]: the index's SHA-256 in hex, `mirrored` or
/// `kept`, and how many folder records follow, apart by spaces.
const HEAD_MAX: usize = 64 + 1 + 8 + 1 + 10 + 1;
/// Bytes of a folder record besides its name: device and inode.
const FOLDER_ID: usize = 8 * 2;
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

    /// When the footprint in `dir` of the folder `at` (the root `root`) was left by a
    /// restore that made it exactly the entry whose index has the SHA-256 `index`: its time,
    /// before which a folder's ctime says the folder still holds the names that restore left
    /// in it, and the entry's folders there with the identity the restore left them with.
    pub fn settled(dir: &Path, at: &Path, root: &str, index: &str) -> Option<Settled> {
        use std::io::BufRead;
        let file = fs::File::open(file_of(dir, at)).ok()?;
        let meta = file.metadata().ok()?;
        let mut file = std::io::BufReader::new(file);
        let mut start = vec![0u8; MAGIC.len()];
        file.read_exact(&mut start).ok()?;
        let mut line = Vec::new();
        (&mut file)
            .take(HEAD_MAX as u64)
            .read_until(b'\n', &mut line)
            .ok()?;
        let (head, _) = head(&line)?;
        if start != MAGIC || !head.mirrored || head.index != index.as_bytes() {
            return None;
        }
        let mut folders = Vec::with_capacity(head.folders.min(1 << 20));
        let mut name = Vec::new();
        for _ in 0..head.folders {
            let mut len = [0u8; 4];
            file.read_exact(&mut len).ok()?;
            name.resize(u32::from_le_bytes(len) as usize, 0);
            file.read_exact(&mut name).ok()?;
            let mut id = [0u8; FOLDER_ID];
            file.read_exact(&mut id).ok()?;
            let name = std::str::from_utf8(&name).ok()?;
            if !crate::paths::is_within(name, root) {
                return None;
            }
            let dev = u64::from_le_bytes(id[..8].try_into().ok()?);
            let ino = u64::from_le_bytes(id[8..].try_into().ok()?);
            folders.push((name.to_string(), (dev, ino)));
        }
        let stamp = (meta.mtime(), meta.mtime_nsec());
        Some(Settled { stamp, folders })
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
    let (head, mut rest) = head(bytes.strip_prefix(MAGIC)?)?;
    for _ in 0..head.folders {
        rest = name_at(rest)?.1.get(FOLDER_ID..)?;
    }
    // Names of about 64 bytes: sized once rather than grown record by record.
    let mut files = HashMap::with_capacity(rest.len() / (4 + 64 + FIXED));
    let u64_at = |b: &[u8], at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    while !rest.is_empty() {
        let (name, after) = name_at(rest)?;
        let f = after.get(..FIXED)?;
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
        rest = &after[FIXED..];
    }
    Some(files)
}

/// The line after [`MAGIC`].
struct Head<'a> {
    index: &'a [u8],
    mirrored: bool,
    folders: usize,
}

/// The head line at the start of `bytes`, and what follows it.
fn head(bytes: &[u8]) -> Option<(Head<'_>, &[u8])> {
    let end = bytes.iter().take(HEAD_MAX).position(|&b| b == b'\n')?;
    let mut fields = bytes[..end].split(|&b| b == b' ');
    let index = fields.next()?;
    let mirrored = match fields.next()? {
        b"mirrored" => true,
        b"kept" => false,
        _ => return None,
    };
    let folders = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    let head = Head {
        index,
        mirrored,
        folders,
    };
    Some((head, &bytes[end + 1..]))
}

/// A name (its length, u32 little-endian, then its bytes) at the start of `bytes`, and what
/// follows it.
fn name_at(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?;
    Some((name, &bytes[4 + len..]))
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

/// The entry a restore laid down, as its footprints name it.
pub struct Laid<'a> {
    pub index: &'a Index,
    /// The SHA-256 of the index object, as the manifest records it.
    pub sha256: &'a str,
    /// The restore made each root saved whole exactly the entry's (it mirrored them).
    pub mirrored: bool,
    /// The folders its walks opened, by name, with their device and inode (those it kept).
    pub seen: &'a [(String, (u64, u64))],
    /// The folders it made, staged until its commit: where each goes, and where it is made.
    pub staged: &'a [(PathBuf, PathBuf)],
}

/// The footprints of a restore of `laid.index`: one per root in `roots`, into `dir`, each file
/// where `resolve` puts it as the index describes it. Nothing in the restored tree is looked
/// at yet: `known` holds the files (by index in `entries`) whose identity the restore knows,
/// those it kept without setting anything on them, as it found them, and those it wrote, as
/// the lander recorded them; only the others (files kept whose mode or time the commit sets)
/// are looked up, by [`Pending::publish`]. The folders of a mirrored root that its walks did
/// not see are looked up now, while the commit runs: where they were made if it has not moved
/// them yet, else at their place.
pub fn prepare(
    dir: &Path,
    laid: &Laid<'_>,
    known: &HashMap<usize, FileId>,
    roots: &[String],
    resolve: &(dyn Fn(&str) -> PathBuf + Sync),
) -> std::io::Result<Pending> {
    let index = laid.index;
    let seen: HashMap<&str, (u64, u64)> =
        laid.seen.iter().map(|(n, id)| (n.as_str(), *id)).collect();
    let staged: HashMap<&Path, &Path> = laid
        .staged
        .iter()
        .map(|(dest, tmp)| (dest.as_path(), tmp.as_path()))
        .collect();
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
        let mut out = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(&tmp)?);
        let mut unknown = Vec::new();
        let mirrored = laid.mirrored && index.whole_roots.contains(root);
        let folders = if mirrored {
            folders_below(index, root)
        } else {
            Vec::new()
        };
        let made = if mirrored { "mirrored" } else { "kept" };
        out.write_all(MAGIC)?;
        writeln!(out, "{} {made} {}", laid.sha256, folders.len())?;
        let ids = on_threads(&folders, |f| {
            seen.get(f)
                .copied()
                .or_else(|| folder_id(&resolve(f), f == root, &staged))
        });
        // One not found keeps an identity no folder has.
        for (f, id) in folders.iter().zip(ids) {
            let (dev, ino) = id.unwrap_or_default();
            out.write_all(&(f.len() as u32).to_le_bytes())?;
            out.write_all(f.as_bytes())?;
            out.write_all(&dev.to_le_bytes())?;
            out.write_all(&ino.to_le_bytes())?;
        }
        pending.roots.push(PendingRoot {
            path,
            tmp,
            unknown: Vec::new(),
        });
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

/// The folders of `index` at and below `root`: its folder entries and every folder above one
/// of its names there.
fn folders_below<'i>(index: &'i Index, root: &str) -> Vec<&'i str> {
    let mut folders: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    let within = index
        .entries
        .iter()
        .filter(|e| crate::paths::is_within(&e.name, root));
    for e in within {
        if e.kind == Kind::Dir {
            folders.insert(&e.name);
        }
        let mut a = e.name.as_str();
        while let Some((p, _)) = a.rsplit_once('/') {
            if !crate::paths::is_within(p, root) || !folders.insert(p) {
                break;
            }
            a = p;
        }
    }
    folders.into_iter().collect()
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
        let ids = on_threads(&self.unknown, |(name, ..)| {
            fs::symlink_metadata(resolve(name))
                .ok()
                .filter(|m| m.file_type().is_file())
                .map(|m| FileId::of(&Stat::from(&m)))
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

/// The device and inode of the folder at `dest` (followed if a link, for a `root`): where a
/// folder of `staged` above it or at it was made, if it is still there, else at `dest`.
fn folder_id(dest: &Path, root: bool, staged: &HashMap<&Path, &Path>) -> Option<(u64, u64)> {
    let look = |path: &Path| {
        let m = if root {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        };
        m.ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
    };
    let made = dest.ancestors().find_map(|above| {
        let tmp = staged.get(above)?;
        let rest = dest.strip_prefix(above).ok()?;
        Some(tmp.join(rest))
    });
    made.and_then(|at| look(&at)).or_else(|| look(dest))
}

/// `look` of each of `items`, in order, on a few threads: looking things up by their path is
/// most of the time of completing a footprint.
fn on_threads<T: Sync, R: Send>(items: &[T], look: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let share = items.len().div_ceil(threads).max(1);
    let look = &look;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(share)
            .map(|part| scope.spawn(move || part.iter().map(look).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}
