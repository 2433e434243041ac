//! Archives: streaming tar packing and safe unpacking, compressed with zstd, gzip or not at all.
//!
//! Archives are standard tar (GNU long-name records where names exceed 100 bytes) so that
//! `tar` can read them by hand. Entry names are the paths as the user gave them.

mod pack;
mod plan;
mod read;

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

pub(crate) use pack::append_raw;
pub use pack::{EntryKind, PackRoot, PackSpec, PackStats, links_out, pack, pack_listing, walk};
pub use plan::{PackPlan, PlanError, plan};

use crate::manifest::DataRef;
use crate::transfer::DownloadReader;
use crate::unpack::Lander;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Zstd,
    Gzip,
    Tar,
}

impl Format {
    /// The file extension of a data object in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Zstd => "tar.zst",
            Format::Gzip => "tar.gz",
            Format::Tar => "tar",
        }
    }

    /// The default compression level.
    pub fn default_level(self) -> i32 {
        match self {
            Format::Zstd => 3,
            Format::Gzip => 6,
            Format::Tar => 0,
        }
    }

    /// Parses `zstd`, `gzip` or `tar`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "zstd" | "zst" => Some(Format::Zstd),
            "gzip" | "gz" => Some(Format::Gzip),
            "tar" | "none" => Some(Format::Tar),
            _ => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Zstd => "zstd",
            Format::Gzip => "gzip",
            Format::Tar => "tar",
        })
    }
}

/// Errors of packing and unpacking.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write the archive: {0}")]
    Write(#[source] std::io::Error),
    #[error("refused unsafe archive entry {entry:?}: {reason}; nothing was restored")]
    Unsafe { entry: String, reason: String },
    #[error(
        "archive is corrupt or truncated ({detail}); nothing was restored; save the entry again"
    )]
    Corrupt { detail: String },
    #[error(
        "archive digest mismatch: manifest records sha256 {expected} ({expected_size} bytes), data has {actual} ({actual_size} bytes); nothing was restored; remove the entry and save it again"
    )]
    Digest {
        expected: String,
        actual: String,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("cannot restore {path}: {reason}")]
    Conflict { path: String, reason: String },
    #[error(transparent)]
    Glob(#[from] crate::glob::GlobError),
    #[error("ferry failed internally: {what}; nothing was restored; please report this")]
    Internal { what: String },
}

impl ArchiveError {
    /// `path`, in the target, changed while a restore was laying it down.
    pub fn changed_meanwhile(path: impl Into<String>) -> Self {
        ArchiveError::Conflict {
            path: path.into(),
            reason: "it changed while it was being restored; restore again".into(),
        }
    }

    /// True for failures of integrity: a digest mismatch, a corrupt or an unsafe archive.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::Unsafe { .. } | Self::Corrupt { .. } | Self::Digest { .. }
        )
    }
}

/// Input of each multi-threaded zstd job when the data goes to a remote store, whose upload
/// parts in flight already hold tens of MiB: zstd's default at level 3 (8 MiB, each worker
/// holding its job's input and output) took a `target/` save through SeaweedFS to 113 MiB of
/// RSS, 4 MiB jobs to 85 MiB. Saves to a local file keep the default: 4 MiB jobs were 3-4%
/// slower there.
pub const ZSTD_REMOTE_JOB: u32 = 4 * 1024 * 1024;

/// Output buffer of the zstd compressor. Each write hands zstd some input and takes back at
/// most this much output; multi-threaded zstd keeps finished jobs (8 MiB each at level 3)
/// until their output is taken, so with the zstd crate's default 32 KiB a fast producer
/// made the jobs pile up: saving the benchmark's 1 GiB file peaked at 110 MiB of RSS, and
/// at 82 MiB with this buffer.
const ZSTD_OUTPUT: usize = 1024 * 1024;

/// Wraps `out` in the compressor of `format`; `finish` must be called on the result.
/// `job_size` is the input of each multi-threaded zstd job (zstd's default when `None`).
pub fn compressor<'a, W: Write + 'a>(
    format: Format,
    level: i32,
    threads: u32,
    job_size: Option<u32>,
    out: W,
) -> std::io::Result<Box<dyn FinishWrite + 'a>> {
    Ok(match format {
        Format::Zstd => {
            let mut enc = zstd::stream::raw::Encoder::new(level)?;
            if threads > 1 {
                enc.set_parameter(zstd::zstd_safe::CParameter::NbWorkers(threads))?;
                if let Some(size) = job_size {
                    enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(size))?;
                }
            }
            Box::new(zstd::stream::zio::Writer::with_output_buffer(
                Vec::with_capacity(ZSTD_OUTPUT),
                out,
                enc,
            ))
        }
        Format::Gzip => Box::new(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::new(level.clamp(0, 9) as u32),
        )),
        Format::Tar => Box::new(PlainWriter(out)),
    })
}

/// Wraps `input` in the decompressor of `format`, which reads `input`'s buffer in place.
pub fn decompressor<'a, R: BufRead + 'a>(
    format: Format,
    input: R,
) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match format {
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Format::Gzip => Box::new(flate2::bufread::GzDecoder::new(input)),
        Format::Tar => Box::new(input),
    })
}

/// A writer whose end must be marked (compressors write their trailer then).
pub trait FinishWrite: Write {
    fn finish_write(self: Box<Self>) -> std::io::Result<()>;
}

impl<W: Write> FinishWrite for zstd::stream::zio::Writer<W, zstd::stream::raw::Encoder<'_>> {
    fn finish_write(mut self: Box<Self>) -> std::io::Result<()> {
        self.finish()?;
        let (mut w, _) = self.into_inner();
        w.flush()
    }
}

impl<W: Write> FinishWrite for flate2::write::GzEncoder<W> {
    fn finish_write(self: Box<Self>) -> std::io::Result<()> {
        let mut w = (*self).finish()?;
        w.flush()
    }
}

struct PlainWriter<W>(W);

impl<W: Write> Write for PlainWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> FinishWrite for PlainWriter<W> {
    fn finish_write(mut self: Box<Self>) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Lays the tar stream `input`, compressed in `format`, down through `lander`.
pub fn unpack<R: BufRead>(
    lander: &mut Lander,
    format: Format,
    input: R,
) -> Result<(), ArchiveError> {
    let input = decompressor(format, input).map_err(|e| ArchiveError::Corrupt {
        detail: e.to_string(),
    })?;
    read::read_tar(input, lander)
}

/// [`unpack`] of a downloaded archive, then a check of its size and SHA-256 against the
/// manifest's record. The lander's staged files are not in place yet: on an error the caller
/// drops the lander and nothing is left.
pub fn unpack_checked(
    lander: &mut Lander,
    format: Format,
    mut reader: DownloadReader,
    expected: &DataRef,
) -> Result<(), ArchiveError> {
    unpack(lander, format, &mut reader)?;
    let (size, sha256) = reader.finish().map_err(|e| ArchiveError::Corrupt {
        detail: e.to_string(),
    })?;
    if size != expected.size || sha256 != expected.sha256 {
        return Err(ArchiveError::Digest {
            expected: expected.sha256.clone(),
            actual: sha256,
            expected_size: expected.size,
            actual_size: size,
        });
    }
    Ok(())
}
