//! Retention: what `ferry prune` removes, for every mode at once, without knowing any mode's
//! layout.
//!
//! Each mode surveys its own part of the store ([`Retained`]): its entries (what people call
//! each, when it expires and was last used, which objects hold its data and which go with
//! it) and the loose objects it owns (data objects, markers), which are garbage once nothing
//! references them. [`plan`] is a pure function of those surveys, a size limit, a grace
//! period and an explicit `now`: expired entries go (manifest, then data, then companions),
//! then with a size limit the least recently used evictable entries, then loose objects no
//! entry references that are older than the grace period, which is what keeps the data of a
//! save still running safe. [`prune`] surveys, plans and executes, re-reading each entry's
//! manifest before deleting it. `docs/FORMAT.md` ("Retention and pruning") states the rules
//! for people.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::manifest::{self, Envelope, Kind};
use crate::store::{ObjectInfo, Store, StoreError};
use serde::de::DeserializeOwned;

/// How old an unreferenced data object must be before prune deletes it: longer than a job
/// may run on GitHub-hosted runners (6 hours; CircleCI stops jobs sooner), so no save that is
/// still running can own it. Some stores date a multipart upload by its start, so this must
/// exceed the longest upload too.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(6 * 3600);

/// Manifests read and objects deleted at once.
pub const CONCURRENCY: usize = 32;

/// One entry as its mode describes it to retention.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// What people call it: a cache key, an artifact's path with its run and job, a layer's
    /// id with its workflow and job.
    pub name: String,
    /// Its manifest.
    pub manifest: String,
    pub created: DateTime<Utc>,
    /// When it expires (a cache's last hit included); `None` never.
    pub expires: Option<DateTime<Utc>>,
    /// Its last restore hit, where the mode records one.
    pub last_used: Option<DateTime<Utc>>,
    /// The objects its data lives in, with their sizes: kept while any entry names them.
    pub data: Vec<(String, u64)>,
    /// Objects that belong to it alone and go with it (a cache's used marker).
    pub companions: Vec<String>,
    /// Counts towards `--max-cache-size` and may be evicted to fit it.
    pub evictable: bool,
}

impl Entry {
    fn bytes(&self) -> u64 {
        self.data.iter().map(|(_, s)| s).sum()
    }

    /// When the entry was last used: its last restore hit, else its creation.
    fn used(&self) -> DateTime<Utc> {
        self.last_used.unwrap_or(self.created)
    }
}

/// What a mode found in its part of the store.
#[derive(Debug, Default)]
pub struct Survey {
    pub entries: Vec<Entry>,
    /// Objects the mode owns that are garbage once no entry references them.
    pub loose: Vec<ObjectInfo>,
    /// Objects named by manifests that could not be read as entries (another format
    /// version): never deleted.
    pub protected: HashSet<String>,
    pub warnings: Vec<String>,
}

/// A mode's part in pruning.
#[async_trait::async_trait]
pub trait Retained: Send + Sync {
    /// The mode's entries of `project` and the loose objects it owns.
    async fn survey(&self, store: &Store, project: &str) -> Result<Survey, StoreError>;
}

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    pub project: String,
    /// Decide and report, delete nothing.
    pub dry_run: bool,
    /// After expiry, evict least recently used caches until their data fits in this many bytes.
    pub max_cache_size: Option<u64>,
    /// Unreferenced data younger than this is left alone.
    pub grace: Duration,
}

/// Why something is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Its expiry has passed.
    Expired,
    /// A cache evicted to fit `--max-cache-size`.
    Evicted,
    /// Data no manifest references (an abandoned or replaced save), or a marker whose entry
    /// is gone, older than the grace period.
    Orphaned,
}

/// One entry or object removed (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    pub reason: Reason,
    /// The entry's kind; absent for an orphaned object.
    pub kind: Option<Kind>,
    /// What people call it, else its object path.
    pub name: String,
    /// Bytes of data removed.
    pub bytes: u64,
    pub created: Option<DateTime<Utc>>,
    /// When it expired (caches: the later of the manifest's expiry and the last hit's).
    pub expires: Option<DateTime<Utc>>,
    /// The last restore hit of a cache.
    pub last_used: Option<DateTime<Utc>>,
    /// The objects deleted, manifest first.
    pub objects: Vec<String>,
}

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneOutcome {
    pub project: String,
    pub dry_run: bool,
    pub removed: Vec<Removal>,
    /// Bytes of data removed.
    pub bytes: u64,
    /// Entries left.
    pub kept: u64,
    /// Bytes of data of the caches left.
    pub cache_bytes: u64,
    pub seconds: f64,
    /// Objects left alone and why (unreadable or newer-format manifests, entries that
    /// changed while prune ran).
    pub warnings: Vec<String>,
}

/// Why a prune failed.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("failed to prune project {project}: {source}")]
    Store {
        project: String,
        #[source]
        source: StoreError,
    },
}

/// An entry's manifest, read again before the entry is deleted: it must still name the same
/// data, or the entry changed meanwhile (a save with `--force`) and is left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recheck {
    pub manifest: String,
    pub data: Option<String>,
}

/// What [`plan`] decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// In order: expired entries, evicted ones, then orphans; each entry with its recheck.
    pub removals: Vec<(Removal, Option<Recheck>)>,
    pub kept: u64,
    pub cache_bytes: u64,
    pub warnings: Vec<String>,
}

/// Decides what goes, from the surveys alone: a pure function of them and `now`.
///
/// `within` is the project's folder: data a manifest names outside it is never deleted.
pub fn plan(
    surveys: Vec<Survey>,
    now: DateTime<Utc>,
    max_cache_size: Option<u64>,
    grace: Duration,
    within: &str,
) -> Plan {
    let mut entries = Vec::new();
    let mut loose = Vec::new();
    let mut protected = HashSet::new();
    let mut warnings = Vec::new();
    for s in surveys {
        entries.extend(s.entries);
        loose.extend(s.loose);
        protected.extend(s.protected);
        warnings.extend(s.warnings);
    }
    let (mut expired, kept): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|e| e.expires.is_some_and(|t| t <= now));
    expired.sort_by(|a, b| a.name.cmp(&b.name));
    let (kept, evicted, cache_bytes) = evict(kept, max_cache_size);

    // Data still needed after this prune: what kept entries and unreadable manifests name.
    let needed: HashSet<&str> = kept
        .iter()
        .flat_map(|e| e.data.iter().map(|(p, _)| p.as_str()))
        .chain(protected.iter().map(String::as_str))
        .collect();
    let referenced: HashSet<&str> = kept
        .iter()
        .chain(&expired)
        .chain(&evicted)
        .flat_map(|e| {
            e.data
                .iter()
                .map(|(p, _)| p.as_str())
                .chain(e.companions.iter().map(String::as_str))
        })
        .chain(protected.iter().map(String::as_str))
        .collect();
    let folder = format!("{}/", within.trim_end_matches('/'));
    let mut out = Plan {
        kept: kept.len() as u64,
        cache_bytes,
        ..Plan::default()
    };
    let mut deleted: HashSet<String> = HashSet::new();
    for (reason, list) in [(Reason::Expired, &expired), (Reason::Evicted, &evicted)] {
        for e in list {
            let mut r = Removal {
                reason,
                kind: Some(e.kind),
                name: e.name.clone(),
                bytes: 0,
                created: Some(e.created),
                expires: e.expires,
                last_used: e.last_used,
                objects: vec![e.manifest.clone()],
            };
            for (path, size) in &e.data {
                if needed.contains(path.as_str()) || deleted.contains(path) {
                    continue;
                }
                if !path.starts_with(&folder) {
                    warnings.push(format!(
                        "{} names data {path} outside {within}; that data was left alone",
                        e.manifest
                    ));
                    continue;
                }
                deleted.insert(path.clone());
                r.objects.push(path.clone());
                r.bytes += size;
            }
            r.objects.extend(e.companions.iter().cloned());
            let recheck = Recheck {
                manifest: e.manifest.clone(),
                data: e.data.first().map(|(p, _)| p.clone()),
            };
            out.removals.push((r, Some(recheck)));
        }
    }

    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut orphans: Vec<&ObjectInfo> = loose
        .iter()
        .filter(|o| {
            !referenced.contains(o.path.as_str())
                && o.path.starts_with(&folder)
                && now.signed_duration_since(o.modified) >= grace
        })
        .collect();
    orphans.sort_by(|a, b| a.path.cmp(&b.path));
    orphans.dedup_by(|a, b| a.path == b.path);
    for o in orphans {
        out.removals.push((
            Removal {
                reason: Reason::Orphaned,
                kind: None,
                name: o.path.strip_prefix(&folder).unwrap_or(&o.path).to_string(),
                bytes: o.size,
                created: Some(o.modified),
                expires: None,
                last_used: None,
                objects: vec![o.path.clone()],
            },
            None,
        ));
    }
    out.warnings = warnings;
    out
}

/// Splits `entries` into those kept and those evicted so that the data of the evictable ones
/// kept fits in `max` bytes, and returns the bytes of the evictable ones kept.
///
/// The least recently used goes first: the oldest last restore hit, else the oldest creation
/// (ties: older creation, then name). Entries that are not evictable are always kept.
fn evict(entries: Vec<Entry>, max: Option<u64>) -> (Vec<Entry>, Vec<Entry>, u64) {
    let mut cache_bytes: u64 = entries
        .iter()
        .filter(|e| e.evictable)
        .map(Entry::bytes)
        .sum();
    let Some(max) = max.filter(|&m| cache_bytes > m) else {
        return (entries, Vec::new(), cache_bytes);
    };
    let (mut caches, mut kept): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.evictable);
    caches.sort_by(|a, b| (a.used(), a.created, &a.name).cmp(&(b.used(), b.created, &b.name)));
    let mut caches = caches.into_iter();
    let mut evicted = Vec::new();
    while cache_bytes > max {
        let Some(e) = caches.next() else { break };
        cache_bytes -= e.bytes();
        evicted.push(e);
    }
    kept.extend(caches);
    (kept, evicted, cache_bytes)
}

/// Surveys every mode, plans, and unless a dry run deletes what the plan says.
///
/// Before an entry is deleted its manifest is read again; one that changed meanwhile (a save
/// with `--force`) is left alone. Nothing outside the project's folder is touched.
pub async fn prune(
    store: &Store,
    modes: &[&dyn Retained],
    req: &PruneRequest,
) -> Result<PruneOutcome, RetentionError> {
    let started = Instant::now();
    let now = Utc::now();
    let err = |source| RetentionError::Store {
        project: req.project.clone(),
        source,
    };
    let mut surveys = Vec::with_capacity(modes.len());
    for m in modes {
        surveys.push(m.survey(store, &req.project).await.map_err(err)?);
    }
    let within = crate::manifest::project_dir(&req.project);
    let plan = plan(surveys, now, req.max_cache_size, req.grace, &within);
    let mut warnings = plan.warnings;
    let mut removed = Vec::with_capacity(plan.removals.len());
    if req.dry_run {
        removed = plan.removals.into_iter().map(|(r, _)| r).collect();
    } else {
        let done: Vec<Result<Removal, String>> = futures::stream::iter(plan.removals)
            .map(|(r, check)| execute(store, r, check))
            .buffered(CONCURRENCY)
            .try_collect()
            .await
            .map_err(err)?;
        for d in done {
            match d {
                Ok(r) => removed.push(r),
                Err(warning) => warnings.push(warning),
            }
        }
    }
    Ok(PruneOutcome {
        project: req.project.clone(),
        dry_run: req.dry_run,
        bytes: removed.iter().map(|r| r.bytes).sum(),
        removed,
        kept: plan.kept,
        cache_bytes: plan.cache_bytes,
        seconds: started.elapsed().as_secs_f64(),
        warnings,
    })
}

/// What any manifest says about its data, whatever its kind.
#[derive(Debug, Deserialize)]
struct Reference {
    data: ReferencedData,
}

#[derive(Debug, Deserialize)]
struct ReferencedData {
    path: String,
}

/// Deletes what one removal names; an entry whose manifest changed since it was read is left
/// alone (the `Err` is the warning saying so).
async fn execute(
    store: &Store,
    removal: Removal,
    check: Option<Recheck>,
) -> Result<Result<Removal, String>, StoreError> {
    if let Some(check) = &check {
        let now_there = store
            .read(&check.manifest)
            .await?
            .and_then(|b| serde_json::from_slice::<Reference>(&b).ok());
        match now_there {
            Some(r) if Some(&r.data.path) == check.data.as_ref() => {}
            Some(_) => {
                return Ok(Err(format!(
                    "{} was replaced while prune ran; left alone",
                    removal.name
                )));
            }
            None => return Ok(Err(format!("{} was removed while prune ran", removal.name))),
        }
    }
    // The manifest goes first, so the entry disappears at once and its data is never
    // referenced by a manifest that is still there.
    for rel in &removal.objects {
        store.delete(rel).await?;
    }
    Ok(Ok(removal))
}

/// Reads small objects whole, for surveys; those gone meanwhile are left out.
pub async fn read_all(
    store: &Store,
    paths: Vec<ObjectInfo>,
) -> Result<Vec<(ObjectInfo, bytes::Bytes)>, StoreError> {
    futures::stream::iter(paths)
        .map(|info| async move {
            let bytes = store.read(&info.path).await?;
            Ok::<_, StoreError>(bytes.map(|b| (info, b)))
        })
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect()
        .await
}

/// Reads `manifests` and adds each readable one to `survey` as the entry `describe` makes of
/// it. One of another format version or shape protects the data it names (it is never taken
/// for an orphan) and becomes a warning.
pub async fn read_entries<T: DeserializeOwned>(
    store: &Store,
    survey: &mut Survey,
    manifests: Vec<ObjectInfo>,
    mut describe: impl FnMut(ObjectInfo, Envelope<T>) -> Entry,
) -> Result<(), StoreError> {
    for (info, bytes) in read_all(store, manifests).await? {
        match manifest::decode::<T>(&bytes, &info.path) {
            Ok(m) => survey.entries.push(describe(info, m)),
            Err(e) => {
                if let Ok(r) = serde_json::from_slice::<Reference>(&bytes) {
                    survey.protected.insert(r.data.path);
                }
                survey.warnings.push(format!(
                    "{} is not a manifest this ferry prunes ({e}); left alone",
                    info.path
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).expect("a valid time")
    }

    fn entry(
        name: &str,
        evictable: bool,
        size: u64,
        created: i64,
        last_used: Option<i64>,
    ) -> Entry {
        Entry {
            kind: if evictable {
                Kind::Cache
            } else {
                Kind::Artifact
            },
            name: name.to_string(),
            manifest: format!("p/m/{name}.json"),
            created: at(created),
            expires: None,
            last_used: last_used.map(at),
            data: vec![(format!("p/data/{name}"), size)],
            companions: Vec::new(),
            evictable,
        }
    }

    fn object(path: &str, size: u64, modified: i64) -> ObjectInfo {
        ObjectInfo {
            path: path.to_string(),
            size,
            modified: at(modified),
        }
    }

    fn names(plan: &Plan, reason: Reason) -> Vec<String> {
        plan.removals
            .iter()
            .filter(|(r, _)| r.reason == reason)
            .map(|(r, _)| r.name.clone())
            .collect()
    }

    #[test]
    fn eviction_takes_the_least_recently_used_caches_until_the_rest_fits() {
        let entries = vec![
            entry("old-but-restored", true, 10, 1, Some(50)),
            entry("never-restored", true, 10, 20, None),
            entry("restored-early", true, 10, 2, Some(30)),
            entry("big-artifact", false, 1000, 0, None),
        ];
        let (kept, evicted, bytes) = evict(entries, Some(15));
        let names = |v: &[Entry]| v.iter().map(|e| e.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&evicted), ["never-restored", "restored-early"]);
        assert_eq!(bytes, 10);
        assert_eq!(kept.len(), 2, "the artifact never counts nor goes");
        let (_, evicted, _) = evict(kept, Some(10));
        assert!(evicted.is_empty(), "already fits");
    }

    #[test]
    fn entries_expire_at_their_time_and_not_a_second_before() {
        let mut soon = entry("soon", true, 5, 0, None);
        soon.expires = Some(at(100));
        soon.companions = vec!["p/used/soon.json".into()];
        let mut never = entry("never", false, 5, 0, None);
        never.expires = None;
        let survey = || Survey {
            entries: vec![soon.clone(), never.clone()],
            ..Survey::default()
        };
        let before = plan(vec![survey()], at(99), None, DEFAULT_GRACE, "p");
        assert!(before.removals.is_empty());
        let after = plan(vec![survey()], at(100), None, DEFAULT_GRACE, "p");
        assert_eq!(names(&after, Reason::Expired), ["soon"]);
        let (r, check) = &after.removals[0];
        assert_eq!(
            r.objects,
            ["p/m/soon.json", "p/data/soon", "p/used/soon.json"],
            "manifest first, then data, then what goes with it"
        );
        assert_eq!(
            check.as_ref().map(|c| c.manifest.as_str()),
            Some("p/m/soon.json")
        );
        assert_eq!(after.kept, 1);
    }

    #[test]
    fn loose_objects_go_only_when_unreferenced_and_older_than_the_grace_period() {
        let live = entry("live", true, 5, 0, None);
        let survey = Survey {
            entries: vec![live],
            loose: vec![
                object("p/data/live", 5, 0),
                object("p/data/abandoned", 7, 1000),
                object("p/data/in-flight", 7, 1000 + 3600 * 6 - 1),
                object("elsewhere/data/x", 1, 0),
            ],
            protected: ["p/data/newer-format".to_string()].into(),
            ..Survey::default()
        };
        let mut with_newer = survey;
        with_newer.loose.push(object("p/data/newer-format", 1, 0));
        let now = at(1000 + 3600 * 6);
        let p = plan(vec![with_newer], now, None, DEFAULT_GRACE, "p");
        assert_eq!(names(&p, Reason::Orphaned), ["data/abandoned"]);
    }

    #[test]
    fn data_shared_by_a_kept_entry_or_named_outside_the_project_is_never_deleted() {
        let mut old = entry("old", true, 5, 0, None);
        old.expires = Some(at(10));
        old.data.push(("p/data/shared".into(), 3));
        old.data.push(("other-project/data/x".into(), 1));
        let mut live = entry("live", true, 5, 0, None);
        live.data.push(("p/data/shared".into(), 3));
        let p = plan(
            vec![Survey {
                entries: vec![old, live],
                ..Survey::default()
            }],
            at(20),
            None,
            DEFAULT_GRACE,
            "p",
        );
        let (r, _) = &p.removals[0];
        assert_eq!(r.objects, ["p/m/old.json", "p/data/old"]);
        assert_eq!(r.bytes, 5);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    }
}
