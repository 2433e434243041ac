//! Stores written by store format 1 and 2 (kept in `tests/fixtures/store-v1` and
//! `tests/fixtures/store-v2`) stay readable.

use ferry_tests::TestContext;

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.expect("walk the fixture");
        let dest = to.join(e.path().strip_prefix(from).expect("below the fixture"));
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

#[test]
fn store_written_by_format_1_restores() {
    let ctx = TestContext::new();
    let store = ctx.root.join("store-v1");
    copy_tree(
        &ferry_tests::repo_root().join("tests/fixtures/store-v1"),
        &store,
    );
    let dest = ctx.dir("restored");
    let mut cmd = ctx.ferry_in(&dest);
    let out = cmd
        .args(["--json", "--store"])
        .arg(&store)
        .args(["cache", "restore", "--key", "fixture-v1"])
        .output()
        .expect("run ferry");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(result["hit"], "exact");
    assert_eq!(
        std::fs::read_to_string(dest.join("tree/sub/hello.txt")).expect("restored file"),
        "written by store format 1\n"
    );
    assert_eq!(
        std::fs::read_link(dest.join("tree/link"))
            .expect("restored link")
            .to_str(),
        Some("sub/hello.txt")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.join("tree/sub/hello.txt"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn store_written_by_format_2_restores_and_exports() {
    let ctx = TestContext::new();
    let store = ctx.root.join("store-v2");
    copy_tree(
        &ferry_tests::repo_root().join("tests/fixtures/store-v2"),
        &store,
    );
    let dest = ctx.dir("restored");
    let out = ctx
        .ferry_in(&dest)
        .args(["--json", "--store"])
        .arg(&store)
        .args(["cache", "restore", "--key", "fixture-v2"])
        .output()
        .expect("run ferry");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (result["hit"].as_str(), result["format"].as_str()),
        (Some("exact"), Some("chunked"))
    );
    let check = |root: &std::path::Path| {
        assert_eq!(
            std::fs::read_to_string(root.join("tree/sub/hello.txt")).expect("restored file"),
            "written by store format 2\n"
        );
        let data = std::fs::read(root.join("tree/sub/data.txt")).expect("data");
        use sha2::Digest;
        assert_eq!(
            format!("{:x}", sha2::Sha256::digest(&data)),
            "f389e60731e6cff412c286c7c9269b9ec32cde1a83bf1903c51fb9734fc839e4"
        );
        assert_eq!(
            std::fs::read_link(root.join("tree/link"))
                .expect("link")
                .to_str(),
            Some("sub/hello.txt")
        );
        assert!(root.join("tree/empty").is_dir());
    };
    check(&dest);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dest.join("tree/sub/hello.txt"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // And by hand, through cache export and GNU tar.
    let tar_file = ctx.root.join("v2.tar");
    let out = ctx
        .ferry_in(&ctx.work)
        .arg("--store")
        .arg(&store)
        .args(["cache", "export", "fixture-v2", "-o"])
        .arg(&tar_file)
        .output()
        .expect("run ferry");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_hand = ctx.dir("by-hand");
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_file)
        .current_dir(&by_hand)
        .status()
        .expect("tar");
    assert!(status.success());
    check(&by_hand);
}
