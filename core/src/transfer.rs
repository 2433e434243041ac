//! Streaming between blocking producers and consumers (tar, compression, hashing) and the
//! store, through bounded channels: no archive is held whole in memory or in a temporary file.
//!
//! On a store that hands out local files the blocking side reads and writes the file itself
//! (written under a temporary name and renamed, as the store would), which saves a thread hop
//! per chunk; every other store goes through its streamed writer and ranged reads.

use std::fs::File;
use std::io::{BufWriter as StdBufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::manifest::DataRef;
use crate::store::{BackendError, Progress, Store, StoreError};
use std::sync::Arc;

/// Size of the chunks handed between threads, and of local file buffers.
const CHUNK: usize = 1024 * 1024;
/// Chunks in flight between the threads.
const CHANNEL_DEPTH: usize = 8;
/// Chunks an upload holds between its producer and the store, beside the part being filled
/// and the parts in flight: the store's parts are the buffer that matters.
const UPLOAD_QUEUE: usize = 2;
/// Range size and parallelism of downloads from remote stores. A range is held whole until
/// the last of it is unpacked, so they bound a download's memory: 16 MiB ranges took a
/// restore of `target/` through SeaweedFS to 105 MiB, 8 MiB ones to 74.
const RANGE_SIZE: u64 = 8 * 1024 * 1024;
const DOWNLOAD_CONCURRENCY: usize = 4;

/// A failed transfer: the store's failure or the producer's/consumer's.
#[derive(Debug, thiserror::Error)]
pub enum TransferError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Local(E),
    /// The thread packing or unpacking stopped without an answer (it panicked): a bug.
    #[error("ferry failed internally: {0}; please report this")]
    Internal(&'static str),
}

/// Counts, and unless told not to hashes, everything written through it.
struct Hashing<W> {
    inner: W,
    hasher: Option<Sha256>,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        if let Some(h) = &mut self.hasher {
            h.update(&data[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Hashing<W> {
    fn new(inner: W, hash: Hash) -> Self {
        Self {
            inner,
            hasher: matches!(hash, Hash::Sha256).then(Sha256::new),
            size: 0,
        }
    }

    /// The writer, the bytes written and their SHA-256 (empty when not hashed).
    fn finish(mut self) -> std::io::Result<(W, u64, String)> {
        self.inner.flush()?;
        let sha256 = self
            .hasher
            .map(|h| format!("{:x}", h.finalize()))
            .unwrap_or_default();
        Ok((self.inner, self.size, sha256))
    }
}

/// Whether an upload hashes what it writes.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    /// For objects whose content is checked otherwise (a pack's blocks name their chunks).
    None,
}

/// Streams what `produce` writes into a new object at `rel`, hashing it on the way.
///
/// `produce` runs on a blocking thread. If it fails, or the upload fails, nothing is left
/// at `rel` (multipart uploads are aborted, local temporary files removed).
pub async fn upload<T, E, F>(
    store: &Store,
    rel: &str,
    produce: F,
) -> Result<(T, DataRef), TransferError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(&mut dyn Write) -> Result<T, E> + Send + 'static,
{
    upload_with(store, rel, Hash::Sha256, produce).await
}

/// As [`upload`], without the SHA-256 (a pack, whose chunks carry their own hashes: hashing
/// it was 6% of a cold save's CPU). Returns the bytes written.
pub async fn upload_unhashed<T, E, F>(
    store: &Store,
    rel: &str,
    produce: F,
) -> Result<(T, u64), TransferError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(&mut dyn Write) -> Result<T, E> + Send + 'static,
{
    let (out, data) = upload_with(store, rel, Hash::None, produce).await?;
    Ok((out, data.size))
}

async fn upload_with<T, E, F>(
    store: &Store,
    rel: &str,
    hash: Hash,
    produce: F,
) -> Result<(T, DataRef), TransferError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(&mut dyn Write) -> Result<T, E> + Send + 'static,
{
    if let Some(path) = store.local_path(rel) {
        return upload_local(store, rel, path, hash, produce).await;
    }
    let (tx, mut rx) = mpsc::channel::<Bytes>(UPLOAD_QUEUE);
    let producer = tokio::task::spawn_blocking(move || {
        let mut w = Hashing::new(
            ChannelSink {
                tx,
                buf: piece_buffer(),
            },
            hash,
        );
        let out = produce(&mut w)?;
        // The sink holds the channel's sender: it must go here, or the uploader below waits
        // for another chunk forever.
        let finished = w.finish().map(|(sink, size, sha256)| {
            drop(sink);
            ((), size, sha256)
        });
        Ok::<_, E>((out, finished))
    });
    let mut writer = match store.writer(rel).await {
        Ok(w) => w,
        Err(e) => {
            // The producer stops at its next write.
            drop(rx);
            let _ = producer.await;
            return Err(e.into());
        }
    };
    let progress = store.progress();
    let mut upload_err = None;
    while let Some(chunk) = rx.recv().await {
        let n = chunk.len() as u64;
        if let Err(e) = writer.write(chunk).await {
            upload_err = Some(e);
            break;
        }
        if let Some(p) = &progress {
            p.advance(n);
        }
    }
    // Dropping the receiver makes a still-running producer fail fast on its next write.
    drop(rx);
    let Ok(produced) = producer.await else {
        writer.abort().await;
        return Err(TransferError::Internal(
            "the thread packing the data stopped",
        ));
    };
    if let Some(e) = upload_err {
        writer.abort().await;
        return Err(store.request_error("upload", rel, e).into());
    }
    let (out, size, sha256) = match produced {
        Ok((out, Ok((_, size, sha256)))) => (out, size, sha256),
        Ok((_, Err(e))) => {
            writer.abort().await;
            return Err(store
                .request_error("upload", rel, BackendError::other(e))
                .into());
        }
        Err(e) => {
            writer.abort().await;
            return Err(TransferError::Local(e));
        }
    };
    if let Err(e) = writer.finish().await {
        return Err(store.request_error("upload", rel, e).into());
    }
    Ok((
        out,
        DataRef {
            path: rel.to_string(),
            size,
            sha256,
        },
    ))
}

async fn upload_local<T, E, F>(
    store: &Store,
    rel: &str,
    path: PathBuf,
    hash: Hash,
    produce: F,
) -> Result<(T, DataRef), TransferError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(&mut dyn Write) -> Result<T, E> + Send + 'static,
{
    let tmp = path.with_file_name(format!(
        ".{}.ferry-upload-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object"),
        crate::manifest::new_id()
    ));
    let progress = store.progress();
    let result = tokio::task::spawn_blocking(move || {
        let io = |e: std::io::Error| Err(TransferError::<E>::Store(local_write_error(&path, e)));
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                return io(e);
            }
        }
        let file = match File::create(&tmp) {
            Ok(f) => f,
            Err(e) => return io(e),
        };
        // Compressed output comes in pieces of about 128 KiB, which pass this buffer by.
        let counted = Counting {
            inner: file,
            progress,
        };
        let mut w = Hashing::new(StdBufWriter::with_capacity(64 * 1024, counted), hash);
        let out = match produce(&mut w) {
            Ok(out) => out,
            Err(e) => {
                drop(w);
                let _ = std::fs::remove_file(&tmp);
                return Err(TransferError::Local(e));
            }
        };
        let finished = w
            .finish()
            .and_then(|(_, size, sha)| std::fs::rename(&tmp, &path).map(|()| (size, sha)));
        match finished {
            Ok((size, sha256)) => Ok((out, size, sha256)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                io(e)
            }
        }
    })
    .await;
    let result = match result {
        Ok(r) => r,
        Err(_) => {
            return Err(TransferError::Internal(
                "the thread packing the data stopped",
            ));
        }
    };
    // The blocking side could not name the store; put its URL into the error.
    let (out, size, sha256) = result.map_err(|e| match e {
        TransferError::Store(StoreError::Request { source, .. }) => {
            TransferError::Store(store.request_error("write", rel, *source))
        }
        other => other,
    })?;
    Ok((
        out,
        DataRef {
            path: rel.to_string(),
            size,
            sha256,
        },
    ))
}

/// Reports the bytes written through it.
struct Counting<W> {
    inner: W,
    progress: Option<Arc<dyn Progress>>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        if let Some(p) = &self.progress {
            p.advance(n as u64);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A failed write of a local store's file, before the store's URL is known.
fn local_write_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Request {
        op: "write",
        path: path.display().to_string(),
        url: String::new(),
        hint: "check that the store folder is writable and has space",
        source: Box::new(BackendError::other(e)),
    }
}

/// Reads until `buf` is full or the input ends; the bytes read (fewer than `buf.len()` only
/// at the end).
pub(crate) fn read_full<R: Read + ?Sized>(input: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Buffers of [`CHUNK`] bytes for upload pieces, handed back when the store is done with a
/// piece. One fresh buffer per MiB uploaded, freed on the store's threads, left glibc's
/// arenas holding freed memory: a format-2 save of `target/` through SeaweedFS peaked at
/// 82–109 MiB of RSS for 66 MiB of live buffers.
static PIECES: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// Buffers kept for reuse at most (more are never live at once).
const PIECES_KEPT: usize = 64;

fn piece_buffer() -> Vec<u8> {
    PIECES
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .unwrap_or_else(|| Vec::with_capacity(CHUNK))
}

/// A piece's bytes; its buffer goes back to [`PIECES`] when the last reference drops.
struct Piece(Vec<u8>);

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        if let Ok(mut kept) = PIECES.lock() {
            if kept.len() < PIECES_KEPT {
                kept.push(buf);
            }
        }
    }
}

/// Hands written bytes to the uploader in chunks of [`CHUNK`].
struct ChannelSink {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChannelSink {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from_owner(Piece(std::mem::replace(&mut self.buf, piece_buffer())));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChannelSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The error of a data object longer than its manifest records: never read past that.
fn too_long(limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the data object holds more than the {limit} bytes its manifest records"),
    )
}

enum Source {
    /// Pieces of a remote object, hashed here as they arrive.
    Remote {
        rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
        current: Bytes,
        hasher: Sha256,
        size: u64,
        limit: u64,
    },
    /// Chunks of a local file, read and hashed by a thread of its own; emptied buffers go
    /// back to it through `spare`.
    Local {
        rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
        spare: std::sync::mpsc::SyncSender<Vec<u8>>,
        current: Vec<u8>,
        pos: usize,
        reader: Option<std::thread::JoinHandle<std::io::Result<(u64, String)>>>,
    },
}

/// What a download consumer sees: the object's bytes, hashed as they are read. It is a
/// [`BufRead`](std::io::BufRead), so a decompressor can read the chunks in place.
pub struct DownloadReader {
    source: Source,
}

impl DownloadReader {
    fn remote(rx: mpsc::Receiver<Result<Bytes, std::io::Error>>, limit: u64) -> Self {
        Self {
            source: Source::Remote {
                rx,
                current: Bytes::new(),
                hasher: Sha256::new(),
                size: 0,
                limit,
            },
        }
    }

    /// Reads `file` on a thread of its own, hashing it there: reading and SHA-256 then run
    /// beside decompression and unpacking instead of before each piece of it. More than
    /// `limit` bytes is an error (a file that never ends, such as a device, included).
    fn local(file: File, limit: u64, progress: Option<Arc<dyn Progress>>) -> Self {
        let mut file = file.take(limit.saturating_add(1));
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_DEPTH);
        let (spare, spare_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 2);
        let reader = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            loop {
                let mut buf = spare_rx.try_recv().unwrap_or_default();
                buf.resize(CHUNK, 0);
                let filled = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let kind = e.kind();
                        let _ = tx.send(Err(e));
                        return Err(std::io::Error::from(kind));
                    }
                };
                if filled == 0 {
                    return Ok((size, format!("{:x}", hasher.finalize())));
                }
                if size + filled as u64 > limit {
                    let _ = tx.send(Err(too_long(limit)));
                    return Err(too_long(limit));
                }
                buf.truncate(filled);
                hasher.update(&buf);
                size += filled as u64;
                if let Some(p) = &progress {
                    p.advance(filled as u64);
                }
                if tx.send(Ok(buf)).is_err() {
                    // The consumer stopped early; it reports why.
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "the download was abandoned",
                    ));
                }
            }
        });
        Self {
            source: Source::Local {
                rx,
                spare,
                current: Vec::new(),
                pos: 0,
                reader: Some(reader),
            },
        }
    }

    /// Reads to the end and returns the size and SHA-256 of everything read.
    pub fn finish(mut self) -> std::io::Result<(u64, String)> {
        use std::io::BufRead;
        loop {
            let n = self.fill_buf()?.len();
            if n == 0 {
                break;
            }
            self.consume(n);
        }
        match self.source {
            Source::Remote { hasher, size, .. } => Ok((size, format!("{:x}", hasher.finalize()))),
            Source::Local { mut reader, .. } => match reader.take().map(|r| r.join()) {
                Some(Ok(result)) => result,
                _ => Err(std::io::Error::other("the file reader stopped")),
            },
        }
    }
}

impl std::io::BufRead for DownloadReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        match &mut self.source {
            Source::Remote {
                rx,
                current,
                hasher,
                size,
                limit,
            } => {
                while current.is_empty() {
                    match rx.blocking_recv() {
                        Some(Ok(b)) => {
                            if *size + b.len() as u64 > *limit {
                                return Err(too_long(*limit));
                            }
                            hasher.update(&b);
                            *size += b.len() as u64;
                            *current = b;
                        }
                        Some(Err(e)) => return Err(e),
                        None => break,
                    }
                }
                Ok(current)
            }
            Source::Local {
                rx,
                spare,
                current,
                pos,
                ..
            } => {
                while *pos >= current.len() {
                    match rx.recv() {
                        Ok(Ok(next)) => {
                            let used = std::mem::replace(current, next);
                            *pos = 0;
                            if used.capacity() > 0 {
                                let _ = spare.try_send(used);
                            }
                        }
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Ok(&[]),
                    }
                }
                Ok(&current[*pos..])
            }
        }
    }

    fn consume(&mut self, n: usize) {
        match &mut self.source {
            Source::Remote { current, .. } => {
                let _ = current.split_to(n.min(current.len()));
            }
            Source::Local { pos, .. } => *pos += n,
        }
    }
}

impl Read for DownloadReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::BufRead;
        let available = self.fill_buf()?;
        let n = out.len().min(available.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Streams the object at `rel` (of `size` bytes) into `consume`, which runs on a blocking
/// thread. Large objects on remote stores are fetched as ranges in parallel, in order. The
/// reader never yields more than `size` bytes: more is an error, so an object that never ends
/// cannot hang a restore.
pub async fn download<T, E, F>(
    store: &Store,
    rel: &str,
    size: u64,
    consume: F,
) -> Result<T, TransferError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(DownloadReader) -> Result<T, E> + Send + 'static,
{
    let progress = store.progress();
    if let Some(p) = &progress {
        p.expect(size);
    }
    if let Some(path) = store.local_path(rel) {
        let file = open_local(store, rel, &path)?;
        return match tokio::task::spawn_blocking(move || {
            consume(DownloadReader::local(file, size, progress))
        })
        .await
        {
            Ok(r) => r.map_err(TransferError::Local),
            Err(_) => Err(TransferError::Internal(
                "the thread reading the data stopped",
            )),
        };
    }
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let consumer = tokio::task::spawn_blocking(move || consume(DownloadReader::remote(rx, size)));
    let caps = store.capabilities();
    let ranged = caps.ranged_get && caps.remote && size > 2 * RANGE_SIZE;
    let mut stream: futures::stream::BoxStream<'_, Result<Bytes, StoreError>> = if ranged {
        let ranges: Vec<_> = (0..size)
            .step_by(RANGE_SIZE as usize)
            .map(|start| start..(start + RANGE_SIZE).min(size))
            .collect();
        futures::stream::iter(ranges)
            .map(move |r| store.get_range(rel, r))
            .buffered(DOWNLOAD_CONCURRENCY)
            .boxed()
    } else {
        match store.get_stream(rel).await {
            Ok(s) => s
                .map_err(move |e| store.request_error("download", rel, e))
                .boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    };
    let mut store_err = None;
    'pieces: loop {
        match stream.try_next().await {
            Ok(Some(mut chunk)) => {
                // Ranges are large; handing them over in small pieces keeps the queue's memory
                // bounded by CHANNEL_DEPTH pieces rather than CHANNEL_DEPTH ranges.
                while !chunk.is_empty() {
                    let piece = chunk.split_to(chunk.len().min(CHUNK));
                    let n = piece.len() as u64;
                    if tx.send(Ok(piece)).await.is_err() {
                        break 'pieces;
                    }
                    if let Some(p) = &progress {
                        p.advance(n);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx
                    .send(Err(std::io::Error::other(format!(
                        "download of {rel} failed: {e}"
                    ))))
                    .await;
                store_err = Some(e);
                break;
            }
        }
    }
    drop(stream);
    drop(tx);
    let out = match consumer.await {
        Ok(out) => out,
        Err(_) => {
            return Err(TransferError::Internal(
                "the thread reading the data stopped",
            ));
        }
    };
    if let Some(e) = store_err {
        return Err(e.into());
    }
    out.map_err(TransferError::Local)
}

fn open_local<E: std::error::Error + 'static>(
    store: &Store,
    rel: &str,
    path: &Path,
) -> Result<File, TransferError<E>> {
    File::open(path).map_err(|e| {
        let source = if e.kind() == std::io::ErrorKind::NotFound {
            BackendError::NotFound
        } else {
            BackendError::other(e)
        };
        TransferError::Store(store.request_error("download", rel, source))
    })
}
