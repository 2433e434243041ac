//! Streaming between blocking producers and consumers (tar, compression, hashing) and the
//! store, through bounded channels: no archive is held whole in memory or in a temporary file.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::ObjectStoreExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::manifest::DataRef;
use crate::store::{Store, StoreError};

/// Size of the chunks handed from the producer thread to the uploader.
const CHUNK: usize = 1024 * 1024;
/// Chunks in flight between the threads.
const CHANNEL_DEPTH: usize = 8;
/// Part size of multipart uploads; objects smaller than this are one PUT.
const PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts uploaded at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// Range size and parallelism of downloads from remote stores.
const RANGE_SIZE: u64 = 16 * 1024 * 1024;
const DOWNLOAD_CONCURRENCY: usize = 4;

/// A failed transfer: the store's failure or the producer's/consumer's.
#[derive(Debug, thiserror::Error)]
pub enum TransferError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Local(E),
}

/// Streams what `produce` writes into a new object at `rel`, hashing it on the way.
///
/// `produce` runs on a blocking thread. If it fails, or the upload fails, nothing is left
/// at `rel` (multipart uploads are aborted).
pub async fn upload<T, E, F>(store: &Store, rel: &str, produce: F) -> Result<(T, DataRef), TransferError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(&mut dyn Write) -> Result<T, E> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
    let producer = tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
            hasher: Sha256::new(),
            size: 0,
        };
        let out = produce(&mut w)?;
        Ok::<_, E>((out, w.finish()))
    });
    let path = store.path(rel);
    let mut writer = BufWriter::with_capacity(Arc::clone(store.objects()), path, PART_SIZE)
        .with_max_concurrency(UPLOAD_CONCURRENCY);
    let mut upload_err = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = writer.put(chunk).await {
            upload_err = Some(e);
            break;
        }
    }
    // Dropping the receiver makes a still-running producer fail fast on its next write.
    drop(rx);
    let produced = producer.await.expect("the producer thread does not panic");
    if let Some(e) = upload_err {
        let _ = writer.abort().await;
        return Err(store.request_error("upload", rel, e).into());
    }
    let (out, size, sha256) = match produced {
        Ok((out, Ok((size, sha256)))) => (out, size, sha256),
        Ok((_, Err(e))) => {
            let _ = writer.abort().await;
            let e = object_store::Error::Generic {
                store: "upload",
                source: Box::new(e),
            };
            return Err(store.request_error("upload", rel, e).into());
        }
        Err(e) => {
            let _ = writer.abort().await;
            return Err(TransferError::Local(e));
        }
    };
    if let Err(e) = writer.shutdown().await {
        let e = object_store::Error::Generic {
            store: "upload",
            source: Box::new(e),
        };
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

struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    hasher: Sha256,
    size: u64,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        self.buf.reserve(CHUNK);
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn finish(mut self) -> std::io::Result<(u64, String)> {
        self.send()?;
        Ok((self.size, format!("{:x}", self.hasher.finalize())))
    }
}

impl Write for ChannelWriter {
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
        Ok(())
    }
}

/// What a download consumer sees: the object's bytes, hashed as they are read.
pub struct DownloadReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
    hasher: Sha256,
    size: u64,
}

impl DownloadReader {
    /// Reads to the end and returns the size and SHA-256 of everything read.
    pub fn finish(mut self) -> std::io::Result<(u64, String)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok((self.size, format!("{:x}", self.hasher.finalize())))
    }
}

impl Read for DownloadReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.hasher.update(&b);
                    self.size += b.len() as u64;
                    self.current = b;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Streams the object at `rel` (of `size` bytes) into `consume`, which runs on a blocking
/// thread. Large objects on remote stores are fetched as ranges in parallel, in order.
pub async fn download<T, E, F>(store: &Store, rel: &str, size: u64, consume: F) -> Result<T, TransferError<E>>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce(DownloadReader) -> Result<T, E> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let consumer = tokio::task::spawn_blocking(move || {
        consume(DownloadReader {
            rx,
            current: Bytes::new(),
            hasher: Sha256::new(),
            size: 0,
        })
    });
    let path = store.path(rel);
    let objects = Arc::clone(store.objects());
    let mut store_err = None;
    let ranged = store.is_remote() && size > 2 * RANGE_SIZE;
    let mut stream = if ranged {
        let ranges: Vec<_> = (0..size)
            .step_by(RANGE_SIZE as usize)
            .map(|start| start..(start + RANGE_SIZE).min(size))
            .collect();
        let objects = Arc::clone(&objects);
        let path = path.clone();
        futures::stream::iter(ranges)
            .map(move |r| {
                let objects = Arc::clone(&objects);
                let path = path.clone();
                async move { objects.get_range(&path, r).await }
            })
            .buffered(DOWNLOAD_CONCURRENCY)
            .boxed()
    } else {
        match objects.get(&path).await {
            Ok(r) => r.into_stream().boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    };
    loop {
        match stream.try_next().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx
                    .send(Err(std::io::Error::other(format!("download of {rel} failed: {e}"))))
                    .await;
                store_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let out = consumer.await.expect("the consumer thread does not panic");
    if let Some(e) = store_err {
        return Err(store.request_error("download", rel, e).into());
    }
    out.map_err(TransferError::Local)
}
