//! How flags and their environment twins are read.

use ferry_tests::TestContext;

/// The README documents `true`/`1` for the boolean twins; every spelling clap's boolish
/// values accept works, and the false ones turn the flag off.
#[test]
fn boolean_environment_twins_accept_what_the_readme_says() {
    let mut ctx = TestContext::new();
    ctx.write("tree/x", "x");
    for on in ["1", "true", "TRUE", "yes", "on"] {
        ctx.set_env("FERRY_JSON", on);
        ctx.set_env("FERRY_NO_PROGRESS", on);
        let run = ctx.run(&["cache", "restore", "--key", "nothing"]);
        run.ok();
        assert_eq!(run.json()["hit"], "miss", "FERRY_JSON={on}");
    }
    for off in ["0", "false", "no", "off"] {
        ctx.set_env("FERRY_JSON", off);
        ctx.set_env("FERRY_NO_PROGRESS", off);
        let run = ctx.run(&["cache", "restore", "--key", "nothing"]);
        run.ok();
        assert!(run.stdout.is_empty(), "FERRY_JSON={off}: {}", run.stdout);
    }
    ctx.remove_env("FERRY_JSON");
    ctx.set_env("FERRY_KEEP_ROOT_LINKS", "1");
    ctx.run(&["cache", "restore", "--key", "nothing"]).ok();
    ctx.set_env("FERRY_KEEP_ROOT_LINKS", "maybe");
    ctx.run(&["cache", "restore", "--key", "nothing"])
        .expect_code(2);
}

/// Two hundred clashing paths make one short line; `--json` carries every one. (Two hundred
/// files fit the 500 artifacts GitHub allows a job on `gha://`, two each.)
#[test]
fn an_error_about_many_paths_names_a_few_and_the_count() {
    let mut ctx = TestContext::new();
    ctx.set_env("FERRY_RUN", "run-many");
    ctx.set_env("FERRY_JOB", "build");
    for i in 0..200 {
        ctx.write(&format!("out/f{i:04}.txt"), "x");
    }
    ctx.run(&["artifacts", "upload", "out"]).ok();
    let run = ctx.run(&["--json", "artifacts", "upload", "out"]);
    run.expect_code(1);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(line.len() < 400, "{} bytes: {line}", line.len());
    assert!(line.contains("and 195 more"), "{line}");
    assert_eq!(run.json()["paths"].as_array().map(Vec::len), Some(200));
}
