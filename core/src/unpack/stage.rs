//! Staging and commit: what a restore has laid down under temporary names, moved into place
//! all at once after every check passed, or removed without a trace.
//!
//! Two kinds of staged things: files and links written beside their destination in a folder
//! that was already there (one rename each), and new folders built whole under a temporary
//! name beside their destination (one rename for the whole folder). A staged folder may take
//! the place of a symlink that was there: the link itself is removed at commit, never what it
//! points to. Folder modes and times are set last, on the folders themselves, never through a
//! link.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use filetime::FileTime;

use crate::archive::ArchiveError;

/// Renames run on this many threads at commit.
const RENAME_THREADS: usize = 4;

/// A file or link written under a temporary name beside its destination.
#[derive(Debug)]
pub(crate) struct Rename {
    pub tmp: PathBuf,
    pub dest: PathBuf,
    /// False once a later layer replaced it (its temporary file is gone).
    pub live: bool,
}

/// Something on disk the entry does not hold, moved aside at commit and deleted once the
/// commit succeeded (put back if it failed).
#[derive(Debug)]
pub(crate) struct Removal {
    pub path: PathBuf,
    pub aside: PathBuf,
    pub moved: bool,
}

/// A new folder built under a temporary name.
#[derive(Debug)]
pub(crate) struct Folder {
    pub tmp: PathBuf,
    pub dest: PathBuf,
    /// A symlink is at `dest` now; it is removed (never followed) before the folder moves in.
    pub replaces_link: bool,
}

/// Everything a restore staged, waiting for [`Plan::commit`] or [`Plan::rollback`].
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub renames: Vec<Rename>,
    pub folders: Vec<Folder>,
    /// Mode and mtime of every folder entry, by destination, applied last (deepest first).
    pub dir_meta: HashMap<OsString, (u32, i64)>,
    /// Folders that were there before, with the mode and mtime they had when the restore
    /// looked: one that already has its entry's and holds no staged name, nothing moved
    /// aside, is left as it is at commit without being opened again.
    pub as_found: HashMap<OsString, (u32, i64)>,
    /// Folders that were there before and now hold staged names, with their times then: a
    /// rollback puts the times back, so a refused restore leaves even those as they were.
    pub touched: HashMap<OsString, (FileTime, FileTime)>,
    /// The paths [`Plan::touch`] was given (a folder may be reached through a link too).
    pub seen: HashSet<OsString>,
    /// What a mirroring restore removes, moved aside first at commit.
    pub removals: Vec<Removal>,
    /// Files kept in place whose mode, time or length commit sets.
    pub kept: Vec<KeptFile>,
}

/// A file kept in place, with the mode and mtime the entry gives it.
#[derive(Debug)]
pub(crate) struct KeptFile {
    pub path: PathBuf,
    pub mode: u32,
    pub mtime: i64,
    /// The length to cut it back to first.
    pub cut: Option<Cut>,
}

/// A file cut back to `size` bytes at commit: the entry's content, then bytes appended since.
/// It must still be the file found (`dev`, `ino`) and have no other name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cut {
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
}

impl Plan {
    /// Notes the times of `dir`, an existing folder about to receive a staged name. When `dir`
    /// is a symlink that the restore follows (a saved path kept as a link, a user's folder
    /// above the saved paths), the folder it leads to is the one whose times change.
    pub fn touch(&mut self, dir: &Path) {
        if !self.seen.insert(dir.as_os_str().to_owned()) {
            return;
        }
        let real = match fs::symlink_metadata(dir) {
            Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(dir) {
                Ok(real) => real,
                Err(_) => return,
            },
            Ok(_) => dir.to_path_buf(),
            Err(_) => return,
        };
        if self.touched.contains_key(real.as_os_str()) {
            return;
        }
        if let Ok(m) = fs::symlink_metadata(&real) {
            self.touched.insert(
                real.into(),
                (
                    FileTime::from_last_access_time(&m),
                    FileTime::from_last_modification_time(&m),
                ),
            );
        }
    }

    /// Moves everything into place and sets folder modes and times.
    ///
    /// Every check of the entries happened before; what can still fail here is the file
    /// system changing underneath (a folder made meanwhile where a new one goes, a full
    /// disk for metadata). Then the error names the path and the rest is removed.
    pub fn commit(&mut self) -> Result<(), ArchiveError> {
        // Every folder whose listing this commit changes was given to `touch` (as named, and
        // as reached through a link): the others keep the times they were found with.
        let changed: HashSet<OsString> = self
            .seen
            .drain()
            .chain(self.touched.drain().map(|(dir, _)| dir))
            .collect();
        self.dir_meta
            .retain(|dir, meta| changed.contains(dir) || self.as_found.get(dir) != Some(meta));
        self.as_found.clear();
        if let Err(e) = self.move_aside() {
            self.put_back();
            return Err(e);
        }
        if let Err(e) = self.move_staged() {
            self.put_back();
            return Err(e);
        }
        // Deleted once everything moved in, before folder times are set (a deletion changes
        // its folder's time). `remove_dir_all` does not follow links inside the folder.
        for r in self.removals.drain(..) {
            let _ = if fs::symlink_metadata(&r.aside).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(&r.aside)
            } else {
                fs::remove_file(&r.aside)
            };
        }
        self.set_meta()
    }

    /// Moves every removal aside, beside where it is (a rename: no link is followed).
    fn move_aside(&mut self) -> Result<(), ArchiveError> {
        for r in &mut self.removals {
            fs::rename(&r.path, &r.aside).map_err(|source| ArchiveError::Io {
                op: "remove",
                path: r.path.display().to_string(),
                source,
            })?;
            r.moved = true;
        }
        Ok(())
    }

    /// Puts back what was moved aside, after a failed commit.
    fn put_back(&mut self) {
        for r in self.removals.drain(..).rev() {
            if r.moved {
                let _ = fs::rename(&r.aside, &r.path);
            }
        }
    }

    fn move_staged(&mut self) -> Result<(), ArchiveError> {
        let renames: Vec<(PathBuf, PathBuf)> = self
            .renames
            .drain(..)
            .filter(|r| r.live)
            .map(|r| (r.tmp, r.dest))
            .collect();
        if let Err(e) = rename_all(&renames) {
            for (tmp, _) in &renames {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
        let folders = std::mem::take(&mut self.folders);
        for (i, f) in folders.iter().enumerate() {
            if let Err(e) = move_folder(f) {
                for rest in &folders[i..] {
                    let _ = fs::remove_dir_all(&rest.tmp);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn set_meta(&mut self) -> Result<(), ArchiveError> {
        let mut meta: Vec<(PathBuf, (u32, i64))> = self
            .dir_meta
            .drain()
            .map(|(dir, meta)| (dir.into(), meta))
            .collect();
        meta.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (dir, (mode, mtime)) in meta {
            set_folder_meta(&dir, mode, mtime)?;
        }
        for kept in std::mem::take(&mut self.kept) {
            set_file_meta(&kept)?;
        }
        Ok(())
    }

    /// Removes every temporary file and folder; the target is as it was.
    pub fn rollback(&mut self) {
        for r in self.renames.drain(..) {
            if r.live {
                let _ = fs::remove_file(&r.tmp);
            }
        }
        for f in self.folders.drain(..) {
            // `remove_dir_all` does not follow links inside the folder.
            let _ = fs::remove_dir_all(&f.tmp);
        }
        self.dir_meta.clear();
        self.as_found.clear();
        self.seen.clear();
        self.kept.clear();
        self.removals.clear();
        for (dir, (atime, mtime)) in self.touched.drain() {
            if let Ok(handle) = open_folder(Path::new(&dir)) {
                let _ = filetime::set_file_handle_times(&handle, Some(atime), Some(mtime));
            }
        }
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        self.rollback();
    }
}

fn move_folder(f: &Folder) -> Result<(), ArchiveError> {
    let fail = |source| ArchiveError::Io {
        op: "move into place",
        path: f.dest.display().to_string(),
        source,
    };
    let now = fs::symlink_metadata(&f.dest);
    if f.replaces_link {
        match now {
            Ok(m) if m.file_type().is_symlink() => fs::remove_file(&f.dest).map_err(fail)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            _ => {
                return Err(fail(std::io::Error::from(
                    std::io::ErrorKind::AlreadyExists,
                )));
            }
        }
    } else if now.is_ok() {
        // A plain rename would also replace an empty folder made meanwhile; refuse that too.
        return Err(fail(std::io::Error::from(
            std::io::ErrorKind::AlreadyExists,
        )));
    }
    fs::rename(&f.tmp, &f.dest).map_err(fail)
}

/// Sets a folder's mode and mtime through a handle opened without following a link, so a
/// link put where the folder was is never changed through.
fn set_folder_meta(dir: &Path, mode: u32, mtime: i64) -> Result<(), ArchiveError> {
    let io = |op| {
        move |source| ArchiveError::Io {
            op,
            path: dir.display().to_string(),
            source,
        }
    };
    let handle = open_folder(dir).map_err(io("open the folder"))?;
    // A folder already right (a restore into a tree holding the entry) is left untouched.
    let now = handle.metadata().map_err(io("look at"))?;
    if now.permissions().mode() & 0o7777 != mode {
        handle
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("set the mode of"))?;
    }
    if FileTime::from_last_modification_time(&now) != FileTime::from_unix_time(mtime, 0) {
        filetime::set_file_handle_times(&handle, None, Some(FileTime::from_unix_time(mtime, 0)))
            .map_err(io("set the time of"))?;
    }
    Ok(())
}

/// Cuts a kept file back where it is to be, and sets its mode and mtime where they differ,
/// through a handle opened without following a link.
fn set_file_meta(kept: &KeptFile) -> Result<(), ArchiveError> {
    use std::os::unix::fs::MetadataExt;
    let KeptFile {
        path: file,
        mode,
        mtime,
        cut,
    } = kept;
    let (mode, mtime) = (*mode, *mtime);
    let io = |op| {
        move |source| ArchiveError::Io {
            op,
            path: file.display().to_string(),
            source,
        }
    };
    let handle = OpenOptions::new()
        .read(true)
        .write(cut.is_some())
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(file)
        .map_err(io("open"))?;
    let m = handle.metadata().map_err(io("look at"))?;
    if !m.file_type().is_file() {
        return Err(io("keep")(std::io::Error::other(
            "it is no longer a regular file",
        )));
    }
    if let Some(cut) = cut {
        if (m.dev(), m.ino()) != (cut.dev, cut.ino) || m.nlink() != 1 || m.len() < cut.size {
            return Err(ArchiveError::changed_meanwhile(file.display().to_string()));
        }
        handle.set_len(cut.size).map_err(io("cut back"))?;
    }
    if m.permissions().mode() & 0o7777 != mode {
        handle
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("set the mode of"))?;
    }
    // Cutting a file back sets its mtime to now.
    if cut.is_some() || FileTime::from_last_modification_time(&m).unix_seconds() != mtime {
        filetime::set_file_handle_times(&handle, None, Some(FileTime::from_unix_time(mtime, 0)))
            .map_err(io("set the time of"))?;
    }
    Ok(())
}

/// Opens a folder itself, failing on a symlink rather than following it.
fn open_folder(dir: &Path) -> std::io::Result<fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
}

/// Renames staged files into place on a few threads; where one destination appears more than
/// once only the last one moves and the others are removed.
fn rename_all(renames: &[(PathBuf, PathBuf)]) -> Result<(), ArchiveError> {
    let mut last: HashMap<&std::ffi::OsStr, usize> = HashMap::with_capacity(renames.len());
    for (i, (_, dest)) in renames.iter().enumerate() {
        last.insert(dest.as_os_str(), i);
    }
    let work: Vec<&(PathBuf, PathBuf)> = renames
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            if last.get(r.1.as_os_str()) == Some(&i) {
                Some(r)
            } else {
                let _ = fs::remove_file(&r.0);
                None
            }
        })
        .collect();
    let chunk = work.len().div_ceil(RENAME_THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = work
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    for (tmp, dest) in part {
                        fs::rename(tmp, dest).map_err(|source| ArchiveError::Io {
                            op: "move into place",
                            path: dest.display().to_string(),
                            source,
                        })?;
                    }
                    Ok::<(), ArchiveError>(())
                })
            })
            .collect();
        let mut first = Ok(());
        for h in handles {
            let result = h.join().unwrap_or_else(|_| {
                Err(ArchiveError::Internal {
                    what: "a thread moving files into place stopped".into(),
                })
            });
            if first.is_ok() {
                first = result;
            }
        }
        first
    })
}
