//! Lookups that read only what they need: a prefix restore takes the newest match from the
//! store's own listing, and exact artifact paths are read directly.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_caches::{Hit, PathContext, RestoreRequest};
use ferry_core::env_vars::Environment;
use ferry_core::manifest;
use ferry_core::store::{
    Backend, BackendError, Capabilities, ObjectInfo, ObjectWriter, Published, PutMode, Store,
};
use ferry_core::trust::sign::Trust;
use ferry_tests::TestContext;
use futures::stream::BoxStream;

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

/// The test's store, whose lookups also list one manifest that is gone by the time it is
/// read, as the newest of all: what a restore sees when a prune or a `--force` save deletes
/// a manifest between the store's listing and the read.
struct Phantom {
    inner: Store,
    phantom: String,
}

fn other(e: ferry_core::store::StoreError) -> BackendError {
    BackendError::other(e)
}

#[async_trait::async_trait]
impl Backend for Phantom {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, p: &str, b: Bytes, mode: PutMode) -> Result<Published, BackendError> {
        match mode {
            PutMode::Create => self.inner.create(p, b).await.map_err(other),
            PutMode::Overwrite => self
                .inner
                .overwrite(p, b)
                .await
                .map(|()| Published::Created)
                .map_err(other),
        }
    }
    async fn writer(&self, p: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        self.inner.writer(p).await.map_err(other)
    }
    async fn get(&self, p: &str) -> Result<Option<Bytes>, BackendError> {
        self.inner.read(p).await.map_err(other)
    }
    async fn get_stream(
        &self,
        p: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, BackendError> {
        self.inner.get_stream(p).await.map_err(other)
    }
    async fn get_range(&self, p: &str, r: Range<u64>) -> Result<Bytes, BackendError> {
        self.inner.get_range(p, r).await.map_err(other)
    }
    async fn head(&self, p: &str) -> Result<Option<ObjectInfo>, BackendError> {
        self.inner.head(p).await.map_err(other)
    }
    async fn list(&self, p: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(p).await.map_err(other)
    }
    async fn delete(&self, p: &str) -> Result<(), BackendError> {
        self.inner.delete(p).await.map_err(other)
    }
    async fn sign(&self, p: &str, e: Duration) -> Result<String, BackendError> {
        self.inner.link(p, e).await.map_err(other)
    }
    async fn newest(&self, dir: &str, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        let mut found = self.inner.newest(dir, prefix).await.map_err(other)?;
        found.insert(
            0,
            ObjectInfo {
                path: format!("{dir}/{}", self.phantom),
                size: 100,
                modified: chrono::Utc::now() + chrono::Duration::hours(1),
            },
        );
        Ok(found)
    }
}

/// On every store: the binary saves a cache, then a restore whose lookup lists a newer
/// manifest that is already deleted restores the saved one, as a partial hit.
#[test]
fn a_manifest_listed_but_deleted_before_it_is_read_is_passed_over() {
    let ctx = TestContext::new();
    ctx.write("tree/x", "real");
    ctx.run(&["cache", "save", "--key", "v1-real", "--path", "tree"])
        .ok();
    let dest = ctx.dir("dest");
    let env = Environment::from_pairs(ctx.env_pairs());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let out = runtime
        .block_on(async {
            let inner = Store::open(&ctx.store, &env).expect("the test store opens");
            let store = Store::with_backend(
                &ctx.store,
                Arc::new(Phantom {
                    inner,
                    phantom: manifest::object_name("v1-gone") + ".json",
                }),
                "the test store",
            );
            ferry_caches::restore(
                &store,
                RestoreRequest {
                    project: "acme/app".into(),
                    key: "v1-".into(),
                    restore_keys: Vec::new(),
                    exact: false,
                    lookup_only: false,
                    keep_root_links: false,
                    scope: None,
                    fallback_scopes: Vec::new(),
                    expected_paths: Vec::new(),
                    max_age: None,
                    trust: Trust::default(),
                    at: PathContext {
                        cwd: dest.clone(),
                        env: env.clone(),
                    },
                    state_dir: None,
                    footprints: None,
                },
            )
            .await
        })
        .expect("the restore passes over the deleted manifest");
    assert_eq!(out.hit, Hit::Partial);
    assert_eq!(out.matched_key.as_deref(), Some("v1-real"));
    assert_eq!(
        std::fs::read_to_string(dest.join("tree/x")).expect("restored"),
        "real"
    );
}
