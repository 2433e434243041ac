//! A page of a project's caches for people browsing a store (`ferry ui`): the names are
//! listed, and only the manifests of the page are read.
//!
//! Object names encode keys (`docs/FORMAT.md`, "Names"), and a listing dates each manifest and
//! each used marker, so a page sorted by key, creation or last use is chosen from the listing
//! alone. Sorting by size needs every candidate's manifest, and says so.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use ferry_core::manifest;
use ferry_core::store::Store;
use ferry_core::trust::sign::Trust;
use futures::StreamExt;

use crate::manage::{Read, read_entry};
use crate::{CacheEntry, CacheError};

/// What a page is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// When the manifest was published (by the store's clock): `ls`'s order.
    #[default]
    Created,
    Key,
    /// The last restore hit, else the creation: the stalest first when ascending.
    LastUsed,
    /// Bytes stored: reads every candidate's manifest.
    Stored,
    /// Bytes unpacked: reads every candidate's manifest.
    Unpacked,
    /// Expiry (a last hit's included; never expiring last): reads every candidate's manifest
    /// and used marker.
    Expires,
}

impl SortBy {
    /// True when this order is known from the listing alone.
    pub fn from_listing(self) -> bool {
        matches!(self, SortBy::Created | SortBy::Key | SortBy::LastUsed)
    }
}

/// Which page.
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    /// Only keys starting with this.
    pub prefix: String,
    pub sort: SortBy,
    pub descending: bool,
    /// Candidates skipped before the page starts.
    pub offset: usize,
    pub limit: usize,
}

/// A page of caches.
#[derive(Debug, Clone)]
pub struct Page {
    pub caches: Vec<CacheEntry>,
    /// Caches whose object names allow the prefix: the count the pages divide. A cut name
    /// (a key over 160 characters) is counted until its manifest says otherwise.
    pub total: usize,
    /// Manifests read to draw the page.
    pub manifests_read: usize,
    pub warnings: Vec<String>,
}

/// One manifest as listed.
struct Candidate {
    scope: Option<String>,
    path: String,
    /// The key as far as the name tells it (the whole key unless the name was cut).
    readable: String,
    created: DateTime<Utc>,
    last_used: Option<DateTime<Utc>>,
}

/// The page of the project's caches (every scope) that `query` asks for.
///
/// Lists the project's manifests (and, to sort by last use, its used markers) and reads the
/// manifests and used markers of the page only, unless the order is by size, which reads
/// every candidate's. Pages are slices of the listed candidates: one whose manifest turns out
/// not to match the prefix (a cut name), or is gone or unreadable, is left out, so a page may
/// hold fewer than `limit`.
pub async fn page(
    store: &Store,
    project: &str,
    query: &PageQuery,
    trust: &Trust,
) -> Result<Page, CacheError> {
    let objects = crate::listed(store, project, query.sort == SortBy::LastUsed).await?;
    // Used markers sit beside their manifests under the same name.
    let used: HashMap<String, DateTime<Utc>> = objects
        .used
        .iter()
        .map(|u| (u.path.replacen("/used/", "/keys/", 1), u.modified))
        .collect();
    let mut candidates: Vec<Candidate> = objects
        .manifests
        .into_iter()
        .filter(|(_, info)| manifest::name_may_start_with(info.name(), &query.prefix))
        .map(|(scope, info)| {
            let name = info.name().trim_end_matches(".json");
            let readable_enc = name.rsplit_once('.').map_or(name, |(r, _)| r);
            Candidate {
                readable: ferry_core::paths::decode_part(readable_enc)
                    .unwrap_or_else(|| readable_enc.to_string()),
                last_used: used.get(&info.path).copied(),
                scope,
                created: info.modified,
                path: info.path,
            }
        })
        .collect();
    let total = candidates.len();
    let mut warnings = Vec::new();
    let manifests_read;
    let limit = query.limit.max(1);

    let entries = if query.sort.from_listing() {
        candidates.sort_by(|a, b| {
            let order = match query.sort {
                SortBy::Key => a.readable.cmp(&b.readable),
                SortBy::LastUsed => a
                    .last_used
                    .unwrap_or(a.created)
                    .cmp(&b.last_used.unwrap_or(b.created)),
                _ => a.created.cmp(&b.created),
            };
            order.then_with(|| a.path.cmp(&b.path))
        });
        if query.descending {
            candidates.reverse();
        }
        let batch: Vec<Candidate> = candidates
            .into_iter()
            .skip(query.offset)
            .take(limit)
            .collect();
        manifests_read = batch.len();
        let mut out = Vec::new();
        for r in read_many(store, project, trust, batch).await? {
            match r {
                Read::Entry(e) if e.key.starts_with(&query.prefix) => out.push(e),
                Read::Entry(_) | Read::Gone => {}
                Read::Unusable(w) => warnings.push(w),
            }
        }
        if query.sort == SortBy::Created {
            // Some stores date objects to the whole second; within the page, the manifests'
            // own times (taken just before publishing) order saves of the same second.
            out.sort_by(|a, b| {
                let order = a.created.cmp(&b.created);
                if query.descending {
                    order.reverse()
                } else {
                    order
                }
            });
        }
        out
    } else {
        manifests_read = candidates.len();
        let mut all: Vec<CacheEntry> = Vec::new();
        for r in read_many(store, project, trust, candidates).await? {
            match r {
                Read::Entry(e) if e.key.starts_with(&query.prefix) => all.push(e),
                Read::Entry(_) | Read::Gone => {}
                Read::Unusable(w) => warnings.push(w),
            }
        }
        all.sort_by(|a, b| {
            let order = match query.sort {
                SortBy::Unpacked => a.unpacked_bytes.cmp(&b.unpacked_bytes),
                SortBy::Expires => match (a.expires, b.expires) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (x, y) => x.is_none().cmp(&y.is_none()),
                },
                _ => a.bytes.cmp(&b.bytes),
            };
            order.then_with(|| a.key.cmp(&b.key))
        });
        if query.descending {
            all.reverse();
        }
        all.into_iter().skip(query.offset).take(limit).collect()
    };
    warnings.sort();
    Ok(Page {
        caches: entries,
        total,
        manifests_read,
        warnings,
    })
}

/// Bytes of cache data written per day (UTC) by the store's dates of the data objects, in
/// every scope: what saves stored, from a listing of the data folders alone.
pub async fn stored_per_day(
    store: &Store,
    project: &str,
) -> Result<BTreeMap<NaiveDate, u64>, CacheError> {
    let mut out = BTreeMap::new();
    let mut data = store
        .list(&crate::Layout::new(project, None).data_dir())
        .await?;
    data.extend(crate::objects_in_scopes(store, project).await?.data);
    for d in data {
        *out.entry(d.modified.date_naive()).or_insert(0) += d.size;
    }
    Ok(out)
}

/// Reads the manifests of `batch`, keeping its order.
async fn read_many(
    store: &Store,
    project: &str,
    trust: &Trust,
    batch: Vec<Candidate>,
) -> Result<Vec<Read>, CacheError> {
    futures::stream::iter(batch)
        .map(|c| async move { read_entry(store, project, c.scope, &c.path, trust, None).await })
        .buffered(if store.is_remote() { 64 } else { 16 })
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Every cache of the project (every scope) whose key starts with `prefix`, as its key and
/// bytes stored: what a chart of the store needs, reading each manifest and nothing else.
pub async fn stored_by_key(
    store: &Store,
    project: &str,
    prefix: &str,
) -> Result<Vec<(String, u64)>, CacheError> {
    let rels: Vec<String> = crate::listed(store, project, false)
        .await?
        .manifests
        .into_iter()
        .filter(|(_, info)| manifest::name_may_start_with(info.name(), prefix))
        .map(|(_, info)| info.path)
        .collect();
    let read: Vec<Result<Option<(String, u64)>, CacheError>> = futures::stream::iter(rels)
        .map(|rel| async move {
            Ok(match crate::read_for_lookup(store, &rel).await? {
                crate::Lookup::Found(r) => Some((r.manifest.body.key, r.manifest.data.size)),
                _ => None,
            })
        })
        .buffer_unordered(if store.is_remote() { 64 } else { 16 })
        .collect()
        .await;
    let mut out = Vec::new();
    for r in read {
        if let Some((key, bytes)) = r? {
            if key.starts_with(prefix) {
                out.push((key, bytes));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferry_core::env_vars::Environment;

    async fn publish(store: &Store, key: &str, size: u64, created: &str) {
        let layout = crate::Layout::new("acme/app", None);
        let manifest = serde_json::json!({
            "format": 1, "kind": "cache", "created": created, "expires": null,
            "data": { "path": layout.data("tar.zst"), "size": size, "sha256": "00" },
            "key": key, "compression": "zstd", "paths": ["x"], "links_out": [],
            "files": 1, "unpacked_bytes": size * 2, "ttl_seconds": 60
        });
        store
            .create(&layout.manifest(key), Bytes::from(manifest.to_string()))
            .await
            .expect("published");
    }

    #[tokio::test]
    async fn a_page_reads_only_its_own_manifests_unless_sorted_by_size() -> Result<(), CacheError> {
        let store = Store::open("memory://", &Environment::from_pairs([("HOME", "/x")]))?;
        for (i, key) in ["d-4", "b-2", "a-1", "e-5", "c-3"].iter().enumerate() {
            let size = key[2..].parse::<u64>().unwrap_or(0) * 100;
            publish(&store, key, size, &format!("2026-01-0{}T00:00:00Z", i + 1)).await;
        }
        let trust = Trust::default();
        let q = |sort, descending, offset| PageQuery {
            prefix: String::new(),
            sort,
            descending,
            offset,
            limit: 2,
        };
        let keys = |p: &Page| p.caches.iter().map(|c| c.key.clone()).collect::<Vec<_>>();

        let first = page(&store, "acme/app", &q(SortBy::Key, false, 0), &trust).await?;
        assert_eq!(
            (keys(&first), first.total, first.manifests_read),
            (vec!["a-1".into(), "b-2".into()], 5, 2)
        );
        let last = page(&store, "acme/app", &q(SortBy::Key, false, 4), &trust).await?;
        assert_eq!(keys(&last), ["e-5"]);

        let biggest = page(&store, "acme/app", &q(SortBy::Stored, true, 0), &trust).await?;
        assert_eq!(keys(&biggest), ["e-5", "d-4"]);
        assert_eq!(
            biggest.manifests_read, 5,
            "a size order reads every manifest"
        );

        let filtered = PageQuery {
            prefix: "c-".into(),
            ..q(SortBy::Created, true, 0)
        };
        let only = page(&store, "acme/app", &filtered, &trust).await?;
        assert_eq!((keys(&only), only.total), (vec!["c-3".into()], 1));
        Ok(())
    }
}
