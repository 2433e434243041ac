//! End-to-end tests of what only `gha://` has: GitHub's rules (branch scoping, cache modes,
//! read-only tokens, the artifact limit, the REST API for other runs and for listing), and
//! every failure GitHub's services can answer with, injected through the fake's admin API
//! (`tests/gha/PROTOCOL.md`, section 9): rate limits, server errors, an expired token,
//! evicted entries, lookups not yet consistent, expired signed URLs. Signed URLs are masked.
//!
//! They run when `FERRY_TEST_STORE=gha` (as `.ci/run` sets it in turn); under any other store
//! they pass with a note. Every fault is armed for one run of the fake only (each test's jobs
//! are runs of their own), so tests running at once never see each other's faults.

use ferry_tests::{TestContext, Value, on_gha};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A test context on `gha`, or `None` (with a note) under another store.
fn gha(test: &str) -> Option<TestContext> {
    if on_gha() {
        return Some(TestContext::new());
    }
    eprintln!(
        "note: {test} runs only with FERRY_TEST_STORE=gha; skipped under {}",
        ferry_tests::store_name()
    );
    None
}

/// Arms a fault for `ctx`'s run.
fn fault(ctx: &TestContext, spec: Value) {
    let mut spec = spec;
    spec["run_id"] = json!(ctx.gha_run.expect("a gha job"));
    ctx.gha_admin("POST", "/faults", Some(&spec));
}

/// The calls of `method` the fake answered for `ctx`'s run: status and time.
fn calls(ctx: &TestContext, method: &str) -> Vec<(u64, chrono::DateTime<chrono::FixedOffset>)> {
    let run = ctx.gha_run.expect("a gha job");
    ctx.gha_admin("GET", "/requests", None)
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| r["run_id"].as_u64() == Some(run) && r["method"] == method)
        .map(|r| {
            (
                r["status"].as_u64().expect("a status"),
                chrono::DateTime::parse_from_rfc3339(r["at"].as_str().expect("a time"))
                    .expect("an RFC 3339 time"),
            )
        })
        .collect()
}

/// The store prefix of a context (`gha:/<prefix>`).
fn prefix(ctx: &TestContext) -> String {
    ctx.store
        .trim_start_matches("gha:")
        .trim_matches('/')
        .to_string()
}

/// The fake's state: every cache entry and artifact.
fn state(ctx: &TestContext) -> Value {
    ctx.gha_admin("GET", "/state", None)
}

/// Keys of the cache entries of `ctx`'s store whose path holds `part`.
fn cache_keys(ctx: &TestContext, part: &str) -> Vec<String> {
    let mine = format!("{}/", prefix(ctx));
    state(ctx)["caches"]
        .as_array()
        .expect("caches")
        .iter()
        .filter_map(|c| c["key"].as_str())
        .filter(|k| k.starts_with(&mine) && k.contains(part))
        .map(str::to_string)
        .collect()
}

fn save(ctx: &TestContext, key: &str) -> ferry_tests::Run {
    ctx.write("tree/a.txt", format!("saved under {key}"));
    ctx.run(&["--json", "cache", "save", "--key", key, "--path", "tree"])
}

fn restore_into(ctx: &TestContext, key: &str, dir: &str) -> ferry_tests::Run {
    let dest = ctx.dir(dir);
    ctx.run_in(&dest, &["--json", "cache", "restore", "--key", key])
}

// --- what the job may do -----------------------------------------------------------------

#[test]
fn a_save_the_job_may_not_make_is_a_warning_and_exit_zero() {
    let Some(mut ctx) = gha("a_save_the_job_may_not_make_is_a_warning_and_exit_zero") else {
        return;
    };
    // ACTIONS_CACHE_MODE=read, as the runner exports it: refused without asking.
    ctx.become_gha_job(&json!({ "cache_mode": "read" }));
    let run = save(&ctx, "deps-read");
    run.ok();
    let out = run.json();
    assert_eq!(out["saved"], false, "{out}");
    assert_eq!(out["reason"], "denied", "{out}");
    assert!(run.stderr.contains("warning:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("ACTIONS_CACHE_MODE=read"),
        "{}",
        run.stderr
    );
    assert!(
        calls(&ctx, "CreateCacheEntry").is_empty(),
        "no reservation asked for"
    );

    // The same read-only token without the variable: the service answers `cache write denied`.
    ctx.set_env("ACTIONS_CACHE_MODE", "write");
    let run = save(&ctx, "deps-read");
    run.ok();
    assert_eq!(run.json()["reason"], "denied");
    assert!(run.stderr.contains("cache write denied"), "{}", run.stderr);
    assert!(
        cache_keys(&ctx, "deps-read").is_empty(),
        "nothing was stored"
    );

    // A write refused at publishing (the token changed its mind): the same warning.
    let mut writer = TestContext::new();
    writer.share_store_of(&ctx);
    writer.become_gha_job(&json!({}));
    fault(
        &writer,
        json!({ "kind": "write_denied", "method": "FinalizeCacheEntryUpload", "times": 5 }),
    );
    let run = save(&writer, "deps-refused-late");
    run.ok();
    assert_eq!(run.json()["reason"], "denied", "{}", run.stdout);
}

#[test]
fn a_job_that_may_not_restore_misses_with_a_warning_and_may_still_save() {
    let Some(mut ctx) = gha("a_job_that_may_not_restore_misses_with_a_warning_and_may_still_save")
    else {
        return;
    };
    ctx.become_gha_job(&json!({ "cache_mode": "write-only" }));
    let saved = save(&ctx, "wo-1");
    saved.ok();
    assert_eq!(saved.json()["saved"], true, "{}", saved.stderr);

    let run = restore_into(&ctx, "wo-1", "by-mode");
    run.ok();
    assert_eq!(run.json()["hit"], "miss");
    assert!(
        run.stderr.contains("ACTIONS_CACHE_MODE=write-only"),
        "{}",
        run.stderr
    );

    // The token alone refuses too: 403 `cache read denied`.
    ctx.remove_env("ACTIONS_CACHE_MODE");
    let run = restore_into(&ctx, "wo-1", "by-token");
    run.ok();
    assert_eq!(run.json()["hit"], "miss");
    assert!(run.stderr.contains("cache read denied"), "{}", run.stderr);
}

#[test]
fn caches_are_found_on_the_jobs_own_branch_and_the_default_branch_only() {
    let Some(mut feature_a) =
        gha("caches_are_found_on_the_jobs_own_branch_and_the_default_branch_only")
    else {
        return;
    };
    feature_a.become_gha_job(&json!({ "ref": "refs/heads/feature-a" }));
    save(&feature_a, "scoped-a").ok();

    let mut feature_b = TestContext::new();
    feature_b.share_store_of(&feature_a);
    feature_b.become_gha_job(&json!({ "ref": "refs/heads/feature-b" }));
    let run = restore_into(&feature_b, "scoped-a", "other-branch");
    run.ok();
    assert_eq!(
        run.json()["hit"],
        "miss",
        "another branch's cache is not seen"
    );
    assert!(
        run.stderr.contains("own branch and on the default branch"),
        "{}",
        run.stderr
    );

    let mut main = TestContext::new();
    main.share_store_of(&feature_a);
    main.become_gha_job(&json!({ "ref": "refs/heads/main" }));
    save(&main, "scoped-main").ok();
    let run = restore_into(&feature_b, "scoped-main", "default-branch");
    run.ok();
    assert_eq!(
        run.json()["hit"],
        "exact",
        "the default branch's cache is seen"
    );

    // Listing shows what the job's lookups see: its own branch's and the default branch's.
    let listed = feature_b.run(&["--json", "cache", "ls"]);
    listed.ok();
    let keys: Vec<String> = listed.json()["caches"]
        .as_array()
        .expect("caches")
        .iter()
        .filter_map(|c| c["key"].as_str().map(str::to_string))
        .collect();
    assert_eq!(keys, ["scoped-main"], "{}", listed.stdout);
}

// --- races, limits, the REST API -----------------------------------------------------------

#[test]
fn a_key_another_job_is_still_uploading_is_reported_as_existing() {
    let Some(ctx) = gha("a_key_another_job_is_still_uploading_is_reported_as_existing") else {
        return;
    };
    let mut other = TestContext::new();
    other.share_store_of(&ctx);
    let job = other.become_gha_job(&json!({}));
    // The other job reserves the key's manifest and never finishes: ferry's cache key is the
    // manifest's path and a generation, under ferry's own version.
    let key = format!(
        "{}/ferry-v1/acme=2Fapp/caches/keys/{}.json#0",
        prefix(&ctx),
        ferry_core::manifest::object_name("racing")
    );
    let version = format!("{:x}", Sha256::digest(b"ferry gha:// store, format 1"));
    let results = job["env"]["ACTIONS_RESULTS_URL"]
        .as_str()
        .expect("results URL");
    let token = job["env"]["ACTIONS_RUNTIME_TOKEN"].as_str().expect("token");
    let (status, body) = ferry_tests::gha::http_with(
        "POST",
        &format!("{results}twirp/github.actions.results.api.v1.CacheService/CreateCacheEntry"),
        &[("Authorization", &format!("Bearer {token}"))],
        &json!({ "key": key, "version": version }).to_string(),
    );
    assert_eq!(status, 200, "{body}");

    let run = save(&ctx, "racing");
    run.ok();
    let out = run.json();
    assert_eq!(out["saved"], false, "{out}");
    assert_eq!(out["reason"], "exists", "{out}");
}

#[test]
fn a_job_stores_at_most_250_files_as_artifacts_and_is_told_why() {
    let Some(ctx) = gha("a_job_stores_at_most_250_files_as_artifacts_and_is_told_why") else {
        return;
    };
    for i in 0..251 {
        ctx.write(&format!("many/f{i:03}.txt"), "x");
    }
    let run = ctx.run(&[
        "artifacts",
        "upload",
        "many",
        "--run",
        "1",
        "--job",
        "build",
    ]);
    run.expect_code(1);
    assert!(run.stderr.contains("at most 500"), "{}", run.stderr);
    assert!(run.stderr.contains("counts twice"), "{}", run.stderr);
}

#[test]
fn without_a_github_token_listing_and_removing_caches_say_what_to_set() {
    let Some(mut ctx) = gha("without_a_github_token_listing_and_removing_caches_say_what_to_set")
    else {
        return;
    };
    ctx.remove_env("GITHUB_TOKEN");
    save(&ctx, "no-token").ok();
    let run = restore_into(&ctx, "no-token", "restored");
    run.ok();
    assert_eq!(
        run.json()["hit"],
        "exact",
        "saves and restores need no token"
    );
    for args in [&["cache", "ls"][..], &["cache", "rm", "no-token"][..]] {
        let run = ctx.run(args);
        run.expect_code(1);
        assert!(
            run.stderr.contains("GITHUB_TOKEN"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn another_runs_artifacts_are_read_through_the_rest_api() {
    let Some(mut first) = gha("another_runs_artifacts_are_read_through_the_rest_api") else {
        return;
    };
    let run_a = first.gha_run.expect("a run").to_string();
    first.set_env("GITHUB_RUN_ID", &run_a);
    first.write("report/junit.xml", "<testsuite failures=\"0\"/>");
    first
        .run(&[
            "artifacts",
            "upload",
            "report",
            "--run",
            &run_a,
            "--job",
            "test",
        ])
        .ok();

    // A later run: its own artifact service knows nothing of the first run.
    let mut later = TestContext::new();
    later.set_env("FERRY_STORE", first.store.clone());
    later.become_gha_job(&json!({}));
    let run_b = later.gha_run.expect("a run").to_string();
    assert_ne!(run_a, run_b);
    later.set_env("GITHUB_RUN_ID", &run_b);
    let ls = later.run(&[
        "--json",
        "artifacts",
        "ls",
        "--run",
        &run_a,
        "--job",
        "test",
    ]);
    ls.ok();
    assert_eq!(
        ls.json()["artifacts"][0]["path"],
        "report/junit.xml",
        "{}",
        ls.stdout
    );
    let dest = later.dir("from-the-first-run");
    later
        .run(&[
            "artifacts",
            "download",
            "--run",
            &run_a,
            "--job",
            "test",
            "--to",
            dest.to_str().expect("utf-8"),
        ])
        .ok();
    assert_eq!(
        std::fs::read_to_string(dest.join("report/junit.xml")).expect("downloaded"),
        "<testsuite failures=\"0\"/>"
    );

    later.remove_env("GITHUB_TOKEN");
    let ls = later.run(&[
        "--json",
        "artifacts",
        "ls",
        "--run",
        &run_a,
        "--job",
        "test",
    ]);
    ls.ok();
    assert_eq!(
        ls.json()["artifacts"],
        json!([]),
        "without a token only this run is seen"
    );
}

#[test]
fn gha_is_the_default_store_when_the_results_service_is_there_and_no_store_is_set() {
    let Some(mut ctx) =
        gha("gha_is_the_default_store_when_the_results_service_is_there_and_no_store_is_set")
    else {
        return;
    };
    ctx.remove_env("FERRY_STORE");
    let key = format!("default-store-{}", ferry_core::manifest::new_id());
    let run = save(&ctx, &key);
    run.ok();
    assert_eq!(run.json()["store"], "gha://", "{}", run.stdout);
    assert!(
        run.stderr.contains("to gha://"),
        "the summary names the store: {}",
        run.stderr
    );
    let local = ctx.root.join("local-store");
    ctx.set_env("FERRY_STORE", local.display().to_string());
    let run = save(&ctx, &key);
    run.ok();
    assert_eq!(
        run.json()["store"],
        local.display().to_string(),
        "FERRY_STORE wins"
    );
}

// --- failures the services answer with ---------------------------------------------------

#[test]
fn a_rate_limited_call_waits_out_retry_after_then_succeeds() {
    let Some(ctx) = gha("a_rate_limited_call_waits_out_retry_after_then_succeeds") else {
        return;
    };
    fault(
        &ctx,
        json!({ "kind": "rate_limited", "method": "CreateCacheEntry", "retry_after": 2 }),
    );
    let run = save(&ctx, "throttled");
    run.ok();
    assert_eq!(run.json()["saved"], true, "{}", run.stderr);
    let made = calls(&ctx, "CreateCacheEntry");
    assert_eq!(made[0].0, 429, "{made:?}");
    assert_eq!(made[1].0, 200, "{made:?}");
    let waited = made[1].1 - made[0].1;
    assert!(
        waited >= chrono::Duration::milliseconds(1900),
        "asked again after {waited}, before Retry-After's 2 s"
    );
}

#[test]
fn server_errors_are_retried() {
    let Some(ctx) = gha("server_errors_are_retried") else {
        return;
    };
    fault(
        &ctx,
        json!({ "kind": "internal", "method": "CreateCacheEntry", "times": 2 }),
    );
    fault(
        &ctx,
        json!({ "kind": "unavailable", "method": "GetCacheEntryDownloadURL" }),
    );
    save(&ctx, "flaky").ok();
    let statuses: Vec<u64> = calls(&ctx, "CreateCacheEntry")
        .iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(&statuses[..3], [500, 500, 200]);
    let run = restore_into(&ctx, "flaky", "restored");
    run.ok();
    assert_eq!(run.json()["hit"], "exact");
}

#[test]
fn an_expired_runtime_token_fails_naming_it() {
    let Some(ctx) = gha("an_expired_runtime_token_fails_naming_it") else {
        return;
    };
    save(&ctx, "before-expiry").ok();
    fault(
        &ctx,
        json!({ "kind": "token_expired", "method": "*", "times": 50 }),
    );
    for run in [
        save(&ctx, "after-expiry"),
        restore_into(&ctx, "before-expiry", "late"),
    ] {
        run.expect_code(1);
        assert!(
            run.stderr.contains("ACTIONS_RUNTIME_TOKEN"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("6 hours"), "{}", run.stderr);
    }
}

#[test]
fn an_entry_whose_data_was_evicted_is_a_miss_naming_why_and_the_next_save_replaces_it() {
    let Some(ctx) =
        gha("an_entry_whose_data_was_evicted_is_a_miss_naming_why_and_the_next_save_replaces_it")
    else {
        return;
    };
    save(&ctx, "evicted-1").ok();
    let data = cache_keys(&ctx, "/caches/data/");
    assert_eq!(data.len(), 1, "{data:?}");
    ctx.gha_admin("POST", "/caches/evict", Some(&json!({ "key": data[0] })));

    let run = restore_into(&ctx, "evicted-1", "after-eviction");
    run.ok();
    assert_eq!(run.json()["hit"], "miss");
    assert!(
        run.stderr.contains("no longer in the store"),
        "{}",
        run.stderr
    );

    let again = save(&ctx, "evicted-1");
    again.ok();
    assert_eq!(
        again.json()["saved"],
        true,
        "the dead key is saved again: {}",
        again.stderr
    );
    let run = restore_into(&ctx, "evicted-1", "saved-again");
    run.ok();
    assert_eq!(run.json()["hit"], "exact", "{}", run.stderr);

    // The data going while a restore downloads it (the lookup still finds the entry).
    let data: Vec<String> = cache_keys(&ctx, "/caches/data/")
        .into_iter()
        .filter(|k| !data.contains(k))
        .collect();
    ctx.gha_admin(
        "POST",
        "/caches/evict",
        Some(&json!({ "key": data[0], "blob_only": true })),
    );
    let run = restore_into(&ctx, "evicted-1", "mid-download");
    run.ok();
    assert_eq!(run.json()["hit"], "miss", "{}", run.stderr);
    assert!(
        run.stderr.contains("no longer in the store"),
        "{}",
        run.stderr
    );

    // A manifest evicted is simply no entry.
    let manifests = cache_keys(&ctx, "/caches/keys/");
    for key in &manifests {
        ctx.gha_admin("POST", "/caches/evict", Some(&json!({ "key": key })));
    }
    let run = restore_into(&ctx, "evicted-1", "no-manifest");
    run.ok();
    assert_eq!(run.json()["hit"], "miss");
}

#[test]
fn an_entry_not_yet_visible_is_a_miss_that_says_it_may_be() {
    let Some(ctx) = gha("an_entry_not_yet_visible_is_a_miss_that_says_it_may_be") else {
        return;
    };
    save(&ctx, "fresh").ok();
    fault(
        &ctx,
        json!({ "kind": "stale_lookup", "method": "GetCacheEntryDownloadURL", "times": 10 }),
    );
    let run = restore_into(&ctx, "fresh", "too-soon");
    run.ok();
    assert_eq!(run.json()["hit"], "miss");
    assert!(
        run.stderr
            .contains("saved seconds ago may not be found yet"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_expired_download_url_is_asked_for_again_and_an_expired_upload_url_fails_clearly() {
    let Some(ctx) =
        gha("an_expired_download_url_is_asked_for_again_and_an_expired_upload_url_fails_clearly")
    else {
        return;
    };
    save(&ctx, "urls").ok();
    fault(
        &ctx,
        json!({ "kind": "expired_url", "method": "GetCacheEntryDownloadURL" }),
    );
    let run = restore_into(&ctx, "urls", "restored");
    run.ok();
    assert_eq!(run.json()["hit"], "exact", "{}", run.stderr);

    fault(
        &ctx,
        json!({ "kind": "expired_url", "method": "CreateCacheEntry" }),
    );
    let run = save(&ctx, "urls-2");
    run.expect_code(1);
    assert!(run.stderr.contains("may have expired"), "{}", run.stderr);
}

// --- logs ---------------------------------------------------------------------------------

#[test]
fn signed_urls_are_masked_in_the_log_before_anything_prints_them() {
    let Some(mut ctx) = gha("signed_urls_are_masked_in_the_log_before_anything_prints_them") else {
        return;
    };
    ctx.set_env("GITHUB_ACTIONS", "true");
    ctx.write("out/report.txt", "all green");
    let target = ["--run", "1", "--job", "build"];
    let mut upload = vec!["artifacts", "upload", "out/report.txt"];
    upload.extend(target);
    ctx.run(&upload).ok();

    let mut url = vec!["artifacts", "url", "out/report.txt"];
    url.extend(target);
    let run = ctx.run(&url);
    run.ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    let link = *lines.last().expect("the link");
    let sig = url::Url::parse(link)
        .expect("a URL")
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.into_owned())
        .expect("a signed URL");
    assert!(
        lines[..lines.len() - 1].contains(&format!("::add-mask::{sig}").as_str()),
        "the signature is masked before the link is printed:\n{}",
        run.stdout
    );

    // With --json, stdout stays one object: the masks go to stderr, which the runner reads too.
    ctx.write("tree/a.txt", "x");
    let run = ctx.run(&[
        "--json", "cache", "save", "--key", "masked", "--path", "tree",
    ]);
    run.ok();
    assert_eq!(run.json()["saved"], true);
    assert!(run.stderr.contains("::add-mask::"), "{}", run.stderr);
}
