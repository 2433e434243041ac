//! What a job restored, kept outside the store and outside the user's tree, so that its save
//! can upload only the chunks the store does not hold yet: the restored entry's index and
//! packs. It lives in a folder the caller settles (on GitHub Actions the runner's per-job
//! temporary folder, elsewhere `$XDG_STATE_HOME/ferry/caches`), one file per project. It is
//! not part of the store format; losing it only makes the next save upload more.

use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_core::chunks::PackRef;
use ferry_core::manifest::DataRef;
use ferry_core::paths::encode_part;
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;
/// Restores remembered; the oldest are forgotten first.
const KEPT: usize = 16;

/// One chunked entry a job restored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Restored {
    pub scope: Option<String>,
    pub key: String,
    /// Its index.
    pub data: DataRef,
    pub packs: Vec<PackRef>,
    /// Its roots.
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheState {
    version: u32,
    restored: Vec<Restored>,
}

fn file(dir: &Path, project: &str) -> PathBuf {
    dir.join(format!("{}.json", encode_part(project)))
}

/// The chunked entries the job restored in `project`, oldest first; nothing when the file is
/// missing or unreadable.
pub(crate) fn restored(dir: &Path, project: &str) -> Vec<Restored> {
    std::fs::read(file(dir, project))
        .ok()
        .and_then(|b| serde_json::from_slice::<CacheState>(&b).ok())
        .filter(|s| s.version == VERSION)
        .map(|s| s.restored)
        .unwrap_or_default()
}

/// Where the copy of a restored entry's index is kept, by its digest.
fn index_file(dir: &Path, data: &DataRef) -> PathBuf {
    dir.join("indexes")
        .join(format!("{}.index.zst", encode_part(&data.sha256)))
}

/// The copy of a restored entry's index, when it is there and matches its record.
pub(crate) fn index_copy(dir: &Path, data: &DataRef) -> Option<Vec<u8>> {
    std::fs::read(index_file(dir, data))
        .ok()
        .filter(|b| b.len() as u64 == data.size)
}

/// Remembers a restore and keeps a copy of its index (which a prune may delete with the entry
/// before the job saves, and which a later restore of the entry reads instead of fetching
/// it). Best effort: a failure only makes a later save upload more.
pub(crate) fn remember(
    dir: &Path,
    project: &str,
    r: Restored,
    index: &[u8],
) -> std::io::Result<()> {
    let copy = index_file(dir, &r.data);
    std::fs::create_dir_all(copy.parent().unwrap_or(dir))?;
    write_whole(&copy, index)?;
    let mut list = restored(dir, project);
    list.retain(|x| x.data.path != r.data.path);
    list.push(r);
    if list.len() > KEPT {
        for old in list.drain(..list.len() - KEPT) {
            let _ = std::fs::remove_file(index_file(dir, &old.data));
        }
    }
    let bytes = serde_json::to_vec_pretty(&CacheState {
        version: VERSION,
        restored: list,
    })
    .map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    write_whole(&file(dir, project), &bytes)
}

/// Writes a file whole: a temporary file beside it, renamed over it.
fn write_whole(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".ferry-state-{}", ferry_core::manifest::new_id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> Restored {
        Restored {
            scope: None,
            key: format!("k{n}"),
            data: DataRef {
                path: format!("p/data/{n}.index.zst"),
                size: 1,
                sha256: "0".repeat(64),
            },
            packs: Vec::new(),
            paths: vec!["node_modules".into()],
        }
    }

    #[test]
    fn restores_are_remembered_newest_last_and_only_the_last_few() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(restored(dir.path(), "acme/app").is_empty());
        for n in 0..20 {
            remember(dir.path(), "acme/app", entry(n), b"i")?;
        }
        remember(dir.path(), "acme/app", entry(5), b"i")?;
        let keys: Vec<String> = restored(dir.path(), "acme/app")
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys.len(), KEPT);
        assert_eq!(keys.last().map(String::as_str), Some("k5"));
        assert!(restored(dir.path(), "other").is_empty());
        assert_eq!(index_copy(dir.path(), &entry(5).data), Some(b"i".to_vec()));
        Ok(())
    }
}
