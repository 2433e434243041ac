//! One entry pipeline for the modes that store trees (caches, workspace layers): pack the
//! roots of a plan into an entry's data, and lay an entry's data down through a
//! [`Lander`]. The data's encoding is recorded in the manifest envelope, so each entry is
//! read the way it was written and a new encoding is one more arm here.
//!
//! Format 1 ([`Encoding::Tar`]) is one standard tar archive, compressed with zstd, gzip or
//! not at all (`archive/`). Format 2 ([`Encoding::Chunked`]) is an index of the tree and its
//! files' content-defined chunks, packed into pack objects shared by a project's entries
//! (`chunks/`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::archive::{self, ArchiveError, EntryKind, Format, PackPlan, PackSpec};
use crate::chunks::{self, Known, PackRef};
use crate::glob;
use crate::manifest::DataRef;
use crate::store::{Store, StoreError};
use crate::transfer::{self, TransferError};
use crate::unpack::{Lander, Source};

/// How an entry's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Store format 1: one tar archive.
    #[default]
    Tar,
    /// Store format 2: an index and content-defined chunks in shared packs.
    Chunked,
}

impl Encoding {
    /// The store format version a manifest of this encoding carries.
    pub fn format_version(self) -> u32 {
        match self {
            Encoding::Tar => crate::manifest::FORMAT_VERSION,
            Encoding::Chunked => crate::manifest::CHUNKED_FORMAT_VERSION,
        }
    }
}

/// What a manifest records about the tree its data holds; caches and layers both carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeRecord {
    pub compression: Format,
    /// The saved paths as entry-name roots: every entry lies within one of them.
    pub paths: Vec<String>,
    /// Symlinks that lead out of the saved paths, as `[entry, target]`.
    #[serde(default)]
    pub links_out: Vec<(String, String)>,
    /// Number of regular files.
    pub files: u64,
    /// Bytes of file content before compression.
    pub unpacked_bytes: u64,
    /// Files, folders and symlinks; a restore refuses data holding more. Absent in manifests
    /// written before ferry recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_count: Option<u64>,
    /// Format 2: every pack the entry's chunks lie in, with the ranges of it they take.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packs: Vec<PackRef>,
}

impl TreeRecord {
    /// Bytes of the store the entry's data takes: its archive, or its index and the parts of
    /// packs it uses (shared with other entries).
    pub fn stored_bytes(&self, data: &DataRef) -> u64 {
        data.size + self.packs.iter().map(PackRef::used_bytes).sum::<u64>()
    }
}

/// Errors of the pipeline: the store's, or the packing's and unpacking's.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl From<TransferError<ArchiveError>> for EntryError {
    fn from(e: TransferError<ArchiveError>) -> Self {
        match e {
            TransferError::Store(s) => EntryError::Store(s),
            TransferError::Local(a) => EntryError::Archive(a),
            TransferError::Internal(what) => EntryError::Archive(ArchiveError::Internal {
                what: what.to_string(),
            }),
        }
    }
}

/// What to pack.
pub struct PackRequest {
    pub plan: PackPlan,
    pub encoding: Encoding,
    pub compression: Format,
    /// Compression level; the format's default when `None`.
    pub level: Option<i32>,
    /// Format 2: the folder new packs go to.
    pub packs_dir: String,
    /// Format 2: the chunks the store holds as far as this job knows.
    pub known: Known,
}

/// What writing an entry put in the store, as a save or a persist reports it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Written {
    /// Bytes of the store the entry takes (its archive; or its index and the parts of packs
    /// it uses, some of them shared with other entries).
    pub bytes: u64,
    /// Bytes this write sent to the store (besides the manifest).
    pub uploaded_bytes: u64,
    /// Objects this write created (besides the manifest).
    pub objects_written: u64,
    /// Format 2: bytes of file content the store held already and were not uploaded.
    pub reused_bytes: u64,
    pub files: u64,
    /// Bytes of file content before compression.
    pub unpacked_bytes: u64,
}

/// An entry's data, written.
#[derive(Debug, Clone)]
pub struct Packed {
    pub data: DataRef,
    pub tree: TreeRecord,
    /// Every entry by name and kind, in the order written.
    pub listing: Vec<(String, EntryKind)>,
    /// Bytes written to the store (the archive; or new packs and the index).
    pub uploaded_bytes: u64,
    /// Objects written to the store, besides the manifest.
    pub objects_written: u64,
    /// Format 2: bytes of file content the store held already.
    pub reused_bytes: u64,
    /// Format 2: packs this save wrote, removed with the data if it does not publish.
    pub new_packs: Vec<String>,
}

impl Packed {
    /// What this entry's write put in the store.
    pub fn written(&self) -> Written {
        Written {
            bytes: self.tree.stored_bytes(&self.data),
            uploaded_bytes: self.uploaded_bytes,
            objects_written: self.objects_written,
            reused_bytes: self.reused_bytes,
            files: self.tree.files,
            unpacked_bytes: self.tree.unpacked_bytes,
        }
    }
}

impl Packed {
    /// Removes what this pack wrote, when its manifest is not published (best effort).
    pub async fn discard(&self, store: &Store) {
        let _ = store.delete(&self.data.path).await;
        for p in &self.new_packs {
            let _ = store.delete(p).await;
        }
    }
}

/// The name ending of an entry's data object.
pub fn data_extension(encoding: Encoding, compression: Format) -> &'static str {
    match encoding {
        Encoding::Tar => compression.extension(),
        Encoding::Chunked => "index.zst",
    }
}

/// Packs the plan's roots into a new data object at `data_rel`. Nothing is left at
/// `data_rel` (nor in new packs) on failure.
pub async fn pack(store: &Store, data_rel: &str, req: PackRequest) -> Result<Packed, EntryError> {
    match req.encoding {
        Encoding::Tar => pack_tar(store, data_rel, req).await,
        Encoding::Chunked => pack_chunked(store, data_rel, req).await,
    }
}

async fn pack_chunked(
    store: &Store,
    data_rel: &str,
    req: PackRequest,
) -> Result<Packed, EntryError> {
    let spec = PackSpec {
        roots: req.plan.roots.clone(),
        paths: req.plan.manifest_roots.clone(),
        excludes: glob::set(&req.plan.excludes).map_err(ArchiveError::from)?,
    };
    // Roots that are plain paths were saved whole: what lies below them is the entry.
    let whole_roots: Vec<String> = req
        .plan
        .roots
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| req.plan.manifest_roots.contains(n))
        .collect();
    let out = chunks::pack(
        store,
        spec,
        chunks::ChunkedPack {
            packs_dir: req.packs_dir,
            index_rel: data_rel.to_string(),
            known: req.known,
            level: req.level.unwrap_or(3),
            whole_roots,
            excludes: req.plan.excludes.clone(),
        },
    )
    .await?;
    Ok(Packed {
        data: out.data,
        tree: TreeRecord {
            compression: Format::Zstd,
            paths: req.plan.manifest_roots,
            links_out: out.stats.links_out,
            files: out.stats.files,
            unpacked_bytes: out.stats.bytes,
            entry_count: Some(out.stats.entries),
            packs: out.packs,
        },
        listing: out.listing,
        uploaded_bytes: out.uploaded_bytes,
        objects_written: out.objects_written,
        reused_bytes: out.reused_bytes,
        new_packs: out.new_packs,
    })
}

async fn pack_tar(store: &Store, data_rel: &str, req: PackRequest) -> Result<Packed, EntryError> {
    let spec = PackSpec {
        roots: req.plan.roots,
        paths: req.plan.manifest_roots.clone(),
        excludes: glob::set(&req.plan.excludes).map_err(ArchiveError::from)?,
    };
    let format = req.compression;
    let level = req.level.unwrap_or_else(|| format.default_level());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    // Data that is not written straight to a file is uploaded in parts held in memory.
    let job_size = store
        .local_path(data_rel)
        .is_none()
        .then_some(archive::ZSTD_REMOTE_JOB);
    let ((stats, listing), data) = transfer::upload(store, data_rel, move |out| {
        let mut listing = Vec::new();
        let mut w = archive::compressor(format, level, threads, job_size, out)
            .map_err(ArchiveError::Write)?;
        let stats = archive::pack_listing(&spec, &mut w, &mut |name, kind| {
            listing.push((name.to_string(), kind));
        })?;
        w.finish_write().map_err(ArchiveError::Write)?;
        Ok::<_, ArchiveError>((stats, listing))
    })
    .await?;
    Ok(Packed {
        tree: TreeRecord {
            compression: format,
            paths: req.plan.manifest_roots,
            links_out: stats.links_out,
            files: stats.files,
            unpacked_bytes: stats.bytes,
            entry_count: Some(stats.entries),
            packs: Vec::new(),
        },
        listing,
        uploaded_bytes: data.size,
        objects_written: 1,
        reused_bytes: 0,
        new_packs: Vec::new(),
        data,
    })
}

/// An entry to lay down.
pub struct Land {
    pub data: DataRef,
    pub encoding: Encoding,
    pub tree: TreeRecord,
    /// Maps an entry name to where it goes on disk.
    pub resolve: Box<dyn Fn(&str) -> PathBuf + Send + Sync>,
    /// The most entries the data may hold, when the manifest says more precisely than
    /// `tree.entry_count` (a layer's listing).
    pub max_entries: Option<u64>,
    /// Format 2: keep files already on disk with the entry's content instead of rewriting them.
    pub keep_existing: bool,
    /// Format 2: make the entry's whole roots exactly the entry (remove what it does not
    /// hold). Format 1 never removes anything, as `tar -x`.
    pub mirror: bool,
    /// Format 2: the folder of footprints (see [`chunks::footprint`]) that spare reading
    /// files a restore left unchanged; none: every file on disk is read.
    pub footprints: Option<PathBuf>,
    /// Format 2: a copy of the entry's index kept on this machine, read instead of the
    /// store's when it matches the manifest's record of it.
    pub index_copy: Option<bytes::Bytes>,
}

/// What laying an entry down did besides what the lander counts.
#[derive(Debug, Clone, Default)]
pub struct Landing {
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Format 2: the entry's index object as stored.
    pub index: Option<bytes::Bytes>,
    /// Format 2: the index as read.
    pub decoded: Option<std::sync::Arc<chunks::index::Index>>,
    /// Format 2: the files kept with nothing set on them, as they were found.
    pub unchanged: foldhash::HashMap<usize, chunks::footprint::FileId>,
}

/// Lays an entry's data down through `lander` as its next source, checking the data against
/// its manifest; nothing is in place until the lander's commit. On an error the lander is
/// dropped, which removes everything it staged.
pub async fn land(
    store: &Store,
    mut lander: Lander,
    land: Land,
) -> Result<(Lander, Landing), EntryError> {
    let source = Source {
        roots: land.tree.paths.clone(),
        links_out: land.tree.links_out.iter().cloned().collect(),
        resolve: land.resolve,
        max_bytes: Some(land.tree.unpacked_bytes),
        max_entries: land.max_entries.or(land.tree.entry_count),
        mirror: None,
    };
    match land.encoding {
        Encoding::Chunked => {
            let (lander, out) = chunks::land(
                store,
                lander,
                source,
                &land.data,
                &land.tree.packs,
                chunks::OnDisk {
                    keep: land.keep_existing,
                    mirror: land.mirror,
                    footprints: land.footprints.as_deref(),
                    index_copy: land.index_copy,
                },
            )
            .await?;
            Ok((
                lander,
                Landing {
                    downloaded: out.downloaded,
                    index: Some(out.index),
                    decoded: Some(out.decoded),
                    unchanged: out.unchanged,
                },
            ))
        }
        Encoding::Tar => {
            let format = land.tree.compression;
            let expected = land.data.clone();
            let lander =
                transfer::download(store, &land.data.path, land.data.size, move |reader| {
                    lander.begin(source);
                    archive::unpack_checked(&mut lander, format, reader, &expected)?;
                    Ok::<_, ArchiveError>(lander)
                })
                .await?;
            Ok((
                lander,
                Landing {
                    downloaded: land.data.size,
                    index: None,
                    decoded: None,
                    unchanged: Default::default(),
                },
            ))
        }
    }
}
