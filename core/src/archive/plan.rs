//! Planning a pack: the paths as users give them (files, folders, globs, `!GLOB` excludes)
//! turned into pack roots, the roots a manifest records, and warnings for what matched nothing.

use super::PackRoot;
use crate::glob::{self, GlobError};
use crate::paths::{self, PathContext};

/// What to pack for a list of paths as given.
#[derive(Debug, Clone, Default)]
pub struct PackPlan {
    /// Where each packed path is, sorted by name; a match inside a folder packed whole is
    /// packed once, with that folder.
    pub roots: Vec<PackRoot>,
    /// Entry-name roots for the manifest, sorted: every entry lies within one of them (a glob
    /// records its literal base).
    pub manifest_roots: Vec<String>,
    /// Normalised exclude patterns: the `--exclude` values and the `!GLOB` paths.
    pub excludes: Vec<String>,
    /// One line per path that matched nothing.
    pub warnings: Vec<String>,
}

/// Why the paths could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error(transparent)]
    Glob(#[from] GlobError),
}

/// Resolves `paths` (and `excludes`) in `at`. Paths that match nothing become warnings; an
/// empty plan is the caller's to refuse.
pub fn plan(
    paths: &[String],
    excludes: &[String],
    at: &PathContext,
) -> Result<PackPlan, PlanError> {
    let mut roots: Vec<PackRoot> = Vec::new();
    let mut manifest_roots = Vec::new();
    let mut excludes: Vec<String> = excludes.iter().map(|e| paths::normalize(e)).collect();
    let mut warnings = Vec::new();
    let resolve = |n: &str| at.resolve(n);
    for raw in paths {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        if let Some(ex) = raw.strip_prefix('!') {
            excludes.push(paths::normalize(ex));
            continue;
        }
        at.check(raw).map_err(|reason| PlanError::InvalidPath {
            path: raw.to_string(),
            reason,
        })?;
        let name = paths::normalize(raw);
        if glob::is_glob(&name) {
            let found = glob::expand(&name, &resolve, false)?;
            if found.is_empty() {
                warnings.push(format!("path {raw:?} matches nothing"));
                continue;
            }
            manifest_roots.push(glob::literal_base(&name));
            for f in found {
                roots.push(PackRoot {
                    name: f.name,
                    fs_path: f.fs_path,
                });
            }
        } else {
            let fs_path = resolve(&name);
            if std::fs::symlink_metadata(&fs_path).is_err() {
                warnings.push(format!("path {raw:?} matches nothing"));
                continue;
            }
            manifest_roots.push(name.clone());
            roots.push(PackRoot { name, fs_path });
        }
    }
    roots.sort_by(|a, b| a.name.cmp(&b.name));
    let mut kept: Vec<PackRoot> = Vec::new();
    for r in roots {
        if kept
            .iter()
            .any(|k| k.name != "." && paths::is_within(&r.name, &k.name) && k.fs_path.is_dir())
            || kept.iter().any(|k| {
                k.name == "." && !r.name.starts_with(['/', '~']) && !r.name.starts_with("..")
            })
        {
            continue;
        }
        kept.push(r);
    }
    manifest_roots.sort();
    manifest_roots.dedup();
    Ok(PackPlan {
        roots: kept,
        manifest_roots,
        excludes,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env_vars::Environment;

    #[test]
    fn globs_record_their_base_and_nested_matches_pack_once()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("dist/js"))?;
        std::fs::write(dir.path().join("dist/js/app.js"), "1")?;
        std::fs::write(dir.path().join("dist/index.html"), "2")?;
        let at = PathContext {
            cwd: dir.path().to_path_buf(),
            env: Environment::default(),
        };
        let paths = [
            "dist".to_string(),
            "dist/**/*.js".into(),
            "missing".into(),
            "!**/*.map".into(),
        ];
        let p = plan(&paths, &[], &at)?;
        let names: Vec<_> = p.roots.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["dist"]);
        assert_eq!(p.manifest_roots, ["dist"]);
        assert_eq!(p.excludes, ["**/*.map"]);
        assert_eq!(p.warnings.len(), 1);
        Ok(())
    }
}
