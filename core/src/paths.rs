//! Paths as users give them: `~/` expansion, lexical normalisation, and key encoding for the store.

use std::path::{Component, Path, PathBuf};

use crate::env_vars::{Environment, HOME};

/// Expands a leading `~/` (or a lone `~`) to the home folder named by `HOME`.
pub fn expand_home(raw: &str, env: &Environment) -> Result<PathBuf, String> {
    if raw == "~" || raw.starts_with("~/") {
        let home = env.get(HOME).ok_or_else(|| {
            format!("{raw:?} starts with ~ but HOME is not set; set HOME or give an absolute path")
        })?;
        let rest = raw.trim_start_matches('~').trim_start_matches('/');
        Ok(if rest.is_empty() {
            PathBuf::from(home)
        } else {
            Path::new(home).join(rest)
        })
    } else {
        Ok(PathBuf::from(raw))
    }
}

/// Normalises a `/`-separated path lexically: drops `.` parts and empty parts, keeps a
/// leading `/`, `~` and leading `..` parts, and folds `a/..`.
pub fn normalize(raw: &str) -> String {
    let absolute = raw.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." && !(last == "~" && parts.len() == 1) => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// True when [`normalize`] leaves `raw` as it is.
pub fn is_normal(raw: &str) -> bool {
    // Most names are relative and made of plain parts: no need to build the normal form, nor
    // to split them where no part can be empty, `.` or `..`.
    let plain = |raw: &str| {
        !raw.is_empty()
            && !raw.starts_with(['/', '.'])
            && !raw.ends_with('/')
            && !raw.contains("//")
            && !raw.contains("/.")
    };
    plain(raw)
        || raw
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
        || normalize(raw) == raw
}

/// True when `path` equals `root` or lies below it (both normalised, `/`-separated). A `..`
/// below the root climbs back out of it: normalising keeps `..` after leading `..` parts and
/// after a lone `~`, so `../..` is not within `..`, nor `~/../x` within `~`.
pub fn is_within(path: &str, root: &str) -> bool {
    let below = if root == "." {
        if path.starts_with('/') || path.starts_with("..") || path.starts_with('~') {
            return false;
        }
        path
    } else if path == root {
        ""
    } else {
        match path.strip_prefix(root) {
            Some(rest) if rest.starts_with('/') || root.ends_with('/') => rest,
            _ => return false,
        }
    };
    !below.contains("..") || !below.split('/').any(|part| part == "..")
}

/// Converts a filesystem path to a `/`-separated string, refusing non-UTF-8 names.
pub fn to_slash(path: &Path) -> Result<String, String> {
    let mut out = String::new();
    for (i, c) in path.components().enumerate() {
        match c {
            Component::RootDir => out.push('/'),
            Component::Prefix(p) => out.push_str(&p.as_os_str().to_string_lossy()),
            Component::CurDir => {}
            Component::ParentDir => {
                push_part(&mut out, i, "..");
            }
            Component::Normal(n) => {
                let s = n
                    .to_str()
                    .ok_or_else(|| format!("{} is not valid UTF-8", path.display()))?;
                push_part(&mut out, i, s);
            }
        }
    }
    Ok(if out.is_empty() { ".".into() } else { out })
}

fn push_part(out: &mut String, _i: usize, part: &str) {
    if !out.is_empty() && !out.ends_with('/') {
        out.push('/');
    }
    out.push_str(part);
}

/// Encodes any string into a store-safe path part: `[A-Za-z0-9_-]` stay, every other byte
/// becomes `=XX`. The encoding of a prefix is a prefix of the encoding, so prefix matches of
/// keys are prefix matches of names.
pub fn encode_part(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Decodes [`encode_part`]; `None` for a string it could not have made.
pub fn decode_part(enc: &str) -> Option<String> {
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = enc.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Where paths as users give them are on this machine: relative to `cwd`, absolute as they
/// are, `~/` in the home folder of `env`.
#[derive(Debug, Clone)]
pub struct PathContext {
    pub cwd: PathBuf,
    pub env: Environment,
}

impl PathContext {
    /// The filesystem path of a name as given.
    pub fn resolve(&self, name: &str) -> PathBuf {
        if name.starts_with('~') {
            let p = expand_home(name, &self.env).unwrap_or_else(|_| PathBuf::from(name));
            return if p.is_absolute() { p } else { self.cwd.join(p) };
        }
        // `join` keeps an absolute name as it is.
        self.cwd.join(name)
    }

    /// Checks that a name can be resolved here (a `~/` name needs `HOME`).
    pub fn check(&self, name: &str) -> Result<(), String> {
        if name.starts_with('~') {
            expand_home(name, &self.env)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_dots_but_keeps_leading_parent() {
        assert_eq!(normalize("./a/b/../c/"), "a/c");
        assert_eq!(normalize("../x/./y"), "../x/y");
        assert_eq!(normalize("/abs//p/.."), "/abs");
        assert_eq!(normalize("~/.cargo/registry"), "~/.cargo/registry");
        assert_eq!(normalize("."), ".");
    }

    #[test]
    fn is_normal_says_what_normalize_says() {
        for raw in [
            "a/b", "a//b", "./a", "a/.", "a/..", "..", "../a", "/abs", "/", ".", "~", "~/x", "a/",
            "", "~/../x", "a/b/../c", "a/./b", "~/.cargo", "..a/b.",
        ] {
            assert_eq!(is_normal(raw), normalize(raw) == raw, "{raw:?}");
        }
    }

    #[test]
    fn is_within_respects_component_boundaries() {
        assert!(is_within("node_modules/a", "node_modules"));
        assert!(!is_within("node_modules2/a", "node_modules"));
        assert!(is_within("a", "."));
        assert!(!is_within("../a", "."));
    }

    /// Found by fuzzing (`fuzz/`, target `rules`): `~/../x` was within `~`, so a cache saved
    /// with `--path ~` could restore an entry beside the home folder, and `../../x` one beside
    /// the parent of a cache saved with `--path ..`.
    #[test]
    fn a_parent_part_below_a_root_climbs_out_of_it() {
        assert!(!is_within("~/../x", "~"));
        assert!(!is_within("~/..", "~"));
        assert!(!is_within("../..", ".."));
        assert!(!is_within("../../etc/passwd", ".."));
        assert!(!is_within("../up/../x", "../up"));
        assert!(!is_within("a/../../x", "."));
        assert!(is_within("../x", ".."));
        assert!(is_within("../..", "../.."));
        assert!(is_within("~/.x", "~"));
        assert!(is_within("/", "/"));
        assert!(is_within("/etc", "/"));
    }

    #[test]
    fn key_encoding_round_trips_and_keeps_prefixes() {
        let key = "v1-deps-ä b/c.lock=";
        let enc = encode_part(key);
        assert!(
            enc.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-=".contains(c))
        );
        assert_eq!(decode_part(&enc).as_deref(), Some(key));
        assert!(enc.starts_with(&encode_part("v1-deps-ä")));
    }
}
