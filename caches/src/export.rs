//! `ferry cache export`: any cache, of either format, as a standard tar stream that GNU tar
//! reads, so ferry's data can always be read by hand. Format 1's archive is decompressed and
//! checked against its digest; format 2's index and chunks are read and checked as a restore
//! reads them.

use std::io::Write;
use std::path::PathBuf;

use ferry_core::archive::{self, ArchiveError};
use ferry_core::chunks;
use ferry_core::entry::Encoding;
use ferry_core::store::Store;
use ferry_core::transfer;
use ferry_core::trust::sign::Trust;
use serde::Serialize;

use crate::{CacheError, Layout, Lookup};

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub project: String,
    /// The key, exactly.
    pub key: String,
    pub scope: Option<String>,
    pub trust: Trust,
    /// The file to write (whole or not at all); standard output when `None`.
    pub out: Option<PathBuf>,
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportOutcome {
    pub key: String,
    /// `chunked`, `zstd`, `gzip` or `tar`: how the cache is stored.
    pub format: String,
    pub files: u64,
    pub out: Option<String>,
}

/// Where the tar stream goes: a temporary file renamed into place at the end, or stdout.
enum Out {
    File {
        tmp: PathBuf,
        dest: PathBuf,
        file: std::fs::File,
    },
    Stdout(std::io::Stdout),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::File { file, .. } => file.write(buf),
            Out::Stdout(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::File { file, .. } => file.flush(),
            Out::Stdout(s) => s.flush(),
        }
    }
}

/// Writes the cache of `key` as a tar stream. A file output appears only when the whole
/// stream was written and checked.
pub async fn export(store: &Store, req: ExportRequest) -> Result<ExportOutcome, CacheError> {
    let layout = Layout::new(&req.project, req.scope.as_deref());
    let rel = layout.manifest(&req.key);
    let found = match crate::read_for_lookup(store, &rel).await? {
        Lookup::Found(r) if r.manifest.body.key == req.key => r,
        _ => {
            return Err(CacheError::NotFound {
                keys: vec![req.key.clone()],
            });
        }
    };
    if let Err(why) = req.trust.check(&found.bytes) {
        return Err(CacheError::Untrusted {
            key: req.key.clone(),
            why: why.to_string(),
        });
    }
    let m = found.manifest;
    let write_error = |path: &PathBuf, source| CacheError::ExportWrite {
        path: path.display().to_string(),
        source,
    };
    let mut tmp_path = None;
    let out = match &req.out {
        Some(dest) => {
            let dir = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let tmp = dir.join(format!(".ferry-export-{}", ferry_core::manifest::new_id()));
            let file = std::fs::File::create(&tmp).map_err(|e| write_error(dest, e))?;
            tmp_path = Some(tmp.clone());
            Out::File {
                tmp,
                dest: dest.clone(),
                file,
            }
        }
        None => Out::Stdout(std::io::stdout()),
    };
    let encoding = m.encoding.unwrap_or_default();
    let written = match encoding {
        Encoding::Chunked => chunks::export(store, &m.data, &m.body.tree.packs, out)
            .await
            .map_err(CacheError::from),
        Encoding::Tar => {
            let format = m.body.tree.compression;
            let expected = m.data.clone();
            transfer::download(store, &m.data.path, m.data.size, move |mut reader| {
                let mut out = out;
                {
                    let mut input = archive::decompressor(format, &mut reader).map_err(|e| {
                        ArchiveError::Corrupt {
                            detail: e.to_string(),
                        }
                    })?;
                    std::io::copy(&mut input, &mut out).map_err(|e| ArchiveError::Corrupt {
                        detail: e.to_string(),
                    })?;
                }
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
                Ok(out)
            })
            .await
            .map_err(|e| CacheError::from(ferry_core::entry::EntryError::from(e)))
        }
    };
    let out_shown = req.out.as_ref().map(|p| p.display().to_string());
    match written {
        Ok(Out::File {
            tmp,
            dest,
            mut file,
        }) => {
            let done = file
                .flush()
                .and_then(|()| file.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &dest));
            if let Err(e) = done {
                let _ = std::fs::remove_file(&tmp);
                return Err(write_error(&dest, e));
            }
        }
        Ok(Out::Stdout(mut s)) => {
            s.flush()
                .map_err(|e| write_error(&PathBuf::from("standard output"), e))?;
        }
        Err(e) => {
            if let Some(tmp) = &tmp_path {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
    }
    Ok(ExportOutcome {
        key: m.body.key,
        format: crate::format_name(encoding, m.body.tree.compression),
        files: m.body.tree.files,
        out: out_shown,
    })
}
