//! Every rule about entry names and link targets, in one place: what a name in an entry may
//! be, and where a symlink leads once it is on disk. The unpacker, the packer (which records
//! links that leave the saved paths) and artifact downloads all ask here. The table of cases
//! is the test module at the bottom.
//!
//! Names are `/`-separated and normalised, as the packer writes them: relative to the
//! restoring folder (`a/b`, `../shared/x`), absolute (`/opt/tool`), or in the home folder
//! (`~/.cargo`). A link target is judged the way the file system will resolve it: component
//! by component, following every link met on the way (those the restore makes and those
//! already on disk), never by lexical normalisation of the whole string.

use std::fmt;

use crate::paths;

/// The longest name or link target accepted, in bytes (Linux's `PATH_MAX`).
pub const NAME_MAX: usize = 4096;
/// The longest single component accepted, in bytes (`NAME_MAX` of ext4, xfs, btrfs, apfs).
pub const COMPONENT_MAX: usize = 255;
/// Links followed while judging one target before it counts as a loop (Linux's limit).
const LINK_DEPTH: usize = 40;
/// The most of a hostile name a message shows.
const SHOWN_MAX: usize = 160;

/// Why a name or a link target is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    Nul,
    NotUtf8,
    TooLong {
        len: usize,
    },
    ComponentTooLong {
        len: usize,
    },
    /// `.`, `..` or empty parts the packer never writes (`a/../b`, `a//b`, `./a`).
    NotNormal,
    Absolute,
    Parent,
    OutsideRoots {
        roots: Vec<String>,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Empty => f.write_str("empty name"),
            Refusal::Nul => f.write_str("the name holds a NUL byte"),
            Refusal::NotUtf8 => f.write_str("the name is not UTF-8"),
            Refusal::TooLong { len } => {
                write!(
                    f,
                    "the name is {len} bytes long, over the {NAME_MAX}-byte limit"
                )
            }
            Refusal::ComponentTooLong { len } => write!(
                f,
                "a part of the name is {len} bytes long, over the {COMPONENT_MAX}-byte limit"
            ),
            Refusal::NotNormal => {
                f.write_str("the name has `.`, `..` or empty parts the save did not make")
            }
            Refusal::Absolute => f.write_str("absolute path the save did not make"),
            Refusal::Parent => f.write_str("path with `..` the save did not make"),
            Refusal::OutsideRoots { roots } => {
                write!(f, "outside the saved paths ({})", roots.join(", "))
            }
        }
    }
}

/// A name or target as messages show it: valid UTF-8, at most [`SHOWN_MAX`] bytes of it, with
/// the full length when it was cut. A hostile name can be megabytes long.
pub fn shown(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(SHOWN_MAX)];
    let text = String::from_utf8_lossy(cut).escape_debug().to_string();
    if raw.len() > SHOWN_MAX {
        format!("\"{text}…\" ({} bytes)", raw.len())
    } else {
        format!("\"{text}\"")
    }
}

/// Checks an entry name as an archive or index holds it and returns it as a name: bounded,
/// UTF-8, without NUL, normalised exactly as the packer writes names (a trailing `/` is
/// allowed), and within one of `roots`.
pub fn check_name(raw: &[u8], roots: &[String]) -> Result<String, Refusal> {
    let trimmed = trim_slashes(raw);
    let name = check_shape(trimmed)?;
    if !paths::is_normal(name) {
        return Err(Refusal::NotNormal);
    }
    if root_of(name, roots).is_none() {
        return Err(if name.starts_with('/') {
            Refusal::Absolute
        } else if name.split('/').any(|part| part == "..") {
            Refusal::Parent
        } else {
            Refusal::OutsideRoots {
                roots: roots.to_vec(),
            }
        });
    }
    Ok(name.to_string())
}

/// Checks a symlink's target for shape only (bounded, UTF-8, no NUL, not empty); where it
/// leads is [`judge_link`]'s question.
pub fn check_link_target(raw: &[u8]) -> Result<String, Refusal> {
    check_shape(raw).map(str::to_string)
}

fn trim_slashes(raw: &[u8]) -> &[u8] {
    let mut end = raw.len();
    while end > 1 && raw[end - 1] == b'/' {
        end -= 1;
    }
    &raw[..end]
}

fn check_shape(raw: &[u8]) -> Result<&str, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::Empty);
    }
    if raw.len() > NAME_MAX {
        return Err(Refusal::TooLong { len: raw.len() });
    }
    if raw.contains(&0) {
        return Err(Refusal::Nul);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Refusal::NotUtf8)?;
    // A name no longer than the limit has no part longer than it.
    if text.len() > COMPONENT_MAX
        && let Some(long) = text.split('/').map(str::len).find(|&l| l > COMPONENT_MAX)
    {
        return Err(Refusal::ComponentTooLong { len: long });
    }
    Ok(text)
}

/// The longest of `roots` that `name` lies within.
pub fn root_of<'r>(name: &str, roots: &'r [String]) -> Option<&'r str> {
    roots
        .iter()
        .filter(|r| paths::is_within(name, r))
        .max_by_key(|r| r.len())
        .map(String::as_str)
}

/// What is at a name, as far as following links needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A symlink and its target.
    Link(String),
    /// A folder, a file, or nothing: no further link to follow there.
    Other,
}

/// Where a link leads when it leaves the saved paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escape {
    /// The target resolves to this name, outside every saved path.
    Outside { to: String },
    /// The target climbs with `..` out of a folder that is itself outside the saved paths,
    /// which only the file system there could resolve.
    Climbs { from: String },
    /// Following links did not end (a loop, or more than 40 links deep).
    Loop,
}

impl fmt::Display for Escape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escape::Outside { to } => write!(f, "it resolves to {}", shown(to.as_bytes())),
            Escape::Climbs { from } => write!(
                f,
                "it climbs with `..` out of {}, outside the saved paths",
                shown(from.as_bytes())
            ),
            Escape::Loop => f.write_str("following it loops or goes over 40 links deep"),
        }
    }
}

/// Judges whether a symlink at `name` (within `roots`) with `target` stays within `roots`
/// once on disk. Each component is resolved in turn; wherever the path so far lies within the
/// roots, `node` says whether a link is there (one this restore makes, or one already on
/// disk) and that link is followed. `..` is resolved only from a folder within the roots,
/// where every part is known; out of a folder outside them, out of the home folder, or out
/// of a saved path that is itself a link, it is an escape, since only the file system there
/// could say where it leads. Absolute targets are resolved from `/`.
pub fn judge_link(
    name: &str,
    target: &str,
    roots: &[String],
    node: &mut dyn FnMut(&str) -> Node,
) -> Result<(), Escape> {
    let mut hops = 0;
    let mut start = Loc::parse(name);
    if !start.up() && !target.starts_with('/') {
        // A link at `~` itself: a relative target starts in the folder above home.
        return Err(Escape::Climbs { from: start.name() });
    }
    let end = resolve(start, target, roots, node, &mut hops)?;
    if inside(&end, roots) {
        Ok(())
    } else {
        Err(Escape::Outside { to: end.name() })
    }
}

/// Where a name's path starts from: the restoring folder, `/`, or the home folder. A link
/// target's `~` is an ordinary folder name, which only this keeps apart from the home folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Cwd,
    Root,
    Home,
}

/// A resolved location: a base and normalised parts (relative ones may start with `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loc {
    base: Base,
    parts: Vec<String>,
}

impl Loc {
    fn parse(name: &str) -> Self {
        let (base, rest) = if let Some(r) = name.strip_prefix('/') {
            (Base::Root, r)
        } else if name == "~" {
            (Base::Home, "")
        } else if let Some(r) = name.strip_prefix("~/") {
            (Base::Home, r)
        } else {
            (Base::Cwd, name)
        };
        let parts = rest
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_string)
            .collect();
        Loc { base, parts }
    }

    fn name(&self) -> String {
        let joined = self.parts.join("/");
        match self.base {
            Base::Root => format!("/{joined}"),
            Base::Home if joined.is_empty() => "~".into(),
            Base::Home => format!("~/{joined}"),
            Base::Cwd if joined.is_empty() => ".".into(),
            Base::Cwd => joined,
        }
    }

    /// Moves to the parent folder; false when no name says where that is: above home, which
    /// is wherever the restoring user's home folder is.
    fn up(&mut self) -> bool {
        match self.parts.last().map(String::as_str) {
            Some("..") | None if self.base == Base::Cwd => self.parts.push("..".into()),
            Some("..") | None if self.base == Base::Home => return false,
            Some("..") | None => {}
            Some(_) => {
                self.parts.pop();
            }
        }
        true
    }

    /// True when a part of the location is a `~` folder that a name would mistake for home.
    fn is_nameable(&self) -> bool {
        !(self.base == Base::Cwd && self.parts.first().is_some_and(|p| p == "~"))
    }
}

fn inside(loc: &Loc, roots: &[String]) -> bool {
    loc.is_nameable() && root_of(&loc.name(), roots).is_some()
}

fn resolve(
    mut cur: Loc,
    target: &str,
    roots: &[String],
    node: &mut dyn FnMut(&str) -> Node,
    hops: &mut usize,
) -> Result<Loc, Escape> {
    if target.starts_with('/') {
        cur = Loc {
            base: Base::Root,
            parts: Vec::new(),
        };
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                // `..` leaves the folder a path is in on disk. Where a saved path is itself a
                // link (kept by `keep_root_links`), that folder is not the one its name is in.
                if !inside(&cur, roots) || matches!(node(&cur.name()), Node::Link(_)) || !cur.up() {
                    return Err(Escape::Climbs { from: cur.name() });
                }
            }
            p => {
                cur.parts.push(p.to_string());
                if inside(&cur, roots) {
                    if let Node::Link(next) = node(&cur.name()) {
                        *hops += 1;
                        if *hops > LINK_DEPTH {
                            return Err(Escape::Loop);
                        }
                        let mut from = cur.clone();
                        if !from.up() && !next.starts_with('/') {
                            return Err(Escape::Climbs { from: cur.name() });
                        }
                        cur = resolve(from, &next, roots, node, hops)?;
                    }
                }
            }
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The links of a tree, as `(name, target)`.
    type Links<'a> = &'a [(&'a str, &'a str)];

    fn roots(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_table() {
        let rs = roots(&["a", "/opt/tool", "~/.cargo", "../shared"]);
        let ok: &[(&str, &str)] = &[
            ("a", "a"),
            ("a/", "a"),
            ("a/b/c", "a/b/c"),
            ("a/with space/ünï", "a/with space/ünï"),
            ("a/back\\slash", "a/back\\slash"),
            ("a/..\\..\\x", "a/..\\..\\x"),
            ("/opt/tool/bin", "/opt/tool/bin"),
            ("~/.cargo/registry", "~/.cargo/registry"),
            ("../shared/x", "../shared/x"),
        ];
        for (raw, want) in ok {
            assert_eq!(
                check_name(raw.as_bytes(), &rs).as_deref(),
                Ok(*want),
                "{raw}"
            );
        }
        let bad: &[(&[u8], Refusal)] = &[
            (b"", Refusal::Empty),
            (b"a/\0b", Refusal::Nul),
            (b"a/\xff", Refusal::NotUtf8),
            (b"a/../b", Refusal::NotNormal),
            (b"a/./b", Refusal::NotNormal),
            (b"./a", Refusal::NotNormal),
            (b"a//b", Refusal::NotNormal),
            (b"a/b/../../..", Refusal::NotNormal),
            (b"/etc/passwd", Refusal::Absolute),
            (b"../x", Refusal::Parent),
            (b"..", Refusal::Parent),
            (
                b"~/.ssh/id_rsa",
                Refusal::OutsideRoots { roots: rs.clone() },
            ),
            (b"b/c", Refusal::OutsideRoots { roots: rs.clone() }),
            (b"ab", Refusal::OutsideRoots { roots: rs.clone() }),
        ];
        for (raw, want) in bad {
            assert_eq!(check_name(raw, &rs).as_ref(), Err(want), "{}", shown(raw));
        }
        let long = format!("a/{}", "x".repeat(300));
        assert_eq!(
            check_name(long.as_bytes(), &rs),
            Err(Refusal::ComponentTooLong { len: 300 })
        );
        let huge = format!("a/{}", "x/".repeat(3000));
        assert!(matches!(
            check_name(huge.as_bytes(), &rs),
            Err(Refusal::TooLong { .. })
        ));
    }

    /// Found by fuzzing (`fuzz/`, target `rules`): normalising keeps `..` after a lone `~`
    /// and after leading `..` parts, and such names passed as within the saved paths `~` and
    /// `..`, so a cache saved with `--path ~` could restore beside the home folder.
    #[test]
    fn names_climbing_out_of_a_home_or_parent_root_are_refused() {
        let rs = roots(&["~", ".."]);
        for raw in ["~/../x", "~/..", "../..", "../../etc/passwd"] {
            assert_eq!(
                check_name(raw.as_bytes(), &rs),
                Err(Refusal::Parent),
                "{raw}"
            );
        }
        assert_eq!(check_name(b"~/.ssh", &rs).as_deref(), Ok("~/.ssh"));
        assert_eq!(check_name(b"../x", &rs).as_deref(), Ok("../x"));
    }

    /// Found by `core/tests/path_rules.rs`: `a/a -> ../~` ends at a folder named `~` in the
    /// restoring folder, whose name is written `~`, and was taken for the saved path `~`, the
    /// home folder: the link was made, leading out of the saved paths.
    #[test]
    fn a_link_to_a_folder_named_like_home_is_not_taken_for_the_home_folder() {
        let rs = roots(&["a", "~"]);
        for target in ["../~", "../~/x", "./../~"] {
            assert!(
                matches!(
                    judge_link("a/a", target, &rs, &mut |_| Node::Other),
                    Err(Escape::Outside { .. })
                ),
                "{target}"
            );
        }
        assert_eq!(
            judge_link("a/a", "~", &rs, &mut |_| Node::Other),
            Ok(()),
            "a/~ is in a"
        );
    }

    #[test]
    fn shown_names_are_bounded_and_say_how_long_they_were() {
        let huge = vec![b'x'; 1 << 20];
        let s = shown(&huge);
        assert!(s.len() < 200, "{s}");
        assert!(s.ends_with("(1048576 bytes)"), "{s}");
        assert_eq!(shown(b"a\nb"), "\"a\\nb\"");
    }

    /// Links as a tree would hold them, for the judge.
    fn tree(links: &[(&str, &str)]) -> impl FnMut(&str) -> Node {
        let map: HashMap<String, String> = links
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        move |name: &str| match map.get(name) {
            Some(t) => Node::Link(t.clone()),
            None => Node::Other,
        }
    }

    #[test]
    fn links_table() {
        let rs = roots(&["a", "b/c", "/opt/tool", "~/.venv"]);
        // (links in the tree, the link judged, Ok or the escape)
        let inside: &[(Links, &str)] = &[
            (&[("a/l", "x")], "a/l"),
            (&[("a/d/l", "../x")], "a/d/l"),
            (&[("a/d/l", "../../a/x")], "a/d/l"),
            (&[("a/l", "../b/c/x")], "a/l"),
            (&[("/opt/tool/bin/x", "/opt/tool/lib/x")], "/opt/tool/bin/x"),
            (&[("/opt/tool/bin/x", "../lib/x")], "/opt/tool/bin/x"),
            (&[("~/.venv/bin/py", "python3")], "~/.venv/bin/py"),
            // a link to a link inside
            (&[("a/l", "m"), ("a/m", "d/e")], "a/l"),
            // a `~` in a target is a folder of that name, not home
            (&[("a/l", "~/x")], "a/l"),
            // a root that is itself a link, to another root
            (&[("a", "b/c")], "a"),
            // below a root that is a link the user made, links stay within it
            (&[("a", "/mnt/a"), ("a/l", "x")], "a/l"),
            (&[("a", "/mnt/a"), ("a/d/l", "../x")], "a/d/l"),
        ];
        for (links, name) in inside {
            let target = links
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .expect("the judged link is in the table");
            assert_eq!(
                judge_link(name, target, &rs, &mut tree(links)),
                Ok(()),
                "{name} -> {target}"
            );
        }
        let outside: &[(Links, &str, Escape)] = &[
            (
                &[("a/l", "/etc/passwd")],
                "a/l",
                Escape::Outside {
                    to: "/etc/passwd".into(),
                },
            ),
            (&[("a/l", "..")], "a/l", Escape::Outside { to: ".".into() }),
            (
                &[("a/l", "../../x")],
                "a/l",
                Escape::Climbs { from: ".".into() },
            ),
            // the finding: `s -> .` then `l -> s/s/../../outside` normalises lexically to
            // a/outside, but on disk it is ../outside
            (
                &[("a/s", "."), ("a/l", "s/s/../../outside")],
                "a/l",
                Escape::Climbs { from: ".".into() },
            ),
            // a link already on disk inside the tree, pointing out
            (
                &[("a/x", "/etc"), ("a/l", "x/passwd")],
                "a/l",
                Escape::Outside {
                    to: "/etc/passwd".into(),
                },
            ),
            // out through a folder that is not saved, then `..`
            (
                &[("a/l", "../z/../a/x")],
                "a/l",
                Escape::Climbs { from: "z".into() },
            ),
            (
                &[("~/.venv/bin/py", "/usr/bin/python3")],
                "~/.venv/bin/py",
                Escape::Outside {
                    to: "/usr/bin/python3".into(),
                },
            ),
            // `~` in a target is a folder named `~` below `a`, not home
            (
                &[("a/l", "~/x/../../..")],
                "a/l",
                Escape::Outside { to: ".".into() },
            ),
            (
                &[("a/l", "~/../../../x")],
                "a/l",
                Escape::Climbs { from: ".".into() },
            ),
            // found by the property tests: a saved path that is a link the user made (kept by
            // `keep_root_links`) is not where its name is, so `..` out of it leads elsewhere
            (
                &[("a", "/mnt/a"), ("a/l", "../b/c/x")],
                "a/l",
                Escape::Climbs { from: "a".into() },
            ),
            (
                &[("a", "/mnt/a"), ("a/d/l", "../../b/c/x")],
                "a/d/l",
                Escape::Climbs { from: "a".into() },
            ),
            (&[("a/l", "m"), ("a/m", "l")], "a/l", Escape::Loop),
            (&[("a/l", "l/x")], "a/l", Escape::Loop),
        ];
        for (links, name, want) in outside {
            let target = links
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| *t)
                .expect("the judged link is in the table");
            assert_eq!(
                judge_link(name, target, &rs, &mut tree(links)).as_ref(),
                Err(want),
                "{name} -> {target}"
            );
        }
    }

    /// Found by the property tests (`core/tests/path_rules.rs`): `..` out of the home folder
    /// stayed in it, so with `~` saved, `~/l -> ../x` passed as leading to `~/x`; on disk it
    /// leads beside the home folder.
    #[test]
    fn a_link_climbing_out_of_the_home_folder_is_refused() {
        let rs = roots(&["~"]);
        let climbs = Err(Escape::Climbs { from: "~".into() });
        assert_eq!(judge_link("~/l", "../x", &rs, &mut tree(&[])), climbs);
        assert_eq!(judge_link("~/d/l", "../../x", &rs, &mut tree(&[])), climbs);
        assert_eq!(judge_link("~", "~", &rs, &mut tree(&[])), climbs);
        assert_eq!(
            judge_link("~/l", "m/x", &rs, &mut tree(&[("~/m", "..")])),
            climbs
        );
        assert_eq!(judge_link("~/l", ".x/y", &rs, &mut tree(&[])), Ok(()));
        assert_eq!(judge_link("~/d/l", "../y", &rs, &mut tree(&[])), Ok(()));
    }
}
