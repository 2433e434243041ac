//! End-to-end tests of store format 2 (`--format chunked`) against the store under test: a
//! round trip, saves that upload only what changed (counted in objects and bytes written),
//! restores into a folder that holds most of the entry, racing saves, damaged packs, and
//! `cache export` read back by GNU tar.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use ferry_core::manifest;
use ferry_tests::hostile::PROJECT;
use ferry_tests::{TestContext, Value, noise, snapshot};

/// The same tree as the format-1 round trip: nested folders, an empty folder, an executable,
/// a symlink, names with spaces and non-ASCII letters, fixed mtimes; and a few files large
/// enough to be several chunks.
fn make_tree(root: &Path) {
    let files = [
        ("a.txt", "alpha\n"),
        ("nested/deeper/b.json", "{\"b\": 1}\n"),
        ("nested/with space.txt", "spaced\n"),
        ("nested/ünïcødé ñame.txt", "unicode\n"),
        ("bin/run.sh", "#!/bin/sh\necho run\n"),
    ];
    for (rel, body) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }
    for (i, size) in [(0u64, 700_000usize), (1, 2_000_000), (2, 300_000)] {
        std::fs::write(root.join(format!("big{i}.bin")), noise(size, i + 1)).expect("write");
    }
    std::fs::set_permissions(
        root.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    std::fs::create_dir_all(root.join("empty/folder")).expect("mkdir");
    std::os::unix::fs::symlink("nested/deeper/b.json", root.join("link-to-b")).expect("symlink");
    set_times(root);
}

fn set_times(root: &Path) {
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.expect("walk");
        filetime::set_symlink_file_times(e.path(), t, t).expect("set times");
    }
}

fn caches_dir() -> String {
    format!("{}/caches", manifest::project_dir(PROJECT))
}

fn save(ctx: &TestContext, dir: &Path, key: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "--json", "cache", "save", "--key", key, "--path", "tree", "--format", "chunked",
    ];
    args.extend_from_slice(extra);
    let run = ctx.run_in(dir, &args);
    run.ok();
    run.json()
}

fn restore(ctx: &TestContext, dir: &Path, key: &str) -> ferry_tests::Run {
    ctx.run_in(dir, &["--json", "cache", "restore", "--key", key])
}

/// A runner's workspace into which the tree, saved as `ws`, was restored.
fn restored_workspace(ctx: &TestContext) -> std::path::PathBuf {
    make_tree(&ctx.work.join("tree"));
    save(ctx, &ctx.work, "ws", &[]);
    let target = ctx.dir("runner-workspace");
    restore(ctx, &target, "ws").ok();
    target
}

#[test]
fn chunked_round_trip_keeps_bytes_modes_mtimes_links_and_empty_folders() {
    let ctx = TestContext::new();
    make_tree(&ctx.work.join("tree"));
    let saved = save(&ctx, &ctx.work, "v2-tree", &[]);
    assert_eq!(saved["saved"], true);
    assert_eq!(saved["format"], "chunked");
    assert_eq!(saved["files"], 8);
    assert_eq!(
        saved["objects_written"], 2,
        "one pack and the index: {saved}"
    );

    let dest = ctx.dir("elsewhere");
    let run = restore(&ctx, &dest, "v2-tree");
    run.ok();
    let restored = run.json();
    assert_eq!(restored["hit"], "exact");
    assert_eq!(restored["format"], "chunked");
    assert_eq!(
        snapshot(&ctx.work.join("tree")),
        snapshot(&dest.join("tree"))
    );
    assert_eq!(
        std::fs::read_link(dest.join("tree/link-to-b"))
            .expect("link")
            .to_str(),
        Some("nested/deeper/b.json")
    );
}

#[test]
fn a_second_save_after_one_file_changed_uploads_only_its_changed_chunks() {
    let mut ctx = TestContext::new();
    ctx.set_env(
        "XDG_STATE_HOME",
        ctx.root.join("state").display().to_string(),
    );
    let job1 = ctx.dir("job1");
    make_tree(&job1.join("tree"));
    let first = save(&ctx, &job1, "deps-1", &[]);

    // The next job restores deps-1, one dependency changes a little, and it saves deps-2.
    let job2 = ctx.dir("job2");
    restore(&ctx, &job2, "deps-1").ok();
    let direct = ctx.direct();
    let before = direct.sizes(&caches_dir());
    let mut big = noise(2_000_000, 2);
    big[1_000_000..1_000_064].fill(7);
    std::fs::write(job2.join("tree/big1.bin"), &big).expect("write");
    set_times(&job2.join("tree"));
    let second = save(&ctx, &job2, "deps-2", &[]);

    let after = direct.sizes(&caches_dir());
    let new: Vec<&(String, u64)> = after.iter().filter(|o| !before.contains(o)).collect();
    let kinds: Vec<&str> = new
        .iter()
        .map(|(p, _)| p.rsplit('/').nth(1).expect("a folder"))
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["data", "keys", "packs"],
        "one pack, the index and the manifest: {new:?}"
    );
    let pack_bytes: u64 = new
        .iter()
        .filter(|(p, _)| p.contains("/packs/"))
        .map(|(_, s)| s)
        .sum();
    assert!(
        pack_bytes < 600_000,
        "only the changed chunks of a 2 MB file: {pack_bytes} bytes ({second})"
    );
    assert!(
        second["uploaded_bytes"].as_u64()
            < Some(first["uploaded_bytes"].as_u64().expect("bytes") / 4),
        "{first} / {second}"
    );
    assert!(
        second["reused_bytes"].as_u64() > Some(2_500_000),
        "{second}"
    );

    let dest = ctx.dir("fresh");
    restore(&ctx, &dest, "deps-2").ok();
    assert_eq!(snapshot(&job2.join("tree")), snapshot(&dest.join("tree")));
}

#[test]
fn a_save_shares_the_chunks_of_the_newest_entry_under_its_restore_keys() {
    let ctx = TestContext::new();
    make_tree(&ctx.work.join("tree"));
    let first = save(&ctx, &ctx.work, "npm-aaa", &[]);
    ctx.write("tree/new-package/index.js", "module.exports = 1;\n");
    let second = save(&ctx, &ctx.work, "npm-bbb", &["--restore-key", "npm-"]);
    assert!(
        second["uploaded_bytes"].as_u64()
            < Some(first["uploaded_bytes"].as_u64().expect("bytes") / 10),
        "{first} / {second}"
    );
}

/// The work tree saved under `key` to a second, local store, and a job folder that restored
/// it from there.
fn restored_from_elsewhere(ctx: &TestContext, key: &str) -> std::path::PathBuf {
    let elsewhere = ctx.root.join("elsewhere").display().to_string();
    ctx.run(&[
        "cache", "save", "--key", key, "--path", "tree", "--format", "chunked", "--store",
        &elsewhere,
    ])
    .ok();
    let job = ctx.dir("job");
    ctx.run_in(
        &job,
        &["cache", "restore", "--key", key, "--store", &elsewhere],
    )
    .ok();
    job
}

/// A job that restored from another store remembers packs this store does not hold: its save
/// falls back to the newest entry under its restore keys instead of uploading everything.
#[test]
fn a_save_after_a_restore_from_another_store_shares_the_chunks_under_its_restore_keys() {
    let mut ctx = TestContext::new();
    ctx.set_env(
        "XDG_STATE_HOME",
        ctx.root.join("state").display().to_string(),
    );
    make_tree(&ctx.work.join("tree"));
    let first = save(&ctx, &ctx.work, "npm-aaa", &[]);
    let job = restored_from_elsewhere(&ctx, "npm-aaa");
    std::fs::write(job.join("tree/new-package.js"), "module.exports = 1;\n").expect("write");
    let second = save(&ctx, &job, "npm-bbb", &["--restore-key", "npm-"]);
    assert!(
        second["uploaded_bytes"].as_u64()
            < Some(first["uploaded_bytes"].as_u64().expect("bytes") / 10),
        "{first} / {second}"
    );
}

/// An entry larger than a pack is written as several packs, in order, and comes back whole.
#[test]
fn an_entry_of_several_packs_comes_back_whole() {
    let ctx = TestContext::new();
    let tree = ctx.work.join("tree");
    std::fs::create_dir_all(&tree).expect("mkdir");
    for i in 0..3u64 {
        std::fs::write(tree.join(format!("part{i}.bin")), noise(24 << 20, i + 7)).expect("write");
    }
    std::fs::write(tree.join("small.txt"), "after the large ones\n").expect("write");
    let saved = save(&ctx, &ctx.work, "several-packs", &[]);
    assert_eq!(
        saved["objects_written"], 4,
        "three packs and the index: {saved}"
    );
    let dir = ctx.dir("restored");
    restore(&ctx, &dir, "several-packs").ok();
    assert_eq!(snapshot(&dir.join("tree")), snapshot(&tree));
}

/// A file's chunks used again by a file far after it come from what the restore kept, not
/// from the store again, even when they are more than it keeps in memory (the rest wait in
/// a temporary file): the restore downloads no more than the entry stores.
#[test]
fn chunks_used_again_are_fetched_once_even_past_what_memory_keeps() {
    let mut ctx = TestContext::new();
    let tree = ctx.work.join("tree");
    std::fs::create_dir_all(&tree).expect("mkdir");
    let twice = noise(10 << 20, 3);
    std::fs::write(tree.join("a-first.bin"), &twice).expect("write");
    // More blocks between the two than a restore holds at hand.
    for i in 0..9u64 {
        std::fs::write(
            tree.join(format!("m-between-{i}.bin")),
            noise(1 << 20, 10 + i),
        )
        .expect("write");
    }
    std::fs::write(tree.join("z-again.bin"), &twice).expect("write");
    let saved = save(&ctx, &ctx.work, "used-twice", &[]);
    let stored = saved["bytes"].as_u64().expect("stored bytes");
    assert!(
        stored < 21 << 20,
        "the second copy is stored as the first's chunks: {saved}"
    );

    let dir = ctx.dir("restored");
    let run = restore(&ctx, &dir, "used-twice");
    run.ok();
    let restored = run.json();
    assert_eq!(snapshot(&dir.join("tree")), snapshot(&tree));
    assert!(
        restored["bytes"].as_u64().expect("downloaded bytes") <= stored,
        "every block fetched once: {restored} against {saved}"
    );

    // Where no temporary file can be made, the chunks stay in memory and the restore goes on.
    ctx.set_env(
        "TMPDIR",
        ctx.root.join("no-such-folder").display().to_string(),
    );
    let dir = ctx.dir("restored-without-tmp");
    let run = restore(&ctx, &dir, "used-twice");
    run.ok();
    assert_eq!(snapshot(&dir.join("tree")), snapshot(&tree));
    assert!(run.json()["bytes"].as_u64().expect("downloaded bytes") <= stored);
}

/// A restore needing only files at the start of a block fetches only the start of it, an
/// estimate from the block's compression as a whole; where the start compresses worse than
/// the rest, the estimate falls short and the rest of the block is fetched before the
/// files are written.
#[test]
fn a_block_fetched_in_part_is_completed_when_its_start_falls_short() {
    let ctx = TestContext::new();
    let tree = ctx.work.join("tree");
    std::fs::create_dir_all(&tree).expect("mkdir");
    // `even` is one block that compresses evenly; `uneven` one whose first 120 KB do not
    // compress and whose last 300 KB are zeros. Each restore below needs only its first file.
    for (dir, rest) in [("even", noise(300_000, 9)), ("uneven", vec![0u8; 300_000])] {
        std::fs::create_dir_all(tree.join(dir)).expect("mkdir");
        std::fs::write(tree.join(dir).join("a-first.bin"), noise(20_000, 7)).expect("write");
        std::fs::write(tree.join(dir).join("b-then.bin"), noise(100_000, 8)).expect("write");
        std::fs::write(tree.join(dir).join("c-last.bin"), rest).expect("write");
    }
    let saved = save(&ctx, &ctx.work, "in-part", &[]);
    let stored = saved["bytes"].as_u64().expect("stored bytes");

    let target = ctx.dir("runner-workspace");
    restore(&ctx, &target, "in-part").ok();
    let removed = |dir: &str, files: &[&str]| {
        for f in files {
            std::fs::remove_file(target.join("tree").join(dir).join(f)).expect("rm");
        }
        let run = restore(&ctx, &target, "in-part");
        run.ok();
        assert_eq!(snapshot(&target.join("tree")), snapshot(&tree));
        run.json()["bytes"].as_u64().expect("downloaded bytes")
    };
    let even = removed("even", &["a-first.bin"]);
    assert!(
        even < 200_000,
        "the start of a block of {} bytes: {even} downloaded",
        stored
    );
    let uneven = removed("uneven", &["a-first.bin", "b-then.bin"]);
    assert!(
        uneven >= 120_000,
        "the block's start and its rest: {uneven} downloaded"
    );
}

/// A job's state may name entries of another store (or long pruned) whose index copies are
/// gone: the save looks their packs up first and reads no index of an entry this store does
/// not hold, so it neither warns about them nor pays for them.
#[test]
fn a_save_reads_no_index_of_a_restored_entry_whose_packs_this_store_lacks() {
    let mut ctx = TestContext::new();
    let state = ctx.root.join("state");
    ctx.set_env("XDG_STATE_HOME", state.display().to_string());
    make_tree(&ctx.work.join("tree"));
    let job = restored_from_elsewhere(&ctx, "npm-aaa");
    let copies = state.join("ferry/caches/indexes");
    assert!(copies.is_dir(), "the restore keeps a copy of its index");
    std::fs::remove_dir_all(&copies).expect("remove the copies");
    let run = ctx.run_in(
        &job,
        &[
            "--json", "cache", "save", "--key", "npm-bbb", "--path", "tree", "--format", "chunked",
        ],
    );
    run.ok();
    assert_eq!(run.json()["saved"], true);
    assert!(!run.stderr.contains("could not read"), "{}", run.stderr);
}

/// A job that restored the same tree from this store and from another, in either order: the
/// chunks are taken from the entry whose packs this store holds.
#[test]
fn a_save_takes_known_chunks_from_the_restored_entry_this_store_holds() {
    let mut ctx = TestContext::new();
    make_tree(&ctx.work.join("tree"));
    let first = save(&ctx, &ctx.work, "deps-1", &[]);
    let elsewhere = ctx.root.join("elsewhere").display().to_string();
    ctx.run(&[
        "cache", "save", "--key", "deps-1", "--path", "tree", "--format", "chunked", "--store",
        &elsewhere,
    ])
    .ok();
    for (i, order) in [["here", "elsewhere"], ["elsewhere", "here"]]
        .iter()
        .enumerate()
    {
        ctx.set_env(
            "XDG_STATE_HOME",
            ctx.root.join(format!("state-{i}")).display().to_string(),
        );
        let job = ctx.dir(&format!("job-{i}"));
        for from in order {
            let mut args = vec!["cache", "restore", "--key", "deps-1"];
            if *from == "elsewhere" {
                args.extend(["--store", elsewhere.as_str()]);
            }
            ctx.run_in(&job, &args).ok();
        }
        std::fs::write(job.join("tree/new-package.js"), "module.exports = 1;\n").expect("write");
        let second = save(&ctx, &job, &format!("deps-2-{i}"), &[]);
        assert!(
            second["uploaded_bytes"].as_u64()
                < Some(first["uploaded_bytes"].as_u64().expect("bytes") / 10),
            "restored from {order:?}: {first} / {second}"
        );
    }
}

#[test]
fn a_restore_into_a_folder_holding_most_of_the_entry_rewrites_only_what_differs() {
    let ctx = TestContext::new();
    make_tree(&ctx.work.join("tree"));
    save(&ctx, &ctx.work, "ws", &["--exclude", "tree/keep-out"]);

    let target = ctx.dir("runner-workspace");
    restore(&ctx, &target, "ws").ok();
    let t = target.join("tree");
    // Since then: one file edited, one removed, one mode changed, extra files and folders
    // added (one where the entry has a file), and a file put where the entry has a folder.
    std::fs::write(t.join("a.txt"), "edited\n").expect("write");
    std::fs::remove_file(t.join("big2.bin")).expect("rm");
    std::fs::set_permissions(t.join("bin/run.sh"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    std::fs::write(t.join("nested/extra.o"), "stale").expect("write");
    std::fs::create_dir_all(t.join("extra-dir/deep")).expect("mkdir");
    std::fs::write(t.join("extra-dir/deep/x"), "x").expect("write");
    std::fs::remove_dir_all(t.join("empty/folder")).expect("rm");
    std::fs::write(t.join("empty/folder"), "a file where a folder was").expect("write");
    std::fs::create_dir_all(t.join("keep-out")).expect("mkdir");
    std::fs::write(
        t.join("keep-out/mine"),
        "excluded from the save, so left alone",
    )
    .expect("write");
    let outside = target.join("beside-the-tree.txt");
    std::fs::write(&outside, "not below a saved path").expect("write");

    let run = restore(&ctx, &target, "ws");
    run.ok();
    let out = run.json();
    assert_eq!(out["kept_files"], 6, "{out}");
    assert_eq!(out["files"], 8, "{out}");
    assert_eq!(out["removed"], 3, "{out}");
    let mut expected = snapshot(&ctx.work.join("tree"));
    let mut got = snapshot(&t);
    assert!(got.remove("keep-out").is_some() && got.remove("keep-out/mine").is_some());
    expected.retain(|k, _| !k.starts_with("keep-out"));
    assert_eq!(got, expected);
    assert!(outside.exists());
}

#[test]
fn a_file_changed_behind_a_restores_footprint_is_read_and_put_back() {
    let ctx = TestContext::new();
    let target = restored_workspace(&ctx);
    let footprints = ctx.home.join(".local/state/ferry/footprints");
    assert_eq!(
        std::fs::read_dir(&footprints).expect("footprints").count(),
        1,
        "one footprint for the one saved path"
    );

    // What a later step of the job could do: the same bytes count with the time set back,
    // in place and by putting another file over it.
    let t = target.join("tree");
    let then = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    std::fs::write(t.join("a.txt"), "ALPHA\n").expect("write");
    filetime::set_file_times(t.join("a.txt"), then, then).expect("time");
    let other = target.join("other.bin");
    std::fs::write(&other, noise(2_000_000, 99)).expect("write");
    filetime::set_file_times(&other, then, then).expect("time");
    std::fs::rename(&other, t.join("big1.bin")).expect("rename");

    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(run.json()["kept_files"], 6, "{}", run.json());
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    // Nothing changed since: every file is kept.
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(run.json()["kept_files"], 8, "{}", run.json());
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
}

#[test]
fn a_restore_of_another_entry_removes_what_only_the_last_one_held() {
    let ctx = TestContext::new();
    let target = restored_workspace(&ctx);
    // The next version of the tree lacks a file and a folder; nothing in the workspace
    // changed since the last restore, whose footprint describes it.
    std::fs::remove_file(ctx.work.join("tree/nested/with space.txt")).expect("rm");
    std::fs::remove_dir_all(ctx.work.join("tree/empty")).expect("rm");
    save(&ctx, &ctx.work, "ws-2", &[]);

    let run = restore(&ctx, &target, "ws-2");
    run.ok();
    assert_eq!(run.json()["removed"], 2, "{}", run.json());
    assert_eq!(
        snapshot(&target.join("tree")),
        snapshot(&ctx.work.join("tree"))
    );
    // And back: the same workspace restored to the first entry again.
    std::fs::remove_dir_all(ctx.work.join("tree")).expect("rm");
    make_tree(&ctx.work.join("tree"));
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(
        snapshot(&target.join("tree")),
        snapshot(&ctx.work.join("tree"))
    );
}

#[test]
fn a_file_reached_through_a_symlinked_folder_below_the_saved_path_is_never_kept() {
    let ctx = TestContext::new();
    let target = restored_workspace(&ctx);
    // An earlier step moved `nested` out of the tree and left a link to it: every file
    // below the link holds the entry's bytes, with its footprint's identity.
    let t = target.join("tree");
    let moved = target.join("moved-out");
    std::fs::rename(t.join("nested"), &moved).expect("move");
    std::os::unix::fs::symlink(&moved, t.join("nested")).expect("symlink");
    let outside_before = snapshot(&moved);

    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(
        run.json()["kept_files"],
        5,
        "the 3 files below the link are written again: {}",
        run.json()
    );
    assert!(
        std::fs::symlink_metadata(t.join("nested"))
            .expect("nested")
            .is_dir(),
        "the link was replaced by a folder"
    );
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    assert_eq!(
        snapshot(&moved),
        outside_before,
        "nothing changed through the link"
    );
}

#[test]
fn a_file_appended_to_or_rewritten_in_place_gives_back_the_chunks_it_still_holds() {
    let ctx = TestContext::new();
    let target = restored_workspace(&ctx);
    let t = target.join("tree");
    let index_only = restore(&ctx, &target, "ws");
    index_only.ok();
    let index_only = index_only.json()["bytes"].as_u64().expect("bytes");

    // Appended to: every chunk of the entry's file is still at its offset.
    let mut big = std::fs::read(t.join("big1.bin")).expect("read");
    big.extend_from_slice(b"appended by a later step\n");
    std::fs::write(t.join("big1.bin"), &big).expect("write");
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    assert_eq!(
        run.json()["bytes"].as_u64(),
        Some(index_only),
        "nothing but the index is fetched: {}",
        run.json()
    );

    // 100 bytes rewritten in the middle of 2 MB: only the chunk holding them is fetched,
    // with the block it is stored in (about 1 MiB), not the whole file.
    let mut big = std::fs::read(t.join("big1.bin")).expect("read");
    big[1_000_000..1_000_100].fill(b'x');
    std::fs::write(t.join("big1.bin"), &big).expect("write");
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    let fetched = run.json()["bytes"].as_u64().expect("bytes") - index_only;
    assert!(
        fetched > 0 && fetched < 1_500_000,
        "{fetched} bytes of packs fetched for one changed chunk of a 2 MB file"
    );
}

#[test]
fn a_file_appended_to_is_cut_back_in_place_unless_it_has_another_name_or_is_read_only() {
    use std::os::unix::fs::MetadataExt;
    let ctx = TestContext::new();
    let target = restored_workspace(&ctx);
    let t = target.join("tree");
    let append = |name: &str, tail: &[u8]| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(t.join(name))
            .expect("open");
        std::io::Write::write_all(&mut f, tail).expect("append");
    };
    let inode = |name: &str| std::fs::metadata(t.join(name)).expect("stat").ino();

    // Appended to: the same file is cut back where it is, nothing written anew.
    let (a, b) = (inode("a.txt"), inode("nested/deeper/b.json"));
    append("a.txt", b"a log line\n");
    append("nested/deeper/b.json", b"more\n");
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    assert_eq!(run.json()["kept_files"], 8, "{}", run.json());
    assert_eq!(inode("a.txt"), a, "a.txt was cut back in place");
    assert_eq!(inode("nested/deeper/b.json"), b);

    // A second name, outside the restored tree: cutting the file would change that name
    // too, so it is written anew and the other name keeps its bytes.
    append("a.txt", b"again\n");
    let other = ctx.dir("outside").join("other-name");
    std::fs::hard_link(t.join("a.txt"), &other).expect("link");
    let held = std::fs::read(&other).expect("read");
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    assert_ne!(inode("a.txt"), a, "a.txt was written anew");
    assert_eq!(
        std::fs::read(&other).expect("read"),
        held,
        "the other name is as it was"
    );

    // Read-only to its owner: written anew too, with the entry's mode.
    let b_now = inode("nested/deeper/b.json");
    append("nested/deeper/b.json", b"more\n");
    std::fs::set_permissions(
        t.join("nested/deeper/b.json"),
        std::fs::Permissions::from_mode(0o444),
    )
    .expect("chmod");
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    assert_ne!(
        inode("nested/deeper/b.json"),
        b_now,
        "b.json was written anew"
    );
}

/// The copies of restored indexes the job's state keeps.
fn index_copies(ctx: &TestContext) -> Vec<std::path::PathBuf> {
    let dir = ctx.home.join(".local/state/ferry/caches/indexes");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect()
}

#[test]
fn a_restore_reads_the_index_its_job_kept_and_fetches_it_when_the_copy_was_altered() {
    let ctx = TestContext::new();
    let target = restored_workspace(&ctx);
    let t = target.join("tree");
    let copies = index_copies(&ctx);
    assert_eq!(copies.len(), 1, "the job kept the index it restored");

    // Nothing changed since the first restore, and the index is at hand: nothing is fetched.
    let run = restore(&ctx, &target, "ws");
    run.ok();
    assert_eq!(run.json()["bytes"], 0, "{}", run.json());
    assert_eq!(run.json()["kept_files"], 8, "{}", run.json());

    // A copy changed behind the job's back (same size, one byte flipped) is not used: the
    // store's index is fetched, and the restore is still exact.
    let mut altered = std::fs::read(&copies[0]).expect("read");
    let middle = altered.len() / 2;
    altered[middle] ^= 0xff;
    std::fs::write(&copies[0], &altered).expect("write");
    std::fs::remove_file(t.join("a.txt")).expect("rm");
    let run = restore(&ctx, &target, "ws");
    run.ok();
    let index_size = std::fs::metadata(&copies[0]).expect("copy").len();
    assert!(
        run.json()["bytes"].as_u64().expect("bytes") > index_size,
        "the index and a.txt's block are fetched: {}",
        run.json()
    );
    assert_eq!(snapshot(&t), snapshot(&ctx.work.join("tree")));
    assert_ne!(
        std::fs::read(&copies[0]).expect("read"),
        altered,
        "the restore kept the store's copy again"
    );
}

#[test]
fn racing_chunked_saves_of_one_key_publish_once_and_the_losers_leave_no_packs() {
    let ctx = TestContext::new();
    let mut children = Vec::new();
    for i in 0..6 {
        let dir = ctx.dir(&format!("job{i}"));
        for f in 0..10 {
            let p = dir.join(format!("tree/f{f}.bin"));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, noise(50_000, i * 100 + f)).expect("write");
        }
        let child = ctx
            .ferry_in(&dir)
            .args([
                "--json", "cache", "save", "--key", "race", "--path", "tree", "--format", "chunked",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        children.push(child);
    }
    let results: Vec<Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).expect("json")
        })
        .collect();
    let saved = results.iter().filter(|r| r["saved"] == true).count();
    assert_eq!(saved, 1, "{results:?}");
    let objects = ctx.direct().list(&caches_dir());
    let packs = objects.iter().filter(|p| p.contains("/packs/")).count();
    let indexes = objects.iter().filter(|p| p.contains("/data/")).count();
    assert_eq!((packs, indexes), (1, 1), "{objects:?}");

    let dest = ctx.dir("restored");
    restore(&ctx, &dest, "race").ok();
    let winner = (0..6)
        .find(|i| std::fs::read(dest.join("tree/f0.bin")).ok() == Some(noise(50_000, i * 100)))
        .expect("the files of one save");
    for f in 0..10 {
        assert_eq!(
            std::fs::read(dest.join(format!("tree/f{f}.bin"))).expect("file"),
            noise(50_000, winner * 100 + f),
            "a restore mixes saves"
        );
    }
}

/// Saves `key` and returns its pack objects (path, size).
fn saved_packs(ctx: &TestContext, key: &str) -> Vec<(String, u64)> {
    make_tree(&ctx.work.join("tree"));
    save(ctx, &ctx.work, key, &[]);
    ctx.direct()
        .sizes(&caches_dir())
        .into_iter()
        .filter(|(p, _)| p.contains("/packs/"))
        .collect()
}

/// Restores `key` into a folder that already holds an older tree and checks the restore
/// exits 5 naming `says`, and the folder is exactly as it was.
fn refused_and_untouched(ctx: &TestContext, key: &str, says: &str) {
    let target = ctx.dir("target");
    std::fs::create_dir_all(target.join("tree/nested")).expect("mkdir");
    std::fs::write(target.join("tree/a.txt"), "old contents").expect("write");
    std::fs::write(target.join("tree/mine.txt"), "keep me").expect("write");
    let before = snapshot(&target);
    let run = restore(ctx, &target, key);
    run.expect_code(5);
    assert!(run.stderr.contains(says), "{}", run.stderr);
    assert_eq!(
        snapshot(&target),
        before,
        "a failed restore changed the tree"
    );
}

#[test]
fn a_corrupted_chunk_fails_with_5_and_leaves_the_target_as_it_was() {
    let ctx = TestContext::new();
    let packs = saved_packs(&ctx, "bad-chunk");
    let (pack, _) = &packs[0];
    let direct = ctx.direct();
    let mut bytes = direct.get(pack).expect("pack");
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x55;
    }
    direct.put(pack, bytes);
    refused_and_untouched(&ctx, "bad-chunk", "pack");
}

#[test]
fn a_missing_pack_fails_with_5_and_leaves_the_target_as_it_was() {
    let ctx = TestContext::new();
    let packs = saved_packs(&ctx, "no-pack");
    ctx.direct().delete(&packs[0].0);
    refused_and_untouched(&ctx, "no-pack", "missing");
}

#[test]
fn a_truncated_pack_fails_with_5_and_leaves_the_target_as_it_was() {
    let ctx = TestContext::new();
    let packs = saved_packs(&ctx, "short-pack");
    let direct = ctx.direct();
    let bytes = direct.get(&packs[0].0).expect("pack");
    direct.put(&packs[0].0, bytes[..bytes.len() - 1000].to_vec());
    refused_and_untouched(&ctx, "short-pack", "truncated");
}

#[test]
fn cache_export_of_a_chunked_entry_unpacks_with_gnu_tar_to_the_same_tree() {
    let ctx = TestContext::new();
    make_tree(&ctx.work.join("tree"));
    save(&ctx, &ctx.work, "to-export", &[]);
    let tar_file = ctx.root.join("export.tar");
    let run = ctx.run(&[
        "--json",
        "cache",
        "export",
        "to-export",
        "-o",
        tar_file.to_str().expect("utf-8"),
    ]);
    run.ok();
    assert_eq!(run.json()["format"], "chunked");
    let out = ctx.dir("by-hand");
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_file)
        .current_dir(&out)
        .status()
        .expect("GNU tar runs");
    assert!(status.success());
    assert_eq!(
        snapshot(&ctx.work.join("tree")),
        snapshot(&out.join("tree"))
    );

    // To standard output too, and a format-1 entry the same way.
    ctx.run(&[
        "cache", "save", "--key", "v1", "--path", "tree", "--format", "gzip",
    ])
    .ok();
    for key in ["to-export", "v1"] {
        let out = ctx
            .ferry()
            .args(["cache", "export", key])
            .output()
            .expect("ferry runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = ctx.dir(&format!("stdout-{key}"));
        let mut tar = std::process::Command::new("tar")
            .arg("-xf")
            .arg("-")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .spawn()
            .expect("tar");
        use std::io::Write;
        tar.stdin
            .take()
            .expect("stdin")
            .write_all(&out.stdout)
            .expect("pipe");
        assert!(tar.wait().expect("tar ends").success());
        assert_eq!(
            snapshot(&ctx.work.join("tree")),
            snapshot(&dir.join("tree")),
            "{key}"
        );
    }
}

#[test]
fn a_job_that_attaches_dist_and_persists_it_again_uploads_only_the_change() {
    let mut ctx = TestContext::new();
    ctx.set_env(
        "XDG_STATE_HOME",
        ctx.root.join("state").display().to_string(),
    );
    ctx.set_env("FERRY_WORKFLOW", "run-1");
    ctx.set_env("FERRY_FORMAT", "chunked");
    let build = ctx.dir("build");
    make_tree(&build.join("dist"));
    let persist = |dir: &Path, job: &str| -> Value {
        let run = ctx.run_in(
            dir,
            &[
                "--json",
                "workspace",
                "persist",
                "--root",
                ".",
                "--path",
                "dist",
                "--job",
                job,
            ],
        );
        run.ok();
        run.json()
    };
    let first = persist(&build, "build");

    let package = ctx.dir("package");
    ctx.run_in(
        &package,
        &["workspace", "attach", "--at", ".", "--job", "package"],
    )
    .ok();
    std::fs::write(package.join("dist/a.txt"), "signed\n").expect("write");
    let second = persist(&package, "package");
    assert!(
        second["uploaded_bytes"].as_u64() < Some(20_000),
        "only the changed file: {second} (the first uploaded {})",
        first["uploaded_bytes"]
    );
    assert_eq!(second["objects_written"], 2, "{second}");

    let deploy = ctx.dir("deploy");
    let run = ctx.run_in(&deploy, &["--json", "workspace", "attach", "--at", "."]);
    run.ok();
    assert_eq!(
        std::fs::read_to_string(deploy.join("dist/a.txt")).expect("read"),
        "signed\n"
    );
    assert_eq!(
        std::fs::read(deploy.join("dist/big1.bin")).expect("read"),
        noise(2_000_000, 2)
    );
}

fn json(ctx: &TestContext, dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = ctx.run_in(dir, &all);
    run.ok();
    run.json()
}

fn packs(ctx: &TestContext) -> Vec<String> {
    ctx.direct()
        .list(&caches_dir())
        .into_iter()
        .filter(|p| p.contains("/packs/"))
        .collect()
}

#[test]
fn prune_never_deletes_a_pack_a_live_entry_needs_even_one_a_running_save_found() {
    let mut ctx = TestContext::new();
    ctx.set_env(
        "XDG_STATE_HOME",
        ctx.root.join("state").display().to_string(),
    );
    // No grace: every object counts as old at once, so only the mark-then-delete protocol
    // keeps the pack; no wait on the clock.
    ctx.set_env("FERRY_PRUNE_GRACE", "0s");
    make_tree(&ctx.work.join("tree"));
    save(&ctx, &ctx.work, "old", &["--ttl", "1h"]);
    let first_pack = packs(&ctx);
    assert_eq!(first_pack.len(), 1);
    // A job restores the old entry; its save will share the old entry's pack.
    let job = ctx.dir("job");
    restore(&ctx, &job, "old").ok();

    // As of two hours on, the entry has expired: prune removes it and marks its pack.
    let pruned = json(&ctx, &ctx.work, &["prune", "--as-of", "+2h"]);
    assert_eq!(
        pruned["marked"].as_array().map(Vec::len),
        Some(1),
        "{pruned}"
    );
    assert_eq!(
        packs(&ctx),
        first_pack,
        "a pack is never deleted on first sight"
    );

    // The job's save, still running then, publishes an entry using that pack.
    std::fs::write(job.join("tree/a.txt"), "changed\n").expect("write");
    let saved = save(&ctx, &job, "new", &[]);
    assert!(saved["reused_bytes"].as_u64() > Some(2_000_000), "{saved}");

    // Its mark is past the grace period, but the pack is used again: it stays, and the entry
    // restores.
    let pruned = json(&ctx, &ctx.work, &["prune"]);
    assert!(
        pruned["removed"].as_array().is_some_and(|r| r
            .iter()
            .all(|r| !r["name"].as_str().unwrap_or("").contains("packs/"))),
        "{pruned}"
    );
    assert!(packs(&ctx).contains(&first_pack[0]));
    let dest = ctx.dir("check");
    restore(&ctx, &dest, "new").ok();
    assert_eq!(snapshot(&job.join("tree")), snapshot(&dest.join("tree")));

    // Once no entry uses them, packs go: marked by one prune, deleted by one a grace later.
    json(&ctx, &ctx.work, &["cache", "rm", "new"]);
    let marked = json(&ctx, &ctx.work, &["prune"]);
    assert_eq!(
        marked["marked"].as_array().map(Vec::len),
        Some(2),
        "{marked}"
    );
    assert_eq!(packs(&ctx).len(), 2);
    json(&ctx, &ctx.work, &["prune"]);
    assert!(packs(&ctx).is_empty(), "{:?}", packs(&ctx));
    assert!(
        ctx.direct()
            .list(&format!("{}/unused", manifest::project_dir(PROJECT)))
            .is_empty()
    );
}

#[test]
fn prune_reports_mostly_dead_packs_and_repack_rewrites_them() {
    let mut ctx = TestContext::new();
    ctx.set_env(
        "XDG_STATE_HOME",
        ctx.root.join("state").display().to_string(),
    );
    make_tree(&ctx.work.join("tree"));
    std::fs::write(ctx.work.join("tree/huge.bin"), noise(4_000_000, 9)).expect("write");
    save(&ctx, &ctx.work, "a", &[]);
    // The next entry keeps the small files and replaces the big ones.
    let job = ctx.dir("job");
    restore(&ctx, &job, "a").ok();
    for (name, seed) in [
        ("huge.bin", 19),
        ("big0.bin", 11),
        ("big1.bin", 12),
        ("big2.bin", 13),
    ] {
        std::fs::write(job.join("tree").join(name), noise(1_000_000, seed)).expect("write");
    }
    save(&ctx, &job, "b", &[]);
    json(&ctx, &ctx.work, &["cache", "rm", "a"]);

    let dry = json(&ctx, &ctx.work, &["prune", "--dry-run"]);
    assert_eq!(dry["dead"]["packs"], 1, "{dry}");
    assert!(
        dry["dead"]["dead_bytes"].as_u64() > Some(5_000_000),
        "{dry}"
    );

    let repacked = json(&ctx, &ctx.work, &["prune", "--repack"]);
    assert_eq!(repacked["repacked"]["packs_rewritten"], 1, "{repacked}");
    assert_eq!(repacked["repacked"]["entries_rewritten"], 1, "{repacked}");
    assert!(
        repacked["repacked"]["bytes_written"].as_u64() < Some(1_500_000),
        "{repacked}"
    );
    let dest = ctx.dir("after-repack");
    restore(&ctx, &dest, "b").ok();
    assert_eq!(snapshot(&job.join("tree")), snapshot(&dest.join("tree")));
    let again = json(&ctx, &ctx.work, &["prune", "--dry-run"]);
    assert_eq!(again["dead"]["packs"], 0, "{again}");
}
