//! Glob patterns over files (`*`, `?`, `[..]`, `{a,b}`, and `**` across folders).
//!
//! Patterns are written in the form paths are given on the command line (relative, absolute
//! or `~/`); matches come back in that same form, with the filesystem path beside them.

use std::path::PathBuf;

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

/// A path found by a pattern: its name as the user would write it, and where it is on disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub name: String,
    pub fs_path: PathBuf,
}

/// Why a pattern could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GlobError {
    #[error("invalid glob {pattern:?}: {source}")]
    Invalid {
        pattern: String,
        #[source]
        source: globset::Error,
    },
    #[error("failed to search {path} for {pattern:?}: {source}")]
    Walk {
        pattern: String,
        path: String,
        #[source]
        source: walkdir::Error,
    },
}

/// True when `s` holds glob syntax.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The part of a normalised pattern before its first component with glob syntax.
pub fn literal_base(pattern: &str) -> String {
    let absolute = pattern.starts_with('/');
    let mut parts = Vec::new();
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        if is_glob(part) {
            break;
        }
        parts.push(part);
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Compiles one pattern: `*` stays within a folder, `**` crosses folders.
pub fn matcher(pattern: &str) -> Result<GlobMatcher, GlobError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|source| GlobError::Invalid {
            pattern: pattern.to_string(),
            source,
        })
}

/// Compiles several patterns into one set.
pub fn set<S: AsRef<str>>(patterns: &[S]) -> Result<GlobSet, GlobError> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let p = p.as_ref();
        b.add(
            GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|source| GlobError::Invalid {
                    pattern: p.to_string(),
                    source,
                })?,
        );
    }
    b.build().map_err(|source| GlobError::Invalid {
        pattern: patterns
            .iter()
            .map(|p| p.as_ref())
            .collect::<Vec<_>>()
            .join(", "),
        source,
    })
}

/// Every path matching the normalised `pattern`, sorted by name.
///
/// `resolve` turns a name (relative, absolute or `~/`) into a filesystem path. Symlinks are
/// matched but not followed. With `files_only`, folders are left out.
pub fn expand(
    pattern: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
    files_only: bool,
) -> Result<Vec<Found>, GlobError> {
    let m = matcher(pattern)?;
    let base = literal_base(pattern);
    let base_fs = resolve(&base);
    if !base_fs.exists() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(&base_fs)
        .follow_links(false)
        .min_depth(1)
    {
        let entry = entry.map_err(|source| GlobError::Walk {
            pattern: pattern.to_string(),
            path: base_fs.display().to_string(),
            source,
        })?;
        if files_only && entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(&base_fs).unwrap_or(entry.path());
        let Ok(rel) = crate::paths::to_slash(rel) else {
            continue;
        };
        let name = if base == "." {
            rel
        } else if base == "/" {
            format!("/{rel}")
        } else {
            format!("{base}/{rel}")
        };
        if m.is_match(&name) {
            found.push(Found {
                name,
                fs_path: entry.path().to_path_buf(),
            });
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_base_stops_at_first_glob_part() {
        assert_eq!(literal_base("src/**/*.rs"), "src");
        assert_eq!(literal_base("*.lock"), ".");
        assert_eq!(literal_base("/abs/x/*/y"), "/abs/x");
        assert_eq!(literal_base("~/.npm/_cacache/**"), "~/.npm/_cacache");
    }

    #[test]
    fn double_star_crosses_folders_and_single_does_not() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("a/b"))?;
        std::fs::write(dir.path().join("a/top.txt"), "1")?;
        std::fs::write(dir.path().join("a/b/deep.txt"), "2")?;
        let root = dir.path().to_path_buf();
        let resolve = move |n: &str| root.join(n);
        let all = expand("a/**/*.txt", &resolve, true)?;
        let names: Vec<_> = all.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a/b/deep.txt", "a/top.txt"]);
        let one = expand("a/*.txt", &resolve, true)?;
        assert_eq!(one.len(), 1);
        Ok(())
    }
}
