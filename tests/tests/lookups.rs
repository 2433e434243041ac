//! Lookups that read only what they need: a prefix restore takes the newest match from the
//! store's own listing, and exact artifact paths are read directly.

use ferry_tests::TestContext;

/// Names listed in one order, saved in the other: the most recently saved wins either way.
#[test]
fn the_newest_prefix_match_is_restored_whatever_order_the_store_lists_names_in() {
    for (first, second) in [("v1-b", "v1-a"), ("v1-a", "v1-b")] {
        let ctx = TestContext::new();
        for key in [first, second] {
            ctx.write("tree/x", key);
            ctx.run(&["cache", "save", "--key", key, "--path", "tree"])
                .ok();
        }
        let dest = ctx.dir("dest");
        let run = ctx.run_in(&dest, &["--json", "cache", "restore", "--key", "v1-"]);
        run.ok();
        assert_eq!(
            run.json()["matched_key"],
            second,
            "saved {first} then {second}"
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("tree/x")).expect("restored"),
            second
        );
    }
}

/// Stored paths holding spaces, glob characters and non-ASCII letters are found as they are.
#[test]
fn exact_artifact_paths_with_any_characters_are_found_directly() {
    let mut ctx = TestContext::new();
    ctx.set_env("FERRY_RUN", "run-names");
    ctx.set_env("FERRY_JOB", "build");
    let names = [
        "out/a b.txt",
        "out/[x]*?.log",
        "out/ünï çødé.txt",
        "out/sub/{a,b}.txt",
    ];
    for (i, n) in names.iter().enumerate() {
        ctx.write(n, format!("file {i}"));
    }
    ctx.write("out/other.txt", "other");
    ctx.run(&["artifacts", "upload", "out"]).ok();
    for (i, n) in names.iter().enumerate() {
        let to = ctx.dir(&format!("got{i}"));
        let run = ctx.run(&[
            "--json",
            "artifacts",
            "download",
            n,
            "--to",
            to.to_str().expect("utf8"),
        ]);
        run.ok();
        assert_eq!(run.json()["artifacts"], serde_json::json!([n]), "{n}");
        assert_eq!(
            std::fs::read_to_string(to.join(n)).expect("downloaded"),
            format!("file {i}")
        );
        let url = ctx.run(&["artifacts", "url", n]);
        url.ok();
        assert!(!url.stdout.trim().is_empty(), "{n}");
    }
    // A folder takes what is below it, and nothing beside it.
    let to = ctx.dir("got-sub");
    let run = ctx.run(&[
        "--json",
        "artifacts",
        "download",
        "out/sub",
        "--to",
        to.to_str().expect("utf8"),
    ]);
    run.ok();
    assert_eq!(
        run.json()["artifacts"],
        serde_json::json!(["out/sub/{a,b}.txt"])
    );
}
