//! End-to-end tests of `ferry artifacts upload | ls | download | url` against the store
//! under test: one object per file, modes and digests kept and checked, CircleCI's path
//! rules, and the run + job keyspace.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use ferry_tests::{Run, TestContext, Value, noise};
use sha2::{Digest, Sha256};

/// A context whose commands belong to run 1, job build (through `FERRY_RUN`/`FERRY_JOB`).
fn context() -> TestContext {
    let mut ctx = TestContext::new();
    ctx.set_env("FERRY_RUN", "1");
    ctx.set_env("FERRY_JOB", "build");
    ctx
}

/// `ferry --json artifacts ARGS`.
fn artifacts(ctx: &TestContext, args: &[&str]) -> Run {
    let mut all = vec!["--json", "artifacts"];
    all.extend_from_slice(args);
    ctx.run(&all)
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every file below `root`, as `relative path -> bytes`.
fn files_below(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(root).expect("below root");
            (
                rel.to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

/// `path -> entry` of an `ls --json` result.
fn listed(ctx: &TestContext, extra: &[&str]) -> BTreeMap<String, Value> {
    let mut args = vec!["ls"];
    args.extend_from_slice(extra);
    let run = artifacts(ctx, &args);
    run.ok();
    run.json()["artifacts"]
        .as_array()
        .expect("an artifacts array")
        .iter()
        .map(|a| (a["path"].as_str().expect("a path").to_string(), a.clone()))
        .collect()
}

/// Build output: nested files, an executable, a private file and a name with a space.
fn make_reports(ctx: &TestContext) {
    ctx.write("out/junit/unit.txt", "unit: 12 passed\n");
    ctx.write("out/junit/deep/integration.txt", "integration: 3 passed\n");
    ctx.write("out/with space.txt", "spaced name\n");
    ctx.write("out/coverage.json", "{\"lines\": 91.5}\n");
    ctx.write("out/bin/report.sh", "#!/bin/sh\necho report\n");
    chmod(&ctx.work.join("out/bin/report.sh"), 0o755);
    chmod(&ctx.work.join("out/with space.txt"), 0o600);
}

#[test]
fn folder_upload_lists_each_file_and_a_glob_download_restores_just_those_with_bytes_and_modes() {
    let ctx = context();
    make_reports(&ctx);
    let up = artifacts(&ctx, &["upload", "out", "--destination", "reports"]);
    up.ok();
    assert_eq!(up.json()["files"], 5);

    let entries = listed(&ctx, &[]);
    let expected = [
        ("reports/bin/report.sh", "out/bin/report.sh", "0755"),
        ("reports/coverage.json", "out/coverage.json", "0644"),
        (
            "reports/junit/deep/integration.txt",
            "out/junit/deep/integration.txt",
            "0644",
        ),
        ("reports/junit/unit.txt", "out/junit/unit.txt", "0644"),
        ("reports/with space.txt", "out/with space.txt", "0600"),
    ];
    assert_eq!(
        entries.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.map(|e| e.0)
    );
    for (stored, local, mode) in expected {
        let bytes = std::fs::read(ctx.work.join(local)).expect("read");
        let e = &entries[stored];
        assert_eq!(e["size"], bytes.len() as u64, "{stored}");
        assert_eq!(e["sha256"], sha256(&bytes), "{stored}");
        assert_eq!(e["mode"], mode, "{stored}");
        assert_eq!(e["job"], "build");
        assert!(
            e["expires"].is_string(),
            "artifacts expire after 30 days by default"
        );
    }

    let run = artifacts(&ctx, &["download", "reports/**/*.txt", "--to", "got"]);
    run.ok();
    assert_eq!(run.json()["files"], 3);
    let got = ctx.work.join("got");
    let files = files_below(&got);
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "reports/junit/deep/integration.txt",
            "reports/junit/unit.txt",
            "reports/with space.txt"
        ]
    );
    for (rel, bytes) in &files {
        let local = ctx
            .work
            .join("out")
            .join(rel.trim_start_matches("reports/"));
        assert_eq!(bytes, &std::fs::read(&local).expect("read"), "{rel}");
        assert_eq!(mode(&got.join(rel)), mode(&local), "mode of {rel}");
    }

    // A pattern without glob syntax takes that path and everything below it.
    artifacts(&ctx, &["download", "reports/junit", "--to", "junit"]).ok();
    assert_eq!(
        files_below(&ctx.work.join("junit"))
            .into_keys()
            .collect::<Vec<_>>(),
        [
            "reports/junit/deep/integration.txt",
            "reports/junit/unit.txt"
        ]
    );

    artifacts(&ctx, &["download", "--to", "all"]).ok();
    let all = ctx.work.join("all");
    assert_eq!(files_below(&all).len(), 5);
    assert_eq!(mode(&all.join("reports/bin/report.sh")), 0o755);
}

#[test]
fn paths_are_named_as_circleci_names_them() {
    let ctx = context();
    make_reports(&ctx);
    artifacts(&ctx, &["upload", "out/junit/unit.txt"]).ok();
    artifacts(
        &ctx,
        &["upload", "out/bin/report.sh", "--destination", "tools"],
    )
    .ok();
    artifacts(&ctx, &["upload", "out/junit", "--destination", "tests"]).ok();
    let entries = listed(&ctx, &[]);
    assert_eq!(
        entries.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "out/junit/unit.txt",
            "tests/deep/integration.txt",
            "tests/unit.txt",
            "tools/report.sh"
        ]
    );
}

#[test]
fn a_second_upload_of_a_path_fails_naming_it_and_uploads_nothing_unless_overwrite() {
    let ctx = context();
    ctx.write("out/a.txt", "first\n");
    artifacts(&ctx, &["upload", "out/a.txt"]).ok();

    ctx.write("out/a.txt", "second\n");
    ctx.write("out/b.txt", "new\n");
    let again = artifacts(&ctx, &["upload", "out/a.txt", "out/b.txt"]);
    again.expect_code(1);
    assert!(
        again.stderr.contains("out/a.txt"),
        "the error names the path:\n{}",
        again.stderr
    );
    assert!(
        !again.stderr.contains("out/b.txt"),
        "only the clashing path is named:\n{}",
        again.stderr
    );
    assert_eq!(
        listed(&ctx, &[]).keys().collect::<Vec<_>>(),
        ["out/a.txt"],
        "nothing was uploaded"
    );

    let replaced = artifacts(&ctx, &["upload", "out/a.txt", "out/b.txt", "--overwrite"]);
    replaced.ok();
    let uploaded = replaced.json()["artifacts"].clone();
    assert_eq!(uploaded[0]["path"], "out/a.txt");
    assert_eq!(uploaded[0]["replaced"], true);
    assert_eq!(uploaded[1]["replaced"], false);
    artifacts(&ctx, &["download", "out/a.txt", "--to", "got"]).ok();
    assert_eq!(
        std::fs::read_to_string(ctx.work.join("got/out/a.txt")).expect("read"),
        "second\n"
    );
}

#[test]
fn one_changed_byte_in_the_store_fails_download_with_5_naming_the_file_and_leaves_no_file() {
    // A small file goes in one request, a large one streams: both are checked.
    for (job, bad) in [
        ("small", b"damaged in the store\n".to_vec()),
        ("large", noise(3 << 20, 2)),
    ] {
        let mut ctx = context();
        ctx.set_env("FERRY_JOB", job);
        if ctx.local_store().is_none() {
            eprintln!("skipped: reaching into the stored object needs the local store");
            return;
        }
        ctx.write("out/good.txt", "good\n");
        ctx.write("out/bad.bin", &bad);
        artifacts(&ctx, &["upload", "out"]).ok();
        let link = ctx.run(&["artifacts", "url", "out/bad.bin"]);
        link.ok();
        let object = link
            .stdout
            .trim()
            .strip_prefix("file://")
            .expect("a file:// link")
            .to_string();
        let mut bytes = std::fs::read(&object).expect("read the stored object");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&object, bytes).expect("damage the stored object");

        let run = artifacts(&ctx, &["download", "--to", "got"]);
        run.expect_code(5);
        assert!(
            run.stderr.contains("out/bad.bin"),
            "the error names the file:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("out/good.txt"), "{}", run.stderr);
        let left: Vec<String> = std::fs::read_dir(ctx.work.join("got/out"))
            .expect("the target folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            ["good.txt"],
            "{job}: no damaged or temporary file is left in the target"
        );
    }
}

#[test]
fn large_files_stream_up_and_down_unchanged() {
    let ctx = context();
    let bytes = noise(20 << 20, 2);
    ctx.write("dist/app.tar", &bytes);
    chmod(&ctx.work.join("dist/app.tar"), 0o640);
    let up = artifacts(
        &ctx,
        &["upload", "dist/app.tar", "--destination", "release"],
    );
    up.ok();
    assert_eq!(up.json()["artifacts"][0]["sha256"], sha256(&bytes));
    artifacts(&ctx, &["download", "release/*", "--to", "got"]).ok();
    let got = ctx.work.join("got/release/app.tar");
    assert!(
        std::fs::read(&got).expect("read") == bytes,
        "the downloaded file equals the uploaded one"
    );
    assert_eq!(mode(&got), 0o640);
}

#[test]
fn url_output_fetched_with_curl_equals_the_file() {
    let ctx = context();
    if ferry_tests::store_name() == "memory" {
        eprintln!("skipped: a memory:// store has no links");
        return;
    }
    ctx.write("site/index.html", "<h1>report</h1>\n".repeat(1000));
    artifacts(&ctx, &["upload", "site", "--destination", "html"]).ok();
    for args in [
        &["artifacts", "url", "html/index.html"][..],
        &["--json", "artifacts", "url", "html/index.html"],
    ] {
        let run = ctx.run(args);
        run.ok();
        assert_eq!(
            run.stdout.lines().count(),
            1,
            "the link alone on stdout:\n{}",
            run.stdout
        );
        let fetched = std::process::Command::new("curl")
            .args(["-sSf", run.stdout.trim()])
            .output()
            .expect("curl runs");
        assert!(
            fetched.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&fetched.stderr)
        );
        assert_eq!(
            fetched.stdout,
            std::fs::read(ctx.work.join("site/index.html")).expect("read")
        );
    }
    let missing = ctx.run(&["artifacts", "url", "html/nope.html"]);
    missing.expect_code(1);
    assert!(
        missing.stderr.contains("html/nope.html"),
        "{}",
        missing.stderr
    );
}

#[test]
fn artifacts_of_other_runs_and_jobs_are_neither_listed_nor_downloaded_unless_asked_for() {
    let ctx = context();
    ctx.write("mine.txt", "run 1, build\n");
    ctx.write("other-job.txt", "run 1, test\n");
    ctx.write("other-run.txt", "run 2, build\n");
    artifacts(&ctx, &["upload", "mine.txt"]).ok();
    artifacts(&ctx, &["upload", "other-job.txt", "--job", "test"]).ok();
    artifacts(&ctx, &["upload", "other-run.txt", "--run", "2"]).ok();

    assert_eq!(listed(&ctx, &[]).keys().collect::<Vec<_>>(), ["mine.txt"]);
    artifacts(&ctx, &["download", "--to", "got"]).ok();
    assert_eq!(
        files_below(&ctx.work.join("got"))
            .keys()
            .collect::<Vec<_>>(),
        ["mine.txt"]
    );
    let none = artifacts(&ctx, &["download", "other-*.txt", "--to", "none"]);
    none.expect_code(1);
    assert!(!ctx.work.join("none/other-job.txt").exists());

    let asked = listed(&ctx, &["--job", "test"]);
    assert_eq!(asked.keys().collect::<Vec<_>>(), ["other-job.txt"]);
    assert_eq!(asked["other-job.txt"]["job"], "test");
    assert_eq!(
        listed(&ctx, &["--run", "2"]).keys().collect::<Vec<_>>(),
        ["other-run.txt"]
    );
    artifacts(&ctx, &["download", "--run", "2", "--to", "from-run-2"]).ok();
    assert!(ctx.work.join("from-run-2/other-run.txt").exists());
}

#[test]
fn a_missing_run_or_job_is_a_usage_error_naming_what_to_set() {
    let mut ctx = TestContext::new();
    ctx.write("a.txt", "a");
    let no_run = ctx.run(&["artifacts", "upload", "a.txt", "--job", "build"]);
    no_run.expect_code(2);
    assert!(
        no_run.stderr.contains("--run") && no_run.stderr.contains("FERRY_RUN"),
        "{}",
        no_run.stderr
    );
    let no_job = ctx.run(&["artifacts", "ls", "--run", "1"]);
    no_job.expect_code(2);
    assert!(
        no_job.stderr.contains("--job") && no_job.stderr.contains("FERRY_JOB"),
        "{}",
        no_job.stderr
    );

    // On a CI they come from its own variables.
    ctx.set_env("GITHUB_ACTIONS", "true");
    ctx.set_env("GITHUB_RUN_ID", "77");
    ctx.set_env("GITHUB_JOB", "build");
    ctx.run(&["artifacts", "upload", "a.txt"]).ok();
    assert_eq!(
        listed(&ctx, &["--run", "77", "--job", "build"])
            .keys()
            .collect::<Vec<_>>(),
        ["a.txt"]
    );
}

#[test]
fn ttl_never_keeps_an_artifact_with_no_expiry() {
    let ctx = context();
    ctx.write("keep.txt", "forever\n");
    artifacts(&ctx, &["upload", "keep.txt", "--ttl", "never"]).ok();
    assert!(listed(&ctx, &[])["keep.txt"]["expires"].is_null());
    let bad = artifacts(
        &ctx,
        &["upload", "keep.txt", "--ttl", "soon", "--overwrite"],
    );
    bad.expect_code(2);
}

/// The benchmark of issue 4: 10,000 small files up and down. Run it with
/// `cargo test -p ferry-tests --test artifacts -- --ignored --nocapture ten_thousand`.
#[test]
#[ignore = "a benchmark; run by hand"]
fn ten_thousand_small_files_upload_and_download() {
    let ctx = context();
    for i in 0..10_000 {
        ctx.write(
            &format!("many/d{}/f{i}.txt", i % 100),
            format!("file {i}\n").repeat(1 + i % 50),
        );
    }
    let started = Instant::now();
    let up = artifacts(&ctx, &["upload", "many"]);
    let upload = started.elapsed();
    up.ok();
    assert_eq!(up.json()["files"], 10_000);
    let started = Instant::now();
    let down = artifacts(&ctx, &["download", "--to", "got"]);
    let download = started.elapsed();
    down.ok();
    assert_eq!(down.json()["files"], 10_000);
    eprintln!(
        "10,000 small files ({} bytes) on the {} store: upload {:.2}s, download {:.2}s",
        up.json()["bytes"],
        ferry_tests::store_name(),
        upload.as_secs_f64(),
        download.as_secs_f64()
    );
}

#[test]
fn the_same_file_uploaded_by_two_runs_is_stored_once_and_both_download_it() {
    let ctx = context();
    let report = "<testsuite tests=\"3\"/>\n".repeat(100);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ctx.write("out/report.xml", &report);
    ctx.write("out/big.bin", &big);
    let data_dir = format!(
        "{}/artifacts/data",
        ferry_core::manifest::project_dir("acme/app")
    );
    let mut uploaded = Vec::new();
    for run in ["1", "2"] {
        let r = artifacts(&ctx, &["upload", "out", "--run", run]);
        r.ok();
        uploaded.push(r.json()["uploaded_bytes"].as_u64().expect("uploaded_bytes"));
    }
    assert_eq!(
        uploaded,
        [(report.len() + big.len()) as u64, 0],
        "the second run uploads nothing"
    );
    let objects = ctx.direct().list(&data_dir);
    assert_eq!(objects.len(), 2, "each content once: {objects:?}");
    assert!(
        objects.iter().any(|o| o.ends_with("/report.xml")),
        "{objects:?}"
    );
    for run in ["1", "2"] {
        let to = format!("got-{run}");
        artifacts(&ctx, &["download", "--to", &to, "--run", run]).ok();
        assert_eq!(
            std::fs::read_to_string(ctx.work.join(&to).join("out/report.xml")).expect("report"),
            report
        );
        assert_eq!(
            std::fs::read(ctx.work.join(&to).join("out/big.bin")).expect("big"),
            big
        );
    }
}
