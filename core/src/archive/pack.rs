//! Packing: walk the given paths and write one tar stream, names as the user gave them.

use std::collections::{BTreeSet, HashMap};
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use globset::GlobSet;
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use super::ArchiveError;
use crate::paths;
use crate::trust::rules::{self, Node};

/// One path to pack: its entry name (normalised, as given) and where it is on disk.
#[derive(Debug, Clone)]
pub struct PackRoot {
    pub name: String,
    pub fs_path: PathBuf,
}

/// What to pack.
pub struct PackSpec {
    pub roots: Vec<PackRoot>,
    /// The roots the manifest records (a glob's literal base): symlinks that lead out of them
    /// are listed in [`PackStats::links_out`], judged as a restore will judge them.
    pub paths: Vec<String>,
    /// Entry names matching this set are left out (a folder with all it holds).
    pub excludes: GlobSet,
}

/// What was packed.
#[derive(Debug, Default, Clone)]
pub struct PackStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content before compression.
    pub bytes: u64,
    /// Symlinks whose targets lead outside the saved paths, as `(entry, target)`; recorded in
    /// the manifest so that restore can tell them from links an attacker added.
    pub links_out: Vec<(String, String)>,
    /// Entries written: files, folders and symlinks.
    pub entries: u64,
}

/// What an archive entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// Bytes read from a file at a time when packing.
const COPY_BUF: usize = 128 * 1024;

/// Writes every root into a tar stream on `out`.
///
/// Folders are walked in name order without following symlinks; a root that is itself a
/// symlink is stored as a link. Entry names under `.` carry no `./` prefix.
pub fn pack<W: Write>(spec: &PackSpec, out: W) -> Result<PackStats, ArchiveError> {
    pack_listing(spec, out, &mut |_, _| {})
}

/// [`pack`], telling `on_entry` the name (without a trailing `/`) and kind of every entry
/// written, in archive order: for manifests that list what an archive holds.
pub fn pack_listing<W: Write>(
    spec: &PackSpec,
    out: W,
    on_entry: &mut dyn FnMut(&str, EntryKind),
) -> Result<PackStats, ArchiveError> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut stats = PackStats::default();
    let mut buf = vec![0u8; COPY_BUF];
    let mut links: HashMap<String, String> = HashMap::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    walk(spec, &mut |name, fs_path, meta| {
        let kind = append(
            &mut builder,
            name,
            &fs_path.to_path_buf(),
            meta,
            &mut Tracked {
                links: &mut links,
                inodes: &mut inodes,
            },
            &mut stats,
            &mut buf,
        )?;
        if let Some(kind) = kind {
            stats.entries += 1;
            on_entry(name, kind);
        }
        Ok(())
    })?;
    builder.into_inner().map_err(ArchiveError::Write)?;
    stats.links_out = links_out(&links, &spec.paths);
    Ok(stats)
}

/// Visits every path of the spec's roots once, in the order an archive holds them: folders
/// walked in name order without following symlinks (a root that is a symlink is visited as
/// the link), excluded names left out with all they hold. `visit` gets the entry name (under
/// `.` without a `./` prefix), the path on disk and its metadata (not followed). Every entry
/// encoding packs through this walk, so they all store the same tree.
pub fn walk(
    spec: &PackSpec,
    visit: &mut dyn FnMut(&str, &std::path::Path, &Metadata) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    let mut seen = BTreeSet::new();
    for root in &spec.roots {
        // A root that is a symlink is stored as the link, not walked through (walkdir follows
        // root links unless told not to).
        let walker = walkdir::WalkDir::new(&root.fs_path)
            .follow_links(false)
            .follow_root_links(false)
            .sort_by_file_name();
        let mut it = walker.into_iter();
        while let Some(entry) = it.next() {
            let entry = entry.map_err(|e| ArchiveError::Io {
                op: "read",
                path: e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| root.name.clone()),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("filesystem loop")),
            })?;
            let rel = entry
                .path()
                .strip_prefix(&root.fs_path)
                .unwrap_or(entry.path());
            let rel = paths::to_slash(rel).map_err(|reason| ArchiveError::Io {
                op: "pack",
                path: entry.path().display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
            })?;
            let name = match (root.name.as_str(), rel.as_str()) {
                (".", ".") => continue,
                (n, ".") => n.to_string(),
                (".", r) => r.to_string(),
                ("/", r) => format!("/{r}"),
                (n, r) => format!("{n}/{r}"),
            };
            if spec.excludes.is_match(&name) {
                if entry.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            if !seen.insert(name.clone()) {
                if entry.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            let meta = entry.metadata().map_err(|e| ArchiveError::Io {
                op: "read",
                path: entry.path().display().to_string(),
                source: e
                    .into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("metadata")),
            })?;
            visit(&name, entry.path(), &meta)?;
        }
    }
    Ok(())
}

/// The packed symlinks that lead out of `paths`, judged over the packed tree exactly as a
/// restore judges them, so that everything a save records restores.
pub fn links_out(links: &HashMap<String, String>, paths: &[String]) -> Vec<(String, String)> {
    let mut node = |n: &str| match links.get(n) {
        Some(t) => Node::Link(t.clone()),
        None => Node::Other,
    };
    let mut out: Vec<(String, String)> = links
        .iter()
        .filter(|(name, target)| rules::judge_link(name, target, paths, &mut node).is_err())
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    out.sort();
    out
}

/// What a pack remembers of the entries written so far.
struct Tracked<'a> {
    /// Symlinks by name, with their targets: judged at the end.
    links: &'a mut HashMap<String, String>,
    /// The first name written of each file that has other names (hard links), by device and
    /// inode: later names are written as hard links to it, as GNU tar does, so the content
    /// is stored and restored once (cargo hard-links every binary it builds).
    inodes: &'a mut HashMap<(u64, u64), String>,
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    fs_path: &PathBuf,
    meta: &Metadata,
    tracked: &mut Tracked<'_>,
    stats: &mut PackStats,
    buf: &mut [u8],
) -> Result<Option<EntryKind>, ArchiveError> {
    let io = |op: &'static str| {
        let path = fs_path.display().to_string();
        move |source| ArchiveError::Io { op, path, source }
    };
    let mut header = Header::new_gnu();
    header.set_mode(meta.permissions().mode() & 0o7777);
    header.set_mtime(meta.mtime().max(0) as u64);
    header.set_uid(0);
    header.set_gid(0);
    let ft = meta.file_type();
    if ft.is_dir() {
        header.set_entry_type(EntryType::Directory);
        header.set_size(0);
        append_raw(
            builder,
            &mut header,
            &format!("{name}/"),
            None,
            std::io::empty(),
        )
        .map_err(ArchiveError::Write)?;
        stats.dirs += 1;
        Ok(Some(EntryKind::Dir))
    } else if ft.is_symlink() {
        let target = std::fs::read_link(fs_path).map_err(io("read the link"))?;
        let target = target.to_str().ok_or_else(|| ArchiveError::Io {
            op: "pack",
            path: fs_path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "link target is not UTF-8",
            ),
        })?;
        header.set_entry_type(EntryType::Symlink);
        header.set_size(0);
        append_raw(builder, &mut header, name, Some(target), std::io::empty())
            .map_err(ArchiveError::Write)?;
        stats.symlinks += 1;
        tracked.links.insert(name.to_string(), target.to_string());
        Ok(Some(EntryKind::Symlink))
    } else if ft.is_file() {
        if meta.nlink() > 1 {
            match tracked.inodes.entry((meta.dev(), meta.ino())) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    header.set_entry_type(EntryType::Link);
                    header.set_size(0);
                    append_raw(
                        builder,
                        &mut header,
                        name,
                        Some(first.get()),
                        std::io::empty(),
                    )
                    .map_err(ArchiveError::Write)?;
                    stats.files += 1;
                    return Ok(Some(EntryKind::File));
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(name.to_string());
                }
            }
        }
        let file = std::fs::File::open(fs_path).map_err(io("open"))?;
        header.set_entry_type(EntryType::Regular);
        header.set_size(meta.len());
        // The header goes first with no data; the data follows in large reads (the tar
        // crate copies through an 8 KiB buffer, a syscall each).
        append_raw(builder, &mut header, name, None, std::io::empty())
            .map_err(ArchiveError::Write)?;
        copy_exact(file, meta.len(), fs_path, builder.get_mut(), buf)?;
        stats.files += 1;
        stats.bytes += meta.len();
        Ok(Some(EntryKind::File))
    } else {
        // Sockets, fifos and devices are not cache material; they are left out.
        Ok(None)
    }
}

/// Copies exactly `size` bytes of `file` into the archive and pads them to a 512-byte
/// block. The size is fixed in the header: a file that grows while packing is cut at that
/// size and one that shrinks is an error, never a corrupt archive.
pub(crate) fn copy_exact<W: Write>(
    mut file: std::fs::File,
    size: u64,
    path: &std::path::Path,
    out: &mut W,
    buf: &mut [u8],
) -> Result<(), ArchiveError> {
    let read_error = |source| ArchiveError::Io {
        op: "read",
        path: path.display().to_string(),
        source,
    };
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = crate::transfer::read_full(&mut file, &mut buf[..want]).map_err(read_error)?;
        if n < want {
            return Err(read_error(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "it shrank while it was being saved",
            )));
        }
        out.write_all(&buf[..n]).map_err(ArchiveError::Write)?;
        left -= n as u64;
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])
        .map_err(ArchiveError::Write)
}

/// Appends an entry whose name (and link target) may be absolute, hold `..` or `~`, or exceed
/// 100 bytes: the tar crate's path setters refuse the first three, so the fields are written
/// directly, with GNU `././@LongLink` records for long values as GNU tar does.
pub(crate) fn append_raw<W: Write, R: Read>(
    builder: &mut tar::Builder<W>,
    header: &mut Header,
    name: &str,
    link: Option<&str>,
    data: R,
) -> std::io::Result<()> {
    if name.len() > 100 {
        long_record(builder, EntryType::GNULongName, name)?;
    }
    if let Some(link) = link {
        if link.len() > 100 {
            long_record(builder, EntryType::GNULongLink, link)?;
        }
        let field = &mut header.as_old_mut().linkname;
        field.fill(0);
        let n = link.len().min(100);
        field[..n].copy_from_slice(&link.as_bytes()[..n]);
    }
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    let n = name.len().min(100);
    field[..n].copy_from_slice(&name.as_bytes()[..n]);
    header.set_cksum();
    builder.append(header, data)
}

fn long_record<W: Write>(
    builder: &mut tar::Builder<W>,
    kind: EntryType,
    value: &str,
) -> std::io::Result<()> {
    let mut h = Header::new_gnu();
    let label = b"././@LongLink";
    h.as_old_mut().name[..label.len()].copy_from_slice(label);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    h.set_size(bytes.len() as u64);
    h.set_entry_type(kind);
    h.set_cksum();
    builder.append(&h, bytes.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_file_data_is_padded_to_a_whole_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1000]).expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 300];
        let file = std::fs::File::open(&path).expect("open");
        copy_exact(file, 1000, &path, &mut out, &mut buf).expect("copy");
        assert_eq!(out.len(), 1024);
        assert!(out[..1000].iter().all(|&b| b == 7));
        assert!(out[1000..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_file_that_shrinks_while_packed_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shrinking.log");
        std::fs::write(&path, vec![1u8; 4096]).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        // The header already says 4096 bytes; the file loses half of them before it is read.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(2048))
            .expect("truncate");
        let mut out = Vec::new();
        let err = copy_exact(file, 4096, &path, &mut out, &mut [0u8; 1024])
            .expect_err("a short file is not a whole entry");
        assert!(
            err.to_string().contains("shrank while it was being saved"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_grows_while_packed_is_cut_at_the_size_in_its_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("growing.log");
        std::fs::write(&path, vec![1u8; 5000]).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let mut out = Vec::new();
        copy_exact(file, 3000, &path, &mut out, &mut [0u8; 1024]).expect("copy");
        assert_eq!(out.len(), 3072);
        assert!(out[3000..].iter().all(|&b| b == 0));
    }
}
