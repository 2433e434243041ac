//! Saves and restores of chunked entries against a local store: the tree comes back whole, a
//! second save uploads only new chunks, and a restore into a folder holding most of the entry
//! keeps what is right and leaves the tree equal to the entry.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::archive::{self, PackPlan};
use crate::entry::{self, Encoding, Land, PackRequest, Packed};
use crate::env_vars::Environment;
use crate::paths::PathContext;
use crate::store::Store;
use crate::unpack::{LandOptions, Lander, UnpackStats};

use super::Known;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Kind, mode, mtime and content (or target) of everything below `root`.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_map(std::result::Result::ok)
        .map(|e| {
            let m = std::fs::symlink_metadata(e.path()).expect("meta");
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("below")
                .display()
                .to_string();
            let what = if m.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(e.path()).expect("link"))
            } else if m.is_dir() {
                format!("dir {:o} {}", m.mode() & 0o7777, m.mtime())
            } else {
                let data = std::fs::read(e.path()).expect("read");
                format!(
                    "file {:o} {} {}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    super::ChunkHash::of(&data).to_hex()
                )
            };
            (rel, what)
        })
        .collect()
}

fn tree(dir: &Path) -> Result<()> {
    let t = dir.join("tree");
    std::fs::create_dir_all(t.join("sub/empty"))?;
    std::fs::write(t.join("small.txt"), b"hello\n")?;
    std::fs::write(t.join("empty"), b"")?;
    std::fs::write(t.join("sub/big.bin"), noise(3 << 20, 5))?;
    std::fs::write(t.join("sub/copy.bin"), noise(3 << 20, 5))?;
    std::fs::write(t.join("run.sh"), b"#!/bin/sh\n")?;
    std::fs::set_permissions(t.join("run.sh"), std::fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::symlink("small.txt", t.join("link"))?;
    std::fs::hard_link(t.join("run.sh"), t.join("sub/run-again.sh"))?;
    for (p, s) in [
        ("small.txt", 1_600_000_000),
        ("sub", 1_600_000_100),
        ("sub/empty", 1_600_000_200),
    ] {
        let ft = filetime::FileTime::from_unix_time(s, 0);
        filetime::set_file_times(t.join(p), ft, ft)?;
    }
    Ok(())
}

/// A local store in `dir`.
fn local_store(dir: &Path) -> Result<Store> {
    Ok(Store::open(
        &dir.join("store").display().to_string(),
        &Environment::default(),
    )?)
}

async fn save(store: &Store, dir: &Path, known: Known) -> Result<Packed> {
    let at = PathContext {
        cwd: dir.to_path_buf(),
        env: Environment::default(),
    };
    let plan: PackPlan = archive::plan(&["tree".to_string()], &[], &at)?;
    Ok(entry::pack(
        store,
        &format!("p/data/{}.index.zst", crate::manifest::new_id()),
        PackRequest {
            plan,
            encoding: Encoding::Chunked,
            compression: archive::Format::Zstd,
            level: None,
            packs_dir: "p/packs".into(),
            known,
        },
    )
    .await?)
}

async fn restore(store: &Store, packed: &Packed, into: &Path, keep: bool) -> Result<UnpackStats> {
    restore_with(store, packed, into, keep, None).await
}

/// A restore that reads and writes footprints in `footprints`.
async fn restore_with(
    store: &Store,
    packed: &Packed,
    into: &Path,
    keep: bool,
    footprints: Option<&Path>,
) -> Result<UnpackStats> {
    let lander = Lander::new(LandOptions::default());
    let (mut landed, landing) = land(store, packed, into, keep, footprints, lander).await?;
    let written = std::mem::take(&mut landed.written);
    let seen = std::mem::take(&mut landed.folders);
    let staged = landed.staged_folders();
    let resolve = |n: &str| into.join(n);
    // Put together before the commit, as a cache restore does: the folders the restore
    // made are looked up where they are staged.
    let pending = match (footprints, landing.decoded) {
        (Some(dir), Some(index)) => {
            let mut known = landing.unchanged;
            known.extend(super::footprint::written(written));
            let laid = super::footprint::Laid {
                index: &index,
                sha256: &packed.data.sha256,
                mirrored: keep,
                seen: &seen,
                staged: &staged,
            };
            Some(super::footprint::prepare(
                dir,
                &laid,
                &known,
                &packed.tree.paths,
                &resolve,
            )?)
        }
        _ => None,
    };
    let stats = landed.commit_async().await?;
    if let Some(pending) = pending {
        pending.publish(&resolve)?;
    }
    Ok(stats)
}

/// `packed` laid down into `into` through `lander`, waiting for its commit.
async fn land(
    store: &Store,
    packed: &Packed,
    into: &Path,
    keep: bool,
    footprints: Option<&Path>,
    lander: Lander,
) -> Result<(crate::unpack::Landed, entry::Landing)> {
    let base = into.to_path_buf();
    let (lander, landing) = entry::land(
        store,
        lander,
        Land {
            data: packed.data.clone(),
            encoding: Encoding::Chunked,
            tree: packed.tree.clone(),
            resolve: Box::new(move |n: &str| base.join(n)),
            max_entries: None,
            keep_existing: keep,
            mirror: keep,
            footprints: footprints.map(Path::to_path_buf),
            index_copy: None,
        },
    )
    .await?;
    Ok((lander.finish_async().await?, landing))
}

#[tokio::test]
async fn the_files_a_restore_writes_are_recorded_as_they_are_after_its_commit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = local_store(dir.path())?;
    let work = dir.path().join("work");
    tree(&work)?;
    let packed = save(&store, &work, Known::default()).await?;
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    let mut lander = Lander::new(LandOptions::default());
    lander.record_written();
    let (mut landed, landing) = land(&store, &packed, &out, false, None, lander).await?;
    let written = std::mem::take(&mut landed.written);
    landed.commit_async().await?;
    let index = landing.decoded.expect("a chunked entry's index");
    let name = |i: u32| index.entries[i as usize].name.as_str();
    let mut names: Vec<&str> = written.iter().map(|&(i, _)| name(i)).collect();
    names.sort_unstable();
    // The streamed file (`big.bin`) as well as those written whole; no link, no folder.
    assert_eq!(
        names,
        [
            "tree/empty",
            "tree/run.sh",
            "tree/small.txt",
            "tree/sub/big.bin",
            "tree/sub/copy.bin"
        ]
    );
    for (i, seen) in &written {
        let now = crate::unpack::Stat::from(&std::fs::symlink_metadata(out.join(name(*i)))?);
        let id = |s: &crate::unpack::Stat| (s.dev, s.ino, s.size, s.mode, s.mtime);
        assert_eq!(id(seen), id(&now), "{}", name(*i));
    }
    Ok(())
}

async fn known_of(store: &Store, packed: &Packed) -> Result<Known> {
    let index = super::read_index(store, &packed.data, &packed.tree.packs).await?;
    let mut k = Known::default();
    k.add(&index, &packed.tree.packs);
    Ok(k)
}

#[tokio::test]
async fn a_tree_saved_in_chunks_comes_back_whole_and_a_second_save_uploads_only_the_change()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = local_store(dir.path())?;
    let work = dir.path().join("work");
    tree(&work)?;
    let first = save(&store, &work, Known::default()).await?;
    assert_eq!(first.tree.files, 6);
    assert_eq!(first.objects_written, 2, "one pack and the index");
    assert!(
        first.uploaded_bytes < (3 << 20) + 100_000,
        "the copy is stored once: {}",
        first.uploaded_bytes
    );
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    restore(&store, &first, &out, false).await?;
    assert_eq!(snapshot(&out.join("tree")), snapshot(&work.join("tree")));
    let ino = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    assert_eq!(
        ino(&out.join("tree/run.sh")),
        ino(&out.join("tree/sub/run-again.sh")),
        "a hard link comes back as one"
    );

    // One file changed in its middle: the second save uploads a few of its chunks.
    let mut big = noise(3 << 20, 5);
    big[1_500_000..1_500_100].fill(0);
    std::fs::write(work.join("tree/sub/big.bin"), &big)?;
    let second = save(&store, &work, known_of(&store, &first).await?).await?;
    assert_eq!(second.objects_written, 2);
    assert!(
        second.uploaded_bytes < 700_000,
        "only the changed chunks: {} bytes",
        second.uploaded_bytes
    );
    assert!(second.reused_bytes >= 3 << 20, "{}", second.reused_bytes);
    assert_eq!(second.tree.packs.len(), 2, "the new pack and the first one");

    // Restore the second entry over the first, with an extra file: only the changed file is
    // written, the extra one goes, and the tree is the entry.
    std::fs::write(out.join("tree/sub/extra.txt"), b"not in the entry")?;
    std::fs::create_dir_all(out.join("tree/sub/extra-dir/deeper"))?;
    std::fs::set_permissions(
        out.join("tree/run.sh"),
        std::fs::Permissions::from_mode(0o700),
    )?;
    let stats = restore(&store, &second, &out, true).await?;
    assert_eq!(snapshot(&out.join("tree")), snapshot(&work.join("tree")));
    assert_eq!(
        stats.kept, 3,
        "the linked file is written again with its link: {stats:?}"
    );
    assert_eq!(stats.removed, 2, "{stats:?}");
    Ok(())
}

#[tokio::test]
async fn a_small_file_of_several_chunks_comes_back_whole_from_the_writers_pool() -> Result<()> {
    // Files the writers' pool writes whole, of one chunk and of several (put together from
    // their chunks before they are queued), fresh and over a copy that lost its tail.
    let dir = tempfile::tempdir()?;
    let store = local_store(dir.path())?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("tree"))?;
    let sizes = [
        1,
        20_000,
        150_000,
        crate::unpack::Lander::WHOLE_FILE_MAX as usize,
    ];
    for (i, size) in sizes.iter().enumerate() {
        std::fs::write(work.join(format!("tree/f{i}")), noise(*size, 40 + i as u64))?;
    }
    let packed = save(&store, &work, Known::default()).await?;
    let index = super::read_index(&store, &packed.data, &packed.tree.packs).await?;
    let chunks = |name: &str| {
        let e = index.entries.iter().find(|e| e.name.ends_with(name));
        e.map_or(0, |e| e.chunks.len())
    };
    assert_eq!(chunks("/f1"), 1);
    assert!(
        chunks("/f2") > 1 && chunks("/f3") > 1,
        "{:?}",
        index.entries
    );

    let into = dir.path().join("into");
    restore(&store, &packed, &into, false).await?;
    assert_eq!(snapshot(&into.join("tree")), snapshot(&work.join("tree")));

    let f3 = into.join("tree/f3");
    let cut = std::fs::read(&f3)?;
    std::fs::write(&f3, &cut[..cut.len() / 2])?;
    restore(&store, &packed, &into, true).await?;
    assert_eq!(snapshot(&into.join("tree")), snapshot(&work.join("tree")));
    Ok(())
}

#[tokio::test]
async fn a_large_file_has_larger_blocks_of_its_own() -> Result<()> {
    use super::{BLOCK_TARGET, BLOCK_TARGET_LARGE, CHUNK_MAX};
    let dir = tempfile::tempdir()?;
    let store = local_store(dir.path())?;
    let raw_blocks = |index: &super::index::Index| -> Vec<usize> {
        index.blocks.iter().map(|b| b.raw()).collect::<Vec<_>>()
    };

    // Small files only: blocks of about BLOCK_TARGET.
    let small = dir.path().join("small");
    std::fs::create_dir_all(small.join("tree"))?;
    for i in 0..48 {
        std::fs::write(small.join(format!("tree/f{i}")), noise(100_000, 2 * i + 1))?;
    }
    let packed = save(&store, &small, Known::default()).await?;
    let index = super::read_index(&store, &packed.data, &packed.tree.packs).await?;
    let blocks = raw_blocks(&index);
    assert!(blocks.len() >= 8, "{blocks:?}");
    for b in &blocks[..blocks.len() - 1] {
        assert!(
            (BLOCK_TARGET..BLOCK_TARGET + 100_000).contains(b),
            "{blocks:?}"
        );
    }

    // One file of 5 MiB between two small ones: its chunks go into blocks of about
    // BLOCK_TARGET_LARGE that hold nothing else.
    let large = dir.path().join("large");
    std::fs::create_dir_all(large.join("tree"))?;
    std::fs::write(large.join("tree/a-small"), noise(100_000, 7))?;
    std::fs::write(large.join("tree/big"), noise(5 << 20, 9))?;
    std::fs::write(large.join("tree/z-small"), noise(100_000, 11))?;
    let packed = save(&store, &large, Known::default()).await?;
    let index = super::read_index(&store, &packed.data, &packed.tree.packs).await?;
    let chunks_of = |name: &str| -> Vec<u32> {
        let e = index.entries.iter().find(|e| e.name.ends_with(name));
        e.map(|e| e.chunks.clone()).unwrap_or_default()
    };
    let block_of = |c: &u32| index.chunks[*c as usize].block();
    let big: std::collections::HashSet<usize> = chunks_of("big").iter().map(block_of).collect();
    for small in ["a-small", "z-small"] {
        assert!(
            chunks_of(small).iter().all(|c| !big.contains(&block_of(c))),
            "{small} shares a block with the large file"
        );
    }
    let mut blocks: Vec<usize> = big.iter().map(|&b| index.blocks[b].raw()).collect();
    blocks.sort_unstable_by(|a, b| b.cmp(a));
    let range = BLOCK_TARGET_LARGE..BLOCK_TARGET_LARGE + CHUNK_MAX as usize;
    assert!(blocks.len() <= (5 << 20) / BLOCK_TARGET_LARGE, "{blocks:?}");
    for b in &blocks[..blocks.len() - 1] {
        assert!(range.contains(b), "{blocks:?}");
    }
    Ok(())
}

/// The index records where the steps of each block of small files end, and a save that
/// takes blocks from its base takes their steps with them; a large file's blocks have none.
#[tokio::test]
async fn a_save_records_the_steps_of_its_blocks_and_keeps_those_of_its_base() -> Result<()> {
    use super::{BLOCK_TARGET_LARGE, STEP};
    let dir = tempfile::tempdir()?;
    let store = local_store(dir.path())?;
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("tree"))?;
    for i in 0..12 {
        std::fs::write(
            work.join(format!("tree/f{i:02}")),
            noise(100_000, 3 * i + 1),
        )?;
    }
    std::fs::write(work.join("tree/large"), noise(3 << 20, 99))?;
    let first = save(&store, &work, Known::default()).await?;
    let index = super::read_index(&store, &first.data, &first.tree.packs).await?;
    let stepped: Vec<u32> = index.steps.iter().map(|s| s.0).collect();
    let small: Vec<u32> = (0..index.blocks.len() as u32)
        .filter(|&b| (STEP + 1..BLOCK_TARGET_LARGE).contains(&index.blocks[b as usize].raw()))
        .collect();
    assert!(small.len() >= 4, "{:?}", index.blocks);
    assert_eq!(stepped, small, "every block of small files, and only those");

    // One small file changes: the second entry takes the other blocks, and their steps.
    std::fs::write(work.join("tree/f05"), noise(100_000, 1000))?;
    let second = save(&store, &work, known_of(&store, &first).await?).await?;
    let again = super::read_index(&store, &second.data, &second.tree.packs).await?;
    let where_of = |i: &super::index::Index, b: u32| {
        let block = &i.blocks[b as usize];
        (i.packs[block.pack()].clone(), block.offset())
    };
    let steps_of = |i: &super::index::Index| -> BTreeMap<(String, u64), (u32, Vec<u32>)> {
        i.steps
            .iter()
            .map(|s| (where_of(i, s.0), (s.1, s.2.clone())))
            .collect()
    };
    let (before, after) = (steps_of(&index), steps_of(&again));
    let kept: Vec<_> = after.keys().filter(|k| before.contains_key(*k)).collect();
    assert!(
        !kept.is_empty(),
        "the second entry takes blocks of the first"
    );
    for k in kept {
        assert_eq!(after[k], before[k], "block at {k:?}");
    }
    assert!(
        after.keys().any(|k| !before.contains_key(k)),
        "the changed file's new block has steps too"
    );
    Ok(())
}

/// Returns once the file system's clock, which stamps ctimes in ticks of a few milliseconds,
/// has moved past every ctime below `root`: a footprint written then is newer than them all.
fn past_ctimes_below(root: &Path) -> Result<()> {
    crate::unpack::tests::clock_past(root);
    Ok(())
}

/// Writes into `prints` the footprint a restore of `packed` (whose index is `index`) into `out`
/// leaves, mirroring or not, every file and folder looked up where it is now.
fn leave_footprint(
    prints: &Path,
    out: &Path,
    index: &super::index::Index,
    packed: &Packed,
    mirrored: bool,
) -> Result<()> {
    let resolve = |n: &str| out.join(n);
    let laid = super::footprint::Laid {
        index,
        sha256: &packed.data.sha256,
        mirrored,
        seen: &[],
        staged: &[],
    };
    let none = Default::default();
    super::footprint::prepare(prints, &laid, &none, &packed.tree.paths, &resolve)?
        .publish(&resolve)?;
    Ok(())
}

#[tokio::test]
async fn a_footprint_vouches_only_for_files_untouched_since_it_was_written() -> Result<()> {
    use super::footprint::{Footprint, content_id};
    let dir = tempfile::tempdir()?;
    let store = local_store(dir.path())?;
    let work = dir.path().join("work");
    tree(&work)?;
    std::fs::write(work.join("tree/sub/a.txt"), b"AAAA")?;
    std::fs::write(work.join("tree/sub/b.txt"), b"BBBB")?;
    let packed = save(&store, &work, Known::default()).await?;
    let index = super::read_index(&store, &packed.data, &packed.tree.packs).await?;
    let out = dir.path().join("out");
    let prints = dir.path().join("footprints");
    std::fs::create_dir_all(&out)?;
    restore_with(&store, &packed, &out, false, None).await?;
    // Footprints written once the clock has passed the restore's last change.
    let remember = || -> Result<()> {
        past_ctimes_below(&out)?;
        leave_footprint(&prints, &out, &index, &packed, true)
    };
    remember()?;

    let resolve = |n: &str| out.join(n);
    let vouched = |name: &str| -> bool {
        let roots: Vec<_> = packed
            .tree
            .paths
            .iter()
            .map(|r| (r.clone(), resolve(r)))
            .collect();
        let print = Footprint::load(&prints, &roots);
        let e = index.entries.iter().find(|e| e.name == name).expect(name);
        let meta = std::fs::symlink_metadata(out.join(name)).expect(name);
        print.vouches(name, &(&meta).into(), &content_id(&index, &e.chunks))
    };
    for name in [
        "tree/small.txt",
        "tree/sub/big.bin",
        "tree/sub/a.txt",
        "tree/sub/b.txt",
    ] {
        assert!(vouched(name), "{name} is as the restore left it");
    }
    assert!(
        !vouched("tree/run.sh"),
        "a file another name links to is written again, never kept"
    );

    // Same size, same mtime, other bytes: its ctime is newer than the footprint.
    let small = out.join("tree/small.txt");
    std::fs::write(&small, b"HELLO\n")?;
    let ft = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_times(&small, ft, ft)?;
    assert!(
        !vouched("tree/small.txt"),
        "a rewritten file with its time set back"
    );

    // Two files of one size swapped: each name now holds the other's inode.
    std::fs::rename(out.join("tree/sub/a.txt"), out.join("tree/sub/t"))?;
    std::fs::rename(out.join("tree/sub/b.txt"), out.join("tree/sub/a.txt"))?;
    std::fs::rename(out.join("tree/sub/t"), out.join("tree/sub/b.txt"))?;
    assert!(!vouched("tree/sub/a.txt") && !vouched("tree/sub/b.txt"));

    // A footprint that is not one is none.
    let files: Vec<_> = std::fs::read_dir(&prints)?.collect::<std::io::Result<_>>()?;
    assert_eq!(files.len(), 1, "one root, one footprint");
    std::fs::write(files[0].path(), b"ferry-footprint 2\n\x09\x00\x00\x00tree/")?;
    assert!(!vouched("tree/sub/big.bin"), "a malformed footprint");

    // A restore that reads footprints kept the untouched files and put back the others.
    restore_with(&store, &packed, &out, true, Some(&prints)).await?;
    remember()?;
    assert_eq!(snapshot(&out.join("tree")), snapshot(&work.join("tree")));
    let stats = restore_with(&store, &packed, &out, true, Some(&prints)).await?;
    assert_eq!(snapshot(&out.join("tree")), snapshot(&work.join("tree")));
    assert_eq!(stats.kept, 6, "{stats:?}");
    Ok(())
}

#[tokio::test]
async fn a_footprint_settles_folders_only_for_a_restore_of_the_entry_it_was_left_by() -> Result<()>
{
    use super::footprint::Footprint;
    let dir = tempfile::tempdir()?;
    let store = local_store(dir.path())?;
    let work = dir.path().join("work");
    tree(&work)?;
    std::fs::write(work.join("tree/sub/a.txt"), b"AAAA")?;
    let first = save(&store, &work, Known::default()).await?;
    std::fs::remove_file(work.join("tree/sub/a.txt"))?;
    let second = save(&store, &work, Known::default()).await?;
    let out = dir.path().join("out");
    let prints = dir.path().join("footprints");
    std::fs::create_dir_all(&out)?;
    restore_with(&store, &first, &out, true, Some(&prints)).await?;
    let at = out.join("tree");
    let id = |name: &str| {
        let m = std::fs::metadata(out.join(name)).expect("folder");
        (name.to_string(), (m.dev(), m.ino()))
    };
    // A restore into an empty folder names the folders it made as they are in place.
    let settled = Footprint::settled(&prints, &at, "tree", &first.data.sha256);
    let mut folders = settled.expect("settled").folders;
    folders.sort();
    assert_eq!(folders, ["tree", "tree/sub", "tree/sub/empty"].map(id));
    // Written once the clock has passed the restore's last change: every folder settled.
    past_ctimes_below(&out)?;
    let index = super::read_index(&store, &first.data, &first.tree.packs).await?;
    leave_footprint(&prints, &out, &index, &first, true)?;
    let settled = Footprint::settled(&prints, &at, "tree", &first.data.sha256);
    let mut folders = settled.expect("settled").folders;
    folders.sort();
    assert_eq!(folders, ["tree", "tree/sub", "tree/sub/empty"].map(id));
    assert!(Footprint::settled(&prints, &at, "tree", &second.data.sha256).is_none());

    // The other entry lacks a file of a folder unchanged since: it is listed, and the file
    // removed.
    restore_with(&store, &second, &out, true, Some(&prints)).await?;
    assert_eq!(snapshot(&at), snapshot(&work.join("tree")));
    assert!(!at.join("sub/a.txt").exists());
    // Its own footprint names the folders as its walk found them.
    let settled = Footprint::settled(&prints, &at, "tree", &second.data.sha256);
    let mut folders = settled.expect("settled").folders;
    folders.sort();
    assert_eq!(folders, ["tree", "tree/sub", "tree/sub/empty"].map(id));

    // A footprint of a restore that did not mirror settles nothing.
    leave_footprint(&prints, &out, &index, &first, false)?;
    assert!(Footprint::settled(&prints, &at, "tree", &first.data.sha256).is_none());
    Ok(())
}

#[tokio::test]
async fn a_restore_from_a_ranged_store_fetches_what_its_check_finds_missing_and_lays_it_down_whole()
-> Result<()> {
    // A store read by ranges, not on this machine: the files the check finds missing, or
    // holding none of their chunks, are fetched while it goes on.
    let dir = tempfile::tempdir()?;
    let store = Store::open("memory://", &Environment::default())?;
    let work = dir.path().join("work");
    tree(&work)?;
    // Small files of their own content, over several blocks.
    let body = |n: u32, salt: u32| -> Vec<u8> {
        let mut x = n << 8 | salt << 1 | 1;
        (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 23) as u8 + b'a'
            })
            .collect()
    };
    for n in 0..300 {
        std::fs::write(work.join(format!("tree/sub/f{n:03}")), body(n, 0))?;
    }
    let packed = save(&store, &work, Known::default()).await?;
    let stored: u64 = packed.tree.packs.iter().map(|p| p.size).sum();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out)?;
    restore(&store, &packed, &out, true).await?;

    // A restore over `out` as a cache restore does it: the tree comes back exactly.
    let again = || async {
        let lander = Lander::new(LandOptions::default());
        let (landed, landing) = land(&store, &packed, &out, true, None, lander).await?;
        let stats = landed.commit_async().await?;
        assert_eq!(snapshot(&out.join("tree")), snapshot(&work.join("tree")));
        Ok::<_, Box<dyn std::error::Error>>((stats, landing.downloaded))
    };

    // Removed, rewritten through at the same size, and a large file rewritten short.
    for n in (0..300).step_by(7) {
        std::fs::remove_file(out.join(format!("tree/sub/f{n:03}")))?;
    }
    for n in (3..300).step_by(11) {
        std::fs::write(out.join(format!("tree/sub/f{n:03}")), body(n, 1))?;
    }
    std::fs::write(out.join("tree/sub/big.bin"), b"short")?;
    let (stats, fetched) = again().await?;
    let written = 300u64.div_ceil(7) + (3..300).step_by(11).filter(|n| n % 7 != 0).count() as u64;
    // And `big.bin`, and `run.sh` with the other name it has, written on every restore.
    assert_eq!(stats.files - stats.kept, written + 3, "{stats:?}");
    // No byte of a pack is fetched twice, ahead of the plan or by it.
    let index = packed.data.size;
    assert!(
        fetched > index && fetched - index <= stored,
        "{fetched} bytes downloaded, {stored} stored, index {index}"
    );

    // Nothing missing: the index and the block of `run.sh` are fetched.
    let (_, fetched_again) = again().await?;
    assert!(fetched_again < fetched, "{fetched_again} bytes");
    Ok(())
}
