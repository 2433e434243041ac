//! One conformance suite of store operations, run against every kind of store ferry opens:
//! a local folder, memory, and the real servers `.ci/servers.sh start` runs on loopback
//! (SeaweedFS, MiniStack and moto for S3, Azurite, fake-gcs-server), and `gha://` against
//! the fake of GitHub's results service (`tests/gha/`), once for each of its two services:
//! `gha` keeps the suite's objects in the cache service, `gha_artifacts` (a store prefix below
//! a project's `artifacts/` folder) in the artifact service. Each gha test is a job of its
//! own, with a fresh runtime token from the fake.
//!
//! The suite is plain async functions taking a [`Store`] and the store's known differences
//! ([`Traits`]); each store's module calls every one of them. A server's variables come from
//! `.ci/cache/store-<name>.env` (another folder with `FERRY_TEST_SERVERS_DIR`). When that
//! file is missing the server's tests pass with a note on stderr, so a plain `cargo test`
//! works anywhere; with `FERRY_TEST_REQUIRE_SERVERS=1` (as `.ci/run` sets) they fail instead.
//!
//! Every test works below its own prefix, `conformance-<uuid>/<test>`, so runs against a
//! long-lived bucket never collide.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::env_vars::Environment;
use ferry_core::store::{Published, Store, StoreError};
use futures::StreamExt;
use sha2::{Digest, Sha256};

#[path = "support/reduced.rs"]
mod reduced_store;

/// What differs between stores, so one suite serves them all.
#[derive(Debug, Clone, Copy)]
struct Traits {
    /// `link` gives an `http://` URL that serves the object.
    http_links: bool,
    /// `link` gives a `file://` URL.
    file_links: bool,
    /// The server checks request signatures, so wrong credentials are refused.
    checks_credentials: bool,
    /// Conditional creates are atomic under concurrency, not only one after another.
    /// moto's are not for bodies of a few MiB (docs/stores.md).
    atomic_create: bool,
}

const LOCAL: Traits = Traits {
    http_links: false,
    file_links: true,
    checks_credentials: false,
    atomic_create: true,
};
const MEMORY: Traits = Traits {
    file_links: false,
    ..LOCAL
};
/// SeaweedFS (SigV4) and Azurite (Shared Key) check signatures.
const SERVER: Traits = Traits {
    http_links: true,
    file_links: false,
    checks_credentials: true,
    atomic_create: true,
};
/// The reduced store of `support/reduced.rs`: a key-value service in this process.
const REDUCED: Traits = Traits {
    file_links: false,
    ..LOCAL
};
/// MiniStack and fake-gcs-server accept any credentials.
const LENIENT_SERVER: Traits = Traits {
    checks_credentials: false,
    ..SERVER
};
/// `gha://`: links are signed blob URLs; the service checks the runtime token's signature.
const GHA: Traits = SERVER;
/// moto accepts any credentials, and its conditional creates race (see
/// [`Traits::atomic_create`]): it is here for breadth, not as evidence of atomicity.
const MOTO: Traits = Traits {
    atomic_create: false,
    ..LENIENT_SERVER
};

// --- where the stores come from ---------------------------------------------------------

fn servers_dir() -> PathBuf {
    std::env::var_os("FERRY_TEST_SERVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/cache"))
}

/// The variables of server `name`, or `None` (with a note) when it is not running here.
fn server_env(name: &str) -> Option<Vec<(String, String)>> {
    let path = servers_dir().join(format!("store-{name}.env"));
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(parse_env_file(&text)),
        Err(e) => {
            let required = std::env::var("FERRY_TEST_REQUIRE_SERVERS").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "FERRY_TEST_REQUIRE_SERVERS=1 but {} cannot be read ({e}); run `.ci/servers.sh install && .ci/servers.sh start`",
                path.display()
            );
            eprintln!(
                "note: skipping the {name} store: {} is missing (run `.ci/servers.sh start`)",
                path.display()
            );
            None
        }
    }
}

fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            Some((
                k.trim().to_string(),
                v.trim().trim_matches('\'').trim_matches('"').to_string(),
            ))
        })
        .collect()
}

/// One run's id, so that prefixes differ between runs against the same bucket.
fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

/// A store for one test: its own prefix in the server's bucket, or its own folder.
struct Opened {
    store: Store,
    pairs: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn open(kind: &str, test: &str) -> Option<Opened> {
    match kind {
        "local" => {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let env = Environment::default();
            let store = Store::open(&dir.path().join("store").display().to_string(), &env)
                .expect("open local store");
            Some(Opened {
                store,
                pairs: Vec::new(),
                _dir: Some(dir),
            })
        }
        "reduced" => Some(Opened {
            store: reduced_store::store(),
            pairs: Vec::new(),
            _dir: None,
        }),
        "memory" => {
            let env = Environment::default();
            let store = Store::open("memory://", &env).expect("open memory store");
            Some(Opened {
                store,
                pairs: Vec::new(),
                _dir: None,
            })
        }
        "gha" | "gha_artifacts" => {
            let pairs = gha_job(&server_env("gha")?);
            let below = if kind == "gha" {
                ""
            } else {
                "/ferry-v1/conformance/artifacts"
            };
            let url = format!("gha://conformance-{}/{test}{below}", run_id());
            let env = Environment::from_pairs(pairs.clone());
            let store = Store::open(&url, &env).unwrap_or_else(|e| panic!("open {url}: {e}"));
            Some(Opened {
                store,
                pairs,
                _dir: None,
            })
        }
        server => {
            let pairs = server_env(server)?;
            let base = pairs
                .iter()
                .find(|(k, _)| k == "FERRY_STORE")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("store-{server}.env sets no FERRY_STORE"));
            let url = format!(
                "{}/conformance-{}/{test}",
                base.trim_end_matches('/'),
                run_id()
            );
            let env = Environment::from_pairs(pairs.clone());
            let store = Store::open(&url, &env).unwrap_or_else(|e| panic!("open {url}: {e}"));
            Some(Opened {
                store,
                pairs,
                _dir: None,
            })
        }
    }
}

/// A new job of the gha fake (a run of its own): its environment, as the runner gives it.
fn gha_job(file: &[(String, String)]) -> Vec<(String, String)> {
    let admin = file
        .iter()
        .find(|(k, _)| k == "FERRY_GHA_FAKE_URL")
        .map(|(_, v)| v.clone())
        .expect("store-gha.env names the fake's admin API");
    let (status, body) = http_request("POST", &format!("{admin}/jobs"), "{}");
    assert_eq!(
        status,
        200,
        "POST {admin}/jobs: {}",
        String::from_utf8_lossy(&body)
    );
    let job: serde_json::Value = serde_json::from_slice(&body).expect("a job as JSON");
    job["env"]
        .as_object()
        .expect("the job's environment")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

// --- the suite -------------------------------------------------------------------------

/// Publishing is atomic and first-write-wins: a second create reports `Exists` and changes nothing.
async fn create_is_first_write_wins(s: &Store) {
    assert_eq!(
        s.create("entries/a.json", Bytes::from_static(b"first"))
            .await
            .expect("create"),
        Published::Created
    );
    assert_eq!(
        s.create("entries/a.json", Bytes::from_static(b"second"))
            .await
            .expect("create again"),
        Published::Exists
    );
    assert_eq!(
        s.read("entries/a.json").await.expect("read").as_deref(),
        Some(&b"first"[..])
    );
}

/// Of ten writers creating one key at once, each with several MiB of its own, exactly one
/// wins and its bytes are what is stored; twenty rounds, each on a new key. Bodies this
/// size are what let a server's check and write drift apart.
///
/// Where creates are not atomic, what still holds is checked: some writer wins, every
/// writer gets an answer, and the stored bytes are one winner's, whole.
async fn concurrent_creates_publish_once(s: &Store, t: Traits) {
    const ROUNDS: usize = 20;
    const WRITERS: usize = 10;
    let mut winners_per_round = Vec::new();
    for round in 0..ROUNDS {
        let key = format!("race/{round:02}/entry");
        let payloads: Vec<Bytes> = (0..WRITERS).map(|i| race_payload(round, i)).collect();
        let tasks: Vec<_> = payloads
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, payload)| {
                let (s, key) = (s.clone(), key.clone());
                tokio::spawn(async move { (i, s.create(&key, payload).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            let (i, r) = t.await.expect("task");
            if r.expect("create") == Published::Created {
                winners.push(i);
            }
        }
        let stored = s.read(&key).await.expect("read").expect("published");
        let owner = payloads.iter().position(|p| *p == stored);
        if t.atomic_create {
            assert_eq!(
                winners.len(),
                1,
                "round {round}: exactly one writer publishes, got {winners:?}"
            );
            assert_eq!(
                owner,
                Some(winners[0]),
                "round {round}: the stored object is the winner's payload"
            );
        } else {
            assert!(!winners.is_empty(), "round {round}: some writer publishes");
            assert!(
                owner.is_some_and(|o| winners.contains(&o)),
                "round {round}: the stored object ({} bytes) is one winner's payload, whole \
                 (winners {winners:?})",
                stored.len()
            );
        }
        winners_per_round.push(winners.len());
        s.delete(&key).await.expect("delete");
    }
    eprintln!(
        "note: {ROUNDS} rounds of {WRITERS} racing writers{}; writers told they created, per round: \
         {winners_per_round:?}",
        if t.atomic_create {
            ""
        } else {
            " (conditional create not atomic here)"
        }
    );
}

/// Writer `writer`'s body in round `round`: 4 MiB plus 448 KiB per writer number (4 to
/// about 8 MiB), its own tag repeated throughout so any mix of two bodies is detectable.
fn race_payload(round: usize, writer: usize) -> Bytes {
    let len = (4 << 20) + writer * (448 << 10);
    let tag = format!("round {round:02} writer {writer}\n");
    let mut body = tag.as_bytes().repeat(len / tag.len() + 1);
    body.truncate(len);
    Bytes::from(body)
}

/// Overwrite replaces; read and head see the latest; missing objects are `None`, not errors.
/// A store of immutable objects refuses the overwrite, saying so.
async fn overwrite_read_head(s: &Store) {
    s.create("o/value", Bytes::from_static(b"one"))
        .await
        .expect("write");
    let replaced = s.overwrite("o/value", Bytes::from_static(b"three")).await;
    if !s.capabilities().overwrite {
        let err = replaced.expect_err("an immutable store refuses to replace");
        assert!(err.to_string().contains("cannot replace"), "{err}");
        return;
    }
    replaced.expect("overwrite");
    assert_eq!(
        s.read("o/value").await.expect("read").as_deref(),
        Some(&b"three"[..])
    );
    let meta = s.head("o/value").await.expect("head").expect("exists");
    assert_eq!(meta.size, 5);
    assert_eq!(meta.path, "o/value");
    assert!(s.read("o/missing").await.expect("read missing").is_none());
    assert!(s.head("o/missing").await.expect("head missing").is_none());
    // An empty object is an object.
    s.create("o/empty", Bytes::new())
        .await
        .expect("write empty");
    assert_eq!(
        s.read("o/empty").await.expect("read empty").as_deref(),
        Some(&b""[..])
    );
}

/// Listing is by folder (not by string prefix), recursive, with paths relative to the store.
async fn list_and_delete(s: &Store) {
    for rel in ["l/a/1", "l/a/2", "l/a/sub/3", "l/ab/4", "l/b/5"] {
        s.create(rel, Bytes::from(rel.to_string()))
            .await
            .expect("write");
    }
    if !s.capabilities().list {
        let err = s
            .list("l/a")
            .await
            .expect_err("a store without listing says so");
        assert!(err.to_string().contains("cannot list"), "{err}");
        s.delete("l/a/1").await.expect("delete");
        s.delete("l/a/1")
            .await
            .expect("deleting what is gone is not an error");
        assert!(s.read("l/a/1").await.expect("read deleted").is_none());
        return;
    }
    let mut names: Vec<_> = s
        .list("l/a")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.path)
        .collect();
    names.sort();
    assert_eq!(names, ["l/a/1", "l/a/2", "l/a/sub/3"]);
    assert!(s.list("l/nothing").await.expect("list empty").is_empty());

    s.delete("l/a/1").await.expect("delete");
    s.delete("l/a/1")
        .await
        .expect("deleting what is gone is not an error");
    assert!(s.read("l/a/1").await.expect("read deleted").is_none());
    assert_eq!(s.list("l/a").await.expect("list").len(), 2);
}

/// Names as ferry writes them (`paths::encode_part`: `[A-Za-z0-9_-]` and `=XX` escapes,
/// plus `.` and `/` of its own) survive signing, listing and reading on every store.
async fn encoded_names(s: &Store) {
    let key = ferry_core::paths::encode_part("key with spaces/ünïcødé+a,b;c@d=e%f");
    let rel = format!("u/{key}/manifest.json");
    assert_eq!(
        s.create(&rel, Bytes::from_static(b"x"))
            .await
            .expect("create"),
        Published::Created
    );
    assert_eq!(
        s.read(&rel).await.expect("read").as_deref(),
        Some(&b"x"[..])
    );
    if !s.capabilities().list {
        return;
    }
    let listed: Vec<_> = s
        .list("u")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&rel));
    let prefix = ferry_core::paths::encode_part("key with");
    let listed = s
        .list(&format!("u/{prefix}"))
        .await
        .expect("list a partial part");
    assert!(
        listed.is_empty(),
        "listing is by whole path parts: {listed:?}"
    );
}

/// Byte ranges, as restores fetch them.
async fn ranged_get(s: &Store) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    s.create("r/blob", Bytes::from(data.clone()))
        .await
        .expect("put");
    if !s.capabilities().ranged_get {
        let err = s.get_range("r/blob", 0..10).await.expect_err("no ranges");
        assert!(err.to_string().contains("cannot read byte ranges"), "{err}");
        return;
    }
    let got = s.get_range("r/blob", 1000..5000).await.expect("range");
    assert_eq!(&got[..], &data[1000..5000]);
    let last = s
        .get_range("r/blob", 99_990..100_000)
        .await
        .expect("last bytes");
    assert_eq!(&last[..], &data[99_990..]);
    let first = s.get_range("r/blob", 0..1).await.expect("first byte");
    assert_eq!(&first[..], &data[..1]);
    // Read into a buffer that held more before: it holds the range and nothing else.
    let mut buf = vec![7u8; 50_000];
    s.get_range_into("r/blob", 60_000..64_000, &mut buf)
        .await
        .expect("range into a buffer");
    assert_eq!(buf, &data[60_000..64_000]);
    s.get_range_into("r/blob", 99_000..100_000, &mut buf)
        .await
        .expect("last bytes into the same buffer");
    assert_eq!(buf, &data[99_000..]);
}

/// A streamed write larger than 16 MiB (multipart on cloud stores), read back whole as a
/// stream; an aborted write leaves nothing behind.
async fn streamed_write(s: &Store) {
    const PIECE: usize = 1024 * 1024;
    let total = 17 * PIECE + 17;
    let data: Vec<u8> = (0..total)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut w = s.writer("m/big.bin").await.expect("start a write");
    for chunk in data.chunks(PIECE) {
        w.write(Bytes::from(chunk.to_vec())).await.expect("write");
    }
    assert!(
        s.head("m/big.bin").await.expect("head").is_none(),
        "nothing is there before the write finishes"
    );
    w.finish().await.expect("finish");
    let meta = s.head("m/big.bin").await.expect("head").expect("exists");
    assert_eq!(meta.size, total as u64);
    let mut stream = s.get_stream("m/big.bin").await.expect("get");
    let mut back = Vec::with_capacity(total);
    while let Some(piece) = stream.next().await {
        back.extend_from_slice(&piece.expect("a piece"));
    }
    assert_eq!(
        Sha256::digest(&back),
        Sha256::digest(&data),
        "content round-trips"
    );

    let mut w = s.writer("m/aborted.bin").await.expect("start a write");
    for _ in 0..17 {
        w.write(Bytes::from(vec![7u8; PIECE])).await.expect("write");
    }
    w.abort().await;
    assert!(s.head("m/aborted.bin").await.expect("head").is_none());
}

/// "The newest objects whose names start with P" finds matches of one folder, newest first by
/// the store's clock, and nothing outside the folder or the prefix. A store that answers the
/// lookup itself may give only the newest.
async fn newest_by_name_prefix(s: &Store) {
    for name in ["v1-b", "v1-a", "v2-a"] {
        s.create(&format!("n/{name}.json"), Bytes::from(name.to_string()))
            .await
            .expect("write");
    }
    s.create("n/sub/v1-c.json", Bytes::from_static(b"below"))
        .await
        .expect("write");
    let found = s.newest("n", "v1-").await.expect("newest");
    let paths: std::collections::BTreeSet<&str> = found.iter().map(|o| o.path.as_str()).collect();
    if s.capabilities().prefix_lookup {
        // The store's own lookup may give only the newest match; it must give that one.
        assert_eq!(
            found.first().map(|o| o.path.as_str()),
            Some("n/v1-a.json"),
            "the newest first: {found:?}"
        );
        assert!(
            paths.is_subset(&["n/v1-a.json", "n/v1-b.json"].into()),
            "{found:?}"
        );
    } else {
        assert_eq!(
            paths,
            ["n/v1-a.json", "n/v1-b.json"].into(),
            "every match of the folder and prefix"
        );
    }
    assert!(
        found.windows(2).all(|w| w[0].modified >= w[1].modified),
        "newest first: {found:?}"
    );
    assert!(s.newest("n", "v3-").await.expect("newest").is_empty());
}

/// More matches than one page of a listing (1,000 names on S3 and GCS) are all found, each
/// once: a lookup among thousands of caches sees every one of them, whatever character
/// follows the prefix in their names.
async fn newest_past_the_first_listing_page(s: &Store) {
    if s.capabilities().prefix_lookup {
        // A service that finds the newest match itself (gha://) pages nothing here; its own
        // lookup is checked by `newest_by_name_prefix`, and a job may not write this many there.
        return;
    }
    let mut keys: Vec<String> = (0..1200).map(|i| format!("v1-{i}")).collect();
    keys.extend(
        [
            "v1-", "v1-=x", "v1-_a", "v1--b", "v1-Zed", "v1-zed", "v1-.z",
        ]
        .map(String::from),
    );
    let names: std::collections::BTreeSet<String> = keys
        .iter()
        .map(|k| format!("n/{}.json", ferry_core::manifest::object_name(k)))
        .collect();
    futures::stream::iter(names.iter().cloned())
        .map(|n| async move {
            s.create(&n, Bytes::from_static(b"{}"))
                .await
                .expect("write")
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    s.create(
        &format!("n/{}.json", ferry_core::manifest::object_name("v2-0")),
        Bytes::from_static(b"{}"),
    )
    .await
    .expect("write");
    let found = s.newest("n", "v1-").await.expect("newest");
    let paths: Vec<&str> = found.iter().map(|o| o.path.as_str()).collect();
    let unique: std::collections::BTreeSet<String> = paths.iter().map(|p| p.to_string()).collect();
    assert_eq!(paths.len(), unique.len(), "each match once");
    assert_eq!(unique, names, "every match, nothing else");
    assert!(
        found.windows(2).all(|w| w[0].modified >= w[1].modified),
        "newest first"
    );
}

/// A bounded read refuses an object longer than expected without reading it all.
async fn bounded_read(s: &Store) {
    s.create("b/data", Bytes::from(vec![1u8; 64 * 1024]))
        .await
        .expect("write");
    let whole = s.read_exactly("b/data", 64 * 1024).await.expect("read");
    assert_eq!(whole.map(|b| b.len()), Some(64 * 1024));
    let err = s
        .read_exactly("b/data", 1024)
        .await
        .expect_err("longer than recorded");
    assert!(
        err.to_string().contains("more than the 1024 bytes"),
        "{err}"
    );
    assert!(
        s.read_exactly("b/missing", 1)
            .await
            .expect("read")
            .is_none()
    );
}

/// `link` works without ferry: pre-signed URLs serve the object; local stores give `file://`.
async fn link(s: &Store, t: Traits) {
    s.create("k/report.txt", Bytes::from_static(b"hello link"))
        .await
        .expect("write");
    let result = s.link("k/report.txt", Duration::from_secs(600)).await;
    if t.http_links {
        let url = result.expect("a pre-signed link");
        let (status, body) = http_get(&url);
        assert_eq!(
            status,
            200,
            "GET {url} -> {status}: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(body, b"hello link");
    } else if t.file_links {
        let url = url::Url::parse(&result.expect("a file link")).expect("a URL");
        assert_eq!(url.scheme(), "file");
        let path = url.to_file_path().expect("a local path");
        assert_eq!(std::fs::read(path).expect("the linked file"), b"hello link");
    } else {
        assert!(
            matches!(result, Err(StoreError::CannotSign { .. })),
            "{result:?}"
        );
    }
}

/// Wrong credentials fail with an error that names the store and the variables to check.
async fn wrong_credentials(o: &Opened, t: Traits) {
    if !t.checks_credentials {
        return;
    }
    let bad: Vec<(String, String)> = o
        .pairs
        .iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "AWS_SECRET_ACCESS_KEY" => "not-the-secret".to_string(),
                // Same length and alphabet, different key.
                "AZURE_STORAGE_CONNECTION_STRING" => {
                    v.replace("AccountKey=Eby8", "AccountKey=Xby8")
                }
                // The same claims under a signature the service did not make.
                "ACTIONS_RUNTIME_TOKEN" => match v.rsplit_once('.') {
                    Some((claims, _)) => format!("{claims}.bm90LXRoZS1zaWduYXR1cmU"),
                    None => v.clone(),
                },
                _ => v.clone(),
            };
            (k.clone(), v)
        })
        .collect();
    let url = o.store.url().to_string();
    let store = Store::open(&url, &Environment::from_pairs(bad))
        .expect("opening does not contact the store");
    let err = store
        .create("entries/x.json", Bytes::from_static(b"x"))
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains(&url), "names the store URL: {msg}");
    assert!(
        msg.contains("AWS_SECRET_ACCESS_KEY")
            || msg.contains("AZURE_STORAGE_ACCOUNT_KEY")
            || msg.contains("ACTIONS_RUNTIME_TOKEN"),
        "names the credential variables: {msg}"
    );
    assert!(
        o.store
            .read("entries/x.json")
            .await
            .expect("read")
            .is_none(),
        "nothing was published"
    );
}

/// Every function of the suite, in order, against one kind of store.
macro_rules! conformance {
    ($kind:ident, $traits:expr) => {
        mod $kind {
            use super::*;

            fn open_for(test: &str) -> Option<Opened> {
                open(stringify!($kind), test)
            }

            #[tokio::test]
            async fn create_is_first_write_wins() {
                let Some(o) = open_for("create") else { return };
                super::create_is_first_write_wins(&o.store).await;
            }

            #[tokio::test]
            async fn concurrent_creates_publish_once() {
                let Some(o) = open_for("race") else { return };
                super::concurrent_creates_publish_once(&o.store, $traits).await;
            }

            #[tokio::test]
            async fn overwrite_read_head() {
                let Some(o) = open_for("overwrite") else {
                    return;
                };
                super::overwrite_read_head(&o.store).await;
            }

            #[tokio::test]
            async fn list_and_delete() {
                let Some(o) = open_for("list") else { return };
                super::list_and_delete(&o.store).await;
            }

            #[tokio::test]
            async fn encoded_names() {
                let Some(o) = open_for("names") else { return };
                super::encoded_names(&o.store).await;
            }

            #[tokio::test]
            async fn ranged_get() {
                let Some(o) = open_for("range") else { return };
                super::ranged_get(&o.store).await;
            }

            #[tokio::test]
            async fn streamed_write() {
                let Some(o) = open_for("streamed") else {
                    return;
                };
                super::streamed_write(&o.store).await;
            }

            #[tokio::test]
            async fn newest_by_name_prefix() {
                let Some(o) = open_for("newest") else { return };
                super::newest_by_name_prefix(&o.store).await;
            }

            #[tokio::test]
            async fn newest_past_the_first_listing_page() {
                let Some(o) = open_for("newest-pages") else {
                    return;
                };
                super::newest_past_the_first_listing_page(&o.store).await;
            }

            #[tokio::test]
            async fn bounded_read() {
                let Some(o) = open_for("bounded") else { return };
                super::bounded_read(&o.store).await;
            }

            #[tokio::test]
            async fn link() {
                let Some(o) = open_for("link") else { return };
                super::link(&o.store, $traits).await;
            }

            #[tokio::test]
            async fn wrong_credentials() {
                let Some(o) = open_for("credentials") else {
                    return;
                };
                super::wrong_credentials(&o, $traits).await;
            }
        }
    };
}

conformance!(local, LOCAL);
conformance!(memory, MEMORY);
conformance!(seaweedfs, SERVER);
conformance!(ministack, LENIENT_SERVER);
conformance!(moto, MOTO);
conformance!(azurite, SERVER);
conformance!(gcs, LENIENT_SERVER);
conformance!(reduced, REDUCED);
conformance!(gha, GHA);
conformance!(gha_artifacts, GHA);

// --- store-specific checks ---------------------------------------------------------------

/// Pins what fake-gcs-server lacks (docs/stores.md): reached directly rather than through
/// the `.ci/servers_helper.py` proxy, every XML-API write the GCS client sends is refused
/// with `400 invalid uploadType`, while reads work. If this starts failing, the emulator
/// has learnt the XML writes and the proxy can go.
#[tokio::test]
async fn gcs_emulator_lacks_xml_writes() {
    let Some(pairs) = server_env("gcs") else {
        return;
    };
    let direct = pairs
        .iter()
        .find(|(k, _)| k == "FERRY_TEST_GCS_EMULATOR_DIRECT")
        .map(|(_, v)| v.clone())
        .expect("store-gcs.env names the emulator itself");
    let url = format!("gs://ferry-test/conformance-{}/direct", run_id());
    let via_proxy = Store::open(&url, &Environment::from_pairs(pairs.clone())).expect("open");
    let direct_env = Environment::from_pairs([("STORAGE_EMULATOR_HOST", direct.as_str())]);
    let direct_store = Store::open(&url, &direct_env).expect("open");

    let put = direct_store
        .overwrite("plain", Bytes::from_static(b"x"))
        .await
        .expect_err("plain PUT");
    assert!(put.to_string().contains("invalid uploadType"), "{put}");
    let create = direct_store
        .create("created", Bytes::from_static(b"x"))
        .await
        .expect_err("conditional PUT");
    assert!(
        create.to_string().contains("invalid uploadType"),
        "{create}"
    );
    // Past one part's size the writer starts a multipart upload, at a write or at finish.
    let mut multipart = direct_store.writer("mp").await.expect("a writer");
    let finished = match multipart
        .write(Bytes::from(vec![0u8; 17 * 1024 * 1024]))
        .await
    {
        Ok(()) => multipart.finish().await,
        Err(e) => {
            multipart.abort().await;
            Err(e)
        }
    };
    assert!(
        finished
            .as_ref()
            .is_err_and(|e| e.to_string().contains("invalid uploadType")),
        "multipart initiation: {finished:?}"
    );

    // Reads, listing and deletes of what the proxy wrote work directly.
    via_proxy
        .overwrite("written", Bytes::from_static(b"hello"))
        .await
        .expect("write via proxy");
    assert_eq!(
        direct_store.read("written").await.expect("read").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(direct_store.list("").await.expect("list").len(), 1);
    direct_store.delete("written").await.expect("delete");
    assert!(via_proxy.read("written").await.expect("read").is_none());
}

/// A throttled request is retried after the wait `Retry-After` asks for, not sooner.
#[tokio::test]
async fn retry_after_is_honoured() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let mut times = Vec::new();
        for (i, conn) in listener.incoming().take(2).enumerate() {
            let mut conn = conn.expect("connection");
            read_request_head(&mut conn);
            times.push(std::time::Instant::now());
            let reply = if i == 0 {
                "HTTP/1.1 503 Slow Down\r\nRetry-After: 2\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"e\"\r\n\
                 Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n"
                    .to_string()
            };
            conn.write_all(reply.as_bytes()).expect("reply");
        }
        times
    });
    let env = Environment::from_pairs([
        ("AWS_ACCESS_KEY_ID", "k"),
        ("AWS_SECRET_ACCESS_KEY", "s"),
        ("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{port}")),
    ]);
    let store = Store::open("s3://bucket", &env).expect("open");
    let meta = store
        .head("x")
        .await
        .expect("head succeeds on the retry")
        .expect("exists");
    assert_eq!(meta.size, 3);
    let times = server.join().expect("server thread");
    let waited = times[1] - times[0];
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, before Retry-After's 2s"
    );
}

/// A store URL with a bad endpoint, or plain http to another machine, fails to open with
/// a message naming the variable.
#[test]
fn bad_endpoints_are_refused_on_open() {
    let env = Environment::from_pairs([("AWS_ENDPOINT_URL", "http://minio.internal:9000")]);
    let err = Store::open("s3://bucket", &env).expect_err("plain http off loopback");
    assert!(err.to_string().contains("AWS_ENDPOINT_URL"), "{err}");
    assert!(err.to_string().contains("s3://bucket"), "{err}");
    let err = Store::open("gs:///nobucket", &Environment::default()).expect_err("no bucket");
    assert!(err.to_string().contains("bucket name is missing"), "{err}");
    let err = Store::open("az://c", &Environment::default()).expect_err("no account");
    assert!(
        err.to_string().contains("AZURE_STORAGE_CONNECTION_STRING"),
        "{err}"
    );
}

// --- a minimal HTTP client for links (the servers are all plain http on loopback) -------

fn read_request_head(conn: &mut std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).expect("read request") == 0 {
            break;
        }
        buf.push(byte[0]);
    }
}

fn http_get(link: &str) -> (u16, Vec<u8>) {
    http_request("GET", link, "")
}

fn http_request(method: &str, link: &str, body: &str) -> (u16, Vec<u8>) {
    let url = url::Url::parse(link).expect("a URL");
    assert_eq!(url.scheme(), "http", "test servers are plain http: {link}");
    let host = url.host_str().expect("a host");
    let port = url.port_or_known_default().expect("a port");
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut conn = std::net::TcpStream::connect((host, port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        conn,
        "{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..eol]).to_string();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}
