//! An independent model of where names and link targets lead, to check `trust::rules` against:
//! a file system of absolute locations where any of them may be a symlink, resolved part by
//! part as the kernel does, with the working folder and home placed in one of several layouts.
//! It shares no code with `trust::rules`; the property tests (`path_rules.rs`) and the `rules`
//! fuzz target (`fuzz/fuzz_targets/rules.rs`, which includes this file) both use it.

#![allow(dead_code)]

use std::collections::HashMap;

use ferry_core::trust::rules::Node;

/// Links followed before a resolution counts as a loop (Linux's limit).
const HOPS: usize = 40;

/// Where the working folder and home are, as absolute paths: each a layout the rules must be
/// safe in, since they never know it.
pub const LAYOUTS: &[(&str, &str)] = &[
    ("/w/c", "/h/u"),
    ("/w/c", "/w/c/h"),
    ("/", "/h"),
    ("/h/u/w", "/h/u"),
];

fn parts(abs: &str) -> Vec<String> {
    abs.split('/')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// A file system in one layout: every location not holding a link is a folder (a missing one
/// may be made later, so it is walked through as one).
#[derive(Debug, Clone)]
pub struct World {
    pub cwd: Vec<String>,
    pub home: Vec<String>,
    /// Links by absolute location.
    pub links: HashMap<Vec<String>, String>,
}

impl World {
    pub fn new(layout: usize) -> Self {
        let (cwd, home) = LAYOUTS[layout % LAYOUTS.len()];
        Self {
            cwd: parts(cwd),
            home: parts(home),
            links: HashMap::new(),
        }
    }

    /// Where a name starts and the rest of it: `/x` from `/`, `~/x` from home, else the cwd.
    fn split<'n>(&self, name: &'n str) -> (Vec<String>, &'n str) {
        if let Some(rest) = name.strip_prefix('/') {
            (Vec::new(), rest)
        } else if name == "~" {
            (self.home.clone(), "")
        } else if let Some(rest) = name.strip_prefix("~/") {
            (self.home.clone(), rest)
        } else {
            (self.cwd.clone(), name)
        }
    }

    /// A name's location read lexically, following nothing: where a test places a link.
    pub fn place(&self, name: &str) -> Vec<String> {
        let (mut cur, rest) = self.split(name);
        for p in rest.split('/') {
            match p {
                "" | "." => {}
                ".." => {
                    cur.pop();
                }
                p => cur.push(p.to_string()),
            }
        }
        cur
    }

    /// Resolves `path` from the folder `from`, following every link; `None` for a loop.
    pub fn walk(&self, from: Vec<String>, path: &str) -> Option<Vec<String>> {
        self.walk_counting(from, path, &mut 0)
    }

    fn walk_counting(
        &self,
        from: Vec<String>,
        path: &str,
        hops: &mut usize,
    ) -> Option<Vec<String>> {
        let mut cur = if path.starts_with('/') {
            Vec::new()
        } else {
            from
        };
        for p in path.split('/') {
            match p {
                "" | "." => {}
                ".." => {
                    cur.pop();
                }
                p => {
                    cur.push(p.to_string());
                    if let Some(target) = self.links.get(&cur) {
                        *hops += 1;
                        if *hops > HOPS {
                            return None;
                        }
                        cur.pop();
                        cur = self.walk_counting(cur, target, hops)?;
                    }
                }
            }
        }
        Some(cur)
    }

    /// The location of the thing a name holds: every part but the last followed.
    pub fn locate(&self, name: &str) -> Option<Vec<String>> {
        let (start, rest) = self.split(name);
        let (parent, last) = rest.rsplit_once('/').unwrap_or(("", rest));
        if matches!(last, "" | "." | "..") {
            return self.walk(start, rest);
        }
        let mut at = self.walk(start, parent)?;
        at.push(last.to_string());
        Some(at)
    }

    /// What is at a name, as `judge_link` asks: the link there, if any.
    pub fn node(&self, name: &str) -> Node {
        match self.locate(name).and_then(|at| self.links.get(&at)) {
            Some(t) => Node::Link(t.clone()),
            None => Node::Other,
        }
    }

    /// Where a saved path really is, following every link (a root may be a link the user made).
    pub fn real(&self, name: &str) -> Option<Vec<String>> {
        let (start, rest) = self.split(name);
        self.walk(start, rest)
    }

    /// Whether the link `name -> target` leads inside one of `roots`: `None` when following
    /// it loops (it then leads nowhere).
    pub fn leads_inside(&self, name: &str, target: &str, roots: &[String]) -> Option<bool> {
        let mut from = self.locate(name)?;
        from.pop();
        let end = self.walk(from, target)?;
        Some(
            roots
                .iter()
                .filter_map(|r| self.real(r))
                .any(|r| end.len() >= r.len() && end[..r.len()] == r[..]),
        )
    }
}

/// A name's base and parts, as the packer writes names: `/x`, `~/x`, or relative.
fn name_parts(name: &str) -> (char, Vec<&str>) {
    let (base, rest) = if let Some(r) = name.strip_prefix('/') {
        ('/', r)
    } else if name == "~" {
        ('~', "")
    } else if let Some(r) = name.strip_prefix("~/") {
        ('~', r)
    } else {
        ('.', name)
    };
    let parts = if rest.is_empty() || rest == "." {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    (base, parts)
}

/// True when `name` lies at or below `root` part by part, with no empty, `.` or `..` part
/// below the root: what a name that is safe to restore under `root` looks like.
pub fn within(name: &str, root: &str) -> bool {
    let (nb, np) = name_parts(name);
    let (rb, rp) = name_parts(root);
    nb == rb
        && np.len() >= rp.len()
        && np[..rp.len()] == rp[..]
        && np[rp.len()..]
            .iter()
            .all(|p| !matches!(*p, "" | "." | ".."))
}

/// The names a name lies below, nearest first: `a/b/l` gives `a/b` and `a`; `/x/y` gives `/x`
/// and `/`; `~/x` gives `~`.
pub fn ancestors(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = name;
    while let Some((parent, _)) = cur.rsplit_once('/') {
        let parent = if parent.is_empty() { "/" } else { parent };
        out.push(parent.to_string());
        if parent == "/" {
            break;
        }
        cur = parent;
    }
    out
}

/// Joins a root and a relative rest as the packer would name an entry below it.
pub fn join(root: &str, rest: &str) -> String {
    match (root, rest) {
        (r, "") => r.to_string(),
        (".", rest) => rest.to_string(),
        (r, rest) if r.ends_with('/') => format!("{r}{rest}"),
        (r, rest) => format!("{r}/{rest}"),
    }
}
