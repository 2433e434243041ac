//! The layer graph of a run: which layers an attach applies, in what order, and which of them
//! clash, all decided from the manifests before anything is downloaded.

use std::collections::{BTreeSet, HashMap, HashSet};

use ferry_core::archive::EntryKind;
use serde::Serialize;

use crate::{LayerManifest, Listing};

/// One layer, as a conflict names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerRef {
    pub id: String,
    pub job: String,
}

/// How two layers clash at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clash {
    /// Both hold a file or link there and neither layer descends from the other.
    SamePath,
    /// One holds a file or link there, the other a folder (or something below it).
    FileAndFolder,
}

/// A path two layers cannot both lay down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub path: String,
    pub clash: Clash,
    /// The earlier layer (for `FileAndFolder`, the one holding the file or link).
    pub first: LayerRef,
    pub second: LayerRef,
}

/// What an attach of the `from` jobs (every layer when empty) does with a run's layers: the
/// layers it applies in order, the clashes that make it refuse, and the `from` jobs that have
/// no layer. `attach` decides with this, and so does every view that explains an attach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachPlan {
    /// Indexes into the layers, parents before children.
    pub ordered: Vec<usize>,
    /// Every clash between the ordered layers; an attach with any writes nothing.
    pub conflicts: Vec<Conflict>,
    /// `from` jobs without a layer; an attach with any fails.
    pub missing: Vec<String>,
}

/// Plans an attach of `from` over `layers` (sorted by id, as the store lists them).
pub fn plan_attach(layers: &[LayerManifest], from: &[String]) -> AttachPlan {
    let (selected, missing) = select(layers, from);
    let ordered = order(layers, &selected);
    let conflicts = conflicts(layers, &ordered);
    AttachPlan {
        ordered,
        conflicts,
        missing,
    }
}

/// The layers to apply: with no `from`, all; else those of the `from` jobs and their
/// ancestors. Returns their indexes into `layers`, and the `from` jobs that have no layer.
pub(crate) fn select(layers: &[LayerManifest], from: &[String]) -> (Vec<usize>, Vec<String>) {
    if from.is_empty() {
        return ((0..layers.len()).collect(), Vec::new());
    }
    let by_id = index_by_id(layers);
    let mut chosen = BTreeSet::new();
    let mut stack: Vec<usize> = (0..layers.len())
        .filter(|&i| from.contains(&layers[i].body.job))
        .collect();
    while let Some(i) = stack.pop() {
        if chosen.insert(i) {
            stack.extend(
                layers[i]
                    .body
                    .parents
                    .iter()
                    .filter_map(|p| by_id.get(p.as_str()).copied()),
            );
        }
    }
    let missing = from
        .iter()
        .filter(|j| !layers.iter().any(|l| &l.body.job == *j))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    (chosen.into_iter().collect(), missing)
}

/// Orders `selected` parents before children, otherwise by creation (id). Parents outside the
/// selection (expired, pruned) are ignored; `layers` is sorted by id.
pub(crate) fn order(layers: &[LayerManifest], selected: &[usize]) -> Vec<usize> {
    let by_id = index_by_id(layers);
    let in_set: HashSet<usize> = selected.iter().copied().collect();
    let parents_of = |i: usize| -> BTreeSet<usize> {
        layers[i]
            .body
            .parents
            .iter()
            .filter_map(|p| by_id.get(p.as_str()).copied())
            .filter(|p| in_set.contains(p) && *p != i)
            .collect()
    };
    let mut waiting: HashMap<usize, usize> = HashMap::new();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in selected {
        let ps = parents_of(i);
        waiting.insert(i, ps.len());
        for p in ps {
            children.entry(p).or_default().push(i);
        }
    }
    // Indexes follow id order, so the smallest ready index is the earliest-created layer.
    let mut ready: BTreeSet<usize> = selected
        .iter()
        .copied()
        .filter(|i| waiting[i] == 0)
        .collect();
    let mut out = Vec::with_capacity(selected.len());
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &c in children.get(&i).into_iter().flatten() {
            let w = waiting.get_mut(&c).expect("every child is selected");
            *w -= 1;
            if *w == 0 {
                ready.insert(c);
            }
        }
    }
    // A cycle cannot be persisted (a parent exists before its child); should a damaged store
    // hold one, its layers follow in creation order rather than being dropped.
    let placed: HashSet<usize> = out.iter().copied().collect();
    let mut rest: Vec<usize> = selected
        .iter()
        .copied()
        .filter(|i| !placed.contains(i))
        .collect();
    rest.sort_unstable();
    out.extend(rest);
    out
}

/// Every clash between the `ordered` layers (as [`order`] returns them).
///
/// The same file or link path in two layers is a clash unless one layer descends from the
/// other (a later layer may replace its ancestors' files). A path that is a file or link in one
/// layer and a folder in another (or has entries below it there) is always a clash: no layer
/// can turn one into the other on disk.
pub(crate) fn conflicts(layers: &[LayerManifest], ordered: &[usize]) -> Vec<Conflict> {
    let ancestors = ancestors(layers, ordered);
    let mut at: HashMap<&str, Vec<(usize, bool)>> = HashMap::new();
    for (pos, &i) in ordered.iter().enumerate() {
        for (path, is_dir) in kinds(&layers[i].body.entries) {
            at.entry(path).or_default().push((pos, is_dir));
        }
    }
    let related = |a: usize, b: usize| ancestors[b].contains(&a) || ancestors[a].contains(&b);
    let layer_ref = |pos: usize| LayerRef {
        id: layers[ordered[pos]].body.id.clone(),
        job: layers[ordered[pos]].body.job.clone(),
    };
    let mut out = Vec::new();
    for (path, holders) in at {
        if holders.len() < 2 {
            continue;
        }
        for (x, &(a, a_dir)) in holders.iter().enumerate() {
            for &(b, b_dir) in &holders[x + 1..] {
                let clash = match (a_dir, b_dir) {
                    (true, true) => continue,
                    (false, false) if related(a, b) => continue,
                    (false, false) => Clash::SamePath,
                    _ => Clash::FileAndFolder,
                };
                let (first, second) = if clash == Clash::FileAndFolder && a_dir {
                    (b, a)
                } else {
                    (a, b)
                };
                out.push(Conflict {
                    path: path.to_string(),
                    clash,
                    first: layer_ref(first),
                    second: layer_ref(second),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.path, &a.first.id, &a.second.id).cmp(&(&b.path, &b.first.id, &b.second.id))
    });
    out
}

/// Each path a layer lays down, with whether it is a folder; the folders above every entry
/// count as folders of the layer.
fn kinds(listing: &Listing) -> HashMap<&str, bool> {
    let mut out = HashMap::new();
    for (path, kind) in listing.iter() {
        let mut parent = path;
        while let Some((p, _)) = parent.rsplit_once('/') {
            if p.is_empty() || out.insert(p, true).is_some() {
                break;
            }
            parent = p;
        }
        out.insert(path, kind == EntryKind::Dir);
    }
    out
}

/// For each position in `ordered`, the positions of its ancestors.
fn ancestors(layers: &[LayerManifest], ordered: &[usize]) -> Vec<HashSet<usize>> {
    let pos_of: HashMap<&str, usize> = ordered
        .iter()
        .enumerate()
        .map(|(pos, &i)| (layers[i].body.id.as_str(), pos))
        .collect();
    let mut out: Vec<HashSet<usize>> = vec![HashSet::new(); ordered.len()];
    // Parents come first in `ordered`, so theirs are complete when a child is reached.
    for (pos, &i) in ordered.iter().enumerate() {
        let mut set = HashSet::new();
        for p in &layers[i].body.parents {
            if let Some(&pp) = pos_of.get(p.as_str()) {
                if pp < pos {
                    set.insert(pp);
                    set.extend(out[pp].iter().copied());
                }
            }
        }
        out[pos] = set;
    }
    out
}

fn index_by_id(layers: &[LayerManifest]) -> HashMap<&str, usize> {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.body.id.as_str(), i))
        .collect()
}

/// The message of a conflict: every clashing path with both jobs, then what to do.
pub(crate) fn conflict_message(workflow: &str, conflicts: &[Conflict]) -> String {
    let paths: BTreeSet<&str> = conflicts.iter().map(|c| c.path.as_str()).collect();
    let mut msg = format!(
        "workspace conflict in workflow {workflow}: {} path{} clash between layers; nothing was attached",
        paths.len(),
        if paths.len() == 1 { "" } else { "s" }
    );
    for c in conflicts {
        let line = match c.clash {
            Clash::SamePath => format!(
                "{}: persisted by job {} (layer {}) and by job {} (layer {}), and neither job attached the other's layer",
                c.path, c.first.job, c.first.id, c.second.job, c.second.id
            ),
            Clash::FileAndFolder => format!(
                "{}: a file in job {}'s layer ({}) but a folder in job {}'s layer ({})",
                c.path, c.first.job, c.first.id, c.second.job, c.second.id
            ),
        };
        msg.push_str("\n  ");
        msg.push_str(&line);
    }
    msg.push_str(
        "\nPersist each path from one job only, or let the later job attach the earlier one's layer before it persists; \
         `--from JOB` attaches only some jobs' layers.",
    );
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LayerBody;
    use chrono::Utc;
    use ferry_core::archive::Format;
    use ferry_core::entry::TreeRecord;
    use ferry_core::manifest::{DataRef, Envelope, Kind};

    fn layer(
        id: &str,
        job: &str,
        parents: &[&str],
        files: &[&str],
        dirs: &[&str],
    ) -> LayerManifest {
        Envelope {
            signature: None,
            encoding: None,
            format: 1,
            kind: Kind::Layer,
            created: Utc::now(),
            expires: None,
            data: DataRef {
                path: String::new(),
                size: 0,
                sha256: String::new(),
            },
            body: LayerBody {
                id: id.into(),
                workflow: "w".into(),
                job: job.into(),
                parents: parents.iter().map(|p| p.to_string()).collect(),
                tree: TreeRecord {
                    compression: Format::Zstd,
                    paths: vec![".".into()],
                    links_out: Vec::new(),
                    files: files.len() as u64,
                    unpacked_bytes: 0,
                    entry_count: None,
                    packs: Vec::new(),
                },
                entries: Listing {
                    files: files.iter().map(|p| p.to_string()).collect(),
                    dirs: dirs.iter().map(|p| p.to_string()).collect(),
                    symlinks: Vec::new(),
                },
                ttl_seconds: 0,
            },
        }
    }

    #[test]
    fn parents_come_before_children_even_when_created_later() {
        // c's clock ran behind: it sorts first but descends from b.
        let layers = [
            layer("1-c", "c", &["2-b"], &[], &[]),
            layer("2-b", "b", &[], &[], &[]),
            layer("3-a", "a", &[], &[], &[]),
        ];
        let all: Vec<usize> = (0..3).collect();
        assert_eq!(order(&layers, &all), [1, 0, 2]);
    }

    #[test]
    fn from_selects_the_jobs_layers_and_their_ancestors_only() {
        let layers = [
            layer("1", "a", &[], &[], &[]),
            layer("2", "b", &["1"], &[], &[]),
            layer("3", "c", &[], &[], &[]),
        ];
        let (sel, missing) = select(&layers, &["b".into(), "zz".into()]);
        assert_eq!(sel, [0, 1]);
        assert_eq!(missing, ["zz"]);
    }

    #[test]
    fn descendants_may_replace_files_but_side_by_side_layers_clash() {
        let layers = [
            layer("1", "a", &[], &["dist/app.js"], &["dist"]),
            layer("2", "b", &["1"], &["dist/app.js"], &["dist"]),
            layer("3", "c", &[], &["dist/app.js", "dist/c.js"], &["dist"]),
        ];
        let ordered = order(&layers, &[0, 1, 2]);
        let found = conflicts(&layers, &ordered);
        let pairs: Vec<_> = found
            .iter()
            .map(|c| (c.path.as_str(), c.first.job.as_str(), c.second.job.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("dist/app.js", "a", "c"), ("dist/app.js", "b", "c")]
        );
    }

    #[test]
    fn a_file_where_another_layer_has_a_folder_clashes_even_in_a_descendant() {
        let layers = [
            layer("1", "a", &[], &["out"], &[]),
            layer("2", "b", &["1"], &["out/x"], &[]),
        ];
        let found = conflicts(&layers, &[0, 1]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "out");
        assert_eq!(found[0].clash, Clash::FileAndFolder);
        assert_eq!(
            (found[0].first.job.as_str(), found[0].second.job.as_str()),
            ("a", "b")
        );
    }
}
