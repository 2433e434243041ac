//! Key templates: CircleCI's `{{ .Branch }}` syntax with drone-cache's functions and
//! variables (`{{ .Commit.Branch }}`), so keys copied from either work unchanged.
//!
//! Every part must have a value: a missing file, a glob that matches nothing, an unknown
//! variable or function, or an unset environment variable is an error that names it.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ci::{self, CiContext, Provider};
use crate::env_vars::Environment;

/// Keys are at most this many characters after rendering.
pub const MAX_KEY_CHARS: usize = 512;

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("invalid key template {template:?}: {reason}")]
    Syntax { template: String, reason: String },
    #[error(
        "unknown template variable {name} in {template:?}; known: {}",
        known_variables()
    )]
    UnknownVariable { name: String, template: String },
    #[error(
        "unknown template function {name:?} in {template:?}; known: checksum, hashFiles, epoch, arch, os"
    )]
    UnknownFunction { name: String, template: String },
    #[error("template variable {name} has no value here ({why}); {hint}")]
    NoValue {
        name: String,
        why: String,
        hint: String,
    },
    #[error(
        "environment variable {name} used by {{{{ .Environment.{name} }}}} is not set; set it or remove it from the key"
    )]
    UnsetEnv { name: String },
    #[error("checksum: file {path:?} does not exist; check the path (relative to {cwd})")]
    MissingFile { path: String, cwd: String },
    #[error("hashFiles: glob {pattern:?} matches no file (searched from {cwd})")]
    NoMatch { pattern: String, cwd: String },
    #[error("failed to read {path} for a key template: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Glob(#[from] crate::glob::GlobError),
    #[error("key renders to {chars} characters; keys are at most {MAX_KEY_CHARS}: {key:?}")]
    TooLong { chars: usize, key: String },
    #[error("key template {template:?} renders to an empty key")]
    Empty { template: String },
}

impl TemplateError {
    /// True when the template itself is wrong (a usage error) rather than something missing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Syntax { .. }
                | Self::UnknownVariable { .. }
                | Self::UnknownFunction { .. }
                | Self::TooLong { .. }
                | Self::Empty { .. }
        )
    }
}

/// What a template can see.
pub struct TemplateContext<'a> {
    pub ci: &'a CiContext,
    pub env: &'a Environment,
    pub project: &'a str,
    pub cwd: &'a Path,
    /// Seconds since the Unix epoch, for `{{ epoch }}`.
    pub epoch: i64,
}

/// Renders `template`, failing on the first part without a value.
pub fn render(template: &str, cx: &TemplateContext<'_>) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| TemplateError::Syntax {
            template: template.to_string(),
            reason: "a {{ is never closed by }}".into(),
        })?;
        out.push_str(&expand(after[..end].trim(), template, cx)?);
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(TemplateError::Syntax {
            template: template.to_string(),
            reason: "a }} has no opening {{".into(),
        });
    }
    out.push_str(rest);
    let chars = out.chars().count();
    if chars > MAX_KEY_CHARS {
        return Err(TemplateError::TooLong { chars, key: out });
    }
    if out.trim().is_empty() {
        return Err(TemplateError::Empty {
            template: template.to_string(),
        });
    }
    Ok(out)
}

fn expand(expr: &str, template: &str, cx: &TemplateContext<'_>) -> Result<String, TemplateError> {
    if let Some(var) = expr.strip_prefix('.') {
        return variable(var, template, cx);
    }
    let (name, args) = match expr.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (expr, ""),
    };
    let args = parse_args(args, template)?;
    let no_args = |v: String| -> Result<String, TemplateError> {
        if args.is_empty() {
            Ok(v)
        } else {
            Err(TemplateError::Syntax {
                template: template.to_string(),
                reason: format!("{name} takes no arguments"),
            })
        }
    };
    match name {
        "checksum" => {
            let [file] = args.as_slice() else {
                return Err(TemplateError::Syntax {
                    template: template.to_string(),
                    reason:
                        "checksum takes one quoted file name: {{ checksum \"package-lock.json\" }}"
                            .into(),
                });
            };
            checksum(file, cx)
        }
        "hashFiles" => {
            if args.is_empty() {
                return Err(TemplateError::Syntax {
                    template: template.to_string(),
                    reason: "hashFiles takes one or more quoted globs: {{ hashFiles \"**/Cargo.lock\" }}".into(),
                });
            }
            hash_files(&args, cx)
        }
        "epoch" => no_args(cx.epoch.to_string()),
        "arch" => no_args(arch().to_string()),
        "os" => no_args(os().to_string()),
        "" => Err(TemplateError::Syntax {
            template: template.to_string(),
            reason: "empty {{ }}".into(),
        }),
        other => Err(TemplateError::UnknownFunction {
            name: other.to_string(),
            template: template.to_string(),
        }),
    }
}

/// Every variable name a template accepts, for the unknown-variable error.
fn known_variables() -> String {
    let mut names: Vec<String> = ci::VARIABLES
        .iter()
        .flat_map(|v| v.names.iter().map(|n| format!(".{n}")))
        .collect();
    names.push(".Environment.NAME".into());
    names.join(" ")
}

fn variable(var: &str, template: &str, cx: &TemplateContext<'_>) -> Result<String, TemplateError> {
    if let Some(name) = var.strip_prefix("Environment.").filter(|n| !n.is_empty()) {
        return cx
            .env
            .get(name)
            .map(str::to_string)
            .ok_or_else(|| TemplateError::UnsetEnv {
                name: name.to_string(),
            });
    }
    let Some(known) = ci::variable(var) else {
        return Err(TemplateError::UnknownVariable {
            name: format!(".{var}"),
            template: template.to_string(),
        });
    };
    if known.name() == ci::PROJECT {
        return Ok(cx.project.to_string());
    }
    if let Some(value) = cx.ci.value(known) {
        return Ok(value.to_string());
    }
    let provider = cx.ci.provider;
    let (why, hint) = match (known.name(), provider) {
        ("Branch", _) => (
            "no CI branch variable, and git has no current branch".to_string(),
            "run inside a git checkout on a branch, or in CI".to_string(),
        ),
        ("Revision", _) => (
            "no CI commit variable, and git has no HEAD".to_string(),
            "run inside a git checkout with a commit, or in CI".to_string(),
        ),
        ("BuildNum", Provider::Local) => (
            "no build number outside CI".to_string(),
            "it is set by GitHub Actions, CircleCI and drone; in a local run leave it out of the key"
                .to_string(),
        ),
        ("Workflow" | "Job", Provider::Local) => (
            format!("no {} outside CI", if known.name() == "Job" { "job name" } else { "workflow run id" }),
            "in a local run leave it out of the key".to_string(),
        ),
        _ => (
            match known.source(provider) {
                ci::Source::Absent => format!("{} does not provide it", provider.label()),
                ci::Source::Env(name) => format!("{name} is not set"),
                ci::Source::Derived(how) => format!("{} gives nothing", how.replace('`', "")),
            },
            format!(
                "it comes from {}; leave it out of the key, or use {{{{ .Environment.NAME }}}} with a variable this CI sets",
                sources(known)
            ),
        ),
    };
    Err(TemplateError::NoValue {
        name: format!(".{var}"),
        why,
        hint,
    })
}

/// Where each CI provides `v`, for error messages.
fn sources(v: &ci::Variable) -> String {
    [
        Provider::GithubActions,
        Provider::Circleci,
        Provider::Drone,
        Provider::Local,
    ]
    .into_iter()
    .filter_map(|p| {
        let how = match v.source(p) {
            ci::Source::Env(name) => name.to_string(),
            ci::Source::Derived(how) => how.replace('`', ""),
            ci::Source::Absent => return None,
        };
        Some(format!("{how} on {}", p.label()))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// Splits `"a" "b", 'c'` into its quoted strings.
fn parse_args(s: &str, template: &str) -> Result<Vec<String>, TemplateError> {
    let mut args = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
            continue;
        }
        if c != '"' && c != '\'' {
            return Err(TemplateError::Syntax {
                template: template.to_string(),
                reason: format!("arguments must be quoted strings, found {:?}", s),
            });
        }
        chars.next();
        let mut arg = String::new();
        loop {
            match chars.next() {
                Some(ch) if ch == c => break,
                Some('\\') if c == '"' => {
                    if let Some(esc) = chars.next() {
                        arg.push(esc);
                    }
                }
                Some(ch) => arg.push(ch),
                None => {
                    return Err(TemplateError::Syntax {
                        template: template.to_string(),
                        reason: "an argument's quote is never closed".into(),
                    });
                }
            }
        }
        args.push(arg);
    }
    Ok(args)
}

fn resolve(name: &str, cx: &TemplateContext<'_>) -> PathBuf {
    let p = crate::paths::expand_home(name, cx.env).unwrap_or_else(|_| PathBuf::from(name));
    if p.is_absolute() { p } else { cx.cwd.join(p) }
}

fn checksum(file: &str, cx: &TemplateContext<'_>) -> Result<String, TemplateError> {
    let path = resolve(file, cx);
    if !path.is_file() {
        return Err(TemplateError::MissingFile {
            path: file.to_string(),
            cwd: cx.cwd.display().to_string(),
        });
    }
    let mut hasher = Sha256::new();
    hash_file_into(&path, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn hash_file_into(path: &Path, hasher: &mut Sha256) -> Result<(), TemplateError> {
    let io = |source| TemplateError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// One SHA-256 over the SHA-256 of every matched file, in name order (as GitHub's hashFiles).
fn hash_files(patterns: &[String], cx: &TemplateContext<'_>) -> Result<String, TemplateError> {
    let mut files = std::collections::BTreeMap::new();
    for pattern in patterns {
        let norm = crate::paths::normalize(pattern);
        let resolver = |n: &str| resolve(n, cx);
        let found = if crate::glob::is_glob(&norm) {
            crate::glob::expand(&norm, &resolver, true)?
        } else {
            let fs_path = resolver(&norm);
            if fs_path.is_file() {
                vec![crate::glob::Found {
                    name: norm.clone(),
                    fs_path,
                }]
            } else {
                Vec::new()
            }
        };
        if found.is_empty() {
            return Err(TemplateError::NoMatch {
                pattern: pattern.clone(),
                cwd: cx.cwd.display().to_string(),
            });
        }
        for f in found {
            files.insert(f.name, f.fs_path);
        }
    }
    let mut outer = Sha256::new();
    for path in files.values() {
        let mut inner = Sha256::new();
        hash_file_into(path, &mut inner)?;
        outer.update(inner.finalize());
    }
    Ok(format!("{:x}", outer.finalize()))
}

/// The machine architecture in Go's spelling, as drone-cache renders it.
pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The operating system in Go's spelling.
pub fn os() -> &'static str {
    match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::Provider;

    fn ci() -> CiContext {
        CiContext {
            provider: Provider::Local,
            project: None,
            branch: Some("main".into()),
            revision: Some("abc".into()),
            build_num: None,
            workflow: None,
            run: None,
            job: None,
            metadata: Default::default(),
        }
    }

    fn render_in(
        template: &str,
        env: &[(&str, &str)],
        cwd: &Path,
    ) -> Result<String, TemplateError> {
        let env = Environment::from_pairs(env.iter().copied());
        let ci = CiContext::detect(&env, cwd);
        let cx = TemplateContext {
            ci: &ci,
            env: &env,
            project: "acme/app",
            cwd,
            epoch: 0,
        };
        render(template, &cx)
    }

    /// The keys of the Harness and drone-cache pipelines users copy, on drone's variables.
    #[test]
    fn drone_cache_keys_render_on_drone() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("build.gradle"), "apply plugin: 'java'\n")?;
        std::fs::write(dir.path().join("go.sum"), "example.com/m v1.0.0 h1:x\n")?;
        let env = [
            ("DRONE", "true"),
            ("DRONE_COMMIT_BRANCH", "main"),
            ("DRONE_COMMIT_SHA", "0123abc"),
            ("DRONE_COMMIT_REF", "refs/heads/main"),
            ("DRONE_REPO_NAME", "app"),
            ("DRONE_REPO_NAMESPACE", "acme"),
            ("DRONE_REPO_OWNER", "acme"),
            ("DRONE_REPO_BRANCH", "trunk"),
            ("DRONE_BUILD_NUMBER", "41"),
            ("DRONE_BUILD_EVENT", "push"),
        ];
        let gradle = format!(
            "{:x}",
            Sha256::digest(std::fs::read(dir.path().join("build.gradle"))?)
        );
        assert_eq!(
            render_in(
                "{{ .Commit.Branch }}-{{ checksum \"build.gradle\" }}",
                &env,
                dir.path()
            )?,
            format!("main-{gradle}")
        );
        let go = format!(
            "{:x}",
            Sha256::digest(std::fs::read(dir.path().join("go.sum"))?)
        );
        assert_eq!(
            render_in("cache-{{ checksum \"go.sum\" }}", &env, dir.path())?,
            format!("cache-{go}")
        );
        assert_eq!(
            render_in(
                "{{.Repo.Namespace}}/{{ .Repo.Owner }}/{{ .Repo.Name }}@{{ .Repo.Branch }}:{{ .Commit.Ref }}:{{ .Commit.Sha }}:{{ .Build.Number }}:{{ .Build.Event }}:{{ .BuildNum }}:{{ .Branch }}",
                &env,
                dir.path()
            )?,
            "acme/acme/app@trunk:refs/heads/main:0123abc:41:push:41:main"
        );
        Ok(())
    }

    #[test]
    fn unknown_variables_fail_naming_every_known_one() {
        let dir = std::env::temp_dir();
        let e = render_in("{{ .Commit.Branchh }}", &[], &dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(".Commit.Branchh"), "{e}");
        for v in ci::VARIABLES {
            for n in v.names {
                assert!(e.contains(&format!(" .{n}")), "{n} missing from: {e}");
            }
        }
        assert!(e.contains(".Environment.NAME"), "{e}");
    }

    #[test]
    fn a_variable_this_ci_lacks_names_itself_and_where_it_comes_from() {
        let dir = std::env::temp_dir();
        let e = render_in(
            "{{ .Commit.Ref }}",
            &[("CIRCLECI", "true"), ("CIRCLE_BRANCH", "main")],
            &dir,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains(".Commit.Ref"), "{e}");
        assert!(e.contains("CircleCI does not provide it"), "{e}");
        assert!(e.contains("DRONE_COMMIT_REF on drone / Harness"), "{e}");
        assert!(e.contains("GITHUB_REF on GitHub Actions"), "{e}");
        let e = render_in("{{ .Build.Event }}", &[("DRONE", "true")], &dir)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("DRONE_BUILD_EVENT is not set"), "{e}");
    }

    #[test]
    fn renders_variables_and_functions() -> Result<(), TemplateError> {
        let ci = ci();
        let env = Environment::from_pairs([("LANG_V", "3")]);
        let cwd = std::env::temp_dir();
        let cx = TemplateContext {
            ci: &ci,
            env: &env,
            project: "acme/app",
            cwd: &cwd,
            epoch: 7,
        };
        let key = render(
            "v{{ .Environment.LANG_V }}-{{ .Branch }}-{{.Revision}}-{{ epoch }}-{{ .Project }}",
            &cx,
        )?;
        assert_eq!(key, "v3-main-abc-7-acme/app");
        Ok(())
    }

    #[test]
    fn missing_parts_are_errors_that_name_them() {
        let ci = ci();
        let env = Environment::default();
        let cwd = std::env::temp_dir();
        let cx = TemplateContext {
            ci: &ci,
            env: &env,
            project: "p",
            cwd: &cwd,
            epoch: 0,
        };
        let e = render("{{ .BuildNum }}", &cx)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(".BuildNum"), "{e}");
        let e = render("{{ .Environment.NOPE_X }}", &cx)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("NOPE_X"), "{e}");
        let e = render("{{ shasum \"x\" }}", &cx)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("shasum"), "{e}");
        let e = render("{{ checksum \"no-such.lock\" }}", &cx)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no-such.lock"), "{e}");
        assert!(render("a{{ .Branch", &cx).is_err());
    }
}
