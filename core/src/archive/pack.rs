//! Packing: walk the given paths and write one tar stream, names as the user gave them.

use std::collections::BTreeSet;
use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use globset::GlobSet;
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use super::ArchiveError;
use crate::paths;

/// One path to pack: its entry name (normalised, as given) and where it is on disk.
#[derive(Debug, Clone)]
pub struct PackRoot {
    pub name: String,
    pub fs_path: PathBuf,
}

/// What to pack.
pub struct PackSpec {
    pub roots: Vec<PackRoot>,
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
    /// Symlinks whose targets lie outside the packed roots, as `(entry, target)`; recorded in
    /// the manifest so that restore can tell them from links an attacker added.
    pub links_out: Vec<(String, String)>,
}

/// What an archive entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

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
    let mut seen = BTreeSet::new();
    let root_names: Vec<&str> = spec.roots.iter().map(|r| r.name.as_str()).collect();
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
            if let Some(kind) = append(
                &mut builder,
                &name,
                &entry.path().to_path_buf(),
                &meta,
                &root_names,
                &mut stats,
            )? {
                on_entry(&name, kind);
            }
        }
    }
    builder.into_inner().map_err(ArchiveError::Write)?;
    Ok(stats)
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    fs_path: &PathBuf,
    meta: &Metadata,
    roots: &[&str],
    stats: &mut PackStats,
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
        let resolved = super::unpack::link_destination(name, target);
        if !roots.iter().any(|r| paths::is_within(&resolved, r)) {
            stats.links_out.push((name.to_string(), target.to_string()));
        }
        Ok(Some(EntryKind::Symlink))
    } else if ft.is_file() {
        let file = std::fs::File::open(fs_path).map_err(io("open"))?;
        header.set_entry_type(EntryType::Regular);
        header.set_size(meta.len());
        // The size is fixed in the header: a file that grows while packing is cut at that size
        // and one that shrinks is an error, never a corrupt archive.
        let mut reader = ExactReader {
            inner: file.take(meta.len()),
            left: meta.len(),
            path: fs_path,
        };
        append_raw(builder, &mut header, name, None, &mut reader).map_err(ArchiveError::Write)?;
        stats.files += 1;
        stats.bytes += meta.len();
        Ok(Some(EntryKind::File))
    } else {
        // Sockets, fifos and devices are not cache material; they are left out.
        Ok(None)
    }
}

struct ExactReader<'a, R> {
    inner: R,
    left: u64,
    path: &'a PathBuf,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being saved", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Appends an entry whose name (and link target) may be absolute, hold `..` or `~`, or exceed
/// 100 bytes: the tar crate's path setters refuse the first three, so the fields are written
/// directly, with GNU `././@LongLink` records for long values as GNU tar does.
fn append_raw<W: Write, R: Read>(
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
