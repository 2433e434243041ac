//! Property tests of the path and link rules (`trust::rules`) against an independent model of
//! the file system (`rules_model`): every name `check_name` accepts is normalised and lies
//! within a saved path; names with NUL bytes, over-long parts or `..` beyond their root are
//! always refused; and a link `judge_link` accepts leads inside the saved paths once on disk,
//! wherever the working folder and home are and whatever links the tree already holds.

mod rules_model;

use ferry_core::trust::rules::{self, COMPONENT_MAX, NAME_MAX};
use proptest::prelude::*;
use rules_model::{LAYOUTS, World, ancestors, join, within};

/// Parts names and targets are made of: ordinary ones, the special ones, and look-alikes.
const PARTS: &[&str] = &[
    "a", "b", "c", "x", "l", "d", ".x", "up", "abs", "..", ".", "", "~", "~x", "..a", "a\\b", "é",
];
/// Saved paths as the packer writes them (normalised).
const ROOTS: &[&str] = &[
    "a", "b/c", "~/.x", "/abs", "../up", ".", "~", "/", "a/b", "..", "/abs/d", "~/x",
];

/// Parts a packer writes below a saved path (look-alikes of the special ones included).
const PLAIN: &[&str] = &["a", "b", "x", "l", "d", ".x", "~", "~x", "..a", "a\\b", "é"];

fn rel() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PARTS), 0..5).prop_map(|p| p.join("/"))
}

fn plain() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PLAIN), 0..4).prop_map(|p| p.join("/"))
}

/// A name or link target: relative, absolute, or in the home folder.
fn name() -> impl Strategy<Value = String> {
    (0u8..3, rel()).prop_map(|(base, body)| match base {
        0 => body,
        1 => format!("/{body}"),
        _ if body.is_empty() => "~".into(),
        _ => format!("~/{body}"),
    })
}

fn roots() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(ROOTS, 1..4).prop_map(|v| v.iter().map(|s| s.to_string()).collect())
}

/// Saved paths and a name below one of them.
fn root_and_below() -> impl Strategy<Value = (Vec<String>, String)> {
    (roots(), any::<prop::sample::Index>(), plain()).prop_map(|(roots, i, rest)| {
        let n = join(&roots[i.index(roots.len())], &rest);
        (roots, n)
    })
}

/// A name below one of `roots` more often than chance would make one.
fn below_roots() -> impl Strategy<Value = (Vec<String>, String)> {
    (
        roots(),
        any::<prop::sample::Index>(),
        plain(),
        name(),
        any::<bool>(),
    )
        .prop_map(|(roots, i, rest, other, near)| {
            let n = if near {
                join(&roots[i.index(roots.len())], &rest)
            } else {
                other
            };
            (roots, n)
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        max_global_rejects: 1_000_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_accepted_name_is_normalised_and_within_a_root(
        (roots, raw) in below_roots(),
        trailing in 0usize..3,
    ) {
        let raw = format!("{raw}{}", "/".repeat(trailing));
        if let Ok(name) = rules::check_name(raw.as_bytes(), &roots) {
            prop_assert!(
                roots.iter().any(|r| within(&name, r)),
                "{raw:?} accepted as {name:?}, within none of {roots:?} part by part"
            );
            prop_assert!(raw.starts_with(&name), "{raw:?} accepted as {name:?}");
            prop_assert!(raw[name.len()..].bytes().all(|b| b == b'/'));
        }
    }

    #[test]
    fn names_with_nul_overlong_parts_or_parents_beyond_their_root_are_refused(
        (roots, raw) in below_roots(),
        defect in 0u8..5,
        at in any::<prop::sample::Index>(),
    ) {
        prop_assume!(rules::check_name(raw.as_bytes(), &roots).is_ok());
        let bad: Vec<u8> = match defect {
            0 => {
                let mut b = raw.clone().into_bytes();
                b.insert(at.index(b.len() + 1), 0);
                b
            }
            1 => join(&raw, &"x".repeat(COMPONENT_MAX + 1)).into_bytes(),
            2 => join(&raw, &"y/".repeat(NAME_MAX / 2 + 1)).into_bytes(),
            3 => join(&raw, "..").into_bytes(),
            _ => join(&raw, "../x").into_bytes(),
        };
        // `..` below one root may still name another root (`./..` is the root `..`).
        let elsewhere = std::str::from_utf8(&bad).is_ok_and(|b| roots.iter().any(|r| within(b, r)));
        prop_assert!(
            elsewhere || rules::check_name(&bad, &roots).is_err(),
            "{} accepted under {roots:?}",
            rules::shown(&bad)
        );
    }

    #[test]
    fn a_link_the_judge_accepts_leads_inside_the_saved_paths_on_disk(
        (roots, judged) in root_and_below(),
        target in name(),
        tree in prop::collection::vec((below_roots(), name()), 0..6),
        layout in 0..LAYOUTS.len(),
    ) {
        prop_assume!(rules::check_name(judged.as_bytes(), &roots).is_ok());
        // No link can be named `..`, `.` or `/`, nor have an empty target.
        prop_assume!(!matches!(judged.rsplit('/').next(), Some("" | "." | "..")));
        prop_assume!(!target.is_empty());
        let mut world = World::new(layout);
        for ((_, at), t) in &tree {
            let place = world.place(at);
            if !t.is_empty() && !place.is_empty() {
                world.links.insert(place, t.clone());
            }
        }
        // The folders between the link and its saved path are folders the restore made.
        let root = roots
            .iter()
            .filter(|r| within(&judged, r))
            .max_by_key(|r| r.len())
            .expect("an accepted name lies within a root");
        let mut between: Vec<String> = ancestors(&judged)
            .into_iter()
            .filter(|a| a != root && within(a, root))
            .collect();
        between.reverse();
        for a in between {
            if let Some(at) = world.locate(&a) {
                world.links.remove(&at);
            }
        }
        let Some(at) = world.locate(&judged) else {
            return Ok(());
        };
        world.links.insert(at, target.clone());
        let verdict = rules::judge_link(&judged, &target, &roots, &mut |n| world.node(n));
        if verdict.is_ok() {
            prop_assert_ne!(
                world.leads_inside(&judged, &target, &roots),
                Some(false),
                "{} -> {} accepted under {:?} in layout {:?} with links {:?}",
                judged, target, roots, LAYOUTS[layout], world.links
            );
        }
    }
}
