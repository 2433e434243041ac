//! `docs/migrating.md`'s shell snippets, run as written: each `<!-- cli:NAME -->` block runs
//! with `bash -eo pipefail` in a job's folder, with the build tools it calls (npm, yarn, go,
//! mvn, gradle) replaced by `tests/fixtures/build-tools/tool`, which fills the folders the real
//! tool downloads into and logs whether they were restored or fetched. A first job fetches
//! and saves; a job on a fresh machine (new home and folder, the same store) must find the
//! cache restored before the tool runs. Every `ferry` command the page shows elsewhere (in
//! Harness, drone, Buildkite, GitLab and Kestra YAML) must be one of these tested lines.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferry_tests::{Run, TestContext, repo_root};

/// The page, and its `cli:` snippets by name.
fn doc() -> String {
    std::fs::read_to_string(repo_root().join("docs/migrating.md")).expect("docs/migrating.md")
}

/// The one fenced block between `<!-- KIND:NAME -->` and `<!-- /KIND:NAME -->`, by NAME.
fn sections(kind: &str) -> BTreeMap<String, String> {
    let text = doc();
    let open = format!("<!-- {kind}:");
    let mut found = BTreeMap::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let name = after
            .split_once(" -->")
            .map(|(n, _)| n.to_string())
            .expect("a marker ends with -->");
        let close = format!("<!-- /{kind}:{name} -->");
        let end = after
            .find(&close)
            .unwrap_or_else(|| panic!("{kind}:{name} has no {close}"));
        let body = &after[..end];
        let code = body
            .split_once("```")
            .and_then(|(_, b)| b.split_once('\n'))
            .and_then(|(_, b)| b.split_once("```"))
            .map(|(code, _)| code.to_string())
            .unwrap_or_else(|| panic!("{kind}:{name} holds no code block"));
        assert!(
            found.insert(name.clone(), code).is_none(),
            "two snippets are named {kind}:{name}"
        );
        rest = &after[end..];
    }
    found
}

fn snippet(name: &str) -> String {
    sections("cli")
        .remove(name)
        .unwrap_or_else(|| panic!("docs/migrating.md has no cli:{name}"))
}

/// Every snippet a test below runs.
const TESTED: &[&str] = &[
    "actions-cache",
    "actions-report",
    "buildkite",
    "circleci-build",
    "circleci-test",
    "drone",
    "gitlab",
    "go",
    "gradle",
    "kestra",
    "maven",
    "npm",
    "stage-build",
    "stage-deploy",
    "yarn",
];

/// A folder with the build-tool stand-in under each tool's name.
fn tools(ctx: &TestContext) -> PathBuf {
    let dir = ctx.dir("tools");
    let tool = repo_root().join("tests/fixtures/build-tools/tool");
    for name in ["npm", "yarn", "go", "mvn", "gradle"] {
        std::os::unix::fs::symlink(&tool, dir.join(name)).expect("link a tool");
    }
    dir
}

/// One CI job: a fresh machine (the context's home and work folder) on the shared store.
struct Job {
    ctx: TestContext,
    tools: PathBuf,
    log: PathBuf,
}

impl Job {
    /// A job on a fresh machine; `store` shares an earlier job's store.
    fn new(store: Option<&Job>, env: &[(&str, &str)]) -> Self {
        let mut ctx = TestContext::new();
        if let Some(first) = store {
            ctx.share_store_of(&first.ctx);
        }
        for (k, v) in env {
            ctx.set_env(k, *v);
        }
        let tools = tools(&ctx);
        let log = ctx.root.join("tools.log");
        Self { ctx, tools, log }
    }

    fn set_env(&mut self, k: &str, v: impl Into<String>) {
        self.ctx.set_env(k, v);
    }

    fn write(&self, files: &[(&str, &str)]) {
        for (rel, body) in files {
            self.ctx.write(rel, body);
        }
    }

    /// Runs snippet `name` as a job's script, with `ferry` and the tools on PATH.
    fn run(&self, name: &str) -> Run {
        let ferry_dir = ferry_tests::ferry_bin()
            .parent()
            .expect("ferry sits in a folder")
            .to_path_buf();
        let path = format!(
            "{}:{}:{}",
            self.tools.display(),
            ferry_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = self
            .ctx
            .command_in("bash", &self.ctx.work)
            .args(["-eo", "pipefail", "-c", &snippet(name)])
            .env("PATH", path)
            .env("TOOL_LOG", &self.log)
            .output()
            .expect("bash runs");
        let run = Run::from(out);
        assert_eq!(
            run.code, 0,
            "cli:{name} failed\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        );
        run
    }

    /// What the tools said: one line per file they needed, `restored` or `fetched`.
    fn tool_log(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn cache_keys(&self) -> Vec<String> {
        let run = self.ctx.run(&["--json", "cache", "ls"]);
        run.ok();
        run.json()["caches"]
            .as_array()
            .expect("a list of caches")
            .iter()
            .map(|c| c["key"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

fn assert_all(log: &[String], word: &str, what: &str) {
    assert!(!log.is_empty(), "{what}: the tools never ran");
    for line in log {
        assert!(
            line.contains(&format!(": {word} ")),
            "{what}: {line}\n{log:#?}"
        );
    }
}

/// The snippet fetches and saves on one machine; on the next, the cache is restored before
/// the tool runs and the save is skipped as existing. Returns the two jobs.
fn round_trip(name: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> (Job, Job) {
    let first = Job::new(None, env);
    first.write(files);
    first.run(name);
    assert_all(
        &first.tool_log(),
        "fetched",
        &format!("cli:{name}, first job"),
    );
    assert_eq!(first.cache_keys().len(), 1, "cli:{name} saved one cache");

    let next = Job::new(Some(&first), env);
    next.write(files);
    let run = next.run(name);
    assert_all(
        &next.tool_log(),
        "restored",
        &format!("cli:{name}, next job"),
    );
    assert!(
        run.stderr.contains("exists; not saved"),
        "cli:{name}: the second save should be skipped as existing:\n{}",
        run.stderr
    );
    assert_eq!(next.cache_keys().len(), 1);
    (first, next)
}

const PACKAGE_LOCK: (&str, &str) = ("package-lock.json", "{\"lockfileVersion\": 3}\n");

#[test]
fn go_snippet_caches_the_module_and_build_caches() {
    // GOPATH is one absolute path on every machine of a pipeline (/go in golang images).
    let gopath = tempfile::tempdir().expect("a GOPATH");
    let gopath_str = gopath.path().display().to_string();
    let env = [("GOPATH", gopath_str.as_str())];
    let files = [("go.sum", "example.com/mod v1.0.0 h1:abc=\n")];
    let first = Job::new(None, &env);
    first.write(&files);
    first.run("go");
    assert_all(&first.tool_log(), "fetched", "first job");
    std::fs::remove_dir_all(gopath.path().join("pkg")).expect("a fresh GOPATH");

    let next = Job::new(Some(&first), &env);
    next.write(&files);
    next.run("go");
    assert_all(&next.tool_log(), "restored", "next job");
    // ~/.cache/go-build went into the new machine's home, not the first one's.
    assert!(next.ctx.home.join(".cache/go-build/ab/abcdef-d").is_file());
}

#[test]
fn npm_yarn_and_maven_snippets_round_trip() {
    round_trip("npm", &[PACKAGE_LOCK], &[]);
    round_trip("yarn", &[("yarn.lock", "# yarn lockfile v1\n")], &[]);
    let (_, next) = round_trip("maven", &[("pom.xml", "<project/>\n")], &[]);
    assert!(
        next.ctx
            .home
            .join(".m2/repository/org/example/lib/1.0/lib-1.0.jar")
            .is_file()
    );
}

/// What drone and Harness CI set in every step.
const DRONE: &[(&str, &str)] = &[
    ("DRONE", "true"),
    ("DRONE_COMMIT_BRANCH", "main"),
    ("DRONE_REPO", "acme/app"),
    ("DRONE_BUILD_NUMBER", "7"),
    ("DRONE_STAGE_NAME", "build"),
];

#[test]
fn drone_cache_keys_with_commit_branch_round_trip_on_drone() {
    let (first, _) = round_trip(
        "gradle",
        &[("build.gradle", "plugins { id 'java' }\n")],
        DRONE,
    );
    assert!(
        first.cache_keys()[0].starts_with("main-"),
        "{:?}",
        first.cache_keys()
    );
    let (first, _) = round_trip("drone", &[("go.mod", "module example.com/app\n")], DRONE);
    assert!(first.cache_keys()[0].starts_with("main-"));
}

#[test]
fn stages_of_one_harness_execution_share_a_workspace() {
    let env = [DRONE, &[("HARNESS_EXECUTION_ID", "Xq7-exec")]].concat();
    let build = Job::new(None, &env);
    build.write(&[("build.gradle", "plugins { id 'java' }\n")]);
    build.run("stage-build");

    let mut deploy = Job::new(Some(&build), &env);
    deploy.set_env("DRONE_STAGE_NAME", "deploy");
    deploy.run("stage-deploy");
    assert_eq!(
        std::fs::read_to_string(deploy.ctx.work.join("build/libs/app.jar")).expect("attached"),
        "app\n"
    );
}

#[test]
fn gitlab_snippet_falls_back_to_the_default_branch_cache() {
    let main = [
        ("CI_COMMIT_REF_SLUG", "main"),
        ("CI_DEFAULT_BRANCH", "main"),
    ];
    let first = Job::new(None, &main);
    first.write(&[PACKAGE_LOCK]);
    first.run("gitlab");
    assert_all(&first.tool_log(), "fetched", "main");

    // A feature branch's first job, with a changed lock file, starts from main's cache.
    let feature = [
        ("CI_COMMIT_REF_SLUG", "feature-x"),
        ("CI_DEFAULT_BRANCH", "main"),
    ];
    let branch = Job::new(Some(&first), &feature);
    branch.write(&[("package-lock.json", "{\"lockfileVersion\": 3, \"x\": 1}\n")]);
    branch.run("gitlab");
    assert_all(&branch.tool_log(), "restored", "feature-x");
    let keys = branch.cache_keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("npm-feature-x-")),
        "{keys:?}"
    );
}

#[test]
fn buildkite_snippet_restores_the_newest_cache_when_the_lock_changes() {
    let (first, _) = round_trip("buildkite", &[("yarn.lock", "# v1\n")], &[]);
    let changed = Job::new(Some(&first), &[]);
    changed.write(&[("yarn.lock", "# v2\n")]);
    changed.run("buildkite");
    assert_all(&changed.tool_log(), "restored", "changed lock");
    assert_eq!(changed.cache_keys().len(), 2);
}

#[test]
fn actions_snippets_cache_and_hand_artifacts_to_the_next_job() {
    let github = |job: &'static str, run: &'static str| {
        vec![
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "acme/app"),
            ("GITHUB_RUN_ID", run),
            ("GITHUB_RUN_NUMBER", "1"),
            ("GITHUB_JOB", job),
            ("GITHUB_REF_NAME", "main"),
        ]
    };
    let build = Job::new(None, &github("build", "101"));
    build.write(&[PACKAGE_LOCK]);
    build.run("actions-cache");
    assert_all(
        &build
            .tool_log()
            .into_iter()
            .filter(|l| l.starts_with("npm ci"))
            .collect::<Vec<_>>(),
        "fetched",
        "build",
    );

    let report = Job::new(Some(&build), &github("report", "101"));
    let run = report.run("actions-report");
    assert!(run.stdout.contains("failures=\"0\""), "{}", run.stdout);

    let next = Job::new(Some(&build), &github("build", "102"));
    next.write(&[PACKAGE_LOCK]);
    next.run("actions-cache");
    assert!(
        next.tool_log()
            .iter()
            .any(|l| l == "npm ci: restored node_modules/left-pad/index.js"),
        "{:?}",
        next.tool_log()
    );
}

#[test]
fn circleci_snippets_cache_persist_attach_and_store_artifacts() {
    let circle = |job: &'static str| {
        vec![
            ("CIRCLECI", "true"),
            ("CIRCLE_WORKFLOW_ID", "5d1f6b3e-0000-4000-8000-00000000beef"),
            ("CIRCLE_PROJECT_USERNAME", "acme"),
            ("CIRCLE_PROJECT_REPONAME", "app"),
            ("CIRCLE_BRANCH", "main"),
            ("CIRCLE_JOB", job),
        ]
    };
    let build = Job::new(None, &circle("build"));
    build.write(&[PACKAGE_LOCK]);
    build.run("circleci-build");

    let test = Job::new(Some(&build), &circle("test"));
    test.write(&[PACKAGE_LOCK]);
    test.run("circleci-test");
    assert_eq!(
        std::fs::read_to_string(test.ctx.work.join("dist/app.js")).expect("attached"),
        "built\n"
    );
    let listed = test.ctx.run(&["--json", "artifacts", "ls"]);
    listed.ok();
    assert!(
        listed.stdout.contains("test-results/junit.xml"),
        "{}",
        listed.stdout
    );
}

#[test]
fn kestra_snippet_round_trips_with_its_ttl() {
    let (first, _) = round_trip(
        "kestra",
        &[("package.json", "{\"dependencies\": {}}\n")],
        &[],
    );
    let ls = first.ctx.run(&["--json", "cache", "ls"]);
    ls.ok();
    let entry = &ls.json()["caches"][0];
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(entry[field].as_str().expect(field))
            .expect("an RFC 3339 time")
    };
    if ferry_tests::on_gha() {
        // No record of restore hits on GitHub's cache service: the ttl runs from the save.
        assert!(entry["last_used"].is_null(), "{entry}");
        assert_eq!((at("expires") - at("created")).num_minutes(), 60, "{entry}");
        return;
    }
    let ttl = at("expires") - at("last_used");
    assert_eq!(ttl.num_minutes(), 60, "{entry}");
}

/// Lines of the page's code blocks that run ferry, as a shell would see them: YAML list
/// dashes and Kestra's `{% raw %}` tags taken off.
fn ferry_lines(code: &str) -> Vec<String> {
    code.lines()
        .map(|l| l.trim().trim_start_matches("- ").trim())
        .filter(|l| l.starts_with("ferry "))
        .map(|l| l.replace("{% raw %}", "").replace("{% endraw %}", ""))
        .collect()
}

#[test]
fn every_snippet_is_tested_and_every_ferry_line_of_the_page_is_a_tested_one() {
    let cli = sections("cli");
    let names: Vec<&str> = cli.keys().map(String::as_str).collect();
    assert_eq!(
        names, TESTED,
        "cli: snippets in docs/migrating.md and the tests that run them"
    );

    let tested: Vec<String> = cli.values().flat_map(|c| ferry_lines(c)).collect();
    let text = doc();
    let mut checked = 0;
    for block in text.split("```").skip(1).step_by(2) {
        for line in ferry_lines(block) {
            assert!(
                tested.contains(&line),
                "docs/migrating.md shows a ferry command no test runs:\n{line}"
            );
            checked += 1;
        }
        // Action and orb steps must sit in the sections their suites run.
        if block.contains("ferry-ci/ferry/action@") {
            assert!(
                sections("github-actions")
                    .values()
                    .any(|c| block.contains(c.as_str())),
                "a GitHub workflow with ferry's action outside a github-actions: section"
            );
        }
        if block.contains("ferry/save_cache") || block.contains("ferry/restore_cache") {
            assert!(
                sections("circleci")
                    .values()
                    .any(|c| block.contains(c.as_str())),
                "a CircleCI config with ferry's orb outside a circleci: section"
            );
        }
    }
    assert!(checked > 40, "only {checked} ferry lines found");
}

#[test]
fn snippets_do_not_name_a_store_or_credentials() {
    for (name, code) in sections("cli") {
        for word in ["--store", "AWS_", "AZURE_", "GOOGLE_"] {
            assert!(!code.contains(word), "cli:{name} names {word}");
        }
    }
}
