//! The writer threads: files are created by several threads, so that a restore is not one
//! system call at a time. Small files are written whole by a pool; larger ones are streamed
//! in chunks to one more thread, so decompression goes on while the kernel copies.
//!
//! Every file is created new (`O_EXCL`, never through an existing name or link), readable by
//! its owner only until its mode is set on the open handle.

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
/// Files queued for each pool thread; with [`POOL_FILE_MAX`] this bounds the pool's memory
/// to 16 MiB.
const POOL_QUEUE: usize = 16;
/// Chunks of a streamed file, and how many may wait for the streaming thread. Small, so the
/// chunks in flight stay in the CPU's cache: with 1 MiB chunks the kernel's copy of each one
/// into the page cache ran ten times slower on the 2-core benchmark machine.
const STREAM_CHUNK: usize = 128 * 1024;
const STREAM_QUEUE: usize = 4;

/// A small file to write whole.
pub(crate) struct Job {
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub mode: u32,
    pub mtime: i64,
}

/// What the streaming thread is told: a file begins, a chunk of it, it ends.
enum Piece {
    Begin {
        path: PathBuf,
        mode: u32,
        mtime: i64,
    },
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
    pool: Vec<SyncSender<Job>>,
    stream_tx: Option<SyncSender<Piece>>,
    handles: Vec<std::thread::JoinHandle<()>>,
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
            let (tx, rx) = sync_channel::<Job>(POOL_QUEUE);
            let error = Arc::clone(&error);
            pool.push(tx);
            handles.push(std::thread::spawn(move || {
                for job in rx {
                    if let Err(e) = write_bytes(&job.path, &job.data, job.mode, job.mtime) {
                        record(&error, e);
                    }
                }
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
        match self.pool.get(i).map(|tx| tx.send(job)) {
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
    /// which writes them to `path`. `data` failing or ending early is `read_error`'s to name.
    pub fn stream(
        &mut self,
        path: &Path,
        data: &mut dyn Read,
        size: u64,
        mode: u32,
        mtime: i64,
        read_error: &dyn Fn(std::io::Error) -> ArchiveError,
    ) -> Result<(), ArchiveError> {
        self.take_error()?;
        self.send_piece(Piece::Begin {
            path: path.to_path_buf(),
            mode,
            mtime,
        })?;
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
    /// or a file a later layer replaces, which must exist first.
    pub fn drain(&mut self) -> Result<(), ArchiveError> {
        let old = std::mem::replace(self, Writers::new());
        old.finish()
    }

    /// Waits until every queued file is written; the first failure, if any.
    pub fn finish(mut self) -> Result<(), ArchiveError> {
        self.pool.clear();
        self.stream_tx = None;
        let mut panicked = false;
        for h in self.handles.drain(..) {
            panicked |= h.join().is_err();
        }
        self.take_error()?;
        if panicked {
            return Err(Self::stopped());
        }
        Ok(())
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

/// The streaming thread: writes each file it is sent, chunk by chunk. After a failure the
/// rest of that file is skipped; the error waits in `error` for the reading thread.
fn stream_files(
    rx: Receiver<Piece>,
    spare: SyncSender<Vec<u8>>,
    error: &Mutex<Option<ArchiveError>>,
) {
    let mut open: Option<(File, PathBuf, u32, i64)> = None;
    for piece in rx {
        match piece {
            Piece::Begin { path, mode, mtime } => match create_new(&path) {
                Ok(f) => open = Some((f, path, mode, mtime)),
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
                if let Some((f, path, mode, mtime)) = open.take() {
                    if let Err(e) = finish_file(&f, &path, mode, mtime) {
                        record(error, e);
                    }
                }
            }
        }
    }
}

fn write_bytes(path: &Path, data: &[u8], mode: u32, mtime: i64) -> Result<(), ArchiveError> {
    let mut f = create_new(path)?;
    f.write_all(data).map_err(io_error("write", path))?;
    finish_file(&f, path, mode, mtime)
}

/// Creates `path`, never an existing file or link, readable by its owner only until
/// [`finish_file`].
fn create_new(path: &Path) -> Result<File, ArchiveError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("create", path))
}

/// Sets a written file's mode and mtime on its handle.
fn finish_file(f: &File, path: &Path, mode: u32, mtime: i64) -> Result<(), ArchiveError> {
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_error("set the mode of", path))?;
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
