//! Retention: what `ferry prune` removes, for every mode at once.
//!
//! Manifests are read only through the common envelope ([`Head`]), so caches, workspace
//! layers and artifacts are pruned by the same rules: an entry whose expiry has passed goes,
//! manifest first and then its data, in the same run; with a size limit the least recently
//! used caches go next; and a data object that no manifest references goes only once it is
//! older than a grace period, which is what keeps the data of a save still running safe.
//! The caches' used markers are found by their place in the store, not through their crate.
//! `docs/FORMAT.md` ("Retention and pruning") states the rules for people.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::manifest::{self, FORMAT_VERSION, Head, Kind};
use crate::store::{Store, StoreError};

/// The folder of a project's caches (`<project>/caches`).
pub const CACHES_DIR: &str = "caches";
/// The folder of cache manifests inside [`CACHES_DIR`]; one `<name>.json` per key.
pub const CACHE_KEYS_DIR: &str = "keys";
/// The folder of cache used markers inside [`CACHES_DIR`]; `<name>.json` beside the key's
/// manifest of the same name, rewritten on each restore hit.
pub const CACHE_USED_DIR: &str = "used";
/// The name of the folders that hold data objects (`<project>/caches/data/`,
/// `<project>/artifacts/data/`, `<project>/workspaces/<run>/data/`): an object below such a
/// folder that no manifest references is an orphan, deleted after the grace period. Nothing
/// else is ever deleted as an orphan.
pub const DATA_DIR: &str = "data";

/// How old an unreferenced data object must be before prune deletes it: longer than a job
/// may run on GitHub-hosted runners (6 hours; CircleCI stops jobs sooner), so no save that is
/// still running can own it. Some stores date a multipart upload by its start, so this must
/// exceed the longest upload too.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(6 * 3600);

/// The largest unreferenced `.json` object in a data folder that is read to see whether it is
/// a manifest (a keyspace may be named `data`); larger ones are left alone.
const MANIFEST_MAX: u64 = 4 * 1024 * 1024;

/// Manifests read and objects deleted at once.
const CONCURRENCY: usize = 32;

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
    /// Data no manifest references (an abandoned or replaced save), or a used marker whose
    /// cache is gone, older than the grace period.
    Orphaned,
}

/// One entry or object removed (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    pub reason: Reason,
    /// The entry's kind; absent for an orphaned object.
    pub kind: Option<Kind>,
    /// What people call it: a cache key, an artifact's path with its run and job, a layer's id
    /// with its workflow and job, else its object path.
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

/// The used marker of a cache, as far as retention cares.
#[derive(Debug, Clone, Deserialize)]
struct UsedMarker {
    last_used: DateTime<Utc>,
    expires: DateTime<Utc>,
}

/// What any manifest says about its data, whatever its format version or kind: enough to
/// protect that data from being taken for an orphan.
#[derive(Debug, Deserialize)]
struct Reference {
    format: u32,
    data: ReferencedData,
}

#[derive(Debug, Deserialize)]
struct ReferencedData {
    path: String,
}

/// The fields modes use to name their entries, for listings.
#[derive(Debug, Default, Deserialize)]
struct Label {
    key: Option<String>,
    run: Option<String>,
    workflow: Option<String>,
    job: Option<String>,
    path: Option<String>,
    id: Option<String>,
}

/// A readable manifest of this format.
struct Entry {
    manifest: String,
    head: Head,
    name: String,
    /// The used marker of a cache, where one would be.
    marker: Option<String>,
    used: Option<UsedMarker>,
}

impl Entry {
    /// The later of the manifest's expiry and the last hit's; `None` never expires.
    fn expires(&self) -> Option<DateTime<Utc>> {
        match (self.head.expires, &self.used) {
            (Some(e), Some(u)) => Some(e.max(u.expires)),
            (e, _) => e,
        }
    }

    /// When the entry was last used: its last restore hit, else its creation.
    fn last_used(&self) -> DateTime<Utc> {
        self.used
            .as_ref()
            .map_or(self.head.created, |u| u.last_used)
    }

    fn removal(&self, reason: Reason) -> Removal {
        Removal {
            reason,
            kind: Some(self.head.kind),
            name: self.name.clone(),
            bytes: self.head.data.size,
            created: Some(self.head.created),
            expires: self.expires(),
            last_used: self.used.as_ref().map(|u| u.last_used),
            objects: Vec::new(),
        }
    }
}

/// What reading the store found.
#[derive(Default)]
struct Survey {
    entries: Vec<Entry>,
    /// Used markers by path.
    markers: HashMap<String, (UsedMarker, ObjectMeta)>,
    /// Data paths named by manifests that are not readable entries (another format version,
    /// an unknown kind): never deleted.
    referenced: HashSet<String>,
    /// Objects in data folders.
    data: Vec<ObjectMeta>,
    /// Objects in data folders that turned out to be manifests.
    manifests_in_data: HashSet<String>,
    warnings: Vec<String>,
}

/// Where a project's objects are and what they are, by their place in the store.
struct Places {
    dir: String,
    cache_keys: String,
    cache_used: String,
}

impl Places {
    fn new(project: &str) -> Self {
        let dir = manifest::project_dir(project);
        Self {
            cache_keys: format!("{dir}/{CACHES_DIR}/{CACHE_KEYS_DIR}/"),
            cache_used: format!("{dir}/{CACHES_DIR}/{CACHE_USED_DIR}/"),
            dir,
        }
    }

    /// True for objects below a folder named [`DATA_DIR`] in the project.
    fn is_data(&self, rel: &str) -> bool {
        let Some(rest) = self.within(rel) else {
            return false;
        };
        let folders = rest.rsplit_once('/').map_or("", |(f, _)| f);
        folders.split('/').any(|f| f == DATA_DIR)
    }

    fn within<'a>(&self, rel: &'a str) -> Option<&'a str> {
        rel.strip_prefix(&self.dir)
            .and_then(|r| r.strip_prefix('/'))
    }

    /// The used marker beside a cache manifest.
    fn marker_of(&self, manifest: &str) -> Option<String> {
        manifest
            .strip_prefix(&self.cache_keys)
            .map(|name| format!("{}{name}", self.cache_used))
    }

    fn is_marker(&self, rel: &str) -> bool {
        rel.starts_with(&self.cache_used) && rel.ends_with(".json")
    }
}

/// Decides what has to go from the project's part of the store and, unless a dry run,
/// deletes it.
///
/// Expired entries go first (manifest, then data, then a cache's used marker), then with a
/// size limit the least recently used caches, then data objects that no manifest references
/// and that are older than the grace period. Before an entry is deleted its manifest is read
/// again; one that changed meanwhile (a save with `--force`) is left alone. Nothing outside the
/// project's folder is touched, and a data path a manifest names outside it is never deleted.
pub async fn prune(store: &Store, req: &PruneRequest) -> Result<PruneOutcome, RetentionError> {
    let started = Instant::now();
    let now = Utc::now();
    let places = Places::new(&req.project);
    let err = |source| RetentionError::Store {
        project: req.project.clone(),
        source,
    };
    let mut survey = survey(store, &places).await.map_err(err)?;

    // Expired entries, then the least recently used caches over the limit.
    let (mut expired, kept): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut survey.entries)
        .into_iter()
        .partition(|e| e.expires().is_some_and(|t| t <= now));
    expired.sort_by(|a, b| a.name.cmp(&b.name));
    let (kept, evicted, cache_bytes) = evict(kept, req.max_cache_size);

    // Data still needed after this prune: what kept entries and unreadable manifests name.
    let needed: HashSet<&str> = kept
        .iter()
        .map(|e| e.head.data.path.as_str())
        .chain(survey.referenced.iter().map(String::as_str))
        .collect();
    let named: HashSet<String> = kept
        .iter()
        .chain(&expired)
        .chain(&evicted)
        .map(|e| e.head.data.path.clone())
        .chain(survey.referenced.iter().cloned())
        .collect();
    let mut plan: Vec<(Removal, Option<Entry>)> = Vec::new();
    for (reason, entries) in [(Reason::Expired, expired), (Reason::Evicted, evicted)] {
        for e in entries {
            let mut r = e.removal(reason);
            r.objects.push(e.manifest.clone());
            if needed.contains(e.head.data.path.as_str()) {
                r.bytes = 0;
            } else if places.within(&e.head.data.path).is_some() {
                r.objects.push(e.head.data.path.clone());
            } else {
                survey.warnings.push(format!(
                    "{} names data {} outside project {}; that data was left alone",
                    e.manifest, e.head.data.path, req.project
                ));
                r.bytes = 0;
            }
            if let Some(m) = e
                .marker
                .as_ref()
                .filter(|m| survey.markers.contains_key(*m))
            {
                r.objects.push(m.clone());
            }
            plan.push((r, Some(e)));
        }
    }

    // Orphans: unreferenced data and markers without a cache, past the grace period.
    let grace = chrono::Duration::from_std(req.grace).unwrap_or(chrono::Duration::MAX);
    let old_enough = |meta: &ObjectMeta| now.signed_duration_since(meta.last_modified) >= grace;
    let mut orphans: Vec<&ObjectMeta> = survey
        .data
        .iter()
        .filter(|m| {
            let rel = m.location.as_ref();
            !named.contains(rel)
                && !survey.manifests_in_data.contains(rel)
                // A large `.json` was not read, so it may be a manifest: left alone.
                && (!rel.ends_with(".json") || m.size <= MANIFEST_MAX)
                && old_enough(m)
        })
        .collect();
    let markers_in_use: HashSet<&str> = plan
        .iter()
        .filter_map(|(_, e)| e.as_ref())
        .chain(&kept)
        .filter_map(|e| e.marker.as_deref())
        .collect();
    orphans.extend(
        survey
            .markers
            .iter()
            .filter(|(path, (_, meta))| !markers_in_use.contains(path.as_str()) && old_enough(meta))
            .map(|(_, (_, meta))| meta),
    );
    orphans.sort_by(|a, b| a.location.cmp(&b.location));
    for meta in orphans {
        let rel = meta.location.to_string();
        plan.push((
            Removal {
                reason: Reason::Orphaned,
                kind: None,
                name: places.within(&rel).unwrap_or(&rel).to_string(),
                bytes: meta.size,
                created: Some(meta.last_modified),
                expires: None,
                last_used: None,
                objects: vec![rel],
            },
            None,
        ));
    }

    let mut removed = Vec::with_capacity(plan.len());
    if req.dry_run {
        removed = plan.into_iter().map(|(r, _)| r).collect();
    } else {
        let done: Vec<Result<Removal, String>> = futures::stream::iter(plan)
            .map(|(r, entry)| execute(store, r, entry))
            .buffered(CONCURRENCY)
            .try_collect()
            .await
            .map_err(err)?;
        for d in done {
            match d {
                Ok(r) => removed.push(r),
                Err(warning) => survey.warnings.push(warning),
            }
        }
    }
    Ok(PruneOutcome {
        project: req.project.clone(),
        dry_run: req.dry_run,
        bytes: removed.iter().map(|r| r.bytes).sum(),
        removed,
        kept: kept.len() as u64,
        cache_bytes,
        seconds: started.elapsed().as_secs_f64(),
        warnings: survey.warnings,
    })
}

/// Splits `entries` into those kept and the caches evicted so that the data of the caches
/// kept fits in `max` bytes, and returns the bytes of the caches kept.
///
/// The least recently used cache goes first: the oldest last restore hit, else the oldest
/// creation (ties: older creation, then name). Entries of other kinds are always kept.
fn evict(entries: Vec<Entry>, max: Option<u64>) -> (Vec<Entry>, Vec<Entry>, u64) {
    let is_cache = |e: &Entry| e.head.kind == Kind::Cache;
    let mut cache_bytes: u64 = entries
        .iter()
        .filter(|e| is_cache(e))
        .map(|e| e.head.data.size)
        .sum();
    let Some(max) = max.filter(|&m| cache_bytes > m) else {
        return (entries, Vec::new(), cache_bytes);
    };
    let (mut caches, mut kept): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(is_cache);
    caches.sort_by(|a, b| {
        (a.last_used(), a.head.created, &a.name).cmp(&(b.last_used(), b.head.created, &b.name))
    });
    let mut caches = caches.into_iter();
    let mut evicted = Vec::new();
    while cache_bytes > max {
        let Some(e) = caches.next() else { break };
        cache_bytes -= e.head.data.size;
        evicted.push(e);
    }
    kept.extend(caches);
    (kept, evicted, cache_bytes)
}

/// Deletes what one removal names; an entry whose manifest changed since it was read is left
/// alone (the `Err` is the warning saying so).
async fn execute(
    store: &Store,
    removal: Removal,
    entry: Option<Entry>,
) -> Result<Result<Removal, String>, StoreError> {
    if let Some(e) = &entry {
        let now_there = store
            .read(&e.manifest)
            .await?
            .and_then(|b| serde_json::from_slice::<Reference>(&b).ok());
        match now_there {
            Some(r) if r.data.path == e.head.data.path => {}
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

/// Reads small objects whole, those that are gone meanwhile left out.
async fn read_all(
    store: &Store,
    metas: Vec<ObjectMeta>,
) -> Result<Vec<(ObjectMeta, bytes::Bytes)>, StoreError> {
    futures::stream::iter(metas)
        .map(|meta| async move {
            let bytes = store.read(meta.location.as_ref()).await?;
            Ok::<_, StoreError>(bytes.map(|b| (meta, b)))
        })
        .buffer_unordered(CONCURRENCY)
        .try_filter_map(|x| async move { Ok(x) })
        .try_collect()
        .await
}

/// Lists the project's objects and reads every manifest and used marker.
///
/// Manifests are the `.json` objects outside data folders that read as an envelope, and
/// those inside one that no manifest references and that read as one too (a keyspace may be
/// named `data`).
async fn survey(store: &Store, places: &Places) -> Result<Survey, StoreError> {
    let mut out = Survey::default();
    let mut to_read = Vec::new();
    for meta in store.list(&places.dir).await? {
        let rel = meta.location.to_string();
        if places.is_data(&rel) {
            out.data.push(meta);
        } else if rel.ends_with(".json") {
            to_read.push(meta);
        }
    }
    for (meta, bytes) in read_all(store, to_read).await? {
        out.classify(places, meta, &bytes, false);
    }
    let named: HashSet<&str> = out
        .entries
        .iter()
        .map(|e| e.head.data.path.as_str())
        .chain(out.referenced.iter().map(String::as_str))
        .collect();
    let unnamed_json: Vec<ObjectMeta> = out
        .data
        .iter()
        .filter(|m| {
            let rel = m.location.as_ref();
            rel.ends_with(".json") && m.size <= MANIFEST_MAX && !named.contains(rel)
        })
        .cloned()
        .collect();
    for (meta, bytes) in read_all(store, unnamed_json).await? {
        out.classify(places, meta, &bytes, true);
    }
    let by_marker: BTreeMap<String, usize> = out
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.marker.clone().map(|m| (m, i)))
        .collect();
    for (marker, i) in by_marker {
        if let Some((used, _)) = out.markers.get(&marker) {
            out.entries[i].used = Some(used.clone());
        }
    }
    Ok(out)
}

impl Survey {
    /// Files one object read whole: a manifest (an entry, or a reference of another format
    /// or kind), a used marker, or something else, left alone.
    fn classify(&mut self, places: &Places, meta: ObjectMeta, bytes: &[u8], in_data: bool) {
        let rel = meta.location.to_string();
        let Ok(reference) = serde_json::from_slice::<Reference>(bytes) else {
            if !in_data && places.is_marker(&rel) {
                match serde_json::from_slice::<UsedMarker>(bytes) {
                    Ok(used) => {
                        self.markers.insert(rel, (used, meta));
                    }
                    Err(e) => self
                        .warnings
                        .push(format!("{rel} is not a used marker ({e}); left alone")),
                }
            }
            return;
        };
        if in_data {
            self.manifests_in_data.insert(rel.clone());
        }
        if reference.format != FORMAT_VERSION {
            self.referenced.insert(reference.data.path);
            self.warnings.push(format!(
                "{rel} has store format {}, this ferry prunes format {FORMAT_VERSION}; left alone",
                reference.format
            ));
            return;
        }
        let head = match serde_json::from_slice::<Head>(bytes) {
            Ok(head) => head,
            Err(e) => {
                self.referenced.insert(reference.data.path);
                self.warnings.push(format!(
                    "{rel} is not a manifest this ferry reads ({e}); left alone"
                ));
                return;
            }
        };
        let name = match serde_json::from_slice::<Label>(bytes).unwrap_or_default() {
            Label { key: Some(k), .. } => k,
            Label {
                run: Some(r),
                job: Some(j),
                path: Some(p),
                ..
            } => format!("{p} (run {r} job {j})"),
            Label {
                workflow: Some(w),
                job: Some(j),
                id: Some(id),
                ..
            } => format!("{id} (workflow {w} job {j})"),
            _ => places.within(&rel).unwrap_or(&rel).to_string(),
        };
        let marker = (head.kind == Kind::Cache)
            .then(|| places.marker_of(&rel))
            .flatten();
        self.entries.push(Entry {
            manifest: rel,
            head,
            name,
            marker,
            used: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_objects_are_those_below_a_data_folder() {
        let p = Places::new("acme/app");
        let dir = manifest::project_dir("acme/app");
        assert!(p.is_data(&format!("{dir}/caches/data/x.tar.zst")));
        assert!(p.is_data(&format!("{dir}/artifacts/data/id/report.txt")));
        assert!(p.is_data(&format!("{dir}/workspaces/run/data/id.tar.zst")));
        assert!(!p.is_data(&format!("{dir}/caches/keys/k.json")));
        assert!(!p.is_data(&format!("{dir}/caches/data")));
        assert!(!p.is_data(&format!("{dir}/artifacts/runs/1/build/data")));
        assert!(!p.is_data("ferry-v1/other/caches/data/x"));
    }

    fn entry(name: &str, kind: Kind, size: u64, created: i64, last_used: Option<i64>) -> Entry {
        let at = |s: i64| DateTime::from_timestamp(s, 0).expect("a valid time");
        Entry {
            manifest: format!("{name}.json"),
            head: Head {
                format: FORMAT_VERSION,
                kind,
                created: at(created),
                expires: None,
                data: manifest::DataRef {
                    path: format!("data/{name}"),
                    size,
                    sha256: String::new(),
                },
            },
            name: name.to_string(),
            marker: None,
            used: last_used.map(|t| UsedMarker {
                last_used: at(t),
                expires: at(t + 100),
            }),
        }
    }

    #[test]
    fn eviction_takes_the_least_recently_used_caches_until_the_rest_fits() {
        let entries = vec![
            entry("old-but-restored", Kind::Cache, 10, 1, Some(50)),
            entry("never-restored", Kind::Cache, 10, 20, None),
            entry("restored-early", Kind::Cache, 10, 2, Some(30)),
            entry("big-artifact", Kind::Artifact, 1000, 0, None),
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
    fn a_cache_manifest_has_its_marker_beside_it() {
        let p = Places::new("acme/app");
        let dir = manifest::project_dir("acme/app");
        assert_eq!(
            p.marker_of(&format!("{dir}/caches/keys/k.0123.json")),
            Some(format!("{dir}/caches/used/k.0123.json"))
        );
        assert_eq!(p.marker_of(&format!("{dir}/workspaces/r/l.json")), None);
    }
}
