//! The CI context: which CI this is and what it says about the run, read from the
//! environment (or git, locally) and never guessed.

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
    Local,
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
    /// The run of artifacts; the same as `workflow` on both CIs.
    pub run: Option<String>,
    pub job: Option<String>,
}

impl CiContext {
    /// Reads the context from `env`; locally, asks git in `cwd` for branch, revision and remote.
    pub fn detect(env: &Environment, cwd: &Path) -> Self {
        let s = |name: &str| env.get(name).map(str::to_string);
        if env.is_true(ev::GITHUB_ACTIONS) {
            let run = s(ev::GITHUB_RUN_ID);
            return Self {
                provider: Provider::GithubActions,
                project: s(ev::GITHUB_REPOSITORY),
                branch: s(ev::GITHUB_HEAD_REF).or_else(|| s(ev::GITHUB_REF_NAME)),
                revision: s(ev::GITHUB_SHA),
                build_num: s(ev::GITHUB_RUN_NUMBER),
                workflow: run.clone(),
                run,
                job: s(ev::GITHUB_JOB),
            };
        }
        if env.is_true(ev::CIRCLECI) {
            let run = s(ev::CIRCLE_WORKFLOW_ID);
            let project = match (
                s(ev::CIRCLE_PROJECT_USERNAME),
                s(ev::CIRCLE_PROJECT_REPONAME),
            ) {
                (Some(u), Some(r)) => Some(format!("{u}/{r}")),
                (None, Some(r)) => Some(r),
                _ => None,
            };
            return Self {
                provider: Provider::Circleci,
                project,
                branch: s(ev::CIRCLE_BRANCH),
                revision: s(ev::CIRCLE_SHA1),
                build_num: s(ev::CIRCLE_BUILD_NUM),
                workflow: run.clone(),
                run,
                job: s(ev::CIRCLE_JOB),
            };
        }
        Self {
            provider: Provider::Local,
            project: git(cwd, &["remote", "get-url", "origin"])
                .and_then(|u| project_from_remote(&u)),
            branch: git(cwd, &["symbolic-ref", "--short", "-q", "HEAD"]),
            revision: git(cwd, &["rev-parse", "-q", "--verify", "HEAD"]),
            build_num: None,
            workflow: None,
            run: None,
            job: None,
        }
    }
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
}
