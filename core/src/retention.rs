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
//!
//! Shared objects (format 2's packs, artifact content stored once by its digest) are
//! different: a save may come to reference one it found in the store, long after the object
//! was written, so their age says nothing. One goes in two steps: a prune that finds it
//! unreferenced marks it (an object in `<project>/unused/`), and only a prune at least the
//! grace period later that finds it still unreferenced and marked deletes it; a reference
//! that appeared meanwhile removes the mark. A save references only objects it saw named by
//! a manifest during the job, and a job runs less than the grace period, so every such save
//! has published before the second prune looks. The plan also reports packs whose bytes
//! are mostly no longer used by any entry, which `--repack` rewrites.

use std::collections::{HashMap, HashSet};
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
    /// Shared objects it uses (packs, content stored once): kept while any entry uses them,
    /// deleted in two steps once none does (see the module documentation).
    pub shared: Vec<SharedUse>,
    /// Objects that belong to it alone and go with it (a cache's used marker).
    pub companions: Vec<String>,
    /// Counts towards `--max-cache-size` and may be evicted to fit it.
    pub evictable: bool,
}

/// An entry's use of a shared object: its path and size, and the byte ranges it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedUse {
    pub path: String,
    pub size: u64,
    pub used: Vec<(u64, u64)>,
}

impl SharedUse {
    /// The whole object.
    pub fn whole(path: String, size: u64) -> Self {
        Self {
            path,
            size,
            used: vec![(0, size)],
        }
    }
}

/// A format-2 entry uses the byte ranges of each pack its manifest lists.
impl From<crate::chunks::PackRef> for SharedUse {
    fn from(p: crate::chunks::PackRef) -> Self {
        Self {
            path: p.path,
            size: p.size,
            used: p.used,
        }
    }
}

impl Entry {
    /// The object a manifest names as its data, which must be unchanged when prune deletes
    /// the entry.
    fn data_path(&self) -> Option<String> {
        self.data
            .first()
            .map(|(p, _)| p.clone())
            .or_else(|| self.shared.first().map(|s| s.path.clone()))
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
    /// Shared objects the mode owns, deleted in two steps once no entry uses them.
    pub shared: Vec<ObjectInfo>,
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
    /// Judge expiry as of this time instead of the clock's (`--as-of`). Grace periods are
    /// still measured against the clock, so a save running now is never touched.
    pub as_of: Option<DateTime<Utc>>,
    /// Rewrite packs whose bytes are mostly unused (format 2).
    pub repack: bool,
    /// Signs the manifests a repack rewrites; a signed entry is left alone without a key.
    pub trust: crate::trust::sign::Trust,
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
    /// Shared objects found unused and marked: a prune at least the grace period later
    /// deletes them if they are still unused.
    pub marked: Vec<String>,
    /// Packs whose bytes are mostly unused by any entry (what `--repack` rewrites).
    pub dead: DeadReport,
    /// What `--repack` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repacked: Option<crate::chunks::RepackOutcome>,
}

/// Packs whose bytes are mostly no longer used by any entry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadReport {
    /// How many such packs.
    pub packs: u64,
    /// Their size.
    pub bytes: u64,
    /// Their bytes no entry uses.
    pub dead_bytes: u64,
    /// Each of them.
    pub candidates: Vec<RepackCandidate>,
}

/// A pack `--repack` would rewrite, and the entries (manifests) whose data lies in it.
#[derive(Debug, Clone, Serialize)]
pub struct RepackCandidate {
    pub pack: String,
    pub size: u64,
    pub live_bytes: u64,
    #[serde(skip)]
    pub manifests: Vec<String>,
}

/// A pack counts as mostly dead when less than this share of it is used...
const LIVE_SHARE_MAX: f64 = 0.5;
/// ...and at least this much of it is not.
const DEAD_BYTES_MIN: u64 = 1024 * 1024;

/// The folder below a project that marks unused shared objects.
pub const UNUSED_DIR: &str = "unused";

/// The marker of shared object `object` in the project folder `within`.
pub fn marker_path(within: &str, object: &str) -> String {
    let folder = within.trim_end_matches('/');
    let rel = object.strip_prefix(&format!("{folder}/")).unwrap_or(object);
    format!("{folder}/{UNUSED_DIR}/{}", crate::paths::encode_part(rel))
}

/// The shared object a marker marks.
fn marked_object(within: &str, marker: &str) -> Option<String> {
    let folder = within.trim_end_matches('/');
    let name = marker.strip_prefix(&format!("{folder}/{UNUSED_DIR}/"))?;
    Some(format!("{folder}/{}", crate::paths::decode_part(name)?))
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
    /// Shared objects to mark unused (after the removals).
    pub marks: Vec<String>,
    /// Markers to remove: their objects are used again, or gone.
    pub unmarks: Vec<String>,
    pub dead: DeadReport,
    pub kept: u64,
    pub cache_bytes: u64,
    pub warnings: Vec<String>,
}

/// Decides what goes, from the surveys alone: a pure function of them, the markers of
/// unused shared objects found in the store, and `now`.
///
/// Entries expire as of `as_of` (`now` without it); unreferenced data and markers age by
/// `now` alone. `within` is the project's folder: data a manifest names outside it is never
/// deleted.
pub fn plan(
    surveys: Vec<Survey>,
    markers: &[ObjectInfo],
    now: DateTime<Utc>,
    as_of: Option<DateTime<Utc>>,
    max_cache_size: Option<u64>,
    grace: Duration,
    within: &str,
) -> Plan {
    let mut entries = Vec::new();
    let mut loose = Vec::new();
    let mut shared = Vec::new();
    let mut protected = HashSet::new();
    let mut warnings = Vec::new();
    for s in surveys {
        entries.extend(s.entries);
        loose.extend(s.loose);
        shared.extend(s.shared);
        protected.extend(s.protected);
        warnings.extend(s.warnings);
    }
    let expire_at = as_of.unwrap_or(now);
    let (mut expired, kept): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|e| e.expires.is_some_and(|t| t <= expire_at));
    expired.sort_by(|a, b| a.name.cmp(&b.name));
    let (kept, evicted, cache_bytes) = evict(kept, max_cache_size);

    // Data still needed after this prune: what kept entries and unreadable manifests name.
    let needed: HashSet<&str> = kept
        .iter()
        .flat_map(|e| {
            e.data
                .iter()
                .map(|(p, _)| p.as_str())
                .chain(e.shared.iter().map(|s| s.path.as_str()))
        })
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
                .chain(e.shared.iter().map(|s| s.path.as_str()))
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
                data: e.data_path(),
            };
            out.removals.push((r, Some(recheck)));
        }
    }

    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let old = |t: DateTime<Utc>| now.signed_duration_since(t) >= grace;
    let mut orphans: Vec<&ObjectInfo> = loose
        .iter()
        .filter(|o| {
            !referenced.contains(o.path.as_str()) && o.path.starts_with(&folder) && old(o.modified)
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

    // Shared objects: unmark the used, mark the unused, delete the unused marked long ago.
    let marks: HashMap<String, &ObjectInfo> = markers
        .iter()
        .filter_map(|m| marked_object(within, &m.path).map(|o| (o, m)))
        .collect();
    shared.sort_by(|a, b| a.path.cmp(&b.path));
    shared.dedup_by(|a, b| a.path == b.path);
    let existing: HashSet<&str> = shared.iter().map(|o| o.path.as_str()).collect();
    for o in &shared {
        let marker = marks.get(&o.path);
        if needed.contains(o.path.as_str()) {
            if let Some(m) = marker {
                out.unmarks.push(m.path.clone());
            }
            continue;
        }
        if !o.path.starts_with(&folder) || !old(o.modified) {
            continue;
        }
        match marker {
            None => out.marks.push(o.path.clone()),
            Some(m) if old(m.modified) => out.removals.push((
                Removal {
                    reason: Reason::Orphaned,
                    kind: None,
                    name: o.path.strip_prefix(&folder).unwrap_or(&o.path).to_string(),
                    bytes: o.size,
                    created: Some(o.modified),
                    expires: None,
                    last_used: None,
                    objects: vec![o.path.clone(), m.path.clone()],
                },
                None,
            )),
            Some(_) => {}
        }
    }
    for (object, m) in &marks {
        if !existing.contains(object.as_str()) {
            out.unmarks.push(m.path.clone());
        }
    }
    out.unmarks.sort();
    out.dead = dead_packs(&kept, &shared);
    out.warnings = warnings;
    out
}

/// Packs (shared objects named `*.pack`) that kept entries use less than
/// [`LIVE_SHARE_MAX`] of, with at least [`DEAD_BYTES_MIN`] unused.
fn dead_packs(kept: &[Entry], shared: &[ObjectInfo]) -> DeadReport {
    // Per pack: its size, the ranges kept entries use, and their manifests.
    type Uses = (u64, Vec<(u64, u64)>, Vec<String>);
    let mut uses: HashMap<&str, Uses> = HashMap::new();
    for e in kept {
        for s in &e.shared {
            let u = uses
                .entry(s.path.as_str())
                .or_insert_with(|| (s.size, Vec::new(), Vec::new()));
            u.1.extend(s.used.iter().copied());
            u.2.push(e.manifest.clone());
        }
    }
    let mut report = DeadReport::default();
    for o in shared.iter().filter(|o| o.path.ends_with(".pack")) {
        let Some((_, used, manifests)) = uses.get(o.path.as_str()) else {
            continue;
        };
        let live: u64 = crate::chunks::merge_ranges(used.clone())
            .iter()
            .map(|(a, b)| b.min(&o.size).saturating_sub(*a))
            .sum();
        let dead = o.size.saturating_sub(live);
        if (live as f64) < LIVE_SHARE_MAX * o.size as f64 && dead >= DEAD_BYTES_MIN {
            report.packs += 1;
            report.bytes += o.size;
            report.dead_bytes += dead;
            let mut manifests = manifests.clone();
            manifests.sort();
            manifests.dedup();
            report.candidates.push(RepackCandidate {
                pack: o.path.clone(),
                size: o.size,
                live_bytes: live,
                manifests,
            });
        }
    }
    report
}

/// The bytes of the store `entries` take: each data object once, and of each shared object
/// the union of the ranges they use.
fn footprint<'a>(entries: impl Iterator<Item = &'a Entry>) -> u64 {
    let mut data: HashMap<&str, u64> = HashMap::new();
    let mut shared: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
    for e in entries {
        for (p, s) in &e.data {
            data.insert(p, *s);
        }
        for s in &e.shared {
            shared
                .entry(&s.path)
                .or_default()
                .extend(s.used.iter().copied());
        }
    }
    data.values().sum::<u64>()
        + shared
            .into_values()
            .map(|r| {
                crate::chunks::merge_ranges(r)
                    .iter()
                    .map(|(a, b)| b - a)
                    .sum::<u64>()
            })
            .sum::<u64>()
}

/// Splits `entries` into those kept and those evicted so that the data of the evictable ones
/// kept fits in `max` bytes, and returns the bytes of the evictable ones kept (shared
/// objects counted once, by the parts of them in use).
///
/// The least recently used goes first: the oldest last restore hit, else the oldest creation
/// (ties: older creation, then name). Entries that are not evictable are always kept.
fn evict(entries: Vec<Entry>, max: Option<u64>) -> (Vec<Entry>, Vec<Entry>, u64) {
    let mut cache_bytes = footprint(entries.iter().filter(|e| e.evictable));
    let Some(max) = max.filter(|&m| cache_bytes > m) else {
        return (entries, Vec::new(), cache_bytes);
    };
    let (mut caches, kept): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.evictable);
    caches.sort_by(|a, b| (a.used(), a.created, &a.name).cmp(&(b.used(), b.created, &b.name)));
    let mut evicted = Vec::new();
    let mut caches: std::collections::VecDeque<Entry> = caches.into();
    while cache_bytes > max {
        let Some(e) = caches.pop_front() else { break };
        evicted.push(e);
        cache_bytes = footprint(caches.iter());
    }
    let mut kept = kept;
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
    let markers = store
        .list(&format!("{within}/{UNUSED_DIR}"))
        .await
        .map_err(err)?;
    let plan = plan(
        surveys,
        &markers,
        now,
        req.as_of,
        req.max_cache_size,
        req.grace,
        &within,
    );
    let mut warnings = plan.warnings;
    let mut removed = Vec::with_capacity(plan.removals.len());
    let mut repacked = None;
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
        // Marks go after the manifests they outlived are gone (see the module docs).
        let within = &within;
        futures::stream::iter(plan.marks.iter())
            .map(|object| async move {
                store
                    .create(&marker_path(within, object), bytes::Bytes::new())
                    .await
                    .map(|_| ())
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map_err(err)?;
        futures::stream::iter(plan.unmarks.iter())
            .map(|m| store.delete(m))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map_err(err)?;
        if req.repack && !plan.dead.candidates.is_empty() {
            let outcome = crate::chunks::repack(store, &plan.dead.candidates, &req.trust).await;
            warnings.extend(outcome.warnings.iter().cloned());
            repacked = Some(outcome);
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
        marked: plan.marks,
        dead: plan.dead,
        repacked,
    })
}

/// What any manifest says about its data, whatever its kind.
#[derive(Debug, Deserialize)]
struct Reference {
    data: ReferencedData,
    #[serde(default)]
    packs: Vec<ReferencedData>,
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
                    survey.protected.extend(r.packs.into_iter().map(|p| p.path));
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
            shared: Vec::new(),
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
    fn as_of_moves_expiry_but_unreferenced_data_still_ages_by_the_clock() {
        let grace = DEFAULT_GRACE.as_secs() as i64;
        let mut soon = entry("soon", true, 5, 0, None);
        soon.expires = Some(at(100));
        let survey = || Survey {
            entries: vec![soon.clone()],
            // Written a moment ago by a save still running: no manifest names it yet.
            loose: vec![object("p/data/being-written", 7, 50)],
            ..Survey::default()
        };
        let now = plan(vec![survey()], &[], at(60), None, None, DEFAULT_GRACE, "p");
        assert!(now.removals.is_empty());
        let ahead = at(100 + 10 * grace);
        let later = plan(
            vec![survey()],
            &[],
            at(60),
            Some(ahead),
            None,
            DEFAULT_GRACE,
            "p",
        );
        assert_eq!(names(&later, Reason::Expired), ["soon"]);
        assert!(
            names(&later, Reason::Orphaned).is_empty(),
            "data young by the clock stays, whatever the as-of: {:?}",
            later.removals
        );
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
        let before = plan(vec![survey()], &[], at(99), None, None, DEFAULT_GRACE, "p");
        assert!(before.removals.is_empty());
        let after = plan(vec![survey()], &[], at(100), None, None, DEFAULT_GRACE, "p");
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
        let p = plan(vec![with_newer], &[], now, None, None, DEFAULT_GRACE, "p");
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
            &[],
            at(20),
            None,
            None,
            DEFAULT_GRACE,
            "p",
        );
        let (r, _) = &p.removals[0];
        assert_eq!(r.objects, ["p/m/old.json", "p/data/old"]);
        assert_eq!(r.bytes, 5);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    }

    fn sharing(name: &str, pack: &str, size: u64, used: Vec<(u64, u64)>) -> Entry {
        let mut e = entry(name, true, 10, 0, None);
        e.shared = vec![SharedUse {
            path: pack.into(),
            size,
            used,
        }];
        e
    }

    #[test]
    fn an_unused_pack_is_marked_first_and_deleted_only_by_a_prune_a_grace_period_later() {
        let pack = object("p/caches/packs/a.pack", 100, 0);
        let survey = |markers_younger: bool| {
            let _ = markers_younger;
            Survey {
                shared: vec![pack.clone()],
                ..Survey::default()
            }
        };
        let grace = DEFAULT_GRACE.as_secs() as i64;
        let now = grace + 10;
        let first = plan(
            vec![survey(false)],
            &[],
            at(now),
            None,
            None,
            DEFAULT_GRACE,
            "p",
        );
        assert_eq!(first.marks, ["p/caches/packs/a.pack"]);
        assert!(first.removals.is_empty(), "never deleted on first sight");

        let marker = object(&marker_path("p", "p/caches/packs/a.pack"), 0, now);
        let soon = plan(
            vec![survey(true)],
            std::slice::from_ref(&marker),
            at(now + grace - 1),
            None,
            None,
            DEFAULT_GRACE,
            "p",
        );
        assert!(
            soon.removals.is_empty() && soon.marks.is_empty(),
            "marked too recently"
        );

        let later = plan(
            vec![survey(true)],
            std::slice::from_ref(&marker),
            at(now + grace),
            None,
            None,
            DEFAULT_GRACE,
            "p",
        );
        let (r, _) = &later.removals[0];
        assert_eq!(r.objects, ["p/caches/packs/a.pack", marker.path.as_str()]);

        // A save that found the pack meanwhile published an entry using it: the mark goes.
        let used = Survey {
            entries: vec![sharing("new", "p/caches/packs/a.pack", 100, vec![(0, 40)])],
            shared: vec![pack.clone()],
            ..Survey::default()
        };
        let p = plan(
            vec![used],
            std::slice::from_ref(&marker),
            at(now + grace),
            None,
            None,
            DEFAULT_GRACE,
            "p",
        );
        assert!(p.removals.is_empty(), "{:?}", p.removals);
        assert_eq!(p.unmarks, std::slice::from_ref(&marker.path));
    }

    #[test]
    fn a_pack_of_an_expired_entry_is_marked_not_deleted_and_a_young_one_is_left_alone() {
        let grace = DEFAULT_GRACE.as_secs() as i64;
        let mut old = sharing("old", "p/caches/packs/old.pack", 100, vec![(0, 100)]);
        old.expires = Some(at(grace));
        let p = plan(
            vec![Survey {
                entries: vec![old],
                shared: vec![
                    object("p/caches/packs/old.pack", 100, 0),
                    object("p/caches/packs/being-written.pack", 100, 2 * grace),
                ],
                ..Survey::default()
            }],
            &[object(&marker_path("p", "p/caches/packs/gone.pack"), 0, 0)],
            at(2 * grace + 1),
            None,
            None,
            DEFAULT_GRACE,
            "p",
        );
        let (r, _) = &p.removals[0];
        assert_eq!(
            r.objects,
            ["p/m/old.json", "p/data/old"],
            "the pack is not deleted with it"
        );
        assert_eq!(p.marks, ["p/caches/packs/old.pack"]);
        assert_eq!(
            p.unmarks,
            [marker_path("p", "p/caches/packs/gone.pack")],
            "its pack is gone"
        );
    }

    #[test]
    fn packs_mostly_unused_by_live_entries_are_reported_for_repacking() {
        let mib = 1 << 20;
        let p = plan(
            vec![Survey {
                entries: vec![
                    sharing("a", "p/packs/sparse.pack", 10 * mib, vec![(0, mib)]),
                    sharing(
                        "b",
                        "p/packs/sparse.pack",
                        10 * mib,
                        vec![(mib / 2, 2 * mib)],
                    ),
                    sharing("c", "p/packs/full.pack", 10 * mib, vec![(0, 6 * mib)]),
                ],
                shared: vec![
                    object("p/packs/sparse.pack", 10 * mib, 0),
                    object("p/packs/full.pack", 10 * mib, 0),
                ],
                ..Survey::default()
            }],
            &[],
            at(1),
            None,
            None,
            DEFAULT_GRACE,
            "p",
        );
        assert_eq!(p.dead.packs, 1);
        assert_eq!(p.dead.dead_bytes, 8 * mib);
        let c = &p.dead.candidates[0];
        assert_eq!(
            (c.pack.as_str(), c.live_bytes),
            ("p/packs/sparse.pack", 2 * mib)
        );
        assert_eq!(c.manifests, ["p/m/a.json", "p/m/b.json"]);
    }

    #[test]
    fn eviction_counts_a_shared_pack_once() {
        let a = sharing("a", "p/packs/x.pack", 100, vec![(0, 100)]);
        let mut b = sharing("b", "p/packs/x.pack", 100, vec![(0, 100)]);
        b.created = at(5);
        // 10 bytes of index each, the 100-byte pack once.
        let (kept, evicted, bytes) = evict(vec![a.clone(), b.clone()], Some(120));
        assert!(evicted.is_empty(), "{evicted:?}");
        assert_eq!((kept.len(), bytes), (2, 120));
        let (_, evicted, bytes) = evict(vec![a, b], Some(119));
        assert_eq!(evicted.len(), 1);
        assert_eq!(bytes, 110);
    }
}
