//! The CI context: which CI this is and what it says about the run, read from the
//! environment (or git, locally) and never guessed.
//!
//! [`VARIABLES`] lists every value a key template can name (CircleCI's `.Branch` style and
//! drone-cache's `.Commit.Branch` style) with where each CI provides it; detection fills
//! them from that table, so the table, the code and the README cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::env_vars::{self as ev, Environment};

/// Where ferry is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    GithubActions,
    Circleci,
    /// drone, and Harness CI, which sets drone's `DRONE_*` variables (`DRONE=true` included).
    Drone,
    Local,
}

impl Provider {
    /// The name people know the CI by, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::GithubActions => "GitHub Actions",
            Self::Circleci => "CircleCI",
            Self::Drone => "drone / Harness",
            Self::Local => "a local run",
        }
    }
}

/// Where one CI provides a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The value of this environment variable, as it is.
    Env(&'static str),
    /// Computed from other variables, a file or git, as described.
    Derived(&'static str),
    /// This CI does not expose it.
    Absent,
}

/// One value a key template can name, under one or more names (without the leading dot).
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub names: &'static [&'static str],
    pub github: Source,
    pub circleci: Source,
    pub drone: Source,
    pub local: Source,
}

impl Variable {
    /// Where `provider` gets this value.
    pub fn source(&self, provider: Provider) -> Source {
        match provider {
            Provider::GithubActions => self.github,
            Provider::Circleci => self.circleci,
            Provider::Drone => self.drone,
            Provider::Local => self.local,
        }
    }

    /// The name the context stores the value under.
    pub fn name(&self) -> &'static str {
        self.names[0]
    }
}

use Source::{Absent, Derived, Env};

/// The project: whatever `--project` settled on; see the README.
pub const PROJECT: &str = "Project";

/// Every variable of a key template, `.Environment.NAME` aside. The first names are
/// CircleCI's; the dotted ones are drone-cache's metadata (`internal/metadata` of
/// meltwater/drone-cache), so keys written for drone-cache and Harness's cache steps work.
pub const VARIABLES: &[Variable] = &[
    Variable {
        names: &["Branch", "Commit.Branch"],
        github: Derived("`GITHUB_HEAD_REF` on pull requests, else `GITHUB_REF_NAME`"),
        circleci: Env(ev::CIRCLE_BRANCH),
        drone: Env(ev::DRONE_COMMIT_BRANCH),
        local: Derived("the checked-out branch (`git symbolic-ref HEAD`)"),
    },
    Variable {
        names: &["Revision", "Commit.Sha"],
        github: Env(ev::GITHUB_SHA),
        circleci: Env(ev::CIRCLE_SHA1),
        drone: Env(ev::DRONE_COMMIT_SHA),
        local: Derived("`git rev-parse HEAD`"),
    },
    Variable {
        names: &["BuildNum", "Build.Number"],
        github: Env(ev::GITHUB_RUN_NUMBER),
        circleci: Env(ev::CIRCLE_BUILD_NUM),
        drone: Env(ev::DRONE_BUILD_NUMBER),
        local: Absent,
    },
    Variable {
        names: &["Workflow"],
        github: Env(ev::GITHUB_RUN_ID),
        circleci: Env(ev::CIRCLE_WORKFLOW_ID),
        drone: Derived("`HARNESS_EXECUTION_ID` on Harness, else `DRONE_BUILD_NUMBER`"),
        local: Absent,
    },
    Variable {
        names: &["Job"],
        github: Env(ev::GITHUB_JOB),
        circleci: Env(ev::CIRCLE_JOB),
        drone: Env(ev::DRONE_STAGE_NAME),
        local: Absent,
    },
    Variable {
        names: &[PROJECT],
        github: Derived("`--project`, else `GITHUB_REPOSITORY`"),
        circleci: Derived("`--project`, else `CIRCLE_PROJECT_USERNAME/CIRCLE_PROJECT_REPONAME`"),
        drone: Derived("`--project`, else `DRONE_REPO`"),
        local: Derived("`--project`, else `owner/repo` of git's `origin`, else the folder's name"),
    },
    Variable {
        names: &["Commit.Ref"],
        github: Env(ev::GITHUB_REF),
        circleci: Absent,
        drone: Env(ev::DRONE_COMMIT_REF),
        local: Derived("the checked-out ref (`git symbolic-ref HEAD`)"),
    },
    Variable {
        names: &["Commit.Link"],
        github: Derived("`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/commit/$GITHUB_SHA`"),
        circleci: Absent,
        drone: Env(ev::DRONE_COMMIT_LINK),
        local: Absent,
    },
    Variable {
        names: &["Commit.Message"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_COMMIT_MESSAGE),
        local: Derived("`git log -1 --format=%B`"),
    },
    Variable {
        names: &["Commit.Remote"],
        github: Derived("`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY.git`"),
        circleci: Env(ev::CIRCLE_REPOSITORY_URL),
        drone: Env(ev::DRONE_REMOTE_URL),
        local: Derived("`git remote get-url origin`"),
    },
    Variable {
        names: &["Commit.Author.Name"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_COMMIT_AUTHOR),
        local: Derived("`git log -1 --format=%an`"),
    },
    Variable {
        names: &["Commit.Author.Email"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_COMMIT_AUTHOR_EMAIL),
        local: Derived("`git log -1 --format=%ae`"),
    },
    Variable {
        names: &["Commit.Author.Avatar"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_COMMIT_AUTHOR_AVATAR),
        local: Absent,
    },
    Variable {
        names: &["Repo.Name"],
        github: Derived("`GITHUB_REPOSITORY` after the `/`"),
        circleci: Env(ev::CIRCLE_PROJECT_REPONAME),
        drone: Env(ev::DRONE_REPO_NAME),
        local: Derived("the repository of git's `origin` URL"),
    },
    Variable {
        names: &["Repo.Namespace"],
        github: Env(ev::GITHUB_REPOSITORY_OWNER),
        circleci: Env(ev::CIRCLE_PROJECT_USERNAME),
        drone: Env(ev::DRONE_REPO_NAMESPACE),
        local: Derived("the owner in git's `origin` URL"),
    },
    Variable {
        names: &["Repo.Owner"],
        github: Env(ev::GITHUB_REPOSITORY_OWNER),
        circleci: Env(ev::CIRCLE_PROJECT_USERNAME),
        drone: Env(ev::DRONE_REPO_OWNER),
        local: Derived("the owner in git's `origin` URL"),
    },
    Variable {
        names: &["Repo.Branch"],
        github: Derived("`repository.default_branch` of the event payload (`GITHUB_EVENT_PATH`)"),
        circleci: Absent,
        drone: Env(ev::DRONE_REPO_BRANCH),
        local: Derived("`origin`'s default branch (`git symbolic-ref refs/remotes/origin/HEAD`)"),
    },
    Variable {
        names: &["Repo.Link"],
        github: Derived("`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY`"),
        circleci: Absent,
        drone: Env(ev::DRONE_REPO_LINK),
        local: Absent,
    },
    Variable {
        names: &["Repo.Avatar"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_REPO_AVATAR),
        local: Absent,
    },
    Variable {
        names: &["Repo.Private"],
        github: Derived("`repository.private` of the event payload (`GITHUB_EVENT_PATH`)"),
        circleci: Absent,
        drone: Env(ev::DRONE_REPO_PRIVATE),
        local: Absent,
    },
    Variable {
        names: &["Repo.Trusted"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_REPO_TRUSTED),
        local: Absent,
    },
    Variable {
        names: &["Build.Event"],
        github: Env(ev::GITHUB_EVENT_NAME),
        circleci: Absent,
        drone: Env(ev::DRONE_BUILD_EVENT),
        local: Absent,
    },
    Variable {
        names: &["Build.Link"],
        github: Derived("`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`"),
        circleci: Env(ev::CIRCLE_BUILD_URL),
        drone: Env(ev::DRONE_BUILD_LINK),
        local: Absent,
    },
    Variable {
        names: &["Build.Created"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_BUILD_CREATED),
        local: Absent,
    },
    Variable {
        names: &["Build.Started"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_BUILD_STARTED),
        local: Absent,
    },
    Variable {
        names: &["Build.Finished"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_BUILD_FINISHED),
        local: Absent,
    },
    Variable {
        names: &["Build.Status"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_BUILD_STATUS),
        local: Absent,
    },
    Variable {
        names: &["Build.Deploy"],
        github: Absent,
        circleci: Absent,
        drone: Env(ev::DRONE_DEPLOY_TO),
        local: Absent,
    },
];

/// The variable a template names (`Commit.Branch`, without the dot), if there is one.
pub fn variable(name: &str) -> Option<&'static Variable> {
    VARIABLES.iter().find(|v| v.names.contains(&name))
}

/// What the CI says about this run. Absent values stay `None`: key templates that use them
/// fail with an error naming them rather than rendering an empty part.
#[derive(Debug, Clone, Serialize)]
pub struct CiContext {
    pub provider: Provider,
    pub project: Option<String>,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub build_num: Option<String>,
    /// The workflow run: the keyspace of workspaces (all attempts of a GitHub run share it).
    pub workflow: Option<String>,
    /// The run of artifacts; the same as `workflow` on every CI.
    pub run: Option<String>,
    pub job: Option<String>,
    /// The other values of [`VARIABLES`] this CI provides, by their first name.
    pub metadata: BTreeMap<&'static str, String>,
}

impl CiContext {
    /// Reads the context from `env`; locally, asks git in `cwd`.
    pub fn detect(env: &Environment, cwd: &Path) -> Self {
        let s = |name: &str| env.get(name).map(str::to_string);
        let (provider, project) = if env.is_true(ev::GITHUB_ACTIONS) {
            (Provider::GithubActions, s(ev::GITHUB_REPOSITORY))
        } else if env.is_true(ev::CIRCLECI) {
            let project = match (
                s(ev::CIRCLE_PROJECT_USERNAME),
                s(ev::CIRCLE_PROJECT_REPONAME),
            ) {
                (Some(u), Some(r)) => Some(format!("{u}/{r}")),
                (None, Some(r)) => Some(r),
                _ => None,
            };
            (Provider::Circleci, project)
        } else if env.is_true(ev::DRONE) {
            (Provider::Drone, s(ev::DRONE_REPO))
        } else {
            (Provider::Local, None)
        };
        let git = (provider == Provider::Local).then(|| Git::read(cwd));
        let project = project.or_else(|| {
            git.as_ref()
                .and_then(|g| g.remote.as_deref())
                .and_then(project_from_remote)
        });
        let derived = Deriver {
            env,
            git: git.as_ref(),
        };
        let mut values: BTreeMap<&'static str, String> = VARIABLES
            .iter()
            .filter(|v| v.name() != PROJECT)
            .filter_map(|v| {
                let value = match v.source(provider) {
                    Env(name) => s(name),
                    Derived(_) => derived.value(provider, v.name()),
                    Absent => None,
                };
                Some((v.name(), value?))
            })
            .collect();
        let workflow = values.remove("Workflow");
        Self {
            provider,
            project,
            branch: values.remove("Branch"),
            revision: values.remove("Revision"),
            build_num: values.remove("BuildNum"),
            run: workflow.clone(),
            workflow,
            job: values.remove("Job"),
            metadata: values,
        }
    }

    /// The value of a template variable here, `None` when this CI does not provide it.
    /// `.Project` is not the CI's to say (it is settled with `--project`) and is `None` here.
    pub fn value(&self, variable: &Variable) -> Option<&str> {
        match variable.name() {
            "Branch" => self.branch.as_deref(),
            "Revision" => self.revision.as_deref(),
            "BuildNum" => self.build_num.as_deref(),
            "Workflow" => self.workflow.as_deref(),
            "Job" => self.job.as_deref(),
            name => self.metadata.get(name).map(String::as_str),
        }
    }
}

/// What git says about the checkout, for local runs.
struct Git {
    remote: Option<String>,
    /// `refs/heads/main`, or `None` on a detached HEAD.
    head_ref: Option<String>,
    /// `main`, from `refs/remotes/origin/HEAD`.
    origin_default: Option<String>,
    revision: Option<String>,
    author_name: Option<String>,
    author_email: Option<String>,
    message: Option<String>,
}

impl Git {
    fn read(cwd: &Path) -> Self {
        // The four questions are asked at once: asked one after the other, they made a local
        // `cache restore` of a missing key take 10–11 ms instead of 7–9 ms.
        let ask = |args: &'static [&'static str]| move || git(cwd, args);
        let (head, remote, head_ref, origin_default) = std::thread::scope(|s| {
            let remote = s.spawn(ask(&["remote", "get-url", "origin"]));
            let head_ref = s.spawn(ask(&["symbolic-ref", "-q", "HEAD"]));
            let origin = s.spawn(ask(&["symbolic-ref", "-q", "refs/remotes/origin/HEAD"]));
            let head = git(cwd, &["log", "-1", "--format=%H%x00%an%x00%ae%x00%B"]);
            let joined = |h: std::thread::ScopedJoinHandle<'_, Option<String>>| h.join().ok()?;
            (head, joined(remote), joined(head_ref), joined(origin))
        });
        let mut parts = head.as_deref().unwrap_or_default().splitn(4, '\0');
        let mut part = || {
            parts
                .next()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
        };
        let (revision, author_name, author_email, message) = (part(), part(), part(), part());
        Self {
            remote,
            head_ref,
            origin_default: origin_default
                .and_then(|r| r.strip_prefix("refs/remotes/origin/").map(str::to_string)),
            revision,
            author_name,
            author_email,
            message,
        }
    }
}

/// The [`Source::Derived`] values of each provider.
struct Deriver<'a> {
    env: &'a Environment,
    git: Option<&'a Git>,
}

impl Deriver<'_> {
    fn value(&self, provider: Provider, name: &str) -> Option<String> {
        let env = |n: &str| self.env.get(n);
        match provider {
            Provider::GithubActions => {
                let repo = env(ev::GITHUB_REPOSITORY);
                let web = || Some(format!("{}/{}", env(ev::GITHUB_SERVER_URL)?, repo?));
                match name {
                    "Branch" => env(ev::GITHUB_HEAD_REF)
                        .or_else(|| env(ev::GITHUB_REF_NAME))
                        .map(str::to_string),
                    "Commit.Link" => Some(format!("{}/commit/{}", web()?, env(ev::GITHUB_SHA)?)),
                    "Commit.Remote" => Some(format!("{}.git", web()?)),
                    "Repo.Name" => repo?.split_once('/').map(|(_, n)| n.to_string()),
                    "Repo.Link" => web(),
                    "Build.Link" => Some(format!(
                        "{}/actions/runs/{}",
                        web()?,
                        env(ev::GITHUB_RUN_ID)?
                    )),
                    "Repo.Branch" => github_event(self.env)?
                        .pointer("/repository/default_branch")?
                        .as_str()
                        .map(str::to_string),
                    "Repo.Private" => github_event(self.env)?
                        .pointer("/repository/private")?
                        .as_bool()
                        .map(|b| b.to_string()),
                    _ => None,
                }
            }
            Provider::Circleci => None,
            Provider::Drone => match name {
                "Workflow" => env(ev::HARNESS_EXECUTION_ID)
                    .or_else(|| env(ev::DRONE_BUILD_NUMBER))
                    .map(str::to_string),
                _ => None,
            },
            Provider::Local => {
                let git = self.git?;
                let owner_repo = || {
                    git.remote
                        .as_deref()
                        .and_then(project_from_remote)
                        .and_then(|p| {
                            p.split_once('/')
                                .map(|(o, r)| (o.to_string(), r.to_string()))
                        })
                };
                match name {
                    "Branch" => git
                        .head_ref
                        .as_deref()
                        .and_then(|r| r.strip_prefix("refs/heads/"))
                        .map(str::to_string),
                    "Revision" => git.revision.clone(),
                    "Commit.Ref" => git.head_ref.clone(),
                    "Commit.Message" => git.message.clone(),
                    "Commit.Remote" => git.remote.clone(),
                    "Commit.Author.Name" => git.author_name.clone(),
                    "Commit.Author.Email" => git.author_email.clone(),
                    "Repo.Name" => owner_repo().map(|(_, r)| r),
                    "Repo.Namespace" | "Repo.Owner" => owner_repo().map(|(o, _)| o),
                    "Repo.Branch" => git.origin_default.clone(),
                    _ => None,
                }
            }
        }
    }
}

/// The event payload GitHub Actions leaves in `GITHUB_EVENT_PATH`, if it can be read.
fn github_event(env: &Environment) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(env.get(ev::GITHUB_EVENT_PATH)?).ok()?;
    serde_json::from_str(&text).ok()
}

fn git(cwd: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// `owner/repo` from a git remote URL (`git@host:owner/repo.git`, `https://host/owner/repo`).
pub fn project_from_remote(url: &str) -> Option<String> {
    let trimmed = url.trim().trim_end_matches('/').trim_end_matches(".git");
    let path = match trimmed.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p)?,
        None => trimmed.rsplit_once(':').map(|(_, p)| p).unwrap_or(trimmed),
    };
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [.., owner, repo] => Some(format!("{owner}/{repo}")),
        [repo] => Some((*repo).to_string()),
        [] => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_from_common_remotes() {
        assert_eq!(
            project_from_remote("git@github.com:acme/app.git").as_deref(),
            Some("acme/app")
        );
        assert_eq!(
            project_from_remote("https://github.com/acme/app").as_deref(),
            Some("acme/app")
        );
        assert_eq!(
            project_from_remote("ssh://git@host:22/acme/app.git").as_deref(),
            Some("acme/app")
        );
    }

    #[test]
    fn github_run_attempts_share_the_run_id() {
        let env = Environment::from_pairs([
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "build"),
        ]);
        let ctx = CiContext::detect(&env, Path::new("."));
        assert_eq!(ctx.provider, Provider::GithubActions);
        assert_eq!(ctx.workflow.as_deref(), Some("42"));
        assert_eq!(ctx.job.as_deref(), Some("build"));
    }

    /// Every variable of the registry set to its own name, plus what turns each CI on.
    fn every_variable(on: &str) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = ev::ALL
            .iter()
            .map(|v| (v.name.to_string(), format!("{}-value", v.name)))
            .collect();
        for flag in [ev::GITHUB_ACTIONS, ev::CIRCLECI, ev::DRONE] {
            pairs.retain(|(k, _)| k != flag);
        }
        pairs.push((on.to_string(), "true".to_string()));
        pairs
    }

    /// The table says which variable each CI reads; detection must read exactly that one.
    #[test]
    fn each_ci_fills_every_variable_the_table_says_it_reads() {
        for (on, provider) in [
            (ev::GITHUB_ACTIONS, Provider::GithubActions),
            (ev::CIRCLECI, Provider::Circleci),
            (ev::DRONE, Provider::Drone),
        ] {
            let mut pairs = every_variable(on);
            // Harness's execution id wins over drone's build number; drone alone has none.
            pairs.retain(|(k, _)| k != ev::HARNESS_EXECUTION_ID);
            let ctx = CiContext::detect(&Environment::from_pairs(pairs), Path::new("."));
            assert_eq!(ctx.provider, provider);
            for v in VARIABLES {
                match v.source(provider) {
                    Env(name) => assert_eq!(
                        ctx.value(v),
                        Some(format!("{name}-value").as_str()),
                        "{provider:?} .{}",
                        v.name()
                    ),
                    Absent => assert_eq!(ctx.value(v), None, "{provider:?} .{}", v.name()),
                    Derived(_) => {}
                }
            }
        }
    }

    #[test]
    fn every_variable_the_table_names_is_in_the_registry() {
        for v in VARIABLES {
            for provider in [
                Provider::GithubActions,
                Provider::Circleci,
                Provider::Drone,
                Provider::Local,
            ] {
                if let Env(name) = v.source(provider) {
                    assert!(
                        ev::ALL.iter().any(|r| r.name == name),
                        "{name} (.{}) is not in env_vars.rs",
                        v.name()
                    );
                }
            }
        }
    }

    #[test]
    fn github_derives_links_names_and_the_event_payload() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let event = dir.path().join("event.json");
        std::fs::write(
            &event,
            r#"{"repository": {"default_branch": "trunk", "private": true}}"#,
        )
        .expect("write the event");
        let env = Environment::from_pairs([
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/app"),
            ("GITHUB_SHA", "abc123"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_REF_NAME", "7/merge"),
            ("GITHUB_HEAD_REF", "feature"),
            ("GITHUB_EVENT_PATH", event.to_str().expect("utf-8 path")),
        ]);
        let ctx = CiContext::detect(&env, dir.path());
        let get = |name: &str| ctx.value(variable(name).expect(name)).map(str::to_string);
        assert_eq!(get("Commit.Branch").as_deref(), Some("feature"));
        assert_eq!(get("Repo.Name").as_deref(), Some("app"));
        assert_eq!(get("Repo.Branch").as_deref(), Some("trunk"));
        assert_eq!(get("Repo.Private").as_deref(), Some("true"));
        assert_eq!(
            get("Repo.Link").as_deref(),
            Some("https://github.com/acme/app")
        );
        assert_eq!(
            get("Commit.Remote").as_deref(),
            Some("https://github.com/acme/app.git")
        );
        assert_eq!(
            get("Commit.Link").as_deref(),
            Some("https://github.com/acme/app/commit/abc123")
        );
        assert_eq!(
            get("Build.Link").as_deref(),
            Some("https://github.com/acme/app/actions/runs/42")
        );
    }

    #[test]
    fn drone_run_is_harness_execution_else_build_number() {
        let drone = Environment::from_pairs([
            ("DRONE", "true"),
            ("DRONE_REPO", "acme/app"),
            ("DRONE_BUILD_NUMBER", "12"),
            ("DRONE_STAGE_NAME", "build"),
        ]);
        let ctx = CiContext::detect(&drone, Path::new("."));
        assert_eq!(ctx.provider, Provider::Drone);
        assert_eq!(ctx.project.as_deref(), Some("acme/app"));
        assert_eq!(ctx.workflow.as_deref(), Some("12"));
        assert_eq!(ctx.run.as_deref(), Some("12"));
        assert_eq!(ctx.job.as_deref(), Some("build"));
        let harness = Environment::from_pairs([
            ("DRONE", "true"),
            ("DRONE_BUILD_NUMBER", "12"),
            ("HARNESS_EXECUTION_ID", "Zx9-exec"),
        ]);
        let ctx = CiContext::detect(&harness, Path::new("."));
        assert_eq!(ctx.workflow.as_deref(), Some("Zx9-exec"));
    }

    #[test]
    fn drone_is_detected_only_from_drone_true() {
        let env = Environment::from_pairs([("DRONE_COMMIT_BRANCH", "main"), ("DRONE", "false")]);
        let dir = tempfile::tempdir().expect("a temporary folder");
        let ctx = CiContext::detect(&env, dir.path());
        assert_eq!(ctx.provider, Provider::Local);
        assert_eq!(ctx.branch, None, "a stray DRONE_* variable is not a CI");
    }

    fn run_git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[test]
    fn local_runs_read_every_derived_value_from_git() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let d = dir.path();
        run_git(d, &["init", "-q", "-b", "feature"]);
        run_git(
            d,
            &[
                "-c",
                "user.name=Ada",
                "-c",
                "user.email=ada@example.com",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "first commit",
            ],
        );
        run_git(
            d,
            &["remote", "add", "origin", "git@github.com:acme/app.git"],
        );
        run_git(
            d,
            &[
                "symbolic-ref",
                "refs/remotes/origin/HEAD",
                "refs/remotes/origin/trunk",
            ],
        );
        let ctx = CiContext::detect(&Environment::default(), d);
        assert_eq!(ctx.provider, Provider::Local);
        assert_eq!(ctx.project.as_deref(), Some("acme/app"));
        for v in VARIABLES {
            if let Derived(how) = v.local {
                if v.name() != PROJECT {
                    assert!(ctx.value(v).is_some(), ".{} ({how})", v.name());
                }
            }
        }
        let get = |name: &str| ctx.value(variable(name).expect(name)).map(str::to_string);
        assert_eq!(get("Commit.Branch").as_deref(), Some("feature"));
        assert_eq!(get("Commit.Ref").as_deref(), Some("refs/heads/feature"));
        assert_eq!(get("Repo.Branch").as_deref(), Some("trunk"));
        assert_eq!(get("Repo.Namespace").as_deref(), Some("acme"));
        assert_eq!(get("Repo.Name").as_deref(), Some("app"));
        assert_eq!(
            get("Commit.Author.Email").as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(get("Commit.Message").as_deref(), Some("first commit"));
        assert_eq!(get("Commit.Sha").map(|s| s.len()), Some(40));
    }

    #[test]
    fn every_derived_value_of_a_ci_has_code() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let event = dir.path().join("event.json");
        std::fs::write(
            &event,
            r#"{"repository": {"default_branch": "main", "private": false}}"#,
        )
        .expect("write the event");
        for (on, provider) in [
            (ev::GITHUB_ACTIONS, Provider::GithubActions),
            (ev::CIRCLECI, Provider::Circleci),
            (ev::DRONE, Provider::Drone),
        ] {
            let mut pairs = every_variable(on);
            pairs.retain(|(k, _)| k != ev::GITHUB_EVENT_PATH && k != ev::GITHUB_REPOSITORY);
            pairs.push((ev::GITHUB_EVENT_PATH.into(), event.display().to_string()));
            pairs.push((ev::GITHUB_REPOSITORY.into(), "acme/app".into()));
            let ctx = CiContext::detect(&Environment::from_pairs(pairs), dir.path());
            for v in VARIABLES {
                if let Derived(how) = v.source(provider) {
                    if v.name() != PROJECT {
                        assert!(ctx.value(v).is_some(), "{provider:?} .{} ({how})", v.name());
                    }
                }
            }
        }
    }
}
