//! End-to-end tests of `ferry cache` and `ferry key` against the store under test.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use ferry_tests::{TestContext, Value, snapshot};

/// A tree with nested folders, an empty folder, an executable, a symlink, and names with
/// spaces and non-ASCII letters, all with fixed mtimes.
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
    std::fs::set_permissions(
        root.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(root.join("a.txt"), std::fs::Permissions::from_mode(0o640))
        .expect("chmod");
    std::fs::create_dir_all(root.join("empty/folder")).expect("mkdir");
    std::os::unix::fs::symlink("nested/deeper/b.json", root.join("link-to-b")).expect("symlink");
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for e in walkdir::WalkDir::new(root).contents_first(true) {
        let e = e.expect("walk");
        filetime::set_symlink_file_times(e.path(), t, t).expect("set times");
    }
}

fn save(ctx: &TestContext, key: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "cache", "save", "--key", key, "--path", "tree"];
    args.extend_from_slice(extra);
    let run = ctx.run(&args);
    run.ok();
    run.json()
}

#[test]
fn round_trip_keeps_bytes_modes_mtimes_links_and_empty_folders() {
    let ctx = TestContext::new();
    make_tree(&ctx.work.join("tree"));
    let saved = save(&ctx, "v1-tree", &[]);
    assert_eq!(saved["saved"], true);
    assert_eq!(saved["files"], 5);

    let dest = ctx.dir("elsewhere");
    let run = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", "v1-tree"]);
    run.ok();
    let restored = run.json();
    assert_eq!(restored["hit"], "exact");
    assert_eq!(restored["matched_key"], "v1-tree");
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
fn home_paths_restore_into_the_restoring_users_home() {
    let mut ctx = TestContext::new();
    let cache = ctx.home.join(".cache/tool");
    std::fs::create_dir_all(&cache).expect("mkdir");
    std::fs::write(cache.join("blob"), "cached").expect("write");
    ctx.run(&["cache", "save", "--key", "home", "--path", "~/.cache/tool"])
        .ok();
    let other_home = ctx.dir("other-home");
    ctx.set_env("HOME", other_home.display().to_string());
    let other = ctx.dir("other-work");
    let mut cmd = ctx.ferry_in(&other);
    let out = cmd
        .env("HOME", &other_home)
        .args(["cache", "restore", "--key", "home"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(other_home.join(".cache/tool/blob")).expect("restored"),
        "cached"
    );
}

/// Found by fuzzing (`fuzz/`, target `unpack_tar`): a restore of an absolute path walked up
/// its folders forever, since the parent of `/` was `/`.
#[test]
fn a_cache_saved_from_an_absolute_path_restores_there() {
    let ctx = TestContext::new();
    let tool = ctx.dir("opt/tool");
    std::fs::create_dir_all(tool.join("bin")).expect("mkdir");
    std::fs::write(tool.join("bin/run"), "run").expect("write");
    let path = tool.display().to_string();
    ctx.run(&["cache", "save", "--key", "abs", "--path", &path])
        .ok();
    std::fs::remove_dir_all(&tool).expect("remove");
    ctx.run_with_timeout(&ctx.work, 60, &["cache", "restore", "--key", "abs"])
        .ok();
    assert_eq!(
        std::fs::read_to_string(tool.join("bin/run")).expect("restored"),
        "run"
    );
}

#[test]
fn existing_key_is_skipped_unchanged_and_force_replaces_it() {
    let ctx = TestContext::new();
    ctx.write("tree/file.txt", "first");
    save(&ctx, "k", &[]);
    ctx.write("tree/file.txt", "second");
    let again = save(&ctx, "k", &[]);
    assert_eq!(again["saved"], false);
    assert_eq!(again["reason"], "exists");

    let dest = ctx.dir("r1");
    ctx.run_in(&dest, &["cache", "restore", "--key", "k"]).ok();
    assert_eq!(
        std::fs::read_to_string(dest.join("tree/file.txt")).expect("read"),
        "first"
    );

    let forced = save(&ctx, "k", &["--force"]);
    assert_eq!(forced["saved"], true);
    let dest = ctx.dir("r2");
    ctx.run_in(&dest, &["cache", "restore", "--key", "k"]).ok();
    assert_eq!(
        std::fs::read_to_string(dest.join("tree/file.txt")).expect("read"),
        "second"
    );
}

#[test]
fn concurrent_saves_of_one_key_publish_exactly_once() {
    let ctx = TestContext::new();
    let mut children = Vec::new();
    for i in 0..10 {
        let dir = ctx.dir(&format!("job{i}"));
        for f in 0..20 {
            let p = dir.join(format!("tree/f{f}.txt"));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, format!("job {i} file {f}\n").repeat(200)).expect("write");
        }
        let child = ctx
            .ferry_in(&dir)
            .args(["--json", "cache", "save", "--key", "race", "--path", "tree"])
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
    let exists = results.iter().filter(|r| r["reason"] == "exists").count();
    assert_eq!((saved, exists), (1, 9), "{results:?}");

    let dest = ctx.dir("restored");
    ctx.run_in(&dest, &["cache", "restore", "--key", "race"])
        .ok();
    let first = std::fs::read_to_string(dest.join("tree/f0.txt")).expect("f0");
    let job = first
        .split_whitespace()
        .nth(1)
        .expect("job number")
        .to_string();
    for f in 0..20 {
        let body = std::fs::read_to_string(dest.join(format!("tree/f{f}.txt"))).expect("file");
        assert_eq!(
            body,
            format!("job {job} file {f}\n").repeat(200),
            "a restore mixes saves"
        );
    }
}

#[test]
fn restore_key_prefix_picks_the_most_recently_saved() {
    let ctx = TestContext::new();
    for n in ["1", "3", "2"] {
        ctx.write("tree/which", n);
        save(&ctx, &format!("deps-{n}"), &[]);
    }
    let dest = ctx.dir("r");
    let run = ctx.run_in(
        &dest,
        &[
            "--json",
            "cache",
            "restore",
            "--key",
            "deps-new",
            "--restore-key",
            "deps-",
        ],
    );
    run.ok();
    let out = run.json();
    assert_eq!(out["hit"], "partial");
    assert_eq!(out["matched_key"], "deps-2");
    assert_eq!(
        std::fs::read_to_string(dest.join("tree/which")).expect("read"),
        "2"
    );
}

#[test]
fn exact_turns_prefix_matching_off_and_a_miss_exits_zero() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "x");
    save(&ctx, "deps-1", &[]);
    let run = ctx.run(&["--json", "cache", "restore", "--key", "deps-", "--exact"]);
    run.ok();
    assert_eq!(run.json()["hit"], "miss");
    assert!(run.stderr.contains("warning"), "{}", run.stderr);

    let run = ctx.run(&["--json", "cache", "restore", "--key", "deps-"]);
    run.ok();
    assert_eq!(run.json()["hit"], "partial");

    let run = ctx.run(&[
        "--json",
        "cache",
        "restore",
        "--key",
        "other",
        "--fail-on-miss",
    ]);
    run.expect_code(3);
}

#[test]
fn lookup_only_reports_the_match_and_writes_nothing() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "x");
    save(&ctx, "deps-1", &[]);
    let dest = ctx.dir("r");
    let run = ctx.run_in(
        &dest,
        &[
            "--json",
            "cache",
            "restore",
            "--key",
            "deps-1",
            "--lookup-only",
        ],
    );
    run.ok();
    let out = run.json();
    assert_eq!(out["hit"], "exact");
    assert_eq!(out["matched_key"], "deps-1");
    assert_eq!(std::fs::read_dir(&dest).expect("read").count(), 0);
}

#[test]
fn template_errors_name_the_missing_thing() {
    let ctx = TestContext::new();
    let cases = [
        ("{{ checksum \"missing.lock\" }}", "missing.lock"),
        ("{{ sha1sum \"x\" }}", "sha1sum"),
        ("{{ .Environment.UNSET_VAR }}", "UNSET_VAR"),
        ("{{ hashFiles \"nomatch/**/*.lock\" }}", "nomatch/**/*.lock"),
    ];
    for (template, named) in cases {
        let run = ctx.run(&["key", template]);
        assert!(
            run.code == 1 || run.code == 2,
            "{template}: exit {}",
            run.code
        );
        assert!(run.stderr.contains(named), "{template}: {}", run.stderr);
        assert!(
            run.stdout.is_empty(),
            "{template} printed a key: {}",
            run.stdout
        );
        ctx.write("tree/x", "x");
        let save = ctx.run(&["cache", "save", "--key", template, "--path", "tree"]);
        assert!(
            save.code == 1 || save.code == 2,
            "{template}: save exit {}",
            save.code
        );
    }
}

#[test]
fn hash_files_covers_nested_files_and_changes_with_one_byte() {
    let ctx = TestContext::new();
    ctx.write("a/Cargo.lock", "one");
    ctx.write("a/b/c/Cargo.lock", "two");
    let key = |ctx: &TestContext| {
        let run = ctx.run(&["key", "v1-{{ hashFiles \"**/Cargo.lock\" }}"]);
        run.ok();
        run.stdout.trim().to_string()
    };
    let before = key(&ctx);
    assert!(
        before.starts_with("v1-") && before.len() == 3 + 64,
        "{before}"
    );
    ctx.write("a/b/c/Cargo.lock", "twO");
    let after = key(&ctx);
    assert_ne!(
        before, after,
        "a change in a nested file must change the key"
    );
    ctx.write("a/b/c/Cargo.lock", "two");
    assert_eq!(key(&ctx), before, "hashFiles is stable");
}

#[test]
fn key_prints_only_the_key_on_stdout() {
    let mut ctx = TestContext::new();
    ctx.set_env("GITHUB_ACTIONS", "true");
    ctx.set_env("GITHUB_REF_NAME", "main");
    ctx.set_env("GITHUB_RUN_NUMBER", "17");
    let run = ctx.run(&[
        "--json",
        "key",
        "v1-{{ .Branch }}-{{ .BuildNum }}-{{ os }}-{{ arch }}",
    ]);
    run.ok();
    assert_eq!(
        run.stdout.trim(),
        format!("v1-main-17-{}-{}", std::env::consts::OS, ferry_arch())
    );
    let ctx_json: Value = serde_json::from_str(run.stderr.trim()).expect("context JSON on stderr");
    assert_eq!(ctx_json["context"]["provider"], "github-actions");
}

fn ferry_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn nothing_to_save_is_an_error_and_stores_nothing() {
    let ctx = TestContext::new();
    let run = ctx.run(&[
        "cache",
        "save",
        "--key",
        "empty",
        "--path",
        "does-not-exist",
    ]);
    run.expect_code(1);
    assert!(run.stderr.contains("does-not-exist"), "{}", run.stderr);
    let ls = ctx.run(&["--json", "cache", "ls"]);
    ls.ok();
    assert_eq!(ls.json()["caches"].as_array().map(Vec::len), Some(0));
}

#[test]
fn globs_and_excludes_select_paths() {
    let ctx = TestContext::new();
    ctx.write("pkgs/a/node_modules/x.js", "a");
    ctx.write("pkgs/b/node_modules/y.js", "b");
    ctx.write("pkgs/b/node_modules/test/skip.js", "skip");
    ctx.write("pkgs/b/src/not-saved.js", "no");
    ctx.run(&[
        "cache",
        "save",
        "--key",
        "g",
        "--path",
        "pkgs/*/node_modules",
        "--path",
        "!**/test",
        "--path",
        "missing-dir",
    ])
    .ok();
    let dest = ctx.dir("r");
    ctx.run_in(&dest, &["cache", "restore", "--key", "g"]).ok();
    assert!(dest.join("pkgs/a/node_modules/x.js").exists());
    assert!(dest.join("pkgs/b/node_modules/y.js").exists());
    assert!(!dest.join("pkgs/b/node_modules/test").exists());
    assert!(!dest.join("pkgs/b/src").exists());
}

#[test]
fn ls_and_rm_manage_entries() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "x");
    save(&ctx, "keep-1", &[]);
    save(&ctx, "drop-1", &[]);
    let ls = ctx.run(&["--json", "cache", "ls", "--prefix", "keep"]);
    ls.ok();
    let keys: Vec<String> = ls.json()["caches"]
        .as_array()
        .expect("caches")
        .iter()
        .map(|c| c["key"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(keys, ["keep-1"]);
    ctx.run(&["cache", "rm", "drop-1"]).ok();
    let run = ctx.run(&["--json", "cache", "restore", "--key", "drop-1", "--exact"]);
    assert_eq!(run.json()["hit"], "miss");
    ctx.run(&["cache", "rm", "never-was"]).expect_code(1);
}

#[test]
fn github_outputs_say_hit_only_on_an_exact_match() {
    let mut ctx = TestContext::new();
    ctx.write("tree/x", "x");
    save(&ctx, "deps-abc", &[]);
    let out_file = ctx.root.join("github_output");
    ctx.set_env("GITHUB_ACTIONS", "true");
    ctx.set_env("GITHUB_OUTPUT", out_file.display().to_string());
    ctx.run(&["cache", "restore", "--key", "deps-abc"]).ok();
    let outputs = ferry_tests::github_outputs(&out_file);
    assert_eq!(outputs["cache-hit"], "true", "{outputs:?}");
    assert_eq!(outputs["cache-primary-key"], "deps-abc", "{outputs:?}");
    assert_eq!(outputs["cache-matched-key"], "deps-abc", "{outputs:?}");

    std::fs::remove_file(&out_file).expect("rm");
    ctx.run(&[
        "cache",
        "restore",
        "--key",
        "deps-xyz",
        "--restore-key",
        "deps-",
    ])
    .ok();
    let outputs = ferry_tests::github_outputs(&out_file);
    assert_eq!(outputs["cache-hit"], "false", "{outputs:?}");
    assert_eq!(outputs["cache-primary-key"], "deps-xyz", "{outputs:?}");
    assert_eq!(outputs["cache-matched-key"], "deps-abc", "{outputs:?}");
}

/// The manifest of `key` in the local store (the layout of docs/FORMAT.md).
fn manifest_path(store: &Path, key: &str) -> std::path::PathBuf {
    let keys = store
        .join("ferry-v1")
        .join("acme=2Fapp")
        .join("caches")
        .join("keys");
    std::fs::read_dir(&keys)
        .expect("keys folder")
        .map(|e| e.expect("entry").path())
        .find(|p| {
            let m: Value =
                serde_json::from_slice(&std::fs::read(p).expect("manifest")).expect("json");
            m["key"] == key
        })
        .expect("a manifest for the key")
}

/// Replaces an entry's data with `archive` (zstd-compressed) and fixes the manifest's digest,
/// as someone with write access to the store could.
/// The manifest of `key` in a local store and the path of its data object, which the
/// manifest names (docs/FORMAT.md).
fn stored(store: &Path, key: &str) -> (Value, std::path::PathBuf) {
    let m: Value = serde_json::from_slice(&std::fs::read(manifest_path(store, key)).expect("read"))
        .expect("json");
    let data = store.join(m["data"]["path"].as_str().expect("path"));
    (m, data)
}

/// Unpacks `archive` with GNU tar (`flags`: `-xf`, `-xzf`) into a new folder `name`.
fn gnu_tar_x(ctx: &TestContext, flags: &str, archive: &Path, name: &str) -> std::path::PathBuf {
    let out = ctx.dir(name);
    let status = std::process::Command::new("tar")
        .arg(flags)
        .arg(archive)
        .current_dir(&out)
        .status()
        .expect("GNU tar runs");
    assert!(
        status.success(),
        "GNU tar could not read {}",
        archive.display()
    );
    out
}

fn replace_data(store: &Path, key: &str, tar_bytes: &[u8]) {
    use sha2::Digest;
    let mpath = manifest_path(store, key);
    let mut m: Value = serde_json::from_slice(&std::fs::read(&mpath).expect("read")).expect("json");
    let data = zstd::encode_all(tar_bytes, 3).expect("compress");
    let rel = m["data"]["path"].as_str().expect("data path").to_string();
    std::fs::write(store.join(&rel), &data).expect("write data");
    m["data"]["size"] = data.len().into();
    m["data"]["sha256"] = format!("{:x}", sha2::Sha256::digest(&data)).into();
    std::fs::write(&mpath, serde_json::to_vec(&m).expect("json")).expect("write manifest");
}

/// A tar entry with a raw name (the tar crate's setters refuse `..` and absolute names).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: Option<&str>, body: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    h.set_cksum();
    out.write_all(h.as_bytes()).expect("header");
    out.write_all(body).expect("body");
    let pad = (512 - body.len() % 512) % 512;
    out.write_all(&vec![0u8; pad]).expect("pad");
}

#[test]
fn hand_made_unsafe_archives_are_refused_and_write_nothing() {
    let ctx = TestContext::new();
    let Some(store) = ctx.local_store() else {
        return; // reaching into the store's files needs the local store
    };
    ctx.write("tree/ok.txt", "ok");
    // Format 1: its data is the tar.zst the cases below replace.
    save(&ctx, "evil", &["--format", "zstd"]);
    let abs = ctx.root.join("abs-evil");
    let abs_name = abs.display().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", {
            let mut t = Vec::new();
            raw_entry(
                &mut t,
                "tree/ok.txt",
                tar::EntryType::Regular,
                None,
                b"fine",
            );
            raw_entry(&mut t, "../evil", tar::EntryType::Regular, None, b"evil");
            t.extend_from_slice(&[0u8; 1024]);
            t
        }),
        ("absolute", {
            let mut t = Vec::new();
            raw_entry(
                &mut t,
                "tree/ok.txt",
                tar::EntryType::Regular,
                None,
                b"fine",
            );
            raw_entry(&mut t, &abs_name, tar::EntryType::Regular, None, b"evil");
            t.extend_from_slice(&[0u8; 1024]);
            t
        }),
        ("symlink to /etc", {
            let mut t = Vec::new();
            raw_entry(
                &mut t,
                "tree/ok.txt",
                tar::EntryType::Regular,
                None,
                b"fine",
            );
            raw_entry(
                &mut t,
                "tree/etc",
                tar::EntryType::Symlink,
                Some("/etc"),
                b"",
            );
            raw_entry(
                &mut t,
                "tree/etc/ferry-pwned",
                tar::EntryType::Regular,
                None,
                b"evil",
            );
            t.extend_from_slice(&[0u8; 1024]);
            t
        }),
    ];
    for (what, archive) in cases {
        replace_data(&store, "evil", &archive);
        let target = ctx.dir(&format!(
            "target-{}",
            what.replace(' ', "-").replace('/', "")
        ));
        let run = ctx.run_in(&target, &["cache", "restore", "--key", "evil"]);
        run.expect_code(5);
        assert!(run.stderr.contains("unsafe"), "{what}: {}", run.stderr);
        assert_eq!(
            std::fs::read_dir(&target).expect("read").count(),
            0,
            "{what}: wrote inside the target"
        );
        assert!(!ctx.root.join("evil").exists(), "{what}: wrote outside");
        assert!(!abs.exists(), "{what}: wrote an absolute path");
        assert!(
            !Path::new("/etc/ferry-pwned").exists(),
            "{what}: wrote through a link"
        );
    }
}

#[test]
fn truncated_data_fails_with_5_and_leaves_the_tree_as_it_was() {
    let ctx = TestContext::new();
    let Some(store) = ctx.local_store() else {
        return;
    };
    for i in 0..50 {
        ctx.write(
            &format!("tree/f{i}.bin"),
            format!("{i}").repeat(5000 + i * 97),
        );
    }
    save(&ctx, "trunc", &[]);
    let (_, data) = stored(&store, "trunc");
    let bytes = std::fs::read(&data).expect("data");
    std::fs::write(&data, &bytes[..bytes.len() / 2]).expect("truncate");

    let target = ctx.dir("target");
    std::fs::create_dir_all(target.join("tree")).expect("mkdir");
    std::fs::write(target.join("tree/f1.bin"), "old contents").expect("write");
    std::fs::write(target.join("tree/mine.txt"), "keep me").expect("write");
    let before = snapshot(&target);
    let run = ctx.run_in(&target, &["cache", "restore", "--key", "trunc"]);
    run.expect_code(5);
    assert_eq!(
        snapshot(&target),
        before,
        "a failed restore changed the tree"
    );
}

#[test]
fn gzip_entry_found_through_format_doc_unpacks_with_gnu_tar() {
    let ctx = TestContext::new();
    let Some(store) = ctx.local_store() else {
        return;
    };
    make_tree(&ctx.work.join("tree"));
    save(&ctx, "gz", &["--format", "gzip"]);
    // docs/FORMAT.md: ferry-v1/<project, encoded>/caches/keys/<name>.json names the data object.
    let (m, data) = stored(&store, "gz");
    assert_eq!(m["compression"], "gzip");
    let out = gnu_tar_x(&ctx, "-xzf", &data, "by-hand");
    assert_eq!(
        snapshot(&ctx.work.join("tree")),
        snapshot(&out.join("tree"))
    );
}

/// Files of sizes around the restore's boundaries: written whole by the writer threads
/// (up to 256 KiB), streamed in chunks (above it), sizes not a multiple of 512 or of a chunk;
/// half incompressible, half repetitive, with their own modes and mtimes.
fn make_large_files(root: &Path) {
    let sizes = [
        ("exactly-256k.bin", 256 * 1024),
        ("just-over-256k.bin", 256 * 1024 + 1),
        ("three-mib-odd.bin", 3 * 1024 * 1024 + 123),
        ("nine-mib.bin", 9 * 1024 * 1024 + 511),
    ];
    std::fs::create_dir_all(root).expect("mkdir");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for (i, (name, size)) in sizes.iter().enumerate() {
        let mut body = Vec::with_capacity(*size);
        while body.len() < size / 2 {
            // xorshift: incompressible, and the same on every run.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            body.extend_from_slice(&state.to_le_bytes());
        }
        body.truncate(size / 2);
        while body.len() < *size {
            body.extend_from_slice(b"node_modules/some-package/index.js\n");
        }
        body.truncate(*size);
        let p = root.join(name);
        std::fs::write(&p, &body).expect("write");
        let mode = [0o644, 0o755, 0o600, 0o640][i];
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let t = filetime::FileTime::from_unix_time(1_500_000_000 + i as i64 * 1000, 0);
        filetime::set_file_mtime(&p, t).expect("mtime");
    }
}

#[test]
fn large_files_round_trip_in_every_format_with_modes_and_mtimes() {
    let ctx = TestContext::new();
    make_large_files(&ctx.work.join("tree"));
    for format in ["zstd", "gzip", "tar"] {
        let key = format!("large-{format}");
        let saved = save(&ctx, &key, &["--format", format]);
        assert_eq!(saved["saved"], true, "{format}");
        assert_eq!(saved["files"], 4, "{format}");
        let dest = ctx.dir(&format!("restored-{format}"));
        ctx.run_in(&dest, &["cache", "restore", "--key", &key, "--exact"])
            .ok();
        assert_eq!(
            snapshot(&ctx.work.join("tree")),
            snapshot(&dest.join("tree")),
            "{format}: the restored tree differs"
        );
    }
}

#[test]
fn large_file_archives_are_standard_tar_that_gnu_tar_reads() {
    let ctx = TestContext::new();
    let Some(store) = ctx.local_store() else {
        return;
    };
    make_large_files(&ctx.work.join("tree"));
    save(&ctx, "by-hand", &["--format", "tar"]);
    let (_, data) = stored(&store, "by-hand");
    let out = gnu_tar_x(&ctx, "-xf", &data, "by-hand");
    assert_eq!(
        snapshot(&ctx.work.join("tree")),
        snapshot(&out.join("tree"))
    );
}

#[test]
fn truncated_data_inside_a_large_file_fails_with_5_and_leaves_no_partial_file() {
    let ctx = TestContext::new();
    let Some(store) = ctx.local_store() else {
        return;
    };
    make_large_files(&ctx.work.join("tree"));
    save(&ctx, "trunc-large", &["--format", "tar"]);
    let (_, data) = stored(&store, "trunc-large");
    let bytes = std::fs::read(&data).expect("data");
    // Cut in the middle of the 9 MiB file (the third entry by name): it is being streamed
    // when the archive ends.
    std::fs::write(&data, &bytes[..bytes.len() - 4 * 1024 * 1024]).expect("truncate");

    let target = ctx.dir("target");
    std::fs::write(target.join("mine.txt"), "keep me").expect("write");
    let before = snapshot(&target);
    let run = ctx.run_in(&target, &["cache", "restore", "--key", "trunc-large"]);
    run.expect_code(5);
    assert_eq!(
        snapshot(&target),
        before,
        "a failed restore left files behind"
    );
}

/// cargo hard-links every binary it builds: such a file is stored once, and restored as one
/// file under both names, as GNU tar keeps them.
#[test]
fn hard_linked_files_are_stored_once_and_restored_as_links() {
    use std::os::unix::fs::MetadataExt;
    let ctx = TestContext::new();
    let content = vec![42u8; 3 << 20];
    ctx.write("tree/deps/tool-1234", &content);
    std::fs::hard_link(
        ctx.work.join("tree/deps/tool-1234"),
        ctx.work.join("tree/tool"),
    )
    .expect("hard link");
    let saved = save(&ctx, "linked", &["--format", "tar"]);
    assert_eq!(saved["files"], 2);
    assert!(
        saved["bytes"].as_u64().expect("bytes") < (content.len() as u64) * 3 / 2,
        "the content is stored once: {saved}"
    );
    let dest = ctx.dir("dest");
    ctx.run_in(&dest, &["cache", "restore", "--key", "linked"])
        .ok();
    let a = std::fs::metadata(dest.join("tree/deps/tool-1234")).expect("first name");
    let b = std::fs::metadata(dest.join("tree/tool")).expect("second name");
    assert_eq!(a.ino(), b.ino(), "one file under two names");
    assert_eq!(a.nlink(), 2);
    assert_eq!(
        std::fs::read(dest.join("tree/tool")).expect("read"),
        content
    );
}
