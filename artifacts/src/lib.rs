//! Artifacts: a job's outputs kept for people and later tools, one object per file.
//!
//! Each file is stored as it is (not archived, not compressed), so a link to its object serves
//! the file itself, beside a small manifest recording its stored path, size, mode and SHA-256.
//! Layout in the store (see `docs/FORMAT.md`, "Artifacts"):
//! `ferry-v1/<project>/artifacts/runs/<run>/<job>/<name>.json` is the manifest of one stored
//! path and `ferry-v1/<project>/artifacts/data/<id>/<file name>` its bytes.

mod browse;
mod download;
mod ls;
mod retention;
mod upload;

use ferry_core::manifest::{self, Envelope, ManifestError};
use ferry_core::paths;
use ferry_core::store::{Store, StoreError};
use ferry_core::transfer::TransferError;
use ferry_core::trust::sign::Trust;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

pub use browse::{Folder, JobSummary, RunSummary, Stored, SubFolder, browse, find, runs};
pub use download::{DownloadOutcome, DownloadRequest, download};
pub use ls::{ArtifactEntry, link, list};
pub use retention::Artifacts;
pub use upload::{UploadOutcome, UploadRequest, Uploaded, upload};

/// The folder of a project's artifacts.
pub(crate) const ARTIFACTS_DIR: &str = "artifacts";
/// The folder of the stored files, one folder each.
pub(crate) const DATA_DIR: &str = "data";

/// Files moved at once by uploads and downloads.
const CONCURRENCY: usize = 16;

/// Manifests read at once from a remote store, where each read is a round trip; they are
/// small, so more of them may be in flight than files.
const REMOTE_MANIFEST_READS: usize = 64;

/// Files up to this size move as one request, read and hashed whole in one blocking call;
/// larger ones stream through `ferry_core::transfer`. Bounds memory at `CONCURRENCY` times this.
const SMALL: u64 = 1024 * 1024;

/// True for 64 lowercase hex digits: a SHA-256, as content-addressed data folders are named.
pub(crate) fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Size and SHA-256 (lowercase hex) of a file, read in large pieces.
pub(crate) fn sha256_file(path: &std::path::Path) -> std::io::Result<(u64, String)> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, format!("{:x}", h.finalize())))
}

/// SHA-256 as lowercase hex, as manifests record it.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// The run and job an artifact belongs to: its keyspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub run: String,
    pub job: String,
}

/// The fields an artifact manifest adds to the common envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactBody {
    pub run: String,
    pub job: String,
    /// The stored path: `/`-separated, relative, no `.` or `..` parts.
    pub path: String,
    /// Unix permission bits, as octal digits (`"0755"`).
    #[serde(with = "octal")]
    pub mode: u32,
    /// The retention asked for; `None` with `--ttl never`.
    pub ttl_seconds: Option<u64>,
}

/// An artifact manifest.
pub type ArtifactManifest = Envelope<ArtifactBody>;

/// Errors of the artifact commands.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("refused artifact {manifest}: {why}; nothing was downloaded")]
    Untrusted { manifest: String, why: String },
    #[error("failed to make the folders below {to}: {source}; nothing was downloaded")]
    Folder {
        to: String,
        #[source]
        source: Box<ferry_core::archive::ArchiveError>,
    },
    #[error("nothing to upload at {path} (looked in {cwd}); check the path")]
    Missing { path: String, cwd: String },
    #[error("cannot store {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error(
        "{} already stored for run {run} job {job}: {}; nothing was uploaded; pass --overwrite to replace {}",
        if paths.len() == 1 { "an artifact is" } else { "artifacts are" },
        few(paths),
        if paths.len() == 1 { "it" } else { "them" }
    )]
    AlreadyStored {
        run: String,
        job: String,
        paths: Vec<String>,
    },
    #[error("invalid artifact pattern: {0}")]
    Pattern(#[from] ferry_core::glob::GlobError),
    #[error("no artifact of run {run} job {job}{}; `ferry artifacts ls` lists them",
        pattern.as_ref().map(|p| format!(" matches {p:?}")).unwrap_or_else(|| " is stored".into()))]
    NoMatch {
        run: String,
        job: String,
        pattern: Option<String>,
    },
    #[error("no artifact {path:?} in run {run} job {job}; `ferry artifacts ls` lists them")]
    NotFound {
        run: String,
        job: String,
        path: String,
    },
    #[error(
        "artifact {path} failed its integrity check: the store holds sha256 {actual} ({actual_size} bytes), its manifest records {expected} ({expected_size} bytes); it was not written to {dest}; upload it again"
    )]
    Digest {
        path: String,
        dest: String,
        expected: String,
        actual: String,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("the data of artifact {path} ({object}) is missing from the store; upload it again")]
    DataMissing { path: String, object: String },
    #[error(
        "refused artifact manifest {manifest}: its stored path {path:?} is not a plain relative path; nothing was written for it"
    )]
    UnsafePath { manifest: String, path: String },
    #[error("ferry failed internally: {0}; please report this")]
    Internal(&'static str),
}

impl From<TransferError<ArtifactError>> for ArtifactError {
    fn from(e: TransferError<ArtifactError>) -> Self {
        match e {
            TransferError::Store(s) => ArtifactError::Store(s),
            TransferError::Local(a) => a,
            TransferError::Internal(what) => ArtifactError::Internal(what),
        }
    }
}

/// The first few of `items`, and how many more: an error about ten thousand paths stays one
/// readable line (`--json` carries them all).
pub fn few(items: &[String]) -> String {
    const SHOWN: usize = 5;
    if items.len() <= SHOWN {
        return items.join(", ");
    }
    format!(
        "{} and {} more",
        items[..SHOWN].join(", "),
        items.len() - SHOWN
    )
}

/// Where the artifacts of a project live.
pub(crate) struct Layout {
    dir: String,
}

impl Layout {
    pub(crate) fn new(project: &str) -> Self {
        Self {
            dir: format!("{}/{ARTIFACTS_DIR}", manifest::project_dir(project)),
        }
    }

    /// The folder of one run's and job's manifests.
    pub(crate) fn target_dir(&self, target: &Target) -> String {
        format!(
            "{}/runs/{}/{}",
            self.dir,
            paths::encode_part(&target.run),
            paths::encode_part(&target.job)
        )
    }

    pub(crate) fn manifest(&self, target: &Target, path: &str) -> String {
        format!(
            "{}/{}.json",
            self.target_dir(target),
            manifest::object_name(path)
        )
    }

    /// The data object of content `sha256`, named after the file so that a link to it
    /// downloads under that name: the same content under the same name is one object.
    pub(crate) fn blob(&self, sha256: &str, path: &str) -> String {
        format!("{}/{DATA_DIR}/{sha256}/{}", self.dir, safe_name(path))
    }

    /// A new data object, named after the file so that a link to it downloads under that name.
    #[cfg(test)]
    pub(crate) fn data(&self, path: &str) -> String {
        format!(
            "{}/{DATA_DIR}/{}/{}",
            self.dir,
            manifest::new_id(),
            safe_name(path)
        )
    }
}

/// A stored path's last part with every byte but `A-Z a-z 0-9 . _ -` replaced by `_`.
fn safe_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let mut safe: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if safe.trim_matches('.').is_empty() {
        safe = "file".into();
    }
    safe
}

/// Checks that a stored path is relative and plain: no empty, `.` or `..` parts.
pub(crate) fn is_plain(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
}

/// Reads every manifest of a run and job, sorted by stored path.
pub(crate) async fn read_all(
    store: &Store,
    layout: &Layout,
    target: &Target,
    trust: &Trust,
) -> Result<Vec<ArtifactManifest>, ArtifactError> {
    read_below(store, layout, target, trust, None).await
}

/// Reads the manifests of a run and job whose stored paths start with `prefix` (all with
/// `None`), sorted by stored path: only those are listed and read.
pub(crate) async fn read_below(
    store: &Store,
    layout: &Layout,
    target: &Target,
    trust: &Trust,
    prefix: Option<&str>,
) -> Result<Vec<ArtifactManifest>, ArtifactError> {
    let dir = layout.target_dir(target);
    let metas = match prefix {
        Some(p) => store.newest(&dir, &manifest::name_prefix(p)).await?,
        None => store.list(&dir).await?,
    };
    let mut all: Vec<ArtifactManifest> = futures::stream::iter(metas)
        .filter(|m| std::future::ready(m.path.ends_with(".json")))
        .map(|meta| async move {
            let rel = meta.path;
            let Some(bytes) = store.read(&rel).await? else {
                return Ok(None);
            };
            if let Err(why) = trust.check(&bytes) {
                return Err(ArtifactError::Untrusted {
                    manifest: rel,
                    why: why.to_string(),
                });
            }
            let m: ArtifactManifest = manifest::decode(&bytes, &rel)?;
            if !is_plain(&m.body.path) {
                return Err(ArtifactError::UnsafePath {
                    manifest: rel,
                    path: m.body.path,
                });
            }
            Ok(Some(m))
        })
        .buffer_unordered(if store.is_remote() {
            REMOTE_MANIFEST_READS
        } else {
            CONCURRENCY
        })
        .try_filter_map(|m| std::future::ready(Ok(m)))
        .try_collect()
        .await?;
    if let Some(p) = prefix {
        all.retain(|m| m.body.path.starts_with(p));
    }
    all.sort_by(|a, b| a.body.path.cmp(&b.body.path));
    Ok(all)
}

/// File modes as octal text in manifests and listings.
pub(crate) mod octal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        u32::from_str_radix(&s, 8).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_objects_keep_a_safe_file_name() {
        let l = Layout::new("acme/app");
        assert!(
            l.data("reports/with space.txt")
                .ends_with("/with_space.txt")
        );
        assert!(l.data("x/..").ends_with("/file"));
        assert!(l.data("a").contains("/artifacts/data/"));
    }

    #[test]
    fn only_plain_relative_paths_are_stored() {
        assert!(is_plain("reports/a b.txt"));
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/"] {
            assert!(!is_plain(bad), "{bad:?}");
        }
    }
}
