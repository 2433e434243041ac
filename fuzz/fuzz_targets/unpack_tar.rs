#![no_main]
//! Fuzz target `unpack_tar`: a tar stream (plain, or zstd/gzip) laid down by a `Lander` into a
//! fresh tree that already holds files, folders and symlinks (some pointing out), then checked
//! against the restore's guarantees, not only for panics:
//! - a refused restore leaves the tree exactly as it was (names, kinds, modes, mtimes to the
//!   nanosecond, inodes, link counts, contents, link targets);
//! - a restore that succeeds changes only the places its entries name (and the folders on the
//!   way), so nothing is written outside the saved paths or through a link it did not make;
//! - every symlink it makes leads, on disk, inside the saved paths (unless the save recorded it);
//! - no `.ferry-` temporary name is left, no file has setuid or setgid bits.
//!
//! Input: two bytes of settings, then the stream (see `Settings::parse`). Everything happens in
//! a fake file-system root below `$TMPDIR`: `/x` names and absolute link targets are read in it,
//! the working folder is its `/w/c` and HOME its `/h/u`; its `/outside` holds a sentinel.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use ferry_core::archive::{self, ArchiveError, Format};
use ferry_core::unpack::{LandOptions, Lander, Source};
use libfuzzer_sys::fuzz_target;

/// The working folder and HOME inside the fake root.
const CWD: &str = "w/c";
const HOME: &str = "h/u";
/// Saved paths: a relative, a nested, a home, an absolute and a `..` one; or the whole folder.
const ROOTS_A: &[&str] = &["a", "b/c", "~/.x", "/abs", "../up"];
const ROOTS_B: &[&str] = &[".", "~/.x"];
/// A link out of the saved paths that the save recorded (from `/w/c/a` to `/outside`).
const LINK_OUT: (&str, &str) = ("a/out", "../../../outside");
/// Bounds of a "bounded" run, and of every other run's content (as a manifest would record).
const BOUNDED_BYTES: u64 = 4096;
const BOUNDED_ENTRIES: u64 = 16;
const UNBOUNDED_BYTES: u64 = 1 << 20;
/// The most decompressed bytes the oracle reads back to find entry names.
const SCAN_MAX: u64 = 8 << 20;
/// The mtime of everything placed before a run.
const OLD: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Encoding {
    /// The payload is the tar stream.
    Tar,
    /// The payload is a tar stream the harness compresses first, so the decompressors run on
    /// valid streams the fuzzer still shapes.
    ZstdHere,
    GzipHere,
    /// The payload is a compressed stream as it is.
    ZstdRaw,
    GzipRaw,
}

#[derive(Debug)]
struct Settings {
    encoding: Encoding,
    keep_root_links: bool,
    bounded: bool,
    /// Split the payload at this byte into two sources (workspace layers), or not.
    layers: Option<usize>,
    whole_folder: bool,
    /// The saved path `a` is a symlink to a folder elsewhere before the restore.
    root_link: bool,
    /// So is the saved path `b/c`.
    second_root_link: bool,
}

impl Settings {
    /// Byte 0: bits 0-2 encoding (0-3 tar, 4 zstd here, 5 gzip here, 6 zstd, 7 gzip), bit 3
    /// keep root links, bit 4 bounded, bit 5 two layers, bit 6 roots `.` and `~/.x`, bit 7 `a` is
    /// a link. Byte 1: bits 0-6 where the second layer starts, in 512-byte blocks; bit 7 `b/c`
    /// is a link.
    fn parse(data: &[u8]) -> Option<(Self, &[u8])> {
        let (&flags, rest) = data.split_first()?;
        let (&split, payload) = rest.split_first()?;
        let encoding = match flags & 7 {
            4 => Encoding::ZstdHere,
            5 => Encoding::GzipHere,
            6 => Encoding::ZstdRaw,
            7 => Encoding::GzipRaw,
            _ => Encoding::Tar,
        };
        let settings = Settings {
            encoding,
            keep_root_links: flags & 8 != 0,
            bounded: flags & 16 != 0,
            layers: (flags & 32 != 0).then_some(usize::from(split & 127) * 512),
            whole_folder: flags & 64 != 0,
            root_link: flags & 128 != 0,
            second_root_link: split & 128 != 0,
        };
        Some((settings, payload))
    }

    fn roots(&self) -> &'static [&'static str] {
        if self.whole_folder { ROOTS_B } else { ROOTS_A }
    }
}

/// What is at a path, as far as a restore may change it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    mtime: (i64, i64),
    ino: u64,
    nlink: u64,
    /// A file's bytes, or a link's target.
    content: Vec<u8>,
}

type Snapshot = BTreeMap<PathBuf, Node>;

fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("ferry-fuzz-unpack-{}", std::process::id()));
        let _ = make_writable_and_remove(&b);
        fs::create_dir_all(&b).expect("create the fuzzing folder");
        b.canonicalize().expect("canonical fuzzing folder")
    })
}

fn make_writable_and_remove(p: &Path) -> std::io::Result<()> {
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.is_dir() {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
            for e in fs::read_dir(p)?.flatten() {
                make_writable_and_remove(&e.path())?;
            }
            fs::remove_dir(p)?;
        } else {
            fs::remove_file(p)?;
        }
    }
    Ok(())
}

fn set_old(p: &Path) {
    let t = filetime::FileTime::from_unix_time(OLD, 0);
    filetime::set_symlink_file_times(p, t, t).expect("set times");
}

/// The tree before a run, in the fake root `r`. The saved paths `a` and `b/c` may be links the
/// user made to folders elsewhere (`a`'s content is then in `/w/k/a2`).
fn plant(r: &Path, s: &Settings) {
    let w = r.join(CWD);
    let outside = r.join("outside");
    let real_outside = outside.display().to_string();
    let a = if s.root_link {
        r.join("w/k/a2")
    } else {
        w.join("a")
    };
    for d in [
        outside.join("d"),
        a.join("sub"),
        w.join("b"),
        w.join("kept"),
        r.join(HOME).join(".x"),
    ] {
        fs::create_dir_all(d).expect("mkdir");
    }
    let files: &[(&Path, &str, &[u8], u32)] = &[
        (&outside, "sentinel", b"secret", 0o600),
        (&a, "existing", b"e", 0o644),
        (&a, "sub/f", b"f", 0o644),
        (&w, "kept/k", b"k", 0o644),
        (&r.join(HOME), ".x/cfg", b"cfg", 0o600),
    ];
    for (dir, name, bytes, mode) in files {
        let p = dir.join(name);
        fs::write(&p, bytes).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).expect("chmod");
    }
    let mut links: Vec<(PathBuf, String)> = vec![
        (a.join("pre"), "../../../outside".into()),
        (a.join("pre-file"), "../../../outside/sentinel".into()),
        (a.join("inlink"), "sub".into()),
        (a.join("abs"), "/outside".into()),
        (a.join("realabs"), real_outside),
        (r.join(HOME).join(".x/out"), "../../../outside".into()),
    ];
    if s.root_link {
        links.push((w.join("a"), "../k/a2".into()));
    }
    if s.second_root_link {
        links.push((w.join("b/c"), "../kept".into()));
    }
    for (p, t) in &links {
        symlink(t, p).expect("symlink");
    }
    // Deepest first, so setting a child's time does not move its folder's.
    let mut all: Vec<PathBuf> = walk(r).into_iter().collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in all {
        set_old(&p);
    }
}

/// Every path below `dir`, not following links.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            let entries = match fs::read_dir(&p) {
                Ok(e) => e,
                Err(_) => {
                    // A folder restored with mode 000, read by a user other than root.
                    let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o700));
                    fs::read_dir(&p).expect("read a folder")
                }
            };
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            out.extend(names);
        }
    }
    out
}

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    for p in walk(dir) {
        let m = fs::symlink_metadata(&p).expect("metadata");
        let ft = m.file_type();
        let (kind, content) = if ft.is_symlink() {
            let t = fs::read_link(&p).expect("read a link");
            ('l', t.into_os_string().into_encoded_bytes())
        } else if ft.is_dir() {
            ('d', Vec::new())
        } else if ft.is_file() {
            let bytes = fs::read(&p).unwrap_or_else(|_| {
                let _ = fs::set_permissions(&p, fs::Permissions::from_mode(m.mode() | 0o400));
                fs::read(&p).expect("read a file")
            });
            ('f', bytes)
        } else {
            ('o', Vec::new())
        };
        out.insert(
            p,
            Node {
                kind,
                mode: m.mode(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ino: m.ino(),
                nlink: m.nlink(),
                content,
            },
        );
    }
    out
}

/// Where a name goes, in the fake root `r` (what `PathContext::resolve` does on a real disk).
fn resolve_in(r: &Path, name: &str) -> PathBuf {
    if let Some(rest) = name.strip_prefix('/') {
        r.join(rest)
    } else if name == "~" {
        r.join(HOME)
    } else if let Some(rest) = name.strip_prefix("~/") {
        r.join(HOME).join(rest)
    } else {
        r.join(CWD).join(name)
    }
}

/// `p` with `.` and `..` folded lexically (nothing in the fuzzing folder's own path is a link).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where a link's target leads in the fake root `r`, as the kernel would follow it, starting
/// from the folder `from` (fake absolute parts, already free of links). Missing parts are taken
/// as folders (something may make them later). `None` for a loop.
fn follow(r: &Path, from: Vec<String>, target: &str, hops: &mut usize) -> Option<Vec<String>> {
    let mut cur = if target.starts_with('/') { Vec::new() } else { from };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                cur.pop();
            }
            p => {
                cur.push(p.to_string());
                let real = r.join(cur.join("/"));
                if let Ok(next) = fs::read_link(&real) {
                    *hops += 1;
                    if *hops > 40 {
                        return None;
                    }
                    let parent = cur[..cur.len() - 1].to_vec();
                    cur = follow(r, parent, &next.to_string_lossy(), hops)?;
                }
            }
        }
    }
    Some(cur)
}

/// A name as a fake absolute path.
fn fake(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else if name == "~" {
        format!("/{HOME}")
    } else if let Some(rest) = name.strip_prefix("~/") {
        format!("/{HOME}/{rest}")
    } else {
        format!("/{CWD}/{name}")
    }
}

fn within(path: &[String], root: &[String]) -> bool {
    path.len() >= root.len() && path[..root.len()] == *root
}

/// Every string in the stream that could be an entry name: header names, GNU long names and
/// PAX paths. A superset is enough: the oracle allows changes only at these names' places.
fn candidate_names(stream: &[u8]) -> Vec<String> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut ar = tar::Archive::new(stream);
    let Ok(entries) = ar.entries() else {
        return Vec::new();
    };
    for e in entries.raw(true) {
        let Ok(mut e) = e else { break };
        out.push(e.header().path_bytes().into_owned());
        match e.header().entry_type() {
            tar::EntryType::GNULongName => {
                let mut v = Vec::new();
                let _ = (&mut e).take(8192).read_to_end(&mut v);
                while v.last() == Some(&0) {
                    v.pop();
                }
                out.push(v);
            }
            tar::EntryType::XHeader => {
                let mut v = Vec::new();
                let _ = (&mut e).take(1 << 16).read_to_end(&mut v);
                for ext in tar::PaxExtensions::new(&v).flatten() {
                    if ext.key_bytes() == b"path" {
                        out.push(ext.value_bytes().to_vec());
                    }
                }
            }
            _ => {}
        }
    }
    out.into_iter()
        .filter_map(|n| String::from_utf8(n).ok())
        .map(|n| {
            let t = n.trim_end_matches('/');
            if t.is_empty() { n } else { t.to_string() }
        })
        .collect()
}

/// One source's bytes as the lander reads them, and as the oracle reads the tar inside.
struct Part {
    format: Format,
    data: Vec<u8>,
    tar: Vec<u8>,
}

fn part(encoding: Encoding, payload: &[u8]) -> Part {
    let capped = |r: &mut dyn Read| {
        let mut v = Vec::new();
        let _ = r.take(SCAN_MAX).read_to_end(&mut v);
        v
    };
    match encoding {
        Encoding::Tar => Part {
            format: Format::Tar,
            data: payload.to_vec(),
            tar: payload.to_vec(),
        },
        Encoding::ZstdHere => Part {
            format: Format::Zstd,
            data: zstd::encode_all(payload, 1).expect("zstd"),
            tar: payload.to_vec(),
        },
        Encoding::GzipHere => {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(payload).expect("gzip");
            Part {
                format: Format::Gzip,
                data: enc.finish().expect("gzip"),
                tar: payload.to_vec(),
            }
        }
        Encoding::ZstdRaw => Part {
            format: Format::Zstd,
            data: payload.to_vec(),
            tar: match zstd::stream::read::Decoder::with_buffer(payload) {
                Ok(mut d) => capped(&mut d),
                Err(_) => Vec::new(),
            },
        },
        Encoding::GzipRaw => Part {
            format: Format::Gzip,
            data: payload.to_vec(),
            tar: capped(&mut flate2::bufread::GzDecoder::new(payload)),
        },
    }
}

fn source(r: &Path, s: &Settings) -> Source {
    let r = r.to_path_buf();
    Source {
        roots: s.roots().iter().map(|x| x.to_string()).collect(),
        links_out: HashSet::from([(LINK_OUT.0.to_string(), LINK_OUT.1.to_string())]),
        resolve: Box::new(move |n: &str| resolve_in(&r, n)),
        max_bytes: Some(if s.bounded {
            BOUNDED_BYTES
        } else {
            UNBOUNDED_BYTES
        }),
        max_entries: s.bounded.then_some(BOUNDED_ENTRIES),
    }
}

fn restore(r: &Path, s: &Settings, parts: &[Part]) -> Result<(), ArchiveError> {
    let mut lander = Lander::new(LandOptions {
        keep_root_links: s.keep_root_links,
    });
    for p in parts {
        lander.begin(source(r, s));
        archive::unpack(&mut lander, p.format, p.data.as_slice())?;
    }
    let landed = lander.finish()?;
    // Nothing changes the tree between finish and commit here: a failing commit is a finding.
    if let Err(e) = landed.commit() {
        panic!("commit failed after every check passed: {e}");
    }
    Ok(())
}

fn run(data: &[u8]) {
    let Some((s, payload)) = Settings::parse(data) else {
        return;
    };
    let t = base().join("run");
    let _ = make_writable_and_remove(&t);
    let r = t.join("root");
    fs::create_dir_all(&r).expect("mkdir");
    plant(&r, &s);
    let parts: Vec<Part> = match s.layers {
        Some(at) => {
            let (one, two) = payload.split_at(at.min(payload.len()));
            vec![part(s.encoding, one), part(s.encoding, two)]
        }
        None => vec![part(s.encoding, payload)],
    };
    // Where kept root links lead, before the restore.
    let roots = s.roots();
    let kept: Vec<(PathBuf, PathBuf)> = roots
        .iter()
        .map(|n| lexical(&resolve_in(&r, n)))
        .filter(|p| s.keep_root_links && fs::symlink_metadata(p).is_ok_and(|m| m.is_symlink()))
        .filter_map(|p| Some((p.clone(), p.canonicalize().ok()?)))
        .collect();
    let before = snapshot(&t);
    let result = restore(&r, &s, &parts);
    let after = snapshot(&t);

    let stray: Vec<_> = fs::read_dir(base())
        .expect("read the fuzzing folder")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "run")
        .collect();
    assert!(stray.is_empty(), "written beside the tree: {stray:?} ({result:?})");
    for (p, n) in &after {
        let name = p.file_name().map(|f| f.to_string_lossy()).unwrap_or_default();
        assert!(!name.contains(".ferry-"), "temporary name left: {p:?} ({result:?})");
        assert!(
            n.kind != 'f' || n.mode & 0o6000 == 0,
            "setuid or setgid file: {p:?} mode {:o}",
            n.mode
        );
    }
    match result {
        Err(e) => {
            if before != after {
                let diff = differences(&before, &after);
                panic!("refused restore ({e}) changed the tree: {diff:#?}");
            }
        }
        Ok(()) => check_success(&r, &s, &parts, &kept, &before, &after),
    }
}

fn differences<'a>(before: &'a Snapshot, after: &'a Snapshot) -> Vec<(&'a Path, String)> {
    let mut paths: Vec<&PathBuf> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|p| before.get(*p) != after.get(*p))
        .map(|p| {
            (
                p.as_path(),
                format!("{:?} -> {:?}", before.get(p), after.get(p)),
            )
        })
        .collect()
}

fn check_success(
    r: &Path,
    s: &Settings,
    parts: &[Part],
    kept: &[(PathBuf, PathBuf)],
    before: &Snapshot,
    after: &Snapshot,
) {
    let root_places: Vec<PathBuf> = s
        .roots()
        .iter()
        .map(|n| lexical(&resolve_in(r, n)))
        .collect();
    // The places entries name within the saved paths (read lexically: a restore that wrote
    // through a link changed another place), and the same places through a kept root link.
    let mut places: HashSet<PathBuf> = HashSet::new();
    for p in parts {
        for n in candidate_names(&p.tar) {
            let place = lexical(&resolve_in(r, &n));
            if !root_places.iter().any(|rp| place.starts_with(rp)) {
                continue;
            }
            for (link, to) in kept {
                if let Ok(rest) = place.strip_prefix(link) {
                    places.insert(to.join(rest));
                }
            }
            places.insert(place);
        }
    }
    let ancestors: HashSet<PathBuf> = places
        .iter()
        .chain(root_places.iter())
        .flat_map(|p| p.ancestors().skip(1).map(Path::to_path_buf))
        .collect();
    for (p, change) in differences(before, after) {
        if places.contains(p) {
            continue;
        }
        let (b, a) = (before.get(p), after.get(p));
        let folder_on_the_way = ancestors.contains(p)
            && a.is_some_and(|a| a.kind == 'd')
            && match b {
                None => true,
                // A folder's own time and link count move as names are added to it.
                Some(b) if b.kind == 'd' => b.mode == a.map_or(0, |a| a.mode) && b.ino == a.map_or(0, |a| a.ino),
                // A link where a folder goes below a saved path is replaced by the folder.
                Some(b) => {
                    b.kind == 'l'
                        && root_places
                            .iter()
                            .any(|rp| p.starts_with(rp) && (p != rp || !s.keep_root_links))
                }
            };
        assert!(
            folder_on_the_way,
            "restore changed {p:?}, which no entry names: {change}"
        );
    }
    // Every link made leads inside the saved paths, on disk, unless the save recorded it.
    let real_roots: Vec<Vec<String>> = s
        .roots()
        .iter()
        .filter_map(|n| follow(r, Vec::new(), &fake(n), &mut 0))
        .collect();
    let recorded = lexical(&resolve_in(r, LINK_OUT.0));
    for (p, n) in after {
        if n.kind != 'l' || before.get(p) == Some(n) {
            continue;
        }
        let target = String::from_utf8_lossy(&n.content).into_owned();
        if *p == recorded && target == LINK_OUT.1 {
            continue;
        }
        let rel = p.strip_prefix(r).expect("inside the fake root");
        let mut parent: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        parent.pop();
        let Some(end) = follow(r, parent, &target, &mut 0) else {
            continue; // a loop leads nowhere
        };
        assert!(
            real_roots.iter().any(|root| within(&end, root)),
            "restored link {p:?} -> {target:?} leads to /{} outside {:?}",
            end.join("/"),
            s.roots()
        );
    }
}

fuzz_target!(|data: &[u8]| run(data));
