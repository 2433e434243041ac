//! Unpacking: every entry is checked, written under a temporary name, and renamed into place
//! only after the whole archive has been read and its digest checked.
//!
//! An unsafe entry (absolute or `..` names the save did not make, links out of the restored
//! tree, links written through) or a corrupt stream stops the restore and every temporary
//! file and folder it made is removed, so the target tree is left as it was.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;
use tar::EntryType;

use super::{ArchiveError, Format};
use crate::manifest::DataRef;
use crate::paths;
use crate::transfer::DownloadReader;

/// What may be unpacked and where it goes.
pub struct UnpackSpec<'a> {
    /// Entry names must lie within one of these (normalised) roots: the paths the save was given.
    pub roots: Vec<String>,
    /// Links out of the roots that the save recorded, as `(entry, target)`.
    pub links_out: HashSet<(String, String)>,
    /// Maps an entry name to where it goes on disk.
    pub resolve: &'a (dyn Fn(&str) -> PathBuf + Sync),
    /// Build folders that do not exist yet under a temporary name and rename each whole
    /// folder into place at commit, instead of renaming every file in it. Off where several
    /// staged unpacks are joined (they could each stage the same new folder).
    pub stage_new_folders: bool,
}

/// What was unpacked.
#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// An unpacked archive waiting for [`Staged::commit`] or [`Staged::rollback`].
#[must_use = "a staged restore must be committed or rolled back"]
pub struct Staged {
    /// Temporary path and final path of every file and link, in archive order.
    renames: Vec<(PathBuf, PathBuf)>,
    /// Folders this restore created, parents first.
    created_dirs: Vec<PathBuf>,
    /// New folders built under a temporary name, and where they go.
    staged_roots: Vec<(PathBuf, PathBuf)>,
    /// Mode and mtime of every folder entry, applied last (deepest first).
    dir_meta: Vec<(PathBuf, u32, i64)>,
    pub stats: UnpackStats,
}

impl Staged {
    /// Renames everything into place and sets folder modes and times.
    pub fn commit(mut self) -> Result<UnpackStats, ArchiveError> {
        let renames = std::mem::take(&mut self.renames);
        if let Err(e) = rename_all(&renames) {
            for (t, _) in &renames {
                let _ = fs::remove_file(t);
            }
            return Err(e);
        }
        let roots = std::mem::take(&mut self.staged_roots);
        for (i, (tmp, dest)) in roots.iter().enumerate() {
            // A plain rename would also replace an empty folder made meanwhile; refuse that too.
            let result = if fs::symlink_metadata(dest).is_ok() {
                Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
            } else {
                fs::rename(tmp, dest)
            };
            if let Err(source) = result {
                for (t, _) in &roots[i..] {
                    let _ = fs::remove_dir_all(t);
                }
                return Err(ArchiveError::Io {
                    op: "move into place",
                    path: dest.display().to_string(),
                    source,
                });
            }
        }
        // Committed folders are the restore's result now, not leftovers to clean up.
        self.created_dirs.clear();
        self.dir_meta
            .sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (dir, mode, mtime) in &self.dir_meta {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(*mode));
            let _ = filetime::set_file_mtime(dir, FileTime::from_unix_time(*mtime, 0));
        }
        Ok(std::mem::take(&mut self.stats))
    }

    /// Takes in a later archive's staged entries, so that both are committed together (the
    /// later one's files replacing the earlier one's at the same paths, its folder modes and
    /// times applied last) or rolled back together.
    pub fn absorb(&mut self, mut later: Staged) {
        self.renames.append(&mut later.renames);
        self.created_dirs.append(&mut later.created_dirs);
        self.staged_roots.append(&mut later.staged_roots);
        self.dir_meta.append(&mut later.dir_meta);
        let s = std::mem::take(&mut later.stats);
        self.stats.files += s.files;
        self.stats.dirs += s.dirs;
        self.stats.symlinks += s.symlinks;
        self.stats.bytes += s.bytes;
    }

    /// Removes every temporary file and every folder this restore created.
    pub fn rollback(mut self) {
        self.cleanup();
    }

    fn cleanup(&mut self) {
        for (tmp, _) in self.renames.drain(..) {
            let _ = fs::remove_file(tmp);
        }
        for (tmp, _) in self.staged_roots.drain(..) {
            let _ = fs::remove_dir_all(tmp);
        }
        for dir in self.created_dirs.drain(..).rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Reads a tar stream and stages every entry; nothing is in place until [`Staged::commit`].
///
/// On error, whatever was staged is removed before returning.
pub fn unpack<R: Read>(spec: &UnpackSpec<'_>, input: R) -> Result<Staged, ArchiveError> {
    let mut staged = Staged {
        renames: Vec::new(),
        staged_roots: Vec::new(),
        created_dirs: Vec::new(),
        dir_meta: Vec::new(),
        stats: UnpackStats::default(),
    };
    let mut state = State {
        spec,
        tag: format!(".ferry-{}", crate::manifest::new_id()),
        counter: 0,
        links: HashSet::new(),
        files: HashMap::new(),
        known_dirs: HashSet::new(),
        fresh_dirs: HashSet::new(),
        staged_map: HashMap::new(),
    };
    match state.run(input, &mut staged) {
        Ok(()) => Ok(staged),
        Err(e) => {
            staged.rollback();
            Err(e)
        }
    }
}

struct State<'a, 'b> {
    spec: &'a UnpackSpec<'b>,
    tag: String,
    counter: u64,
    /// Names of symlink entries seen so far: nothing may be written below them.
    links: HashSet<String>,
    /// Staged files by entry name, for hard links: the temporary path.
    files: HashMap<String, PathBuf>,
    /// Folders known to exist as real folders.
    known_dirs: HashSet<PathBuf>,
    /// Folders this restore created: nothing of the user's is inside them.
    fresh_dirs: HashSet<PathBuf>,
    /// New folders being built under a temporary name: destination → where it is now.
    staged_map: HashMap<PathBuf, PathBuf>,
}

fn corrupt(e: std::io::Error) -> ArchiveError {
    ArchiveError::Corrupt {
        detail: e.to_string(),
    }
}

impl State<'_, '_> {
    fn run<R: Read>(&mut self, input: R, staged: &mut Staged) -> Result<(), ArchiveError> {
        let mut pool = WriterPool::new();
        let result = self.entries(input, staged, &mut pool);
        // The pool is drained before returning, so a rollback never races a writer.
        let drained = pool.finish();
        result.and(drained)
    }

    fn entries<R: Read>(
        &mut self,
        input: R,
        staged: &mut Staged,
        pool: &mut WriterPool,
    ) -> Result<(), ArchiveError> {
        let mut archive = tar::Archive::new(input);
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let kind = entry.header().entry_type();
            if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
                continue;
            }
            let name = self.check_name(&raw)?;
            let mode = entry.header().mode().map_err(corrupt)? & 0o7777;
            let mtime = entry.header().mtime().map_err(corrupt)? as i64;
            let dest = (self.spec.resolve)(&name);
            match kind {
                EntryType::Directory => {
                    self.ensure_dir(&dest, &name, staged)?;
                    staged.dir_meta.push((dest, mode, mtime));
                    staged.stats.dirs += 1;
                }
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    if kind == EntryType::GNUSparse {
                        return Err(ArchiveError::Unsafe {
                            entry: raw,
                            reason: "sparse entries are not supported".into(),
                        });
                    }
                    let tmp = self.prepare(&dest, &name, staged)?;
                    let size = entry.size();
                    let n = if size <= POOL_FILE_MAX {
                        // Small files are read here and created by the pool: creating files
                        // is most of a restore's time and scales with threads.
                        let mut data = Vec::with_capacity(size as usize);
                        entry.read_to_end(&mut data).map_err(corrupt)?;
                        pool.submit(Job {
                            tmp: tmp.clone(),
                            data,
                            mode,
                            mtime,
                        })?;
                        size
                    } else {
                        // Larger ones go to the pool's streaming thread a chunk at a time,
                        // so decompression goes on while the kernel copies the last chunk.
                        pool.stream(&tmp, &mut entry, mode, mtime)?
                    };
                    self.files.insert(name, tmp);
                    staged.stats.files += 1;
                    staged.stats.bytes += n;
                }
                EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .ok_or_else(|| ArchiveError::Corrupt {
                            detail: format!("symlink {raw:?} has no target"),
                        })?;
                    self.check_link(&name, &target, &raw)?;
                    let tmp = self.prepare(&dest, &name, staged)?;
                    std::os::unix::fs::symlink(&target, &tmp).map_err(|source| {
                        ArchiveError::Io {
                            op: "create link",
                            path: dest.display().to_string(),
                            source,
                        }
                    })?;
                    let _ = filetime::set_symlink_file_times(
                        &tmp,
                        FileTime::from_unix_time(mtime, 0),
                        FileTime::from_unix_time(mtime, 0),
                    );
                    self.links.insert(name);
                    staged.stats.symlinks += 1;
                }
                EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .ok_or_else(|| ArchiveError::Corrupt {
                            detail: format!("hard link {raw:?} has no target"),
                        })?;
                    let target_name = paths::normalize(&target);
                    let source_tmp = self.files.get(&target_name).cloned().ok_or_else(|| {
                        ArchiveError::Unsafe {
                            entry: raw.clone(),
                            reason: format!(
                                "hard link to {target:?}, which is not a file restored before it"
                            ),
                        }
                    })?;
                    let tmp = self.prepare(&dest, &name, staged)?;
                    // The linked file may still be in the pool's queue.
                    pool.drain()?;
                    fs::hard_link(&source_tmp, &tmp).map_err(|source| ArchiveError::Io {
                        op: "create hard link",
                        path: dest.display().to_string(),
                        source,
                    })?;
                    self.files.insert(name, tmp);
                    staged.stats.files += 1;
                }
                other => {
                    return Err(ArchiveError::Unsafe {
                        entry: raw,
                        reason: format!(
                            "entry type {other:?} is not restored (only files, folders and links)"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Normalises an entry name and checks that it lies within a root the save was given.
    fn check_name(&self, raw: &str) -> Result<String, ArchiveError> {
        let trimmed = raw.trim_end_matches('/');
        if trimmed.is_empty() || trimmed.contains('\0') {
            return Err(ArchiveError::Unsafe {
                entry: raw.to_string(),
                reason: "empty name".into(),
            });
        }
        let name = paths::normalize(trimmed);
        let root = self.root_of(&name).ok_or_else(|| ArchiveError::Unsafe {
            entry: raw.to_string(),
            reason: if name.starts_with('/') {
                "absolute path the save did not make".into()
            } else if name.starts_with("..") {
                "path with `..` the save did not make".into()
            } else {
                format!("outside the saved paths ({})", self.spec.roots.join(", "))
            },
        })?;
        // A name like `a/../..` that normalises inside a root is still refused when its raw
        // form climbs above that root on the way.
        if raw.split('/').any(|p| p == "..")
            && !self
                .spec
                .roots
                .iter()
                .any(|r| r.split('/').any(|p| p == ".."))
        {
            return Err(ArchiveError::Unsafe {
                entry: raw.to_string(),
                reason: "path with `..` the save did not make".into(),
            });
        }
        let _ = root;
        Ok(name)
    }

    fn root_of(&self, name: &str) -> Option<&str> {
        self.spec
            .roots
            .iter()
            .filter(|r| paths::is_within(name, r))
            .max_by_key(|r| r.len())
            .map(String::as_str)
    }

    fn check_link(&self, name: &str, target: &str, raw: &str) -> Result<(), ArchiveError> {
        if self
            .spec
            .links_out
            .contains(&(name.to_string(), target.to_string()))
        {
            return Ok(());
        }
        let resolved = link_destination(name, target);
        let inside = self.root_of(name).is_some_and(|root| {
            // A link that is itself a root (a single saved symlink) may point beside it.
            (root != name && paths::is_within(&resolved, root))
                || self
                    .spec
                    .roots
                    .iter()
                    .any(|r| paths::is_within(&resolved, r))
        });
        if inside {
            Ok(())
        } else {
            Err(ArchiveError::Unsafe {
                entry: raw.to_string(),
                reason: format!("symlink to {target:?} points outside the restored tree"),
            })
        }
    }

    /// Checks that nothing is written through a link of this archive, makes the parent
    /// folders, and returns a fresh temporary path beside `dest`.
    fn prepare(
        &mut self,
        dest: &Path,
        name: &str,
        staged: &mut Staged,
    ) -> Result<PathBuf, ArchiveError> {
        let mut ancestor = name;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if self.links.contains(parent) {
                return Err(ArchiveError::Unsafe {
                    entry: name.to_string(),
                    reason: format!(
                        "it would be written through the symlink {parent:?} of the same archive"
                    ),
                });
            }
            ancestor = parent;
        }
        if self.links.contains(name) || self.files.contains_key(name) {
            return Err(ArchiveError::Unsafe {
                entry: name.to_string(),
                reason: "the archive holds this path twice".into(),
            });
        }
        let parent = dest.parent().ok_or_else(|| ArchiveError::Conflict {
            path: dest.display().to_string(),
            reason: "it has no parent folder".into(),
        })?;
        self.ensure_dir(parent, name, staged)?;
        // Nothing can be in the way inside a folder this restore made.
        let fresh = self.fresh_dirs.contains(parent);
        if let Some(meta) = (!fresh).then(|| fs::symlink_metadata(dest).ok()).flatten() {
            if meta.is_dir() {
                return Err(ArchiveError::Conflict {
                    path: dest.display().to_string(),
                    reason: "a folder is there and the cache holds a file; remove the folder first"
                        .into(),
                });
            }
        }
        if let Some(staged_parent) = self.staged_map.get(parent) {
            // Inside a folder staged under a temporary name: the file goes straight to its
            // name there, and the whole folder is renamed into place at commit.
            let file_name = dest.file_name().ok_or_else(|| ArchiveError::Conflict {
                path: dest.display().to_string(),
                reason: "it has no file name".into(),
            })?;
            return Ok(staged_parent.join(file_name));
        }
        self.counter += 1;
        let tmp = parent.join(format!("{}.{}", self.tag, self.counter));
        staged.renames.push((tmp.clone(), dest.to_path_buf()));
        Ok(tmp)
    }

    /// Makes `dir` and its missing parents, recording what it made.
    fn ensure_dir(
        &mut self,
        dir: &Path,
        name: &str,
        staged: &mut Staged,
    ) -> Result<(), ArchiveError> {
        if self.known_dirs.contains(dir) {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if self.known_dirs.contains(d) || self.staged_map.contains_key(d) {
                break;
            }
            match fs::metadata(d) {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(ArchiveError::Conflict {
                        path: d.display().to_string(),
                        reason: format!(
                            "a file is there and {name:?} needs a folder; remove the file first"
                        ),
                    });
                }
                Err(_) => missing.push(d.to_path_buf()),
            }
            cur = d.parent();
        }
        for d in missing.into_iter().rev() {
            if let Some(parent) = d.parent() {
                let staged_parent = self.staged_map.get(parent).cloned();
                let target = match (staged_parent, d.file_name()) {
                    (Some(sp), Some(n)) => Some(sp.join(n)),
                    // A new top folder: made under a temporary name beside its destination.
                    (None, Some(_)) if self.spec.stage_new_folders => {
                        self.counter += 1;
                        let tmp = parent.join(format!("{}.{}", self.tag, self.counter));
                        staged.staged_roots.push((tmp.clone(), d.clone()));
                        Some(tmp)
                    }
                    _ => None,
                };
                if let Some(target) = target {
                    fs::create_dir(&target).map_err(|source| ArchiveError::Io {
                        op: "create folder",
                        path: target.display().to_string(),
                        source,
                    })?;
                    self.staged_map.insert(d.clone(), target);
                    self.fresh_dirs.insert(d);
                    continue;
                }
            }
            match fs::create_dir(&d) {
                Ok(()) => {
                    staged.created_dirs.push(d.clone());
                    self.fresh_dirs.insert(d.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(ArchiveError::Io {
                        op: "create folder",
                        path: d.display().to_string(),
                        source,
                    });
                }
            }
            self.known_dirs.insert(d);
        }
        self.known_dirs.insert(dir.to_path_buf());
        Ok(())
    }
}

/// Files up to this size are written whole by the pool; larger ones are streamed.
const POOL_FILE_MAX: u64 = 256 * 1024;
/// Threads creating files. More than the cores: file creation mostly waits in the kernel.
const POOL_THREADS: usize = 4;
/// Files queued for the pool; with [`POOL_FILE_MAX`] this bounds its memory to 16 MiB.
const POOL_QUEUE: usize = 64;

struct Job {
    tmp: PathBuf,
    data: Vec<u8>,
    mode: u32,
    mtime: i64,
}

/// Threads that create files, so that restoring is not one syscall at a time: small files
/// are written whole by [`POOL_THREADS`] threads, larger ones streamed in chunks to one more.
struct WriterPool {
    tx: Option<std::sync::mpsc::SyncSender<Job>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    stream_tx: Option<std::sync::mpsc::SyncSender<Piece>>,
    /// Emptied chunk buffers, back from the streaming thread.
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    error: std::sync::Arc<std::sync::Mutex<Option<ArchiveError>>>,
}

/// What the streaming thread is told: a file begins, a chunk of it, it ends.
enum Piece {
    Begin { tmp: PathBuf, mode: u32, mtime: i64 },
    Data(Vec<u8>),
    End,
}

/// Chunks of a streamed file, and how many may wait for the streaming thread. Small, so the
/// chunks in flight stay in the CPU's cache: with 1 MiB chunks the kernel's copy of each one
/// into the page cache ran ten times slower on the 2-core benchmark machine.
const STREAM_CHUNK: usize = 128 * 1024;
const STREAM_QUEUE: usize = 4;

impl WriterPool {
    fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(POOL_QUEUE);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let error = std::sync::Arc::new(std::sync::Mutex::new(None));
        let mut handles: Vec<_> = (0..POOL_THREADS)
            .map(|_| {
                let rx = std::sync::Arc::clone(&rx);
                let error = std::sync::Arc::clone(&error);
                std::thread::spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        if let Err(e) = write_bytes(&job.tmp, &job.data, job.mode, job.mtime) {
                            record(&error, e);
                        }
                    }
                })
            })
            .collect();
        let (stream_tx, stream_rx) = std::sync::mpsc::sync_channel::<Piece>(STREAM_QUEUE);
        let (spare_tx, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(STREAM_QUEUE + 2);
        let stream_error = std::sync::Arc::clone(&error);
        handles.push(std::thread::spawn(move || {
            stream_files(stream_rx, spare_tx, &stream_error)
        }));
        Self {
            tx: Some(tx),
            handles,
            stream_tx: Some(stream_tx),
            spare,
            error,
        }
    }

    fn take_error(&self) -> Result<(), ArchiveError> {
        match self.error.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stopped() -> ArchiveError {
        ArchiveError::Io {
            op: "hand over",
            path: "a file to the writer threads".into(),
            source: std::io::Error::other("the writer threads stopped"),
        }
    }

    fn submit(&mut self, job: Job) -> Result<(), ArchiveError> {
        self.take_error()?;
        let sent = self.tx.as_ref().map(|tx| tx.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(Self::stopped()),
        }
    }

    fn send_piece(&self, piece: Piece) -> Result<(), ArchiveError> {
        match self.stream_tx.as_ref().map(|tx| tx.send(piece)) {
            Some(Ok(())) => Ok(()),
            _ => Err(Self::stopped()),
        }
    }

    /// Reads `data` to its end in chunks and hands them to the streaming thread, which
    /// writes them to `tmp`; returns the bytes read.
    fn stream<R: Read>(
        &mut self,
        tmp: &Path,
        data: &mut R,
        mode: u32,
        mtime: i64,
    ) -> Result<u64, ArchiveError> {
        self.take_error()?;
        self.send_piece(Piece::Begin {
            tmp: tmp.to_path_buf(),
            mode,
            mtime,
        })?;
        let mut total = 0u64;
        loop {
            let mut buf = self.spare.try_recv().unwrap_or_default();
            buf.resize(STREAM_CHUNK, 0);
            let filled = crate::transfer::read_full(data, &mut buf).map_err(corrupt)?;
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            total += filled as u64;
            self.send_piece(Piece::Data(buf))?;
            if filled < STREAM_CHUNK {
                break;
            }
        }
        self.send_piece(Piece::End)?;
        Ok(total)
    }

    /// Waits until every queued file is written, then starts fresh threads.
    fn drain(&mut self) -> Result<(), ArchiveError> {
        let old = std::mem::replace(self, WriterPool::new());
        old.finish()
    }

    /// Waits until every queued file is written; the first failure, if any.
    fn finish(mut self) -> Result<(), ArchiveError> {
        self.tx = None;
        self.stream_tx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        self.take_error()
    }
}

fn record(slot: &std::sync::Mutex<Option<ArchiveError>>, e: ArchiveError) {
    if let Ok(mut slot) = slot.lock() {
        slot.get_or_insert(e);
    }
}

/// The streaming thread: writes each file it is sent, chunk by chunk. After a failure the
/// rest of that file is skipped; the error waits in `error` for the reading thread.
fn stream_files(
    rx: std::sync::mpsc::Receiver<Piece>,
    spare: std::sync::mpsc::SyncSender<Vec<u8>>,
    error: &std::sync::Mutex<Option<ArchiveError>>,
) {
    let mut open: Option<(File, PathBuf, u32, i64)> = None;
    for piece in rx {
        match piece {
            Piece::Begin { tmp, mode, mtime } => match create_new(&tmp) {
                Ok(f) => open = Some((f, tmp, mode, mtime)),
                Err(e) => record(error, e),
            },
            Piece::Data(buf) => {
                if let Some((f, tmp, ..)) = &mut open {
                    if let Err(source) = f.write_all(&buf) {
                        record(error, io_error("write", tmp)(source));
                        open = None;
                    }
                }
                let _ = spare.try_send(buf);
            }
            Piece::End => {
                if let Some((f, tmp, mode, mtime)) = open.take() {
                    if let Err(e) = finish_file(&f, &tmp, mode, mtime) {
                        record(error, e);
                    }
                }
            }
        }
    }
}

/// Renames staged files into place, in parallel; where one destination appears more than
/// once (layers that replace a file) only the last one is moved and the others are removed.
fn rename_all(renames: &[(PathBuf, PathBuf)]) -> Result<(), ArchiveError> {
    let mut last: HashMap<&Path, usize> = HashMap::with_capacity(renames.len());
    for (i, (_, dest)) in renames.iter().enumerate() {
        last.insert(dest.as_path(), i);
    }
    let work: Vec<&(PathBuf, PathBuf)> = renames
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            if last.get(r.1.as_path()) == Some(&i) {
                Some(r)
            } else {
                let _ = fs::remove_file(&r.0);
                None
            }
        })
        .collect();
    let chunk = work.len().div_ceil(POOL_THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    for (tmp, dest) in part {
                        fs::rename(tmp, dest).map_err(|source| ArchiveError::Io {
                            op: "move into place",
                            path: dest.display().to_string(),
                            source,
                        })?;
                    }
                    Ok::<(), ArchiveError>(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ArchiveError::Corrupt {
                        detail: "a rename thread panicked".into(),
                    })
                })
            })
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    })
}

fn write_bytes(tmp: &Path, data: &[u8], mode: u32, mtime: i64) -> Result<(), ArchiveError> {
    let mut f = create_new(tmp)?;
    f.write_all(data).map_err(io_error("write", tmp))?;
    finish_file(&f, tmp, mode, mtime)
}

/// Creates `tmp`, never an existing file, readable by its owner only until [`finish_file`].
fn create_new(tmp: &Path) -> Result<File, ArchiveError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io_error("create", tmp))
}

/// Sets a written file's mode and mtime.
fn finish_file(f: &File, tmp: &Path, mode: u32, mtime: i64) -> Result<(), ArchiveError> {
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_error("set the mode of", tmp))?;
    filetime::set_file_handle_times(f, None, Some(FileTime::from_unix_time(mtime, 0)))
        .map_err(io_error("set the time of", tmp))
}

/// Turns a failure to `op` the temporary file `tmp` into an [`ArchiveError`].
fn io_error<'a>(
    op: &'static str,
    tmp: &'a Path,
) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: tmp.display().to_string(),
        source,
    }
}

/// Stages a downloaded archive (see [`unpack`]) and checks its size and SHA-256 against the
/// manifest's record; on a mismatch or any other failure nothing stays staged.
pub fn unpack_checked(
    spec: &UnpackSpec<'_>,
    format: Format,
    mut reader: DownloadReader,
    expected: &DataRef,
) -> Result<Staged, ArchiveError> {
    let staged = {
        let input = super::decompressor(format, &mut reader).map_err(corrupt)?;
        unpack(spec, input)?
    };
    let (size, sha256) = match reader.finish() {
        Ok(v) => v,
        Err(e) => {
            staged.rollback();
            return Err(corrupt(e));
        }
    };
    if size != expected.size || sha256 != expected.sha256 {
        staged.rollback();
        return Err(ArchiveError::Digest {
            expected: expected.sha256.clone(),
            actual: sha256,
            expected_size: expected.size,
            actual_size: size,
        });
    }
    Ok(staged)
}

/// Where a symlink at `name` with `target` points, as a normalised name.
pub(crate) fn link_destination(name: &str, target: &str) -> String {
    if target.starts_with('/') {
        return paths::normalize(target);
    }
    let parent = match name.rsplit_once('/') {
        Some((p, _)) => p.to_string(),
        None if name.starts_with('/') => "/".into(),
        None => ".".into(),
    };
    paths::normalize(&format!("{parent}/{target}"))
}
