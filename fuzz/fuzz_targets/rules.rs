#![no_main]
//! Fuzz target `rules`: `check_name` and `judge_link` on names, roots and link trees the fuzzer
//! builds, checked against the independent model the property tests use
//! (`core/tests/rules_model`): an accepted name is normalised and within a root part by part;
//! names with NUL, over-long parts or `..` beyond their root are refused; and a link the judge
//! accepts leads inside the saved paths once on disk, in every layout of cwd and home and
//! whatever links the tree holds (a saved path itself may be a link the user made).

#[path = "../../core/tests/rules_model/mod.rs"]
mod rules_model;

use ferry_core::trust::rules::{self, COMPONENT_MAX, NAME_MAX};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rules_model::{LAYOUTS, World, ancestors, join, within};

const PARTS: &[&str] = &[
    "a", "b", "c", "x", "l", "d", ".x", "up", "abs", "..", ".", "", "~", "~x", "..a", "a\\b", "é",
];
const ROOTS: &[&str] = &[
    "a", "b/c", "~/.x", "/abs", "../up", ".", "~", "/", "a/b", "..", "/abs/d", "~/x", "../..",
];

/// A name or target made of [`PARTS`], or of any bytes.
#[derive(Arbitrary, Debug)]
enum Name {
    Parts { base: u8, parts: Vec<u8> },
    /// Below one of the roots (index into the chosen roots).
    Below { root: u8, parts: Vec<u8> },
    Text(String),
}

impl Name {
    fn text(&self, roots: &[String]) -> String {
        let rel = |parts: &[u8]| {
            parts
                .iter()
                .take(8)
                .map(|p| PARTS[usize::from(*p) % PARTS.len()])
                .collect::<Vec<_>>()
                .join("/")
        };
        match self {
            Name::Parts { base, parts } => {
                let body = rel(parts);
                match base % 3 {
                    0 => body,
                    1 => format!("/{body}"),
                    _ if body.is_empty() => "~".into(),
                    _ => format!("~/{body}"),
                }
            }
            Name::Below { root, parts } => match roots.get(usize::from(*root) % roots.len().max(1)) {
                Some(r) => join(r, &rel(parts)),
                None => rel(parts),
            },
            Name::Text(t) => t.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which of [`ROOTS`] are saved paths.
    roots: u16,
    /// A raw name for `check_name`, with a defect added or not.
    raw: Name,
    raw_bytes: Vec<u8>,
    defect: u8,
    /// Links already in the tree, and the link judged.
    tree: Vec<(Name, Name)>,
    judged: Name,
    target: Name,
    layout: u8,
}

fn check_names(input: &Input, roots: &[String]) {
    let raw = if input.defect % 8 == 7 {
        input.raw_bytes.clone()
    } else {
        input.raw.text(roots).into_bytes()
    };
    let accepted = rules::check_name(&raw, roots);
    if let Ok(name) = &accepted {
        assert!(
            roots.iter().any(|r| within(name, r)),
            "{} accepted as {name:?}, within none of {roots:?} part by part",
            rules::shown(&raw)
        );
        assert!(raw.starts_with(name.as_bytes()) && raw[name.len()..].iter().all(|b| *b == b'/'));
        let name = name.clone();
        let bad: Vec<u8> = match input.defect % 8 {
            0 => {
                let mut b = name.into_bytes();
                b.insert(usize::from(input.defect) % (b.len() + 1), 0);
                b
            }
            1 => join(&name, &"x".repeat(COMPONENT_MAX + 1)).into_bytes(),
            2 => join(&name, &"y/".repeat(NAME_MAX / 2 + 1)).into_bytes(),
            3 => join(&name, "..").into_bytes(),
            4 => join(&name, "../x").into_bytes(),
            _ => return,
        };
        // `..` below one root may still name another root (`./..` is the root `..`).
        let elsewhere = std::str::from_utf8(&bad).is_ok_and(|b| roots.iter().any(|r| within(b, r)));
        assert!(
            elsewhere || rules::check_name(&bad, roots).is_err(),
            "{} accepted under {roots:?}",
            rules::shown(&bad)
        );
    }
}

fn check_link(input: &Input, roots: &[String]) {
    let judged = input.judged.text(roots);
    let target = input.target.text(roots);
    if rules::check_name(judged.as_bytes(), roots).is_err()
        || rules::check_link_target(target.as_bytes()).is_err()
        || matches!(judged.rsplit('/').next(), Some("" | "." | ".."))
    {
        return;
    }
    let mut world = World::new(usize::from(input.layout));
    for (at, t) in input.tree.iter().take(8) {
        let place = world.place(&at.text(roots));
        let t = t.text(roots);
        if !place.is_empty() && rules::check_link_target(t.as_bytes()).is_ok() {
            world.links.insert(place, t);
        }
    }
    // The folders between the link and its saved path are folders the restore made.
    let Some(root) = roots
        .iter()
        .filter(|r| within(&judged, r))
        .max_by_key(|r| r.len())
    else {
        return;
    };
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
        return;
    };
    world.links.insert(at, target.clone());
    let verdict = rules::judge_link(&judged, &target, roots, &mut |n| world.node(n));
    if verdict.is_ok() {
        assert_ne!(
            world.leads_inside(&judged, &target, roots),
            Some(false),
            "{judged} -> {target} accepted under {roots:?} in layout {:?} with links {:?}",
            LAYOUTS[usize::from(input.layout) % LAYOUTS.len()],
            world.links
        );
    }
}

fuzz_target!(|input: Input| {
    let roots: Vec<String> = ROOTS
        .iter()
        .enumerate()
        .filter(|(i, _)| input.roots & (1 << i) != 0)
        .map(|(_, r)| r.to_string())
        .collect();
    if roots.is_empty() {
        return;
    }
    check_names(&input, &roots);
    check_link(&input, &roots);
});
