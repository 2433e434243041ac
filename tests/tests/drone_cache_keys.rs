//! End-to-end tests of keys copied from drone-cache and Harness pipelines (the ones in their
//! own documentation): they render on GitHub Actions, CircleCI, drone (and so Harness) and
//! locally, and a cache saved under one round-trips.

use std::path::Path;
use std::process::Command;

use ferry_tests::TestContext;
use sha2::{Digest, Sha256};

/// Harness's Azure step (drone-cache plugin), with Harness's `<+...>` expressions resolved as
/// Harness resolves them before the plugin runs, and the key its S3 and GCS steps show for Go.
const GRADLE_KEY: &str = r#"{{ .Commit.Branch }}-{{ checksum "build.gradle" }}"#;
const GO_KEY: &str = r#"cache-{{ checksum "go.sum" }}"#;
const HARNESS_AZURE_KEY: &str = r#"somecontainer/ci_pipeline/{{ .Commit.Branch }}-{{ checksum "gradle-examples/app/build.gradle" }}"#;

/// The environment each CI gives a job on branch `main`.
fn ci_env(ci: &str) -> Vec<(&'static str, &'static str)> {
    match ci {
        "github-actions" => vec![
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
            ("GITHUB_REPOSITORY", "acme/app"),
            ("GITHUB_REPOSITORY_OWNER", "acme"),
            ("GITHUB_RUN_ID", "9001"),
            ("GITHUB_RUN_NUMBER", "17"),
            ("GITHUB_JOB", "build"),
        ],
        "circleci" => vec![
            ("CIRCLECI", "true"),
            ("CIRCLE_BRANCH", "main"),
            ("CIRCLE_SHA1", "0123456789abcdef0123456789abcdef01234567"),
            ("CIRCLE_PROJECT_USERNAME", "acme"),
            ("CIRCLE_PROJECT_REPONAME", "app"),
            ("CIRCLE_WORKFLOW_ID", "5d1f6b3e-0000-4000-8000-000000000001"),
            ("CIRCLE_BUILD_NUM", "17"),
            ("CIRCLE_JOB", "build"),
        ],
        "drone" => vec![
            ("DRONE", "true"),
            ("DRONE_COMMIT_BRANCH", "main"),
            ("DRONE_COMMIT_REF", "refs/heads/main"),
            (
                "DRONE_COMMIT_SHA",
                "0123456789abcdef0123456789abcdef01234567",
            ),
            ("DRONE_REPO", "acme/app"),
            ("DRONE_REPO_NAME", "app"),
            ("DRONE_REPO_NAMESPACE", "acme"),
            ("DRONE_REPO_OWNER", "acme"),
            ("DRONE_BUILD_NUMBER", "17"),
            ("DRONE_BUILD_EVENT", "push"),
            ("DRONE_STAGE_NAME", "build"),
        ],
        "local" => vec![],
        other => panic!("no environment for {other}"),
    }
}

const EVERY_CI: [&str; 4] = ["github-actions", "circleci", "drone", "local"];

/// A context on `ci`: its variables set, or (locally) the work folder a git checkout of
/// branch `main` with one commit and an `origin` remote.
fn on(ci: &str) -> TestContext {
    let mut ctx = TestContext::new();
    ctx.remove_env("FERRY_PROJECT");
    for (k, v) in ci_env(ci) {
        ctx.set_env(k, v);
    }
    if ci == "local" {
        git(&ctx.work, &["init", "-q", "-b", "main"]);
        git(&ctx.work, &["commit", "-q", "--allow-empty", "-m", "first"]);
        git(
            &ctx.work,
            &["remote", "add", "origin", "https://github.com/acme/app.git"],
        );
    }
    ctx.write("build.gradle", "plugins { id 'java' }\n");
    ctx.write("go.sum", "example.com/mod v1.0.0 h1:abc=\n");
    ctx.write(
        "gradle-examples/app/build.gradle",
        "plugins { id 'application' }\n",
    );
    ctx
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

fn sha256_of(ctx: &TestContext, rel: &str) -> String {
    format!(
        "{:x}",
        Sha256::digest(std::fs::read(ctx.work.join(rel)).expect("read"))
    )
}

fn key(ctx: &TestContext, template: &str) -> String {
    let run = ctx.run(&["key", template]);
    run.ok();
    run.stdout.trim_end_matches('\n').to_string()
}

#[test]
fn harness_and_drone_cache_seed_keys_render_on_every_ci_and_locally() {
    for ci in EVERY_CI {
        let ctx = on(ci);
        let gradle = sha256_of(&ctx, "build.gradle");
        assert_eq!(key(&ctx, GRADLE_KEY), format!("main-{gradle}"), "on {ci}");
        assert_eq!(
            key(&ctx, GO_KEY),
            format!("cache-{}", sha256_of(&ctx, "go.sum")),
            "on {ci}"
        );
        assert_eq!(
            key(&ctx, HARNESS_AZURE_KEY),
            format!(
                "somecontainer/ci_pipeline/main-{}",
                sha256_of(&ctx, "gradle-examples/app/build.gradle")
            ),
            "on {ci}"
        );
        // drone-cache's other names for the same context agree with CircleCI's.
        assert_eq!(
            key(
                &ctx,
                "{{ .Commit.Sha }} {{ .Repo.Namespace }}/{{ .Repo.Name }} {{ .Repo.Owner }}"
            ),
            key(&ctx, "{{ .Revision }} {{ .Project }} acme"),
            "on {ci}"
        );
        if ci != "circleci" {
            assert_eq!(key(&ctx, "{{ .Commit.Ref }}"), "refs/heads/main", "on {ci}");
        }
    }
}

#[test]
fn drone_is_a_detected_ci_with_its_build_number_and_stage() {
    let ctx = on("drone");
    let run = ctx.run(&[
        "--json",
        "key",
        "{{ .Build.Number }}-{{ .Build.Event }}-{{ .Job }}",
    ]);
    run.ok();
    assert_eq!(run.stdout.trim(), "17-push-build");
    let context: serde_json::Value =
        serde_json::from_str(run.stderr.trim()).expect("context JSON on stderr");
    assert_eq!(context["context"]["provider"], "drone");
    assert_eq!(context["project"], "acme/app");
    assert_eq!(context["context"]["workflow"], "17");
}

#[test]
fn a_key_names_a_value_the_ci_lacks_and_an_unknown_name_lists_the_known_ones() {
    let ctx = on("circleci");
    let run = ctx.run(&["key", "{{ .Build.Event }}-x"]);
    run.expect_code(1);
    assert!(run.stderr.contains(".Build.Event"), "{}", run.stderr);
    assert!(
        run.stderr.contains("CircleCI does not provide it"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    let run = ctx.run(&["key", "{{ .Commit.Branchname }}-x"]);
    run.expect_code(2);
    for named in [
        ".Commit.Branchname",
        ".Commit.Branch ",
        ".Repo.Name",
        ".Build.Number",
        ".Branch",
    ] {
        assert!(run.stderr.contains(named), "{named}: {}", run.stderr);
    }
}

#[test]
fn a_cache_saved_on_drone_under_a_seed_key_restores_on_drone_and_locally() {
    let drone = on("drone");
    drone.write(".gradle/caches/modules-2/files-2.1/lib.jar", "jar bytes");
    let saved = drone.run(&[
        "--json",
        "cache",
        "save",
        "--key",
        GRADLE_KEY,
        "--path",
        ".gradle/caches",
    ]);
    saved.ok();
    let saved = saved.json();
    assert_eq!(saved["saved"], true, "{saved}");
    let expected_key = format!("main-{}", sha256_of(&drone, "build.gradle"));
    assert_eq!(saved["key"], expected_key.as_str());

    std::fs::remove_dir_all(drone.work.join(".gradle")).expect("remove");
    let restored = drone.run(&["--json", "cache", "restore", "--key", GRADLE_KEY]);
    restored.ok();
    assert_eq!(restored.json()["hit"], "exact");
    assert_eq!(
        std::fs::read_to_string(
            drone
                .work
                .join(".gradle/caches/modules-2/files-2.1/lib.jar")
        )
        .expect("restored"),
        "jar bytes"
    );

    // The same template renders the same key on a developer's checkout of main, so the
    // developer restores what the pipeline saved.
    let mut local = on("local");
    local.share_store_of(&drone);
    local.set_env("FERRY_PROJECT", "acme/app");
    let restored = local.run(&["--json", "cache", "restore", "--key", GRADLE_KEY]);
    restored.ok();
    let restored = restored.json();
    assert_eq!(restored["hit"], "exact", "{restored}");
    assert_eq!(restored["matched_key"], expected_key.as_str());
    assert_eq!(
        std::fs::read_to_string(
            local
                .work
                .join(".gradle/caches/modules-2/files-2.1/lib.jar")
        )
        .expect("restored"),
        "jar bytes"
    );
}

#[test]
fn drone_stages_share_one_workspace_per_build() {
    let mut build = on("drone");
    build.write("dist/app.js", "built");
    build
        .run(&["workspace", "persist", "--root", ".", "--path", "dist"])
        .ok();

    build.set_env("DRONE_STAGE_NAME", "test");
    let at = build.dir("test-stage");
    build
        .run(&["workspace", "attach", "--at", at.to_str().expect("utf-8")])
        .ok();
    assert_eq!(
        std::fs::read_to_string(at.join("dist/app.js")).expect("attached"),
        "built"
    );

    let run = build.run(&["--json", "workspace", "ls"]);
    run.ok();
    assert_eq!(run.json()["workflow"], "17");
    assert_eq!(run.json()["layers"].as_array().map(Vec::len), Some(1));

    // The next build has its own workspace.
    build.set_env("DRONE_BUILD_NUMBER", "18");
    let run = build.run(&["--json", "workspace", "ls"]);
    run.ok();
    assert_eq!(run.json()["layers"].as_array().map(Vec::len), Some(0));
}
