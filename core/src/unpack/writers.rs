//! The writer threads: files are created by several threads, so that a restore is not one
//! system call at a time. Small files are written whole by a pool; larger ones are streamed
//! in chunks to one more thread, so decompression goes on while the kernel copies.
//!
//! Every file is created new (`O_EXCL`, never through an existing name or link), with its
//! final mode when the umask keeps it whole, else readable by its owner only until its mode
//! is set on the open handle.

use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use filetime::FileTime;

use crate::archive::ArchiveError;

/// Files up to this size are written whole by the pool; larger ones are streamed.
pub(crate) const POOL_FILE_MAX: u64 = 256 * 1024;
/// Threads creating files. More than the cores: file creation mostly waits in the kernel.
const POOL_THREADS: usize = 4;
/// Bytes of small files queued for the pool, all threads together. Deep enough that the
/// reader runs ahead into other folders while one thread works through a large folder (a
/// queue of 16 files per thread left threads idle and cost a `node_modules` restore 5-10%);
/// 4 to 32 MiB measured alike.
const POOL_BYTES: u64 = 16 << 20;
/// Chunks of a streamed file, and how many may wait for the streaming thread. Small, so the
/// chunks in flight stay in the CPU's cache: with 1 MiB chunks the kernel's copy of each one
/// into the page cache ran ten times slower on the 2-core benchmark machine.
const STREAM_CHUNK: usize = 128 * 1024;
const STREAM_QUEUE: usize = 4;

/// A small file to write whole.
pub(crate) struct Job {
    pub path: PathBuf,
    pub data: bytes::Bytes,
    pub mode: u32,
    pub mtime: i64,
    /// The number to record what the file system made of the file under, if any.
    pub record: Option<u32>,
}

/// Files written, by the number the lander gave each, with what `fstat` said of each once its
/// mode and time were set: a chunked restore's footprint takes them instead of looking every
/// file up again.
pub(crate) type Written = Vec<(u32, super::Stat)>;

/// The pool's queue limit in bytes: the reader takes a file's size before queuing it, and
/// the size comes back when the queued file is dropped (written, or thrown away by a thread
/// that stopped), so the reader can never wait on bytes nobody will return.
struct Budget {
    left: Mutex<u64>,
    returned: std::sync::Condvar,
}

impl Budget {
    fn take(self: &Arc<Self>, bytes: u64) -> Lease {
        let bytes = bytes.clamp(1, POOL_BYTES);
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        while *left < bytes {
            left = self.returned.wait(left).unwrap_or_else(|e| e.into_inner());
        }
        *left -= bytes;
        Lease {
            budget: Arc::clone(self),
            bytes,
        }
    }
}

/// Bytes taken from the [`Budget`], returned on drop.
struct Lease {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut left = self.budget.left.lock().unwrap_or_else(|e| e.into_inner());
        *left += self.bytes;
        self.budget.returned.notify_one();
    }
}

/// A streamed file: where it goes, its mode and time, and (see [`Job::record`]) its number.
pub(crate) struct Head {
    pub path: PathBuf,
    pub mode: u32,
    pub mtime: i64,
    pub record: Option<u32>,
}

/// What the streaming thread is told: a file begins, a chunk of it, it ends.
enum Piece {
    Begin(Head),
    Data(Vec<u8>),
    End,
}

type ErrorSlot = Arc<Mutex<Option<ArchiveError>>>;

/// The writer threads and their queues. Each pool thread has a queue of its own, and every
/// file of one folder goes to the same thread: creating a file holds its folder's lock in
/// the kernel, and right after many deletions the kernel searches for a free inode under
/// that lock, so threads sharing a folder only spin on each other (the benchmark's
/// after-deletion lane showed a quarter of the restore spent so).
pub(crate) struct Writers {
    pool: Vec<std::sync::mpsc::Sender<(Job, Lease)>>,
    budget: Arc<Budget>,
    stream_tx: Option<SyncSender<Piece>>,
    handles: Vec<std::thread::JoinHandle<Written>>,
    /// Emptied chunk buffers, back from the streaming thread.
    spare: Receiver<Vec<u8>>,
    error: ErrorSlot,
}

impl Writers {
    pub fn new() -> Self {
        let error: ErrorSlot = Arc::new(Mutex::new(None));
        let mut pool = Vec::with_capacity(POOL_THREADS);
        let mut handles = Vec::with_capacity(POOL_THREADS + 1);
        for _ in 0..POOL_THREADS {
            let (tx, rx) = std::sync::mpsc::channel::<(Job, Lease)>();
            let error = Arc::clone(&error);
            pool.push(tx);
            handles.push(std::thread::spawn(move || {
                let mut written = Written::new();
                for (job, _lease) in rx {
                    match write_bytes(&job.path, &job.data, job.mode, job.mtime) {
                        Ok(f) => note(&mut written, job.record, &f),
                        Err(e) => record(&error, e),
                    }
                }
                written
            }));
        }
        let (stream_tx, stream_rx) = sync_channel::<Piece>(STREAM_QUEUE);
        let (spare_tx, spare) = sync_channel::<Vec<u8>>(STREAM_QUEUE + 2);
        let stream_error = Arc::clone(&error);
        handles.push(std::thread::spawn(move || {
            stream_files(stream_rx, spare_tx, &stream_error)
        }));
        Self {
            pool,
            budget: Arc::new(Budget {
                left: Mutex::new(POOL_BYTES),
                returned: std::sync::Condvar::new(),
            }),
            stream_tx: Some(stream_tx),
            handles,
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
        ArchiveError::Internal {
            what: "the threads writing files stopped".into(),
        }
    }

    /// Queues a small file, on the thread that writes its folder.
    pub fn submit(&mut self, job: Job) -> Result<(), ArchiveError> {
        self.take_error()?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        job.path.parent().hash(&mut h);
        let i = (h.finish() as usize) % self.pool.len().max(1);
        let lease = self.budget.take(job.data.len() as u64);
        match self.pool.get(i).map(|tx| tx.send((job, lease))) {
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

    /// Reads exactly `size` bytes of `data` in chunks and hands them to the streaming thread,
    /// which writes them as `head` says. `data` failing or ending early is `read_error`'s to
    /// name.
    pub fn stream(
        &mut self,
        head: Head,
        data: &mut dyn Read,
        size: u64,
        read_error: &dyn Fn(std::io::Error) -> ArchiveError,
    ) -> Result<(), ArchiveError> {
        self.take_error()?;
        self.send_piece(Piece::Begin(head))?;
        let mut left = size;
        while left > 0 {
            let want = STREAM_CHUNK.min(usize::try_from(left).unwrap_or(STREAM_CHUNK));
            let mut buf = self.spare.try_recv().unwrap_or_default();
            buf.resize(want, 0);
            let filled = crate::transfer::read_full(data, &mut buf).map_err(read_error)?;
            if filled < want {
                return Err(read_error(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the data ended inside a file",
                )));
            }
            left -= filled as u64;
            self.send_piece(Piece::Data(buf))?;
        }
        self.send_piece(Piece::End)
    }

    /// Waits until every queued file is written, then starts fresh threads: for a hard link,
    /// or a file a later layer replaces, which must exist first. Gives what was recorded of
    /// the files written so far.
    pub fn drain(&mut self) -> Result<Written, ArchiveError> {
        let old = std::mem::replace(self, Writers::new());
        old.finish()
    }

    /// Waits until every queued file is written; the first failure, if any, else what was
    /// recorded of the files written.
    pub fn finish(mut self) -> Result<Written, ArchiveError> {
        self.pool.clear();
        self.stream_tx = None;
        let mut panicked = false;
        let mut written = Written::new();
        for h in self.handles.drain(..) {
            match h.join() {
                Ok(w) => written.extend(w),
                Err(_) => panicked = true,
            }
        }
        self.take_error()?;
        if panicked {
            return Err(Self::stopped());
        }
        Ok(written)
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        // Dropped without `finish` (an error elsewhere): still wait, so that a rollback
        // never races a writer creating a file it is about to remove.
        self.pool.clear();
        self.stream_tx = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn record(slot: &Mutex<Option<ArchiveError>>, e: ArchiveError) {
    if let Ok(mut slot) = slot.lock() {
        slot.get_or_insert(e);
    }
}

/// Records what the file system made of a file just finished, on its own handle: no lookup
/// by path. A file it cannot say is left out (the footprint looks it up instead).
fn note(written: &mut Written, slot: Option<u32>, f: &File) {
    if let (Some(slot), Ok(s)) = (slot, rustix::fs::fstat(f)) {
        written.push((slot, super::Stat::from(&s)));
    }
}

/// The streaming thread: writes each file it is sent, chunk by chunk. After a failure the
/// rest of that file is skipped; the error waits in `error` for the reading thread.
fn stream_files(
    rx: Receiver<Piece>,
    spare: SyncSender<Vec<u8>>,
    error: &Mutex<Option<ArchiveError>>,
) -> Written {
    let mut written = Written::new();
    let mut open: Option<(File, PathBuf, u32, i64, Option<u32>)> = None;
    for piece in rx {
        match piece {
            Piece::Begin(Head {
                path,
                mode,
                mtime,
                record: name,
            }) => match create_new(&path, mode) {
                Ok(f) => open = Some((f, path, mode, mtime, name)),
                Err(e) => record(error, e),
            },
            Piece::Data(buf) => {
                if let Some((f, path, ..)) = &mut open {
                    if let Err(source) = f.write_all(&buf) {
                        record(error, io_error("write", path)(source));
                        open = None;
                    }
                }
                let _ = spare.try_send(buf);
            }
            Piece::End => {
                if let Some((f, path, mode, mtime, name)) = open.take() {
                    match finish_file(&f, &path, mode, mtime) {
                        Ok(()) => note(&mut written, name, &f),
                        Err(e) => record(error, e),
                    }
                }
            }
        }
    }
    written
}

/// Writes a new file at `path`; its handle, once its mode and time are set.
fn write_bytes(path: &Path, data: &[u8], mode: u32, mtime: i64) -> Result<File, ArchiveError> {
    let mut f = create_new(path, mode)?;
    f.write_all(data).map_err(io_error("write", path))?;
    finish_file(&f, path, mode, mtime)?;
    Ok(f)
}

/// Creates `path`, never an existing file or link: with its final mode when the umask
/// leaves that mode whole (most files: one `fchmod` less each), else readable by its owner
/// only until [`finish_file`] sets the mode.
fn create_new(path: &Path, mode: u32) -> Result<File, ArchiveError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if created_whole(mode) { mode } else { 0o600 })
        .open(path)
        .map_err(io_error("create", path))
}

/// Whether a file created with `mode` gets exactly that mode: no set-id or sticky bit (set
/// only once the content is written) and nothing the process's umask takes away.
fn created_whole(mode: u32) -> bool {
    mode & !0o777 == 0 && umask().is_some_and(|u| mode & u == 0)
}

/// The process's umask, read once from `/proc/self/status` (Linux 4.7 and later) without
/// changing it; `None` where that cannot be read, and then every mode is set explicitly.
fn umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Sets a written file's mode (unless it was created with it) and mtime on its handle.
fn finish_file(f: &File, path: &Path, mode: u32, mtime: i64) -> Result<(), ArchiveError> {
    if !created_whole(mode) {
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io_error("set the mode of", path))?;
    }
    filetime::set_file_handle_times(f, None, Some(FileTime::from_unix_time(mtime, 0)))
        .map_err(io_error("set the time of", path))
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn every_mode_is_restored_exactly_whether_the_umask_keeps_it_or_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 0o022 is the usual umask: 0o666 and 0o777 lose bits to it, the sticky bit is set
        // after the content, the others are created whole.
        for (i, mode) in [0o644, 0o666, 0o755, 0o777, 0o400, 0o000, 0o1755]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("f{i}"));
            write_bytes(&path, b"content", mode, 1_000_000_000 + i as i64).expect("write");
            let m = std::fs::symlink_metadata(&path).expect("meta");
            assert_eq!(m.mode() & 0o7777, mode, "mode {mode:o}");
            assert_eq!(m.mtime(), 1_000_000_000 + i as i64, "mtime of {mode:o}");
            assert_eq!(m.len(), 7);
        }
        assert!(
            umask().is_some(),
            "the umask is readable here, so the fast path is the one tested"
        );
    }
}
