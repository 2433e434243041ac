//! Restores that cannot be turned against the machine: hostile archives, manifests, names,
//! keys and trees already on disk, for caches, workspace attach and artifact download, on the
//! store under test. Each finding of the security review has a test named after it.
//!
//! Every restore runs in `victim/proj`; `victim/outside` is where an attack would write. After
//! a refused restore the whole of `victim` is as it was, with no temporary file anywhere.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferry_tests::hostile::{self, Item, Planted, PlantedChunked, Tar};
use ferry_tests::{Run, TestContext, noise, snapshot};

/// The folders of one attack: where restores run and where an attack would write.
struct Victim {
    root: PathBuf,
    proj: PathBuf,
    outside: PathBuf,
}

fn victim(ctx: &TestContext) -> Victim {
    let root = ctx.dir("victim");
    let proj = root.join("proj");
    let outside = root.join("outside");
    std::fs::create_dir_all(proj.join("a")).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(proj.join("keep.txt"), "kept\n").expect("write");
    std::fs::write(proj.join("a/existing.txt"), "existing\n").expect("write");
    std::fs::write(outside.join("sentinel"), "sentinel\n").expect("write");
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    Victim {
        root,
        proj,
        outside,
    }
}

/// Names below `root` that a restore uses for staging.
fn temporaries(root: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().display().to_string())
        .filter(|p| p.contains(".ferry-"))
        .collect()
}

/// Asserts a refused restore: `code`, stderr naming `names`, and `victim` as it was.
#[track_caller]
fn refused(run: &Run, code: i32, names: &[&str], v: &Victim, before: &BTreeMap<String, String>) {
    run.expect_code(code);
    for n in names {
        assert!(
            run.stderr.contains(n),
            "the error names {n:?}:\n{}",
            run.stderr
        );
    }
    assert_eq!(&snapshot(&v.root), before, "the target is as it was");
    assert_eq!(
        temporaries(&v.root),
        Vec::<String>::new(),
        "no temporary file is left"
    );
}

fn restore(ctx: &TestContext, dir: &Path, key: &str) -> Run {
    ctx.run_in(dir, &["--json", "cache", "restore", "--key", key])
}

// --- finding 1 ---------------------------------------------------------------------------

/// `a/s -> .` and `a/l -> s/s/../../outside` normalise lexically to `a/outside`, but on disk
/// lead to `../outside`; a second cache holding `a/l/evil` must not write through `a/l`.
#[test]
fn ordinary_saves_cannot_plant_a_link_that_a_later_restore_writes_through() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let one = ctx.dir("saver-one");
    std::fs::create_dir_all(one.join("a")).expect("mkdir");
    std::os::unix::fs::symlink(".", one.join("a/s")).expect("symlink");
    std::os::unix::fs::symlink("s/s/../../outside", one.join("a/l")).expect("symlink");
    ctx.run_in(&one, &["cache", "save", "--key", "one", "--path", "a"])
        .ok();
    let two = ctx.dir("saver-two");
    std::fs::create_dir_all(two.join("a/l")).expect("mkdir");
    std::fs::write(two.join("a/l/evil"), "evil\n").expect("write");
    std::fs::set_permissions(two.join("a/l"), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    ctx.run_in(&two, &["cache", "save", "--key", "two", "--path", "a"])
        .ok();

    let outside_before = snapshot(&v.outside);
    let outside_mode = std::fs::metadata(&v.outside)
        .expect("meta")
        .permissions()
        .mode();
    restore(&ctx, &v.proj, "one").ok();
    restore(&ctx, &v.proj, "two").ok();
    assert_eq!(
        snapshot(&v.outside),
        outside_before,
        "nothing was written outside"
    );
    assert_eq!(
        std::fs::metadata(&v.outside)
            .expect("meta")
            .permissions()
            .mode(),
        outside_mode,
        "the folder outside kept its mode"
    );
    let l = std::fs::symlink_metadata(v.proj.join("a/l")).expect("a/l");
    assert!(
        l.is_dir(),
        "the restored link was replaced by the cache's folder"
    );
    assert_eq!(
        std::fs::read_to_string(v.proj.join("a/l/evil")).expect("evil is inside"),
        "evil\n"
    );
}

#[test]
fn a_link_that_normalises_inside_but_resolves_outside_is_refused_unless_the_save_recorded_it() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let mut tar = Tar::new();
    tar.dir("a")
        .symlink("a/s", ".")
        .symlink("a/l", "s/s/../../outside");
    Planted::cache("chain", &["a"], &tar.finish()).plant(&ctx);
    let before = snapshot(&v.root);
    let run = restore(&ctx, &v.proj, "chain");
    refused(
        &run,
        5,
        &["a/l", "points outside the restored paths"],
        &v,
        &before,
    );
}

/// Under the saved paths `a` and `~` (the home folder), `a/a -> ../~` leads to a folder named
/// `~` beside `a`, which no saved path covers: the link is refused, as any link out of them
/// that the save did not record. (An entry below it in the same archive is refused anyway.)
#[test]
fn a_link_to_a_folder_named_like_home_is_refused_as_outside_the_saved_paths() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    std::fs::create_dir_all(v.proj.join("~")).expect("mkdir");
    let mut tar = Tar::new();
    tar.dir("a").symlink("a/a", "../~");
    Planted::cache("tilde", &["a", "~"], &tar.finish()).plant(&ctx);
    let before = snapshot(&v.root);
    let run = restore(&ctx, &v.proj, "tilde");
    refused(
        &run,
        5,
        &["a/a", "points outside the restored paths"],
        &v,
        &before,
    );
}

// --- finding 2 ---------------------------------------------------------------------------

#[test]
fn a_restore_never_writes_through_a_symlink_already_in_the_target() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let saver = ctx.dir("saver");
    std::fs::create_dir_all(saver.join("node_modules/pkg")).expect("mkdir");
    std::fs::write(saver.join("node_modules/pkg/index.js"), "module\n").expect("write");
    std::fs::set_permissions(
        saver.join("node_modules/pkg"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    ctx.run_in(
        &saver,
        &["cache", "save", "--key", "nm", "--path", "node_modules"],
    )
    .ok();

    std::fs::create_dir_all(v.proj.join("node_modules")).expect("mkdir");
    std::os::unix::fs::symlink(&v.outside, v.proj.join("node_modules/pkg")).expect("symlink");
    let outside_before = snapshot(&v.outside);
    restore(&ctx, &v.proj, "nm").ok();
    assert_eq!(
        snapshot(&v.outside),
        outside_before,
        "nothing was written through the link"
    );
    assert_eq!(
        std::fs::metadata(&v.outside)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o700,
        "the link's target kept its mode"
    );
    assert!(
        std::fs::symlink_metadata(v.proj.join("node_modules/pkg"))
            .expect("pkg")
            .is_dir()
    );
    assert_eq!(
        std::fs::read_to_string(v.proj.join("node_modules/pkg/index.js")).expect("restored"),
        "module\n"
    );
}

#[test]
fn workspace_attach_never_writes_through_a_symlink_already_in_the_target() {
    let mut ctx = TestContext::new();
    ctx.set_env("FERRY_WORKFLOW", "wf-links");
    ctx.set_env("FERRY_JOB", "build");
    let v = victim(&ctx);
    let root = ctx.dir("build-root");
    std::fs::create_dir_all(root.join("dist/pkg")).expect("mkdir");
    std::fs::write(root.join("dist/pkg/app.js"), "app\n").expect("write");
    ctx.run(&[
        "workspace",
        "persist",
        "--root",
        root.to_str().expect("utf8"),
        "--path",
        "dist",
    ])
    .ok();
    std::fs::create_dir_all(v.proj.join("dist")).expect("mkdir");
    std::os::unix::fs::symlink(&v.outside, v.proj.join("dist/pkg")).expect("symlink");
    let outside_before = snapshot(&v.outside);
    ctx.run(&[
        "workspace",
        "attach",
        "--at",
        v.proj.to_str().expect("utf8"),
    ])
    .ok();
    assert_eq!(snapshot(&v.outside), outside_before);
    assert!(
        std::fs::symlink_metadata(v.proj.join("dist/pkg"))
            .expect("pkg")
            .is_dir()
    );
    assert!(v.proj.join("dist/pkg/app.js").is_file());
}

#[test]
fn artifact_download_never_writes_through_a_symlink_inside_the_target() {
    let mut ctx = TestContext::new();
    ctx.set_env("FERRY_RUN", "run-links");
    ctx.set_env("FERRY_JOB", "test");
    let v = victim(&ctx);
    ctx.write("out/reports/r.txt", "report\n");
    ctx.run(&["artifacts", "upload", "out"]).ok();
    let got = v.proj.join("got");
    std::fs::create_dir_all(got.join("out")).expect("mkdir");
    std::os::unix::fs::symlink(&v.outside, got.join("out/reports")).expect("symlink");
    let outside_before = snapshot(&v.outside);
    ctx.run(&["artifacts", "download", "--to", got.to_str().expect("utf8")])
        .ok();
    assert_eq!(snapshot(&v.outside), outside_before);
    assert!(
        std::fs::symlink_metadata(got.join("out/reports"))
            .expect("reports")
            .is_dir()
    );
    assert_eq!(
        std::fs::read_to_string(got.join("out/reports/r.txt")).expect("downloaded"),
        "report\n"
    );
}

/// The decision for a link at a saved path itself: replaced by default (as GNU tar does),
/// followed with `--keep-root-links`.
#[test]
fn a_link_at_a_saved_path_is_replaced_unless_keep_root_links_is_given() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let saver = ctx.dir("saver");
    std::fs::create_dir_all(saver.join("node_modules/pkg")).expect("mkdir");
    std::fs::write(saver.join("node_modules/pkg/index.js"), "module\n").expect("write");
    ctx.run_in(
        &saver,
        &["cache", "save", "--key", "nm", "--path", "node_modules"],
    )
    .ok();
    let disk = v.outside.join("other-disk");
    std::fs::create_dir_all(&disk).expect("mkdir");

    std::os::unix::fs::symlink(&disk, v.proj.join("node_modules")).expect("symlink");
    restore(&ctx, &v.proj, "nm").ok();
    assert!(
        std::fs::symlink_metadata(v.proj.join("node_modules"))
            .expect("nm")
            .is_dir()
    );
    assert_eq!(
        std::fs::read_dir(&disk).expect("disk").count(),
        0,
        "the link's target is untouched"
    );

    let proj2 = v.root.join("proj2");
    std::fs::create_dir_all(&proj2).expect("mkdir");
    std::os::unix::fs::symlink(&disk, proj2.join("node_modules")).expect("symlink");
    ctx.run_in(
        &proj2,
        &["cache", "restore", "--key", "nm", "--keep-root-links"],
    )
    .ok();
    assert!(
        std::fs::symlink_metadata(proj2.join("node_modules"))
            .expect("nm")
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        std::fs::read_to_string(disk.join("pkg/index.js")).expect("written into the kept link"),
        "module\n"
    );
}

// --- finding 3 ---------------------------------------------------------------------------

#[test]
fn step_outputs_cannot_be_forged_through_keys_or_manifests() {
    let mut ctx = TestContext::new();
    let out_file = ctx.root.join("github_output");
    ctx.set_env("GITHUB_ACTIONS", "true");
    ctx.set_env("GITHUB_OUTPUT", out_file.display().to_string());
    // A key from the user that tries to end a fixed delimiter and add an output, with both
    // kinds of line ending the runner splits on.
    for forged in [
        "k\nFERRY_EOF\ncache-hit=true\nx",
        "k\rcache-hit=true",
        "k\r\ncache-hit=true",
    ] {
        let _ = std::fs::remove_file(&out_file);
        ctx.run(&["cache", "restore", "--key", forged]).ok();
        let outputs = ferry_tests::github_outputs(&out_file);
        assert_eq!(outputs["cache-hit"], "false", "{forged:?}: {outputs:?}");
        assert_eq!(outputs.len(), 3, "{forged:?}: {outputs:?}");
    }
    // A key planted in the store by a bucket writer.
    let planted_key = "v1-\nFERRY_EOF\ncache-hit=true\nx";
    let mut tar = Tar::new();
    tar.file("tree/x", b"x");
    Planted::cache(planted_key, &["tree"], &tar.finish()).plant(&ctx);
    let _ = std::fs::remove_file(&out_file);
    let dest = ctx.dir("dest");
    ctx.run_in(
        &dest,
        &[
            "cache",
            "restore",
            "--key",
            "v2-other",
            "--restore-key",
            "v1-",
        ],
    )
    .ok();
    let outputs = ferry_tests::github_outputs(&out_file);
    assert_eq!(outputs["cache-hit"], "false", "{outputs:?}");
    assert_eq!(outputs["cache-matched-key"], planted_key, "{outputs:?}");
    assert_eq!(outputs.len(), 3, "{outputs:?}");
}

// --- finding 4 ---------------------------------------------------------------------------

#[test]
fn a_duplicate_entry_fails_with_5_and_leaves_the_target_as_it_was() {
    let cases: Vec<(&str, Tar, &str)> = vec![
        (
            "file then folder",
            {
                let mut t = Tar::new();
                t.file("a/f1", b"1")
                    .file("a/x", b"file")
                    .dir("a/x")
                    .file("a/x/y", b"y");
                t
            },
            "a/x",
        ),
        (
            "folder then file",
            {
                let mut t = Tar::new();
                t.file("a/f1", b"1")
                    .dir("a/x")
                    .file("a/x/y", b"y")
                    .file("a/x", b"file");
                t
            },
            "a/x",
        ),
        (
            "the same file twice",
            {
                let mut t = Tar::new();
                t.file("a/x", b"one").file("a/x", b"two");
                t
            },
            "a/x",
        ),
        (
            "a link then a folder below it",
            {
                let mut t = Tar::new();
                t.file("a/f1", b"1")
                    .symlink("a/l", "f1")
                    .dir("a/l")
                    .file("a/l/f", b"f");
                t
            },
            "a/l",
        ),
    ];
    for (what, tar, name) in cases {
        let ctx = TestContext::new();
        let v = victim(&ctx);
        Planted::cache("dup", &["a"], &tar.finish()).plant(&ctx);
        let before = snapshot(&v.root);
        let run = restore(&ctx, &v.proj, "dup");
        eprintln!("case: {what}");
        refused(&run, 5, &[name], &v, &before);
    }
}

// --- finding 5 ---------------------------------------------------------------------------

#[test]
fn a_data_object_longer_than_its_record_stops_the_restore_with_5() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let mut tar = Tar::new();
    tar.file("a/x", b"x");
    let archive = hostile::zstd(&tar.finish());
    let mut planted = Planted::cache("long", &["a"], b"");
    planted.recorded = Some((archive.len() as u64, hostile::sha256(&archive)));
    let mut data = archive.clone();
    data.extend(std::iter::repeat_n(0u8, 8 << 20));
    planted.data = data;
    planted.plant(&ctx);
    let before = snapshot(&v.root);
    let run = restore(&ctx, &v.proj, "long");
    refused(&run, 5, &["more than the"], &v, &before);
}

#[test]
fn a_data_object_that_never_ends_stops_at_its_recorded_size_with_5() {
    let ctx = TestContext::new();
    let Some(store) = ctx.local_store() else {
        eprintln!("skipped: a data object that never ends (/dev/zero) needs the local store");
        return;
    };
    let v = victim(&ctx);
    for format in ["tar", "zstd"] {
        let mut tar = Tar::new();
        tar.file("a/x", b"x");
        let mut planted = Planted::cache(&format!("endless-{format}"), &["a"], &tar.finish());
        if format == "tar" {
            planted.data = tar.finish();
            planted.compression = "tar";
        }
        let manifest = planted.plant(&ctx);
        let m: serde_json::Value =
            serde_json::from_slice(&ctx.direct().get(&manifest).expect("manifest")).expect("json");
        let data = store.join(m["data"]["path"].as_str().expect("data path"));
        std::fs::remove_file(&data).expect("rm");
        std::os::unix::fs::symlink("/dev/zero", &data).expect("symlink");
        let before = snapshot(&v.root);
        let run = ctx.run_with_timeout(
            &v.proj,
            120,
            &["cache", "restore", "--key", &format!("endless-{format}")],
        );
        refused(&run, 5, &[], &v, &before);
    }
}

// --- finding 6 ---------------------------------------------------------------------------

#[test]
fn a_long_name_record_is_refused_before_it_is_read_and_never_printed_whole() {
    for (what, data) in [
        ("GNU long name", hostile::long_name_bomb(256 << 20)),
        ("PAX path", hostile::pax_name_bomb(256 << 20)),
    ] {
        let ctx = TestContext::new();
        let v = victim(&ctx);
        assert!(
            data.len() < 64 * 1024,
            "{what}: the bomb is small ({} bytes)",
            data.len()
        );
        let mut planted = Planted::cache("bomb", &["tree"], b"");
        planted.data = data;
        planted.plant(&ctx);
        let before = snapshot(&v.root);
        let run = restore(&ctx, &v.proj, "bomb");
        refused(&run, 5, &["268435456 bytes"], &v, &before);
        assert!(
            run.stderr.len() < 4096,
            "{what}: {} bytes of stderr",
            run.stderr.len()
        );
    }
}

// --- finding 7 ---------------------------------------------------------------------------

#[test]
fn one_unreadable_manifest_is_skipped_with_a_warning_and_lookups_go_on() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "x");
    ctx.run(&["cache", "save", "--key", "v1-a", "--path", "tree"])
        .ok();
    ctx.run(&["cache", "save", "--key", "v1-b", "--path", "tree"])
        .ok();
    let direct = ctx.direct();
    let keys = format!(
        "{}/caches/keys",
        ferry_core::manifest::project_dir(hostile::PROJECT)
    );
    let garbage = format!(
        "{keys}/{}.json",
        ferry_core::manifest::object_name("v1-zzz")
    );
    direct.put(&garbage, b"{ not json".to_vec());
    let newer = format!(
        "{keys}/{}.json",
        ferry_core::manifest::object_name("v1-newer")
    );
    direct.put(&newer, br#"{"format": 99, "kind": "cache"}"#.to_vec());

    let dest = ctx.dir("dest");
    let run = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", "v1-"]);
    run.ok();
    let out = run.json();
    assert_eq!(out["hit"], "partial");
    assert_eq!(out["matched_key"], "v1-b");
    assert!(
        run.stderr.contains(&garbage),
        "the warning names it:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("format 99"), "{}", run.stderr);

    let ls = ctx.run(&["--json", "cache", "ls"]);
    ls.ok();
    let listed = ls.json();
    assert_eq!(
        listed["caches"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    assert!(
        listed["warnings"].to_string().contains("v1-zzz"),
        "{listed}"
    );

    let exact = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", "v1-a"]);
    exact.ok();
    assert_eq!(exact.json()["hit"], "exact");
}

// --- found by fuzzing (fuzz/README.md) ---------------------------------------------------

/// Normalising keeps `..` after a lone `~` and after leading `..` parts, and such names passed
/// as within the saved paths `~` and `..` (fuzz target `rules`): a cache saved with `--path ~`
/// or `--path ..` could restore beside the home folder, or above the parent folder.
#[test]
fn names_climbing_out_of_a_home_or_parent_saved_path_are_refused() {
    for (root, name) in [("~", "~/../escaped"), ("..", "../../escaped")] {
        let ctx = TestContext::new();
        let v = victim(&ctx);
        let mut tar = Tar::new();
        tar.file(name, b"e");
        Planted::cache("climb", &[root], &tar.finish()).plant(&ctx);
        let before = snapshot(&v.root);
        refused(
            &restore(&ctx, &v.proj, "climb"),
            5,
            &[name, "`..`"],
            &v,
            &before,
        );
        // `~/..` and `v.proj/../..` are both the test's root.
        assert!(!ctx.root.join("escaped").exists(), "{name} was restored");
    }
}

// --- finding 8 ---------------------------------------------------------------------------

#[test]
fn restored_files_lose_setuid_and_setgid_bits() {
    let mut ctx = TestContext::new();
    let v = victim(&ctx);
    let mut tar = Tar::new();
    tar.file_mode("a/tool", 0o6755, b"#!/bin/sh\n");
    Planted::cache("suid", &["a"], &tar.finish()).plant(&ctx);
    restore(&ctx, &v.proj, "suid").ok();
    let mode = std::fs::metadata(v.proj.join("a/tool"))
        .expect("tool")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);

    ctx.set_env("FERRY_RUN", "run-suid");
    ctx.set_env("FERRY_JOB", "build");
    let bin = ctx.write("bin/tool", "#!/bin/sh\n");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    ctx.run(&["artifacts", "upload", "bin"]).ok();
    let got = ctx.dir("got");
    ctx.run(&["artifacts", "download", "--to", got.to_str().expect("utf8")])
        .ok();
    let mode = std::fs::metadata(got.join("bin/tool"))
        .expect("tool")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn data_that_unpacks_to_more_than_its_manifest_records_is_refused_as_a_bomb() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let mut tar = Tar::new();
    tar.file("a/big", &vec![0u8; 1 << 20]);
    let mut planted = Planted::cache("bytes-bomb", &["a"], &tar.finish());
    planted.unpacked_bytes = 1024;
    planted.plant(&ctx);
    let before = snapshot(&v.root);
    refused(
        &restore(&ctx, &v.proj, "bytes-bomb"),
        5,
        &["1024 bytes its manifest records"],
        &v,
        &before,
    );

    let mut tar = Tar::new();
    for i in 0..50 {
        tar.dir(&format!("a/d{i}"));
    }
    let mut planted = Planted::cache("entry-bomb", &["a"], &tar.finish());
    planted.entry_count = Some(10);
    planted.plant(&ctx);
    refused(
        &restore(&ctx, &v.proj, "entry-bomb"),
        5,
        &["10 entries"],
        &v,
        &before,
    );
}

// --- every kind of hostile archive, for caches and workspace attach ----------------------

struct Case {
    what: &'static str,
    tar: Vec<u8>,
    roots: &'static [&'static str],
    links_out: Vec<(String, String)>,
    code: i32,
    names: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let t = |f: &dyn Fn(&mut Tar)| {
        let mut tar = Tar::new();
        f(&mut tar);
        tar.finish()
    };
    use tar::EntryType as E;
    vec![
        Case {
            what: "hard link to a file outside",
            tar: t(&|x| {
                x.hardlink("a/h", "/etc/passwd");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/h", "hard link"],
        },
        Case {
            what: "hard link to a later file",
            tar: t(&|x| {
                x.hardlink("a/h", "a/later").file("a/later", b"l");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/h"],
        },
        Case {
            what: "hard link out with ..",
            tar: t(&|x| {
                x.hardlink("a/h", "a/../../outside/sentinel");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/h"],
        },
        Case {
            what: "symlink chain out",
            tar: t(&|x| {
                x.symlink("a/s", ".")
                    .symlink("a/t", "s/s/s")
                    .symlink("a/l", "t/../../outside");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/l"],
        },
        Case {
            what: "absolute symlink not recorded",
            tar: t(&|x| {
                x.symlink("a/l", "/etc");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/l"],
        },
        Case {
            what: "write through the archive's own link, even a recorded one",
            tar: t(&|x| {
                x.symlink("a/l", "../outside").file("a/l/evil", b"e");
            }),
            roots: &["a"],
            links_out: vec![("a/l".into(), "../outside".into())],
            code: 5,
            names: &["a/l"],
        },
        Case {
            what: "GNU long name climbing out",
            tar: t(&|x| {
                x.entry(
                    E::Regular,
                    format!("a/{}/../../../outside/evil", "d".repeat(120)).as_bytes(),
                    b"",
                    0o644,
                    b"e",
                );
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["the name has"],
        },
        Case {
            what: "PAX path climbing out",
            tar: t(&|x| {
                x.pax(&[("path", b"../outside/evil")]).file("a/x", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["../outside/evil"],
        },
        Case {
            what: "PAX path with a NUL",
            tar: t(&|x| {
                x.pax(&[("path", b"a/x\0/../../outside")]).file("a/x", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["NUL"],
        },
        Case {
            what: "PAX size record",
            tar: t(&|x| {
                x.pax(&[("size", b"1")]).file("a/x", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["PAX size"],
        },
        Case {
            what: "absolute name",
            tar: t(&|x| {
                x.file("/tmp/ferry-evil", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["absolute path"],
        },
        Case {
            what: "parent name",
            tar: t(&|x| {
                x.file("../outside/evil", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["`..`"],
        },
        Case {
            what: "dotted name inside",
            tar: t(&|x| {
                x.file("a/../outside/evil", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/../outside/evil"],
        },
        Case {
            what: "name outside the saved paths",
            tar: t(&|x| {
                x.file("b/evil", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["outside the saved paths"],
        },
        Case {
            what: "component over 255 bytes",
            tar: t(&|x| {
                x.file(&format!("a/{}", "n".repeat(300)), b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["300 bytes"],
        },
        Case {
            what: "FIFO",
            tar: t(&|x| {
                x.entry(E::Fifo, b"a/fifo", b"", 0o644, b"");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/fifo", "FIFO"],
        },
        Case {
            what: "character device",
            tar: t(&|x| {
                x.entry(E::Char, b"a/dev", b"", 0o644, b"");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/dev"],
        },
        Case {
            what: "sparse file",
            tar: t(&|x| {
                x.entry(E::GNUSparse, b"a/sparse", b"", 0o644, b"");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/sparse"],
        },
        Case {
            what: "a folder entry carrying data",
            tar: t(&|x| {
                x.entry(E::Directory, b"a/d/", b"", 0o755, b"hidden");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/d"],
        },
        Case {
            what: "duplicate file",
            tar: t(&|x| {
                x.file("a/x", b"1").file("a/x", b"2");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["a/x"],
        },
        Case {
            what: "truncated inside a file",
            tar: {
                let mut x = Tar::new();
                x.file("a/f1", b"1").file("a/x", &vec![7u8; 4096]);
                x.truncated(1000)
            },
            roots: &["a"],
            links_out: vec![],
            code: 5,
            names: &["corrupt"],
        },
        Case {
            what: "a folder where a file is in the target",
            tar: t(&|x| {
                x.file("a/existing.txt/inner", b"e");
            }),
            roots: &["a"],
            links_out: vec![],
            code: 1,
            names: &["existing.txt"],
        },
    ]
}

#[test]
fn hostile_archives_are_refused_by_cache_restore_leaving_the_target_as_it_was() {
    for case in cases() {
        let ctx = TestContext::new();
        let v = victim(&ctx);
        let mut planted = Planted::cache("hostile", case.roots, &case.tar);
        planted.links_out = case.links_out.clone();
        planted.plant(&ctx);
        let before = snapshot(&v.root);
        eprintln!("case: {}", case.what);
        let run = restore(&ctx, &v.proj, "hostile");
        refused(&run, case.code, case.names, &v, &before);
    }
}

#[test]
fn hostile_archives_are_refused_by_workspace_attach_leaving_the_target_as_it_was() {
    for case in cases() {
        let mut ctx = TestContext::new();
        ctx.set_env("FERRY_WORKFLOW", "wf-hostile");
        ctx.set_env("FERRY_JOB", "attacher");
        let v = victim(&ctx);
        let mut planted = Planted::cache("layer", case.roots, &case.tar);
        planted.links_out = case.links_out.clone();
        // The listing an attacker's manifest claims: enough entries that only the case's
        // subject can fail the attach.
        let claimed: Vec<String> = (0..64).map(|i| format!("a/claimed-{i}")).collect();
        let claimed: Vec<&str> = claimed.iter().map(String::as_str).collect();
        planted.plant_layer(&ctx, "wf-hostile", "evil", &claimed);
        let before = snapshot(&v.root);
        eprintln!("case: {}", case.what);
        let run = ctx.run(&[
            "workspace",
            "attach",
            "--at",
            v.proj.to_str().expect("utf8"),
        ]);
        refused(&run, case.code, case.names, &v, &before);
    }
}

#[test]
fn a_backslash_in_a_name_is_an_ordinary_character_and_stays_inside() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let mut tar = Tar::new();
    tar.file("a/..\\..\\outside\\evil", b"e");
    Planted::cache("backslash", &["a"], &tar.finish()).plant(&ctx);
    let outside_before = snapshot(&v.outside);
    restore(&ctx, &v.proj, "backslash").ok();
    assert_eq!(snapshot(&v.outside), outside_before);
    assert!(v.proj.join("a/..\\..\\outside\\evil").is_file());
}

#[test]
fn hostile_artifact_manifests_are_refused_by_download_leaving_nothing_outside() {
    let cases: &[(&str, &str, i32, &str)] = &[
        ("climbing path", "../outside/evil", 5, "../outside/evil"),
        ("absolute path", "/tmp/ferry-evil", 5, "/tmp/ferry-evil"),
        (
            "dotted path",
            "a/../../outside/evil",
            5,
            "a/../../outside/evil",
        ),
        ("empty part", "a//b", 5, "a//b"),
    ];
    for (what, path, code, name) in cases {
        let mut ctx = TestContext::new();
        ctx.set_env("FERRY_RUN", "run-hostile");
        ctx.set_env("FERRY_JOB", "evil");
        let v = victim(&ctx);
        hostile::plant_artifact(&ctx, "run-hostile", "evil", path, "0644", b"evil\n");
        let before = snapshot(&v.root);
        eprintln!("case: {what}");
        let run = ctx.run(&[
            "artifacts",
            "download",
            "--to",
            v.proj.to_str().expect("utf8"),
        ]);
        refused(&run, *code, &[name], &v, &before);
    }
}

// --- forged roots and key injection --------------------------------------------------------

#[test]
fn a_forged_manifest_whose_roots_lie_outside_the_expected_paths_is_refused_with_5() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let mut tar = Tar::new();
    tar.file("~/.ssh/authorized_keys", b"ssh-ed25519 AAAA attacker\n");
    Planted::cache("deps-1", &["~/.ssh"], &tar.finish()).plant(&ctx);
    let home_before = snapshot(&ctx.home);
    let before = snapshot(&v.root);
    let run = ctx.run_in(
        &v.proj,
        &[
            "cache",
            "restore",
            "--key",
            "deps-1",
            "--path",
            "node_modules",
        ],
    );
    refused(&run, 5, &["~/.ssh", "node_modules"], &v, &before);
    assert_eq!(snapshot(&ctx.home), home_before);
    // The same entry with the paths it really holds is restored.
    let run = ctx.run_in(
        &v.proj,
        &["cache", "restore", "--key", "deps-1", "--path", "~/.ssh"],
    );
    run.ok();
    assert!(ctx.home.join(".ssh/authorized_keys").is_file());
}

// --- signed entries ------------------------------------------------------------------------

fn keygen(ctx: &TestContext) -> (String, String) {
    let run = ctx.run(&["--json", "keygen"]);
    run.ok();
    let j = run.json();
    (
        j["signing_key"].as_str().expect("secret").to_string(),
        j["trusted_key"].as_str().expect("public").to_string(),
    )
}

#[test]
fn a_trusted_job_restores_an_entry_signed_by_a_trusted_key() {
    let mut ctx = TestContext::new();
    let (secret, public) = keygen(&ctx);
    ctx.write("tree/x", "x");
    ctx.set_env("FERRY_SIGNING_KEY", &secret);
    ctx.run(&["cache", "save", "--key", "signed", "--path", "tree"])
        .ok();
    ctx.remove_env("FERRY_SIGNING_KEY");
    ctx.set_env("FERRY_TRUSTED_KEYS", &public);
    let dest = ctx.dir("dest");
    let run = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", "signed"]);
    run.ok();
    assert_eq!(run.json()["hit"], "exact");
    assert!(dest.join("tree/x").is_file());
    let ls = ctx.run(&["--json", "cache", "ls"]);
    assert_eq!(ls.json()["caches"][0]["signed_by"], public.as_str());
    assert_eq!(ls.json()["caches"][0]["trusted"], true);
}

#[test]
fn unsigned_foreign_and_edited_entries_are_skipped_as_misses_naming_why() {
    let mut ctx = TestContext::new();
    let (secret, public) = keygen(&ctx);
    let (other_secret, _) = keygen(&ctx);
    ctx.write("tree/x", "x");
    ctx.run(&["cache", "save", "--key", "unsigned", "--path", "tree"])
        .ok();
    ctx.set_env("FERRY_SIGNING_KEY", &other_secret);
    ctx.run(&["cache", "save", "--key", "foreign", "--path", "tree"])
        .ok();
    ctx.set_env("FERRY_SIGNING_KEY", &secret);
    ctx.run(&["cache", "save", "--key", "edited", "--path", "tree"])
        .ok();
    ctx.remove_env("FERRY_SIGNING_KEY");
    // A bucket writer changes the signed manifest's roots.
    let direct = ctx.direct();
    let rel = format!(
        "{}/caches/keys/{}.json",
        ferry_core::manifest::project_dir(hostile::PROJECT),
        ferry_core::manifest::object_name("edited")
    );
    let text = String::from_utf8(direct.get(&rel).expect("manifest")).expect("utf8");
    direct.put(&rel, text.replace("\"tree\"", "\"~/.ssh\"").into_bytes());

    ctx.set_env("FERRY_TRUSTED_KEYS", &public);
    let dest = ctx.dir("dest");
    for (key, why) in [
        ("unsigned", "not signed"),
        ("foreign", "not in FERRY_TRUSTED_KEYS"),
        ("edited", "does not match its contents"),
    ] {
        let run = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", key]);
        run.ok();
        assert_eq!(run.json()["hit"], "miss", "{key}");
        assert!(
            run.stderr.contains(why) && run.stderr.contains(key),
            "{key}:\n{}",
            run.stderr
        );
        let run = ctx.run_in(&dest, &["cache", "restore", "--key", key, "--fail-on-miss"]);
        run.expect_code(5);
    }
    assert_eq!(
        std::fs::read_dir(&dest).expect("dest").count(),
        0,
        "nothing was restored"
    );
}

#[test]
fn a_job_holding_only_the_public_key_cannot_publish_an_entry_a_trusted_job_restores() {
    let mut ctx = TestContext::new();
    let (secret, public) = keygen(&ctx);
    // The trusted job's entry, then a pull request's save of a newer key under the same prefix.
    ctx.write("tree/x", "trusted");
    ctx.set_env("FERRY_SIGNING_KEY", &secret);
    ctx.run(&["cache", "save", "--key", "deps-1", "--path", "tree"])
        .ok();
    ctx.remove_env("FERRY_SIGNING_KEY");
    ctx.set_env("FERRY_TRUSTED_KEYS", &public);
    ctx.write("tree/x", "poisoned");
    ctx.run(&["cache", "save", "--key", "deps-2", "--path", "tree"])
        .ok();
    let (pr_secret, _) = keygen(&ctx);
    ctx.set_env("FERRY_SIGNING_KEY", &pr_secret);
    ctx.run(&["cache", "save", "--key", "deps-3", "--path", "tree"])
        .ok();
    ctx.remove_env("FERRY_SIGNING_KEY");

    let dest = ctx.dir("dest");
    let run = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", "deps-"]);
    run.ok();
    assert_eq!(run.json()["matched_key"], "deps-1");
    assert_eq!(
        std::fs::read_to_string(dest.join("tree/x")).expect("restored"),
        "trusted"
    );
}

// --- scopes ----------------------------------------------------------------------------------

#[test]
fn a_pull_request_scopes_save_is_never_restored_by_a_default_branch_job() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "from the pull request");
    ctx.run(&[
        "cache", "save", "--key", "deps-1", "--path", "tree", "--scope", "pr-7",
    ])
    .ok();
    let dest = ctx.dir("dest");
    for key in ["deps-1", "deps-"] {
        let run = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", key]);
        run.ok();
        assert_eq!(run.json()["hit"], "miss", "{key}");
    }
    let listed = ctx.direct().list(&format!(
        "{}/scopes/",
        ferry_core::manifest::project_dir(hostile::PROJECT)
    ));
    assert!(
        listed.iter().all(|p| p.contains("/scopes/pr-7/caches/")),
        "every object of the pull request's save is under its scope: {listed:?}"
    );
}

#[test]
fn a_pull_request_job_falls_back_to_the_default_branchs_scope() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "from main");
    ctx.run(&["cache", "save", "--key", "deps-1", "--path", "tree"])
        .ok();
    let dest = ctx.dir("dest");
    let run = ctx.run_in(
        &dest,
        &[
            "--json",
            "cache",
            "restore",
            "--key",
            "deps-1",
            "--scope",
            "pr-7",
            "--fallback-scope",
            "default",
        ],
    );
    run.ok();
    let out = run.json();
    assert_eq!(out["hit"], "exact");
    assert_eq!(out["scope"], serde_json::Value::Null);
    // Its own scope wins once it holds a match.
    ctx.write("tree/x", "from the pull request");
    ctx.run(&[
        "cache", "save", "--key", "deps-2", "--path", "tree", "--scope", "pr-7",
    ])
    .ok();
    let run = ctx.run_in(
        &dest,
        &[
            "--json",
            "cache",
            "restore",
            "--key",
            "deps-",
            "--scope",
            "pr-7",
            "--fallback-scope",
            "default",
        ],
    );
    run.ok();
    assert_eq!(run.json()["matched_key"], "deps-2");
    assert_eq!(run.json()["scope"], "pr-7");
}

// --- format 2: hostile indexes and packs -----------------------------------------------

/// A chunked entry of `a/` that a store writer tampered with, and the words its refusal
/// names.
type ChunkedCase = (
    &'static str,
    Box<dyn Fn(&mut PlantedChunked)>,
    &'static [&'static str],
);

fn chunked_cases() -> Vec<ChunkedCase> {
    vec![
        (
            "an index that is not JSON",
            Box::new(|p: &mut PlantedChunked| {
                p.raw_index =
                    Some(zstd::bulk::compress(b"{\"version\": 1, \"packs\": [", 3).expect("zstd"));
            }),
            &["chunk index"],
        ),
        (
            "an index that is not zstd",
            Box::new(|p: &mut PlantedChunked| p.raw_index = Some(b"plain text".to_vec())),
            &["chunk index"],
        ),
        (
            "a block past the end of its pack",
            Box::new(|p: &mut PlantedChunked| p.index.blocks[0].1 = p.pack.len() as u64),
            &["past the pack"],
        ),
        (
            "a chunk outside its block",
            Box::new(|p: &mut PlantedChunked| p.index.chunks[0].1 = 1_000_000),
            &["outside its block"],
        ),
        (
            "steps that end past their block",
            Box::new(|p: &mut PlantedChunked| {
                let stored = p.index.blocks[0].2;
                p.index.steps = vec![ferry_core::chunks::index::Steps(0, 1024, vec![stored])];
            }),
            &["steps"],
        ),
        (
            "a file size that lies about its chunks",
            Box::new(|p: &mut PlantedChunked| p.index.entries[1].size += 1),
            &["its size is"],
        ),
        (
            "files holding more than the manifest records",
            Box::new(|p: &mut PlantedChunked| p.manifest["unpacked_bytes"] = 3.into()),
            &["more than the 3 bytes"],
        ),
        (
            "more entries than the manifest records",
            Box::new(|p: &mut PlantedChunked| p.manifest["entry_count"] = 1.into()),
            &["more than the 1 entries"],
        ),
        (
            "a chunk whose bytes are not its hash",
            Box::new(|p: &mut PlantedChunked| {
                p.index.chunks[0].3 = ferry_core::chunks::ChunkHash::of(b"something else");
            }),
            &["does not match its hash"],
        ),
        (
            "a block that is not zstd",
            Box::new(|p: &mut PlantedChunked| p.pack[0] ^= 0xff),
            &["does not decompress"],
        ),
        (
            "a pack the manifest does not list",
            Box::new(|p: &mut PlantedChunked| p.manifest["packs"] = serde_json::json!([])),
            &["does not list"],
        ),
        (
            "a name that climbs out",
            Box::new(|p: &mut PlantedChunked| p.index.entries[1].name = "a/../../outside/x".into()),
            &["outside/x"],
        ),
        (
            "an absolute name",
            Box::new(|p: &mut PlantedChunked| {
                p.index.entries[1].name = "/tmp/ferry-planted".into()
            }),
            &["/tmp/ferry-planted"],
        ),
        (
            "a file written through a link out of the roots",
            Box::new(|p: &mut PlantedChunked| {
                use ferry_core::chunks::index::{Entry, Kind};
                p.index.entries.insert(
                    1,
                    Entry {
                        name: "a/out".into(),
                        kind: Kind::Symlink,
                        mode: 0,
                        mtime: 0,
                        size: 0,
                        chunks: vec![],
                        target: Some("../../outside".into()),
                    },
                );
                p.index.entries[2].name = "a/out/evil".into();
                p.manifest["entry_count"] = 4.into();
            }),
            &["a/out"],
        ),
    ]
}

#[test]
fn hostile_chunked_entries_are_refused_with_5_leaving_the_target_as_it_was() {
    for (what, tamper, names) in chunked_cases() {
        let ctx = TestContext::new();
        let v = victim(&ctx);
        let mut planted = PlantedChunked::cache(
            "evil",
            &["a"],
            &[
                Item::Dir("a"),
                Item::File("a/existing.txt", b"replaced by the entry\n"),
                Item::File("a/new.txt", b"new\n"),
            ],
        );
        tamper(&mut planted);
        planted.plant(&ctx);
        let before = snapshot(&v.root);
        let run = restore(&ctx, &v.proj, "evil");
        eprintln!("case: {what}");
        refused(&run, 5, names, &v, &before);
        assert!(
            !std::path::Path::new("/tmp/ferry-planted").exists(),
            "{what}"
        );
    }
}

/// Where an index says a block's steps end is only a hint of how much of it to fetch: one
/// that says they end too soon costs a second request for the rest, and the file it holds
/// still comes back exactly.
#[test]
fn a_block_whose_steps_end_sooner_than_the_index_says_is_fetched_whole_and_restores() {
    use std::io::Write;
    let ctx = TestContext::new();
    let v = victim(&ctx);
    let first = noise(40_000, 3);
    let second = noise(40_000, 4);
    let mut planted = PlantedChunked::cache(
        "short-steps",
        &["a"],
        &[
            Item::Dir("a"),
            Item::File("a/first.bin", &first),
            Item::File("a/second.bin", &second),
        ],
    );
    // Both files in one block, a zstd frame that ends a zstd block every 16 KiB.
    let raw = [first.as_slice(), second.as_slice()].concat();
    let mut frame = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    frame
        .set_pledged_src_size(Some(raw.len() as u64))
        .expect("zstd");
    let mut ends = Vec::new();
    for (k, step) in raw.chunks(16 * 1024).enumerate() {
        frame.write_all(step).expect("zstd");
        if (k + 1) * 16 * 1024 < raw.len() {
            frame.flush().expect("zstd");
            ends.push(frame.get_ref().len() as u32);
        }
    }
    let frame = frame.finish().expect("zstd");
    let lie: Vec<u32> = (1..=ends.len() as u32).collect();
    planted.pack = frame.clone();
    planted.index.blocks = vec![ferry_core::chunks::index::Block(
        0,
        0,
        frame.len() as u32,
        raw.len() as u32,
    )];
    planted.index.chunks[1].0 = 0;
    planted.index.chunks[1].1 = first.len() as u32;
    planted.index.steps = vec![ferry_core::chunks::index::Steps(0, 16 * 1024, lie)];
    planted.plant(&ctx);
    restore(&ctx, &v.proj, "short-steps").ok();
    // Only the first file is missing now: the start of the block would do.
    std::fs::remove_file(v.proj.join("a/first.bin")).expect("rm");
    let run = restore(&ctx, &v.proj, "short-steps");
    run.ok();
    assert_eq!(
        std::fs::read(v.proj.join("a/first.bin")).expect("restored"),
        first
    );
    assert_eq!(
        std::fs::read(v.proj.join("a/second.bin")).expect("kept"),
        second
    );
    let downloaded = run.json()["bytes"].as_u64().expect("downloaded bytes");
    assert!(
        downloaded >= frame.len() as u64,
        "the block's start, then its rest: {downloaded} of {} bytes",
        frame.len()
    );
}

#[test]
fn an_untampered_planted_chunked_entry_restores() {
    let ctx = TestContext::new();
    let v = victim(&ctx);
    PlantedChunked::cache(
        "fine",
        &["a"],
        &[Item::Dir("a"), Item::File("a/new.txt", b"new\n")],
    )
    .plant(&ctx);
    restore(&ctx, &v.proj, "fine").ok();
    assert_eq!(
        std::fs::read_to_string(v.proj.join("a/new.txt")).expect("restored"),
        "new\n"
    );
    assert!(
        !v.proj.join("a/existing.txt").exists(),
        "a chunked restore mirrors the entry"
    );
}
