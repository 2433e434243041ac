//! End-to-end tests of `ferry workspace persist | attach | ls`: jobs of one workflow run
//! handing files to each other through layers, against the store under test.
//!
//! Each job works in its own folder, as on its own runner; they share the store (and, here,
//! one home folder, where each job's state file is kept apart by workflow and job).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferry_tests::{Run, TestContext, Value, snapshot};

const RUN: &str = "run-1";

/// `ferry --json workspace ARGS --workflow RUN --job JOB` in `dir`.
fn ws(ctx: &TestContext, job: &str, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--json", "workspace"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--workflow", RUN, "--job", job]);
    ctx.run_in(dir, &all)
}

/// Job `job` persists `paths` from its folder `dir`; returns the result object.
fn persist(ctx: &TestContext, job: &str, dir: &Path, paths: &[&str]) -> Value {
    let mut args = vec!["persist", "--root", "."];
    for p in paths {
        args.extend_from_slice(&["--path", p]);
    }
    let run = ws(ctx, job, dir, &args);
    run.ok();
    run.json()
}

/// Job `job` attaches the whole workspace at `dir/ws`.
fn attach(ctx: &TestContext, job: &str, dir: &Path) -> Run {
    ws(ctx, job, dir, &["attach", "--at", "ws"])
}

/// A job's folder, holding `files`.
fn job_dir(ctx: &TestContext, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = ctx.dir(name);
    for (rel, body) in files {
        write(&dir.join(rel), body);
    }
    dir
}

fn write(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, body).expect("write");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn jobs_of(result: &Value) -> Vec<String> {
    result["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["job"].as_str().expect("job").to_string())
        .collect()
}

/// Build output with nested folders, an empty folder, an executable, a private file and
/// symlinks (to a file and to a folder), all with fixed mtimes.
fn make_build(root: &Path) {
    write(&root.join("dist/app.js"), "console.log('app')\n");
    write(&root.join("dist/lib/util.js"), "export const u = 1;\n");
    write(&root.join("dist/assets/logo svg ü.svg"), "<svg/>\n");
    write(
        &root.join("bin/serve"),
        "#!/bin/sh\nexec node dist/app.js\n",
    );
    write(&root.join("secrets/token"), "t0k3n\n");
    std::fs::set_permissions(
        root.join("bin/serve"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    std::fs::set_permissions(
        root.join("secrets/token"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::set_permissions(root.join("secrets"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    std::fs::create_dir_all(root.join("dist/empty")).expect("mkdir");
    std::os::unix::fs::symlink("app.js", root.join("dist/main.js")).expect("symlink");
    std::os::unix::fs::symlink("dist/lib", root.join("lib")).expect("symlink");
    let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    for e in walkdir::WalkDir::new(root)
        .min_depth(1)
        .contents_first(true)
    {
        let e = e.expect("walk");
        filetime::set_symlink_file_times(e.path(), t, t).expect("set times");
    }
}

#[test]
fn attach_lays_down_the_persisted_tree_exactly_and_attaching_again_changes_nothing() {
    let ctx = TestContext::new();
    let a = ctx.dir("job-a");
    make_build(&a.join("out"));
    let persisted = ws(
        &ctx,
        "A",
        &a,
        &[
            "persist", "--root", "out", "--path", "dist", "--path", "bin", "--path", "secrets",
            "--path", "lib",
        ],
    );
    persisted.ok();
    assert_eq!(persisted.json()["files"], 5);

    let b = ctx.dir("job-b");
    let attached = attach(&ctx, "B", &b);
    attached.ok();
    assert_eq!(jobs_of(&attached.json()), ["A"]);
    let want = snapshot(&a.join("out"));
    assert_eq!(snapshot(&b.join("ws")), want);
    assert_eq!(
        std::fs::read_link(b.join("ws/dist/main.js"))
            .expect("a link")
            .to_str(),
        Some("app.js")
    );

    attach(&ctx, "B", &b).ok();
    assert_eq!(
        snapshot(&b.join("ws")),
        want,
        "a second attach over the first changes nothing"
    );
    let c = ctx.dir("job-c");
    attach(&ctx, "C", &c).ok();
    assert_eq!(
        snapshot(&c.join("ws")),
        want,
        "every attach lays down the same tree"
    );
}

#[test]
fn a_child_layer_replaces_its_ancestors_file_and_keeps_both_jobs_other_files() {
    let ctx = TestContext::new();
    let a = job_dir(
        &ctx,
        "job-a",
        &[("dist/app.js", "A's app"), ("dist/a.txt", "from A")],
    );
    let a_layer = persist(&ctx, "A", &a, &["dist"]);
    assert_eq!(a_layer["parents"], Value::Array(vec![]));

    let b = ctx.dir("job-b");
    attach(&ctx, "B", &b).ok();
    write(&b.join("ws/dist/app.js"), "B's app");
    write(&b.join("ws/dist/b.txt"), "from B");
    let b_layer = ws(
        &ctx,
        "B",
        &b,
        &["persist", "--root", "ws", "--path", "dist"],
    );
    b_layer.ok();
    assert_eq!(
        b_layer.json()["parents"],
        Value::Array(vec![a_layer["id"].clone()])
    );

    let c = ctx.dir("job-c");
    let attached = attach(&ctx, "C", &c);
    attached.ok();
    assert_eq!(jobs_of(&attached.json()), ["A", "B"], "parents first");
    assert_eq!(read(&c.join("ws/dist/app.js")), "B's app");
    assert_eq!(read(&c.join("ws/dist/a.txt")), "from A");
    assert_eq!(read(&c.join("ws/dist/b.txt")), "from B");
}

#[test]
fn a_jobs_second_persist_descends_from_its_first_and_may_replace_its_files() {
    let ctx = TestContext::new();
    let a = job_dir(&ctx, "job-a", &[("dist/app.js", "v1")]);
    let first = persist(&ctx, "A", &a, &["dist"]);
    write(&a.join("dist/app.js"), "v2");
    let second = persist(&ctx, "A", &a, &["dist"]);
    assert_eq!(second["parents"], Value::Array(vec![first["id"].clone()]));

    let c = ctx.dir("job-c");
    attach(&ctx, "C", &c).ok();
    assert_eq!(read(&c.join("ws/dist/app.js")), "v2");
}

#[test]
fn side_by_side_jobs_persisting_the_same_file_conflict_and_attach_writes_nothing() {
    let ctx = TestContext::new();
    let a = job_dir(
        &ctx,
        "job-a",
        &[("dist/app.js", "A"), ("dist/only-a.js", "a")],
    );
    let b = job_dir(
        &ctx,
        "job-b",
        &[("dist/app.js", "B"), ("dist/only-b.js", "b")],
    );
    persist(&ctx, "A", &a, &["dist"]);
    persist(&ctx, "B", &b, &["dist"]);

    let c = job_dir(&ctx, "job-c", &[("ws/existing.txt", "mine")]);
    let before = snapshot(&c);
    let run = attach(&ctx, "C", &c);
    run.expect_code(4);
    assert!(
        run.stderr.contains("dist/app.js"),
        "names the path:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("job A"), "names job A:\n{}", run.stderr);
    assert!(run.stderr.contains("job B"), "names job B:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("only-a.js") && !run.stderr.contains("only-b.js"),
        "{}",
        run.stderr
    );
    assert_eq!(run.json()["exit_code"], 4);
    assert_eq!(snapshot(&c), before, "nothing was written");

    let fresh = ctx.dir("job-d");
    attach(&ctx, "D", &fresh).expect_code(4);
    assert!(
        !fresh.join("ws").exists(),
        "the attach folder is not even made"
    );
}

#[test]
fn a_file_in_one_layer_where_another_has_a_folder_conflicts() {
    let ctx = TestContext::new();
    let a = job_dir(&ctx, "job-a", &[("out", "a file")]);
    let b = job_dir(&ctx, "job-b", &[("out/x", "in a folder")]);
    persist(&ctx, "A", &a, &["out"]);
    persist(&ctx, "B", &b, &["out"]);

    let c = ctx.dir("job-c");
    let run = attach(&ctx, "C", &c);
    run.expect_code(4);
    assert!(
        run.stderr.contains("out: a file in job A's layer"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("a folder in job B's layer"),
        "{}",
        run.stderr
    );
    assert!(!c.join("ws").exists(), "nothing was written");
}

#[test]
fn every_clashing_path_is_listed() {
    let ctx = TestContext::new();
    let files = [
        ("dist/one.js", "x"),
        ("dist/two.js", "x"),
        ("dist/three.js", "x"),
    ];
    let a = job_dir(&ctx, "job-a", &files);
    let b = job_dir(&ctx, "job-b", &files);
    persist(&ctx, "A", &a, &["dist"]);
    persist(&ctx, "B", &b, &["dist"]);
    let run = attach(&ctx, "C", &ctx.dir("job-c"));
    run.expect_code(4);
    for (path, _) in files {
        assert!(
            run.stderr.contains(&format!("{path}: persisted by job A")),
            "{path}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn from_applies_only_that_jobs_layers_and_their_ancestors() {
    let ctx = TestContext::new();
    let a = job_dir(&ctx, "job-a", &[("a.txt", "a")]);
    persist(&ctx, "A", &a, &["a.txt"]);
    let b = ctx.dir("job-b");
    attach(&ctx, "B", &b).ok();
    write(&b.join("ws/b.txt"), "b");
    ws(
        &ctx,
        "B",
        &b,
        &["persist", "--root", "ws", "--path", "b.txt"],
    )
    .ok();
    let x = job_dir(
        &ctx,
        "job-x",
        &[("x.txt", "x"), ("b.txt", "a clash --from avoids")],
    );
    persist(&ctx, "X", &x, &["x.txt", "b.txt"]);

    let d = ctx.dir("job-d");
    let run = ws(&ctx, "D", &d, &["attach", "--at", "ws", "--from", "B"]);
    run.ok();
    assert_eq!(jobs_of(&run.json()), ["A", "B"]);
    assert_eq!(read(&d.join("ws/a.txt")), "a");
    assert_eq!(read(&d.join("ws/b.txt")), "b");
    assert!(!d.join("ws/x.txt").exists());

    let unknown = ws(&ctx, "D", &d, &["attach", "--at", "ws", "--from", "nope"]);
    unknown.expect_code(1);
    assert!(
        unknown.stderr.contains("no layer of job nope"),
        "{}",
        unknown.stderr
    );
    assert!(
        unknown.stderr.contains("A, B, X"),
        "lists the jobs that have layers:\n{}",
        unknown.stderr
    );
}

#[test]
fn a_layer_persisted_under_one_workflow_is_never_seen_from_another() {
    let ctx = TestContext::new();
    let a = job_dir(&ctx, "job-a", &[("dist/app.js", "W1")]);
    ctx.run_in(
        &a,
        &[
            "workspace",
            "persist",
            "--root",
            ".",
            "--path",
            "dist",
            "--workflow",
            "W1",
            "--job",
            "A",
        ],
    )
    .ok();

    let b = ctx.dir("job-b");
    let run = ctx.run_in(
        &b,
        &[
            "--json",
            "workspace",
            "attach",
            "--at",
            "ws",
            "--workflow",
            "W2",
            "--job",
            "B",
        ],
    );
    run.ok();
    assert_eq!(run.json()["layers"], Value::Array(vec![]));
    assert!(!b.join("ws/dist/app.js").exists());
    let ls = ctx.run(&["--json", "workspace", "ls", "--workflow", "W2"]);
    ls.ok();
    assert_eq!(ls.json()["layers"], Value::Array(vec![]));

    ctx.run_in(
        &b,
        &[
            "workspace",
            "attach",
            "--at",
            "ws",
            "--workflow",
            "W1",
            "--job",
            "B",
        ],
    )
    .ok();
    assert_eq!(read(&b.join("ws/dist/app.js")), "W1");
}

/// `persist --root . --path dist` in `dir` with no workflow or job flags: the CI's variables name them.
fn persist_from_ci(ctx: &TestContext, dir: &Path) -> Value {
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
        ],
    );
    run.ok();
    run.json()
}

/// `attach --at ws` in `dir` with no workflow or job flags.
fn attach_from_ci(ctx: &TestContext, dir: &Path) -> Value {
    let run = ctx.run_in(dir, &["--json", "workspace", "attach", "--at", "ws"]);
    run.ok();
    run.json()
}

#[test]
fn github_variables_name_the_run_and_job_and_a_rerun_attempt_sees_the_first_attempts_layers() {
    let mut ctx = TestContext::new();
    ctx.set_env("GITHUB_ACTIONS", "true");
    ctx.set_env("GITHUB_RUN_ID", "987654321");
    ctx.set_env("GITHUB_RUN_ATTEMPT", "1");
    ctx.set_env("GITHUB_JOB", "build");
    let build_temp = ctx.dir("build-runner-temp");
    ctx.set_env("RUNNER_TEMP", build_temp.display().to_string());
    let a = job_dir(&ctx, "build", &[("dist/app.js", "built")]);
    let persisted = persist_from_ci(&ctx, &a);
    assert_eq!(persisted["workflow"], "987654321");
    assert_eq!(persisted["job"], "build");
    assert!(
        walkdir::WalkDir::new(&build_temp)
            .into_iter()
            .flatten()
            .any(|e| e.file_type().is_file()),
        "the job's state is kept in RUNNER_TEMP"
    );

    ctx.set_env("GITHUB_RUN_ATTEMPT", "2");
    ctx.set_env("GITHUB_JOB", "test");
    ctx.set_env(
        "RUNNER_TEMP",
        ctx.dir("test-runner-temp").display().to_string(),
    );
    let b = ctx.dir("test");
    assert_eq!(attach_from_ci(&ctx, &b)["job"], "test");
    assert_eq!(read(&b.join("ws/dist/app.js")), "built");
    let ls = ctx.run(&["--json", "workspace", "ls"]);
    ls.ok();
    assert_eq!(ls.json()["workflow"], "987654321");
    assert_eq!(jobs_of(&ls.json()), ["build"]);
}

#[test]
fn circleci_variables_name_the_run_and_job() {
    let mut ctx = TestContext::new();
    ctx.set_env("CIRCLECI", "true");
    ctx.set_env("CIRCLE_WORKFLOW_ID", "5c8e3f9a-0d1b-4e7a-9c2f-1a2b3c4d5e6f");
    ctx.set_env("CIRCLE_JOB", "build");
    let a = job_dir(&ctx, "build", &[("dist/app.js", "built")]);
    let persisted = persist_from_ci(&ctx, &a);
    assert_eq!(
        persisted["workflow"],
        "5c8e3f9a-0d1b-4e7a-9c2f-1a2b3c4d5e6f"
    );
    assert_eq!(persisted["job"], "build");

    ctx.set_env("CIRCLE_JOB", "deploy");
    let b = ctx.dir("deploy");
    assert_eq!(attach_from_ci(&ctx, &b)["job"], "deploy");
    assert_eq!(read(&b.join("ws/dist/app.js")), "built");
}

#[test]
fn ls_json_reports_each_layers_job_parents_file_count_and_expiry() {
    let ctx = TestContext::new();
    let a = job_dir(&ctx, "job-a", &[("dist/one.js", "1"), ("dist/two.js", "2")]);
    let a_run = ws(
        &ctx,
        "A",
        &a,
        &["persist", "--root", ".", "--path", "dist", "--ttl", "2d"],
    );
    a_run.ok();
    let b = ctx.dir("job-b");
    attach(&ctx, "B", &b).ok();
    write(&b.join("ws/report.txt"), "ok");
    ws(
        &ctx,
        "B",
        &b,
        &["persist", "--root", "ws", "--path", "report.txt"],
    )
    .ok();

    let ls = ctx.run(&["--json", "workspace", "ls", "--workflow", RUN]);
    ls.ok();
    let out = ls.json();
    assert_eq!(out["workflow"], RUN);
    let layers = out["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 2);
    let (la, lb) = (&layers[0], &layers[1]);
    assert_eq!(la["job"], "A");
    assert_eq!(la["files"], 2);
    assert_eq!(la["parents"], Value::Array(vec![]));
    assert_eq!(la["id"], a_run.json()["id"]);
    assert_eq!(lb["job"], "B");
    assert_eq!(lb["files"], 1);
    assert_eq!(lb["parents"], Value::Array(vec![la["id"].clone()]));
    for (layer, days) in [(la, 2), (lb, 15)] {
        let created = chrono_seconds(&layer["created"]);
        let expires = chrono_seconds(&layer["expires"]);
        assert_eq!(expires - created, days * 86_400, "{layer}");
        assert!(layer["bytes"].as_u64().expect("bytes") > 0);
    }
}

/// Seconds since the epoch of an RFC 3339 timestamp as ferry prints it (UTC, `Z`).
fn chrono_seconds(v: &Value) -> i64 {
    let s = v.as_str().expect("a timestamp");
    let (date, time) = s.split_once('T').expect("date and time");
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().expect("number"))
        .collect();
    let t: Vec<i64> = time
        .trim_end_matches('Z')
        .split(['.', ':'])
        .take(3)
        .map(|p| p.parse().expect("number"))
        .collect();
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]
}

#[test]
fn a_missing_workflow_or_job_is_a_usage_error_naming_the_flag_to_set() {
    let ctx = TestContext::new();
    let a = job_dir(&ctx, "job-a", &[("dist/app.js", "x")]);
    let run = ctx.run_in(
        &a,
        &[
            "workspace",
            "persist",
            "--root",
            ".",
            "--path",
            "dist",
            "--job",
            "A",
        ],
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("--workflow") && run.stderr.contains("FERRY_WORKFLOW"),
        "{}",
        run.stderr
    );
    let run = ctx.run_in(
        &a,
        &[
            "workspace",
            "persist",
            "--root",
            ".",
            "--path",
            "dist",
            "--workflow",
            RUN,
        ],
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("--job") && run.stderr.contains("FERRY_JOB"),
        "{}",
        run.stderr
    );
    ctx.run_in(&a, &["workspace", "attach", "--at", "ws"])
        .expect_code(2);
}

#[test]
fn persisted_paths_must_stay_below_the_root() {
    let ctx = TestContext::new();
    let a = job_dir(&ctx, "job-a", &[("inside/x", "x"), ("outside", "o")]);
    for bad in ["../outside", "/etc/passwd", "~/.ssh"] {
        let run = ws(
            &ctx,
            "A",
            &a.join("inside"),
            &["persist", "--root", ".", "--path", bad],
        );
        run.expect_code(2);
        assert!(run.stderr.contains(bad), "{bad}: {}", run.stderr);
    }
}

#[test]
fn a_damaged_layer_fails_the_attach_and_leaves_the_folder_as_it_was() {
    let ctx = TestContext::new();
    let Some(store) = ctx.local_store() else {
        return; // reaches into the store's files
    };
    let a = job_dir(&ctx, "job-a", &[("first.txt", "first")]);
    persist(&ctx, "A", &a, &["first.txt"]);
    let b = job_dir(&ctx, "job-b", &[("second.txt", "second")]);
    let second = persist(&ctx, "B", &b, &["second.txt"]);
    let id = second["id"].as_str().expect("an id");
    let data = walkdir::WalkDir::new(&store)
        .into_iter()
        .flatten()
        .find(|e| {
            e.file_name().to_string_lossy().starts_with(id)
                && e.path().to_string_lossy().contains("/data/")
        })
        .expect("the second layer's archive");
    let bytes = std::fs::read(data.path()).expect("read");
    std::fs::write(data.path(), &bytes[..bytes.len() / 2]).expect("truncate");

    let c = job_dir(&ctx, "job-c", &[("ws/mine.txt", "mine")]);
    let before = snapshot(&c);
    let run = attach(&ctx, "C", &c);
    run.expect_code(5);
    assert_eq!(
        snapshot(&c),
        before,
        "not even the first, intact layer was laid down"
    );
}
