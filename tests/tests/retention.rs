//! End-to-end tests of retention and `ferry prune` over all three modes, against the store
//! under test: expiry, restore hits that extend a cache's life, least-recently-used eviction,
//! and data of saves still running (or abandoned) against the grace period.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use ferry_tests::{Run, TestContext, Value};

fn json_of(ctx: &TestContext, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = ctx.run(&all);
    run.ok();
    run.json()
}

fn save(ctx: &TestContext, key: &str, path: &str, extra: &[&str]) -> Value {
    let mut args = vec!["cache", "save", "--key", key, "--path", path];
    args.extend_from_slice(extra);
    json_of(ctx, &args)
}

/// Restores `key` exactly into a fresh folder `into`; returns the run.
fn restore(ctx: &TestContext, key: &str, into: &str) -> Run {
    let dir = ctx.dir(into);
    ctx.run_in(
        &dir,
        &["--json", "cache", "restore", "--key", key, "--exact"],
    )
}

fn hit(run: &Run) -> String {
    run.ok();
    run.json()["hit"].as_str().expect("hit").to_string()
}

/// `(reason, kind, name)` of every removal a prune reported.
fn removals(result: &Value) -> BTreeSet<(String, String, String)> {
    result["removed"]
        .as_array()
        .expect("removed")
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (s("reason"), s("kind"), s("name"))
        })
        .collect()
}

fn keys(ctx: &TestContext) -> Vec<String> {
    json_of(ctx, &["cache", "ls"])["caches"]
        .as_array()
        .expect("caches")
        .iter()
        .map(|c| c["key"].as_str().expect("key").to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn artifact_paths(ctx: &TestContext) -> Vec<String> {
    json_of(ctx, &["artifacts", "ls", "--run", "1", "--job", "build"])["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["path"].as_str().expect("path").to_string())
        .collect()
}

fn layer_jobs(ctx: &TestContext) -> Vec<String> {
    json_of(ctx, &["workspace", "ls", "--workflow", "w1"])["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["job"].as_str().expect("job").to_string())
        .collect()
}

/// What the store holds, as every listing shows it, and (on a local store) every object.
fn everything(ctx: &TestContext) -> String {
    let mut out = format!(
        "{:?}\n{:?}\n{:?}\n",
        keys(ctx),
        artifact_paths(ctx),
        layer_jobs(ctx)
    );
    if let Some(store) = ctx.local_store() {
        for e in walkdir::WalkDir::new(store).sort_by_file_name() {
            out.push_str(&format!("{}\n", e.expect("walk").path().display()));
        }
    }
    out
}

#[test]
fn expired_entries_of_every_mode_are_listed_by_a_dry_run_then_pruned_and_the_rest_still_restore() {
    let mut ctx = TestContext::new();
    ctx.set_env("FERRY_RUN", "1");
    ctx.set_env("FERRY_JOB", "build");
    ctx.write("short/a.txt", "short-lived cache\n");
    ctx.write("long/a.txt", "long-lived cache\n");
    save(&ctx, "short", "short", &["--ttl", "1s"]);
    save(&ctx, "long", "long", &[]);
    ctx.write("short.txt", "short-lived artifact\n");
    ctx.write("long.txt", "long-lived artifact\n");
    ctx.write("forever.txt", "kept until removed\n");
    json_of(&ctx, &["artifacts", "upload", "short.txt", "--ttl", "1s"]);
    json_of(&ctx, &["artifacts", "upload", "long.txt"]);
    json_of(
        &ctx,
        &["artifacts", "upload", "forever.txt", "--ttl", "never"],
    );
    for (job, ttl) in [("quick", "1s"), ("slow", "15d")] {
        let dir = ctx.dir(job);
        std::fs::write(dir.join("out.txt"), job).expect("write");
        let args = [
            "workspace",
            "persist",
            "--root",
            ".",
            "--path",
            "out.txt",
            "--workflow",
            "w1",
            "--job",
            job,
        ];
        let mut args = args.to_vec();
        args.extend_from_slice(&["--ttl", ttl]);
        ctx.run_in(&dir, &args).ok();
    }
    // Judged an hour ahead, the 1-second entries have expired and the others have not.
    let ahead = ["--as-of", "+1h"];
    let before = everything(&ctx);
    let dry = json_of(&ctx, &["prune", "--dry-run", ahead[0], ahead[1]]);
    assert_eq!(dry["dry_run"], true);
    let expected_kinds: BTreeSet<(String, String)> = [
        ("expired", "artifact"),
        ("expired", "cache"),
        ("expired", "layer"),
    ]
    .map(|(r, k)| (r.to_string(), k.to_string()))
    .into();
    let listed = removals(&dry);
    assert_eq!(
        listed
            .iter()
            .map(|(r, k, _)| (r.clone(), k.clone()))
            .collect::<BTreeSet<_>>(),
        expected_kinds
    );
    let names: Vec<&str> = listed.iter().map(|(_, _, n)| n.as_str()).collect();
    assert!(names.contains(&"short"), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("short.txt")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.contains("job quick")), "{names:?}");
    // An artifact's content is stored once per project and may be shared: it is marked
    // unused now and goes a grace period later, so its entry frees no bytes in this run.
    assert!(
        dry["removed"]
            .as_array()
            .expect("removed")
            .iter()
            .filter(|r| r["kind"] != "artifact")
            .all(|r| r["bytes"].as_u64() > Some(0)),
        "sizes are listed"
    );
    assert_eq!(everything(&ctx), before, "a dry run deletes nothing");

    let pruned = json_of(&ctx, &["prune", ahead[0], ahead[1]]);
    assert_eq!(removals(&pruned), listed);
    assert_eq!(keys(&ctx), ["long"]);
    assert_eq!(artifact_paths(&ctx), ["forever.txt", "long.txt"]);
    assert_eq!(layer_jobs(&ctx), ["slow"]);
    assert_eq!(hit(&restore(&ctx, "long", "r-long")), "exact");
    assert_eq!(hit(&restore(&ctx, "short", "r-short")), "miss");
    json_of(&ctx, &["artifacts", "download", "--to", "got"]);
    assert!(ctx.work.join("got/long.txt").exists() && !ctx.work.join("got/short.txt").exists());
    let attach = ctx.dir("attach");
    ctx.run_in(
        &attach,
        &["workspace", "attach", "--at", "ws", "--workflow", "w1"],
    )
    .ok();
    assert_eq!(
        std::fs::read_to_string(attach.join("ws/out.txt")).expect("attached"),
        "slow"
    );
    if let Some(store) = ctx.local_store() {
        // Each expired entry's data went with its manifest.
        let data: Vec<_> = walkdir::WalkDir::new(store)
            .into_iter()
            .map(|e| e.expect("walk"))
            .filter(|e| {
                e.file_type().is_file() && e.path().components().any(|c| c.as_os_str() == "data")
            })
            .collect();
        assert_eq!(
            data.len(),
            5,
            "long cache, three artifacts' content (the expired one's goes in two steps), one layer: {data:?}"
        );
    }
    assert!(
        removals(&json_of(&ctx, &["prune", ahead[0], ahead[1]])).is_empty(),
        "a second prune finds nothing"
    );
}

#[test]
fn a_cache_restored_after_its_save_lives_past_its_original_expiry() {
    let ctx = TestContext::new();
    ctx.write("used/a.txt", "restored once\n");
    ctx.write("unused/a.txt", "never restored\n");
    save(&ctx, "used", "used", &["--ttl", "1h"]);
    save(&ctx, "unused", "unused", &["--ttl", "1h"]);
    assert_eq!(hit(&restore(&ctx, "used", "first")), "exact");

    // Prune as of a time past both saves' expiry but before the restore's (times are kept to
    // the nanosecond, and the restore came after the second save).
    let expires: std::collections::BTreeMap<String, chrono::DateTime<chrono::Utc>> =
        json_of(&ctx, &["cache", "ls"])["caches"]
            .as_array()
            .expect("caches")
            .iter()
            .map(|c| {
                let at = c["expires"].as_str().expect("an expiry");
                let at = chrono::DateTime::parse_from_rfc3339(at).expect("an RFC 3339 time");
                (c["key"].as_str().expect("key").to_string(), at.to_utc())
            })
            .collect();
    let (used, unused) = (expires["used"], expires["unused"]);
    let as_of = if ferry_tests::on_gha() {
        used.max(unused)
    } else {
        assert!(used > unused, "the restore extended the used cache's life");
        unused + (used - unused) / 2
    };
    let as_of = as_of.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let pruned = json_of(&ctx, &["prune", "--as-of", &as_of]);
    if ferry_tests::on_gha() {
        // GitHub's cache service records use itself and ferry writes no markers there: a
        // restore hit does not extend `--ttl` (docs/stores.md), so both have expired.
        assert_eq!(
            removals(&pruned),
            [
                (
                    "expired".to_string(),
                    "cache".to_string(),
                    "used".to_string()
                ),
                (
                    "expired".to_string(),
                    "cache".to_string(),
                    "unused".to_string()
                )
            ]
            .into()
        );
        assert!(keys(&ctx).is_empty());
        assert_eq!(hit(&restore(&ctx, "used", "second")), "miss");
        return;
    }
    assert_eq!(
        removals(&pruned),
        [(
            "expired".to_string(),
            "cache".to_string(),
            "unused".to_string()
        )]
        .into()
    );
    assert_eq!(keys(&ctx), ["used"]);
    assert_eq!(hit(&restore(&ctx, "used", "second")), "exact");
}

#[test]
fn max_cache_size_evicts_the_least_recently_restored_caches_first() {
    let ctx = TestContext::new();
    let mut size = std::collections::BTreeMap::new();
    for key in ["c1", "c2", "c3"] {
        ctx.write(&format!("{key}/blob"), format!("{key} ").repeat(2000));
        let saved = save(&ctx, key, key, &[]);
        size.insert(key, saved["bytes"].as_u64().expect("bytes"));
    }
    // c1 was saved first but restored last; c2 is the least recently used.
    for key in ["c2", "c3", "c1"] {
        assert_eq!(hit(&restore(&ctx, key, &format!("r-{key}"))), "exact");
    }
    // Room for exactly the two that should stay (their archives differ by a few bytes).
    let fits_two = if ferry_tests::on_gha() {
        size["c2"] + size["c3"]
    } else {
        size["c1"] + size["c3"]
    }
    .to_string();
    let dry = json_of(&ctx, &["prune", "--dry-run", "--max-cache-size", &fits_two]);
    if ferry_tests::on_gha() {
        // ferry keeps no record of restore hits on GitHub's cache service (which evicts by
        // its own record of use): the least recently *saved* go first (docs/stores.md).
        assert_eq!(
            removals(&dry),
            [("evicted".into(), "cache".into(), "c1".into())].into()
        );
        let pruned = json_of(
            &ctx,
            &["prune", "--max-cache-size", &size["c3"].to_string()],
        );
        assert_eq!(
            removals(&pruned),
            [
                ("evicted".into(), "cache".into(), "c1".into()),
                ("evicted".into(), "cache".into(), "c2".into())
            ]
            .into()
        );
        assert_eq!(keys(&ctx), ["c3"]);
        return;
    }
    assert_eq!(
        removals(&dry),
        [("evicted".into(), "cache".into(), "c2".into())].into()
    );
    assert_eq!(keys(&ctx), ["c1", "c2", "c3"], "a dry run evicts nothing");

    let pruned = json_of(&ctx, &["prune", "--max-cache-size", &fits_two]);
    assert_eq!(removals(&pruned), removals(&dry));
    assert_eq!(pruned["cache_bytes"], size["c1"] + size["c3"]);
    let fits_one = size["c1"].to_string();
    let pruned = json_of(&ctx, &["prune", "--max-cache-size", &fits_one]);
    assert_eq!(
        removals(&pruned),
        [("evicted".into(), "cache".into(), "c3".into())].into()
    );
    assert_eq!(keys(&ctx), ["c1"]);
    assert_eq!(hit(&restore(&ctx, "c1", "again")), "exact");
}

/// Bytes no compressor shrinks, so the save of them is long enough to prune during it.
fn incompressible(path: &Path, bytes: usize) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = Vec::with_capacity(bytes);
    while buf.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, buf).expect("write");
}

#[test]
fn a_prune_started_while_a_large_save_is_uploading_leaves_it_intact_and_it_restores() {
    let ctx = TestContext::new();
    incompressible(&ctx.work.join("big/blob"), 32 << 20);
    let mut child = ctx
        .ferry()
        .args([
            "-v", "--json", "cache", "save", "--key", "big", "--path", "big",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the save");
    // Wait until the save says its data is moving to the store (`-v`), on every store.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut said = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).expect("read stderr");
        said.push_str(&line);
        if line.contains("saving cache big: data is moving") {
            break;
        }
        assert!(n > 0, "the save ended before its data moved: {said}");
    }
    let mut prunes_during_save = 0;
    while child.try_wait().expect("poll").is_none() {
        assert!(
            keys(&ctx).is_empty() || prunes_during_save > 0,
            "the save was still running"
        );
        let pruned = json_of(&ctx, &["prune"]);
        assert!(
            removals(&pruned).is_empty(),
            "nothing of the running save is pruned: {pruned}"
        );
        prunes_during_save += 1;
    }
    assert!(prunes_during_save > 0);
    eprintln!("{prunes_during_save} prunes ran during the save");
    let out = child.wait_with_output().expect("the save ends");
    std::io::Read::read_to_string(&mut stderr, &mut said).expect("read stderr");
    assert!(out.status.success(), "save failed: {said}");

    let run = restore(&ctx, "big", "restored");
    assert_eq!(hit(&run), "exact");
    let original = std::fs::read(ctx.work.join("big/blob")).expect("read");
    let restored = std::fs::read(ctx.root.join("restored/big/blob")).expect("read restored");
    assert!(
        original == restored,
        "the restored blob equals the saved one"
    );
}

#[test]
fn unreferenced_data_is_pruned_only_past_the_grace_period() {
    let mut ctx = TestContext::new();
    ctx.write("deps/a.txt", "version 1\n");
    save(&ctx, "deps", "deps", &[]);
    ctx.write("deps/a.txt", "version 2\n");
    save(&ctx, "deps", "deps", &["--force"]);
    // The replaced archive is unreferenced now but young: the default grace keeps it.
    assert!(removals(&json_of(&ctx, &["prune"])).is_empty());

    ctx.set_env("FERRY_PRUNE_GRACE", "0s");
    let pruned = json_of(&ctx, &["prune"]);
    let gone = removals(&pruned);
    assert_eq!(gone.len(), 1, "{pruned}");
    let (reason, kind, name) = gone.into_iter().next().expect("one removal");
    assert_eq!((reason.as_str(), kind.as_str()), ("orphaned", "-"));
    assert!(name.starts_with("caches/data/"), "{name}");
    let run = restore(&ctx, "deps", "r");
    assert_eq!(hit(&run), "exact");
    assert_eq!(
        std::fs::read_to_string(ctx.root.join("r/deps/a.txt")).expect("read"),
        "version 2\n"
    );

    if let Some(store) = ctx.local_store() {
        // An abandoned save's data: old goes, fresh stays (it may be a save still running).
        ctx.remove_env("FERRY_PRUNE_GRACE");
        let data = store.join("ferry-v1/acme=2Fapp/caches/data");
        let old = data.join("abandoned.tar.zst");
        let fresh = data.join("in-flight.tar.zst");
        std::fs::write(&old, "old").expect("write");
        std::fs::write(&fresh, "fresh").expect("write");
        let seven_hours_ago =
            filetime::FileTime::from_system_time(SystemTime::now() - Duration::from_secs(7 * 3600));
        filetime::set_file_mtime(&old, seven_hours_ago).expect("age it");
        let dry = json_of(&ctx, &["prune", "--dry-run"]);
        assert_eq!(
            removals(&dry),
            [(
                "orphaned".into(),
                "-".into(),
                "caches/data/abandoned.tar.zst".into()
            )]
            .into()
        );
        json_of(&ctx, &["prune"]);
        assert!(!old.exists() && fresh.exists());
        assert_eq!(hit(&restore(&ctx, "deps", "r2")), "exact");
    }
}
