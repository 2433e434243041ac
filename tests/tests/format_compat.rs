//! A store written by store format 1 (kept in `tests/fixtures/store-v1`) stays readable.

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
