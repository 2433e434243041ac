//! Object stores (a local folder, memory, S3, GCS, Azure Blob) behind ferry's [`Backend`],
//! over the `object_store` crate: the one place that crate is used. Publishing uses its
//! `PutMode::Create` (If-None-Match on S3/GCS, 409 on Azure, an exclusive create locally);
//! streamed writes are multipart from 8 MiB; a local folder also hands out its files, so
//! transfers there skip the async layer.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    GetOptions, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
    PutPayloadMut,
};
use url::Url;

use crate::manifest;

use super::{Backend, BackendError, Capabilities, ObjectInfo, ObjectWriter, Published, PutMode};

/// Part size of multipart uploads; objects smaller than this are one PUT. With S3's limit
/// of 10,000 parts an object holds up to 78 GiB.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploaded at once. Parts in flight and the one being filled are most of a save's
/// memory: 16 MiB parts, four at once, took a save through SeaweedFS to 150 MiB of RSS;
/// 8 MiB parts, three at once, to 85 MiB (with zstd's 4 MiB jobs), and were no slower.
const UPLOAD_CONCURRENCY: usize = 3;
/// Listings in flight at once when a lookup lists many names side by side.
const LIST_CONCURRENCY: usize = 16;

/// What a backend file builds from a URL and the environment.
pub(crate) struct Parts {
    pub objects: Arc<dyn ObjectStore>,
    /// Present where the backend can pre-sign URLs.
    pub signer: Option<Arc<dyn Signer>>,
    /// Folder of a local store: for `file://` links and direct file transfers.
    pub local_root: Option<PathBuf>,
    /// Prefix inside the bucket or container (may be empty).
    pub prefix: String,
    /// Which variables to check when the store cannot be reached.
    pub hint: &'static str,
    /// Lists by any string prefix, not only by folder (S3, GCS, Azure), so a lookup of the
    /// names starting with P reads only those.
    pub paged: Option<Arc<dyn PaginatedListStore>>,
}

/// An object store as a ferry [`Backend`].
pub(crate) struct ObjectBackend {
    objects: Arc<dyn ObjectStore>,
    signer: Option<Arc<dyn Signer>>,
    local_root: Option<PathBuf>,
    prefix: String,
    remote: bool,
    paged: Option<Arc<dyn PaginatedListStore>>,
}

fn convert(e: object_store::Error) -> BackendError {
    match e {
        object_store::Error::NotFound { .. } => BackendError::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            BackendError::Exists
        }
        other => BackendError::other(other),
    }
}

impl ObjectBackend {
    pub fn new(parts: Parts, remote: bool) -> Self {
        Self {
            objects: parts.objects,
            signer: parts.signer,
            local_root: parts.local_root,
            prefix: parts.prefix.trim_matches('/').to_string(),
            remote,
            paged: parts.paged,
        }
    }

    /// The object-store path of `rel`.
    fn path(&self, rel: &str) -> Path {
        let rel = rel.trim_end_matches('/');
        if self.prefix.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// `rel` of an object-store path, the inverse of [`ObjectBackend::path`].
    fn relative(&self, path: &Path) -> String {
        let s = path.as_ref();
        if self.prefix.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(&self.prefix)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| s.to_string())
        }
    }

    /// One page of the raw-prefix listing of `prefix` (relative to the store), and the
    /// token of the next page when there is one.
    async fn list_page(
        &self,
        paged: &Arc<dyn PaginatedListStore>,
        prefix: &str,
        page_token: Option<String>,
    ) -> Result<(Vec<ObjectInfo>, Option<String>), BackendError> {
        let full = if self.prefix.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let page = paged
            .list_paginated(
                Some(&full),
                PaginatedListOptions {
                    page_token,
                    ..Default::default()
                },
            )
            .await
            .map_err(convert)?;
        let objects = page
            .result
            .objects
            .into_iter()
            .map(|m| self.info(m))
            .collect();
        Ok((objects, page.page_token))
    }

    fn info(&self, meta: ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            path: self.relative(&meta.location),
            size: meta.size,
            modified: meta.last_modified,
        }
    }
}

/// Parts in flight across every upload of the process: the bound on a save's memory holds
/// when one object's upload finishes while the next one fills (a format-2 save's packs).
static PARTS_IN_FLIGHT: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(UPLOAD_CONCURRENCY);

/// A streamed write: one PUT when the object is smaller than a part, else a multipart
/// upload whose parts go out as they fill, at most [`UPLOAD_CONCURRENCY`] at once.
struct Writer {
    objects: Arc<dyn ObjectStore>,
    path: Path,
    buffer: PutPayloadMut,
    upload: Option<Box<dyn MultipartUpload>>,
    parts: tokio::task::JoinSet<Result<(), object_store::Error>>,
}

impl Writer {
    /// Starts the upload of a full part once a slot is free.
    async fn put_part(&mut self, part: PutPayload) -> Result<(), BackendError> {
        // A part that failed ends the upload now rather than at its end.
        while let Some(done) = self.parts.try_join_next() {
            done.map_err(BackendError::other)?.map_err(convert)?;
        }
        let upload = match &mut self.upload {
            Some(u) => u,
            None => self.upload.insert(
                self.objects
                    .put_multipart(&self.path)
                    .await
                    .map_err(convert)?,
            ),
        };
        let permit = PARTS_IN_FLIGHT
            .acquire()
            .await
            .map_err(BackendError::other)?;
        let sent = upload.put_part(part);
        self.parts.spawn(async move {
            let _slot = permit;
            sent.await
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl ObjectWriter for Writer {
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), BackendError> {
        while !chunk.is_empty() {
            let room = PART_SIZE - self.buffer.content_length();
            if chunk.len() < room {
                self.buffer.push(chunk);
                return Ok(());
            }
            self.buffer.push(chunk.split_to(room));
            let part = std::mem::take(&mut self.buffer);
            self.put_part(part.into()).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), BackendError> {
        if self.upload.is_some() && !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer);
            self.put_part(last.into()).await?;
        }
        let Some(mut upload) = self.upload.take() else {
            let whole = std::mem::take(&mut self.buffer);
            return self
                .objects
                .put(&self.path, whole.into())
                .await
                .map(|_| ())
                .map_err(convert);
        };
        let mut failed = None;
        while let Some(done) = self.parts.join_next().await {
            if let Err(e) = done
                .map_err(BackendError::other)
                .and_then(|r| r.map_err(convert))
            {
                failed = Some(e);
                break;
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            None => upload.complete().await.map(|_| ()).map_err(convert),
        };
        if result.is_err() {
            self.parts.shutdown().await;
            let _ = upload.abort().await;
        }
        result
    }

    async fn abort(mut self: Box<Self>) {
        self.parts.shutdown().await;
        if let Some(upload) = self.upload.as_mut() {
            let _ = upload.abort().await;
        }
    }
}

#[async_trait::async_trait]
impl Backend for ObjectBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: true,
            conditional_create: true,
            overwrite: true,
            ranged_get: true,
            signed_urls: self.signer.is_some() || self.local_root.is_some(),
            prefix_lookup: false,
            remote: self.remote,
            evicts: false,
        }
    }

    fn local_path(&self, rel: &str) -> Option<PathBuf> {
        let root = self.local_root.as_ref()?;
        let mut p = root.clone();
        for part in self.path(rel).parts() {
            p.push(part.as_ref());
        }
        Some(p)
    }

    async fn put(&self, rel: &str, bytes: Bytes, mode: PutMode) -> Result<Published, BackendError> {
        let opts = PutOptions {
            mode: match mode {
                PutMode::Overwrite => object_store::PutMode::Overwrite,
                PutMode::Create => object_store::PutMode::Create,
            },
            ..Default::default()
        };
        match self
            .objects
            .put_opts(&self.path(rel), PutPayload::from_bytes(bytes), opts)
            .await
        {
            Ok(_) => Ok(Published::Created),
            Err(e) => match convert(e) {
                BackendError::Exists if mode == PutMode::Create => Ok(Published::Exists),
                other => Err(other),
            },
        }
    }

    async fn writer(&self, rel: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        Ok(Box::new(Writer {
            objects: Arc::clone(&self.objects),
            path: self.path(rel),
            buffer: PutPayloadMut::new(),
            upload: None,
            parts: tokio::task::JoinSet::new(),
        }))
    }

    async fn get(&self, rel: &str) -> Result<Option<Bytes>, BackendError> {
        match self.objects.get(&self.path(rel)).await {
            Ok(r) => match r.bytes().await {
                Ok(b) => Ok(Some(b)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(convert(e)),
            },
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(convert(e)),
        }
    }

    async fn get_stream(
        &self,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, BackendError> {
        let r = self.objects.get(&self.path(rel)).await.map_err(convert)?;
        Ok(r.into_stream().map_err(convert).boxed())
    }

    async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
        self.objects
            .get_range(&self.path(rel), range)
            .await
            .map_err(convert)
    }

    async fn get_range_into(
        &self,
        rel: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), BackendError> {
        let want = (range.end - range.start) as usize;
        let options = GetOptions::new().with_range(Some(range));
        let got = self
            .objects
            .get_opts(&self.path(rel), options)
            .await
            .map_err(convert)?;
        buf.clear();
        buf.reserve_exact(want);
        // A body longer than the range is not read to its end: the caller finds it the wrong
        // length either way.
        let mut body = got.into_stream();
        while let Some(piece) = body.next().await {
            buf.extend_from_slice(&piece.map_err(convert)?);
            if buf.len() > want {
                break;
            }
        }
        Ok(())
    }

    async fn head(&self, rel: &str) -> Result<Option<ObjectInfo>, BackendError> {
        match self.objects.head(&self.path(rel)).await {
            Ok(m) => Ok(Some(self.info(m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(convert(e)),
        }
    }

    async fn newest(&self, dir: &str, name_prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let folder = format!("{}/", dir.trim_end_matches('/'));
        let start = format!("{folder}{name_prefix}");
        let Some(paged) = &self.paged else {
            return Ok(super::newest_first(
                self.list(&start).await?,
                &folder,
                name_prefix,
            ));
        };
        // One page first: a miss or a handful of matches costs one request.
        let (mut listed, more) = self.list_page(paged, &start, None).await?;
        if more.is_some() {
            // Thousands of matches are pages a round trip apart. Names are listed in byte
            // order and each name's next character is one of the names' alphabet, so what the
            // first page did not reach is listed a next character at a time, side by side,
            // from the last name's next character on (its first names come twice: kept once).
            let from = listed
                .last()
                .and_then(|o| o.path.strip_prefix(&start))
                .and_then(|rest| rest.chars().next());
            let rest: Vec<Vec<ObjectInfo>> = futures::stream::iter(
                manifest::NAME_ALPHABET
                    .chars()
                    .filter(|c| from.is_none_or(|f| *c >= f)),
            )
            .map(|c| {
                let p = format!("{start}{c}");
                async move { self.list(&p).await }
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
            let mut seen: HashSet<String> = listed.iter().map(|o| o.path.clone()).collect();
            listed.extend(
                rest.into_iter()
                    .flatten()
                    .filter(|o| seen.insert(o.path.clone())),
            );
        }
        Ok(super::newest_first(listed, &folder, name_prefix))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        if let Some(paged) = &self.paged {
            let mut out = Vec::new();
            let mut page_token = None;
            loop {
                let (page, next) = self.list_page(paged, prefix, page_token).await?;
                out.extend(page);
                match next {
                    Some(t) => page_token = Some(t),
                    None => break,
                }
            }
            return Ok(out);
        }
        // Other object stores list by folder; a name prefix lists its folder and filters.
        let folder = prefix.rsplit_once('/').map_or("", |(f, _)| f);
        let folder_path = if folder.is_empty() && self.prefix.is_empty() {
            None
        } else {
            Some(self.path(folder))
        };
        let mut stream = self.objects.list(folder_path.as_ref());
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(meta) => {
                    let info = self.info(meta);
                    if info.path.starts_with(prefix) {
                        out.push(info);
                    }
                }
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(convert(e)),
            }
        }
        Ok(out)
    }

    async fn delete(&self, rel: &str) -> Result<(), BackendError> {
        match self.objects.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(convert(e)),
        }
    }

    async fn sign(&self, rel: &str, expires: Duration) -> Result<String, BackendError> {
        if let Some(p) = self.local_path(rel) {
            return Url::from_file_path(&p)
                .map(|u| u.to_string())
                .map_err(|()| {
                    BackendError::Other(format!("{} is not an absolute path", p.display()).into())
                });
        }
        match &self.signer {
            Some(signer) => signer
                .signed_url(object_store::signer::Method::GET, &self.path(rel), expires)
                .await
                .map(|u| u.to_string())
                .map_err(convert),
            None => Err(BackendError::Unsupported("sign links")),
        }
    }
}
