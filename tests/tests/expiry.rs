//! A cache past its expiry is a miss the moment it is read (as Kestra's `ttl` is), and
//! `--max-age` treats older entries as misses, for exact and prefix matches alike.

use ferry_tests::TestContext;

fn restore(ctx: &TestContext, args: &[&str]) -> ferry_tests::Run {
    let dest = ctx.dir("dest");
    let mut all = vec!["--json", "cache", "restore"];
    all.extend_from_slice(args);
    let run = ctx.run_in(&dest, &all);
    run.ok();
    run
}

#[test]
fn an_expired_cache_is_a_miss_saying_it_expired_and_when() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "x");
    // A ttl of nothing: expired as soon as it is saved, before any prune.
    ctx.run(&[
        "cache", "save", "--key", "deps-1", "--path", "tree", "--ttl", "0s",
    ])
    .ok();
    for args in [&["--key", "deps-1"][..], &["--key", "deps-"][..]] {
        let run = restore(&ctx, args);
        assert_eq!(run.json()["hit"], "miss", "{args:?}");
        assert!(
            run.stderr.contains("deps-1") && run.stderr.contains("expired at"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Saving the key again replaces the expired entry instead of reporting it exists.
    ctx.write("tree/x", "fresh");
    let saved = ctx.run(&[
        "--json", "cache", "save", "--key", "deps-1", "--path", "tree",
    ]);
    saved.ok();
    assert_eq!(saved.json()["saved"], true);
    let run = restore(&ctx, &["--key", "deps-1"]);
    assert_eq!(run.json()["hit"], "exact");
}

#[test]
fn max_age_treats_older_caches_as_misses_for_exact_and_prefix_matches() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "x");
    ctx.run(&["cache", "save", "--key", "deps-1", "--path", "tree"])
        .ok();
    for args in [&["--key", "deps-1"][..], &["--key", "deps-"][..]] {
        let mut with_age = args.to_vec();
        with_age.extend_from_slice(&["--max-age", "0s"]);
        let run = restore(&ctx, &with_age);
        assert_eq!(run.json()["hit"], "miss", "{args:?}");
        assert!(run.stderr.contains("--max-age"), "{}", run.stderr);
        let mut young = args.to_vec();
        young.extend_from_slice(&["--max-age", "1h"]);
        assert_ne!(restore(&ctx, &young).json()["hit"], "miss", "{args:?}");
    }
}
