//! Page tests against stores held in memory: what a store without listing shows, that store
//! text is escaped on a whole page, and that deletes are refused without their permissions.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use ferry_core::env_vars::Environment;
use futures::stream::BoxStream;

use ferry_core::store::{
    Backend, BackendError, Capabilities, ObjectInfo, ObjectWriter, Published, PutMode, Store,
};

use crate::pages;
use crate::server::{App, AppState};

/// A key-value service that cannot list (GitHub's cache service without a token is one): it
/// says so in its capabilities, or (`claims_listing`) claims to list and refuses when asked.
struct NoListing {
    claims_listing: bool,
}

#[async_trait::async_trait]
impl Backend for NoListing {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            list: self.claims_listing,
            conditional_create: false,
            overwrite: false,
            ranged_get: false,
            signed_urls: false,
            prefix_lookup: true,
            remote: true,
            evicts: false,
        }
    }
    async fn put(&self, _: &str, _: Bytes, _: PutMode) -> Result<Published, BackendError> {
        Err(BackendError::Unsupported("write here"))
    }
    async fn writer(&self, _: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        Err(BackendError::Unsupported("write here"))
    }
    async fn get(&self, _: &str) -> Result<Option<Bytes>, BackendError> {
        Ok(None)
    }
    async fn get_stream(
        &self,
        _: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BackendError>>, BackendError> {
        Err(BackendError::NotFound)
    }
    async fn get_range(&self, _: &str, _: Range<u64>) -> Result<Bytes, BackendError> {
        Err(BackendError::Unsupported("read ranges"))
    }
    async fn head(&self, _: &str) -> Result<Option<ObjectInfo>, BackendError> {
        Ok(None)
    }
    async fn list(&self, _: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        Err(BackendError::Unsupported(
            "list caches without a GITHUB_TOKEN",
        ))
    }
    async fn delete(&self, _: &str) -> Result<(), BackendError> {
        Err(BackendError::Unsupported("delete here"))
    }
    async fn sign(&self, _: &str, _: Duration) -> Result<String, BackendError> {
        Err(BackendError::Unsupported("make links"))
    }
}

fn app(store: Store, allow_delete: bool) -> App {
    let listen = "127.0.0.1:0".parse().expect("an address");
    Arc::new(AppState {
        store,
        access: crate::access::Access::new(listen, allow_delete).expect("random tokens"),
        req: crate::UiRequest {
            store_url: "test://".into(),
            project: "acme/app".into(),
            listen,
            allow_delete,
            trust: Default::default(),
            prune_grace: Duration::from_secs(3600),
        },
    })
}

async fn body(resp: Response) -> (StatusCode, String) {
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("a body in memory");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn project() -> Path<String> {
    Path("acme/app".to_string())
}

#[tokio::test]
async fn a_store_that_cannot_list_says_so_on_every_listing_page() {
    for claims_listing in [false, true] {
        let store = Store::with_backend(
            "gha://",
            Arc::new(NoListing { claims_listing }),
            "a test double",
        );
        let a = app(store, false);
        let pages = [
            body(pages::caches::show(State(a.clone()), project(), Query(Default::default())).await)
                .await,
            body(
                pages::workspaces::runs(State(a.clone()), project(), Query(Default::default()))
                    .await,
            )
            .await,
            body(
                pages::artifacts::runs(State(a.clone()), project(), Query(Default::default()))
                    .await,
            )
            .await,
            body(pages::usage::show(State(a.clone()), project()).await).await,
            body(
                pages::workspaces::run(
                    State(a.clone()),
                    Path(("acme/app".into(), "wf".into())),
                    RawQuery(None),
                )
                .await,
            )
            .await,
        ];
        for (status, html) in pages {
            assert_eq!(status, StatusCode::OK, "{html}");
            assert!(html.contains("This store cannot show"), "{html}");
            if claims_listing {
                assert!(html.contains("without a GITHUB_TOKEN"), "{html}");
            } else {
                assert!(html.contains("does not list its objects"), "{html}");
            }
        }
    }
}

/// Publishes a cache manifest for `key` the way a save lays it out (`docs/FORMAT.md`).
async fn publish_cache(store: &Store, key: &str) {
    let dir = format!("{}/caches", ferry_core::manifest::project_dir("acme/app"));
    let data = format!("{dir}/data/0123.tar.zst");
    store
        .create(&data, Bytes::from_static(b"not really zstd"))
        .await
        .expect("data written");
    let manifest = serde_json::json!({
        "format": 1, "kind": "cache", "created": "2026-01-02T03:04:05Z", "expires": null,
        "data": { "path": data, "size": 15, "sha256": "00" },
        "key": key, "compression": "zstd", "paths": ["x"], "links_out": [],
        "files": 1, "unpacked_bytes": 1, "ttl_seconds": 60
    });
    store
        .create(
            &format!("{dir}/keys/{}.json", ferry_core::manifest::object_name(key)),
            Bytes::from(manifest.to_string()),
        )
        .await
        .expect("manifest published");
}

#[tokio::test]
async fn keys_are_escaped_on_the_whole_cache_page() {
    let store = Store::open(
        "memory://",
        &Environment::from_pairs([("HOME", "/nonexistent")]),
    )
    .expect("a memory store");
    let key = "v1-\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    publish_cache(&store, key).await;
    let a = app(store, true);
    let (status, html) =
        body(pages::caches::show(State(a), project(), Query(Default::default())).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("1 cache"), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
}

#[tokio::test]
async fn deletes_need_allow_delete_and_the_page_token() {
    let store = Store::open(
        "memory://",
        &Environment::from_pairs([("HOME", "/nonexistent")]),
    )
    .expect("a memory store");
    publish_cache(&store, "v1-keep").await;
    let form = |csrf: &str| Bytes::from(format!("csrf={csrf}&entry=%7Cv1-keep"));

    let read_only = app(store.clone(), false);
    let csrf = read_only.access.csrf.clone();
    let (status, _) =
        body(pages::caches::delete(State(read_only), project(), form(&csrf)).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let deleting = app(store.clone(), true);
    let (status, _) =
        body(pages::caches::delete(State(deleting.clone()), project(), form("guess")).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let listed = ferry_caches::list(&store, "acme/app", None, &Default::default())
        .await
        .expect("a listing");
    assert_eq!(listed.caches.len(), 1, "nothing was deleted");

    let csrf = deleting.access.csrf.clone();
    let resp = pages::caches::delete(State(deleting), project(), form(&csrf)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let listed = ferry_caches::list(&store, "acme/app", None, &Default::default())
        .await
        .expect("a listing");
    assert!(listed.caches.is_empty(), "the cache is gone");
}
