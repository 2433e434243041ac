//! What people see: a byte-count progress bar on a terminal, one summary line in CI logs,
//! and a Markdown summary of each step on GitHub Actions.

use std::process::Command;

use ferry_tests::{TestContext, noise};

/// Runs `ferry ARGS` in `work/` under a pseudo-terminal (`script`), and returns everything
/// the terminal showed.
fn on_a_terminal(ctx: &TestContext, args: &[&str]) -> String {
    let line = std::iter::once(ferry_tests::ferry_bin().display().to_string())
        .chain(args.iter().map(|a| format!("'{a}'")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("script");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &ctx.home)
        .env("TERM", "xterm")
        .envs(ctx.env_pairs())
        .current_dir(&ctx.work)
        .args(["-qefc", &line, "/dev/null"]);
    let out = cmd.output().expect("script runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_terminal_shows_a_byte_count_bar_with_rate_and_time_left() {
    let ctx = TestContext::new();
    ctx.write("tree/blob", noise(96 << 20, 1));
    let shown = on_a_terminal(
        &ctx,
        &[
            "cache", "save", "--key", "big", "--path", "tree", "--format", "tar",
        ],
    );
    assert!(shown.contains("saving cache big"), "{shown}");
    assert!(shown.contains("/s"), "a rate: {shown}");
    assert!(
        shown.contains("saved cache big"),
        "then the summary line: {shown}"
    );

    std::fs::remove_dir_all(ctx.work.join("tree")).expect("rm");
    let shown = on_a_terminal(&ctx, &["cache", "restore", "--key", "big"]);
    assert!(shown.contains("restoring cache big ["), "a bar: {shown}");
    assert!(shown.contains("left"), "time left: {shown}");
    assert!(shown.contains("MiB/"), "bytes of the total: {shown}");
}

#[test]
fn ci_logs_get_one_summary_line_and_no_bar() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "x");
    let run = ctx.run(&["cache", "save", "--key", "k", "--path", "tree"]);
    run.ok();
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("saved cache k to "),
        "{}",
        run.stderr
    );
}

#[test]
fn ci_logs_with_verbose_say_once_when_data_starts_moving() {
    for format in ["chunked", "zstd"] {
        let ctx = TestContext::new();
        std::fs::create_dir_all(ctx.work.join("tree")).expect("mkdir");
        std::fs::write(ctx.work.join("tree/blob"), noise(3 << 20, 1)).expect("write");
        let run = ctx.run(&[
            "-v", "cache", "save", "--key", "k", "--path", "tree", "--format", format,
        ]);
        run.ok();
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{format}: {}", run.stderr);
        assert_eq!(lines[0], "saving cache k: data is moving", "{format}");
        assert!(
            lines[1].starts_with("saved cache k to "),
            "{format}: {}",
            run.stderr
        );
        let dest = ctx.dir("r");
        let run = ctx.run_in(
            &dest,
            &["-v", "cache", "restore", "--key", "k", "--path", "tree"],
        );
        run.ok();
        assert_eq!(
            run.stderr.lines().next(),
            Some("restoring cache k: data is moving"),
            "{format}: {}",
            run.stderr
        );
    }
}

#[test]
fn each_command_appends_a_step_summary_on_github_actions() {
    let mut ctx = TestContext::new();
    let summary = ctx.root.join("step_summary.md");
    ctx.set_env("GITHUB_ACTIONS", "true");
    ctx.set_env("GITHUB_STEP_SUMMARY", summary.display().to_string());
    ctx.set_env("FERRY_WORKFLOW", "wf-1");
    ctx.set_env("FERRY_RUN", "wf-1");
    ctx.set_env("FERRY_JOB", "build");
    ctx.write("tree/x", "x");
    let key = "deps-<b>|x";
    ctx.run(&["cache", "save", "--key", key, "--path", "tree"])
        .ok();
    ctx.run(&["cache", "restore", "--key", key]).ok();
    ctx.run(&["workspace", "persist", "--root", ".", "--path", "tree"])
        .ok();
    let at = ctx.dir("at");
    ctx.run(&["workspace", "attach", "--at", at.to_str().expect("utf8")])
        .ok();
    ctx.run(&["artifacts", "upload", "tree"]).ok();
    let got = ctx.dir("got");
    ctx.run(&["artifacts", "download", "--to", got.to_str().expect("utf8")])
        .ok();
    let text = std::fs::read_to_string(&summary).expect("the summary");
    for title in [
        "### ferry cache save",
        "### ferry cache restore",
        "### ferry workspace persist",
        "### ferry workspace attach",
        "### ferry artifacts upload",
        "### ferry artifacts download",
    ] {
        assert!(text.contains(title), "{title}:\n{text}");
    }
    assert!(
        text.contains("| deps-&lt;b&gt;\\|x | exact | deps-&lt;b&gt;\\|x | 1 |"),
        "the restore's row, its key escaped:\n{text}"
    );
    assert!(!text.contains("<b>"), "{text}");
    // Every table row has as many cells as its header.
    for table in text.split("### ").skip(1) {
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 3, "{table}");
        let cells = |l: &str| l.replace("\\|", "").matches('|').count();
        assert!(rows.iter().all(|r| cells(r) == cells(rows[0])), "{table}");
    }
}
