//! Settling: flags, environment and CI context merged once into the request each mode crate
//! takes ([`Action`]). Commands act on those and never read clap types or `std::env`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use ferry_artifacts::{DownloadRequest, Target, UploadRequest};
use ferry_caches::{ExportRequest, RestoreRequest, SaveRequest};
use ferry_core::archive::Format;
use ferry_core::ci::CiContext;
use ferry_core::entry::Encoding;
use ferry_core::env_vars::{self as ev, Environment};
use ferry_core::retention::PruneRequest;
use ferry_core::trust::sign::{Signer, Trust, TrustedKeys};
use ferry_core::units::{self, Ttl};
use ferry_workspace_layers::{AttachRequest, PersistRequest};
use std::sync::Arc;

use crate::cli::{
    self, ArtifactsCommand, CacheCommand, Cli, Command, GlobalArgs, WorkspaceCommand,
};
use crate::errors::CliError;
use crate::output::Output;

/// What every command knows.
pub struct Globals {
    pub store_url: String,
    pub project: String,
    pub output: Output,
    pub env: Environment,
    pub ci: CiContext,
    pub cwd: PathBuf,
    /// The key this job signs with and the keys it trusts.
    pub trust: Trust,
}

impl Globals {
    pub fn settle(args: &GlobalArgs) -> Result<Self, CliError> {
        let env = Environment::capture();
        let cwd = std::env::current_dir()
            .map_err(|e| CliError::Usage(format!("cannot read the current folder: {e}")))?;
        let ci = CiContext::detect(&env, &cwd);
        let store_url = match &args.store {
            Some(s) if !s.trim().is_empty() => s.clone(),
            // Inside GitHub Actions with no store set, GitHub's own services need no set-up.
            _ if env.get(ev::ACTIONS_RESULTS_URL).is_some() => "gha://".to_string(),
            _ => ferry_core::store::default_store_url(&env).ok_or_else(|| {
                CliError::Usage("no store given and neither XDG_CACHE_HOME nor HOME is set; pass --store or set FERRY_STORE".into())
            })?,
        };
        let project = args
            .project
            .clone()
            .filter(|p| !p.trim().is_empty())
            .or_else(|| ci.project.clone())
            .or_else(|| cwd.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .unwrap_or_else(|| "default".to_string());
        let output = Output {
            store: store_url.clone(),
            github_actions: env.is_true(ev::GITHUB_ACTIONS),
            json: args.json,
            quiet: args.quiet,
            verbose: args.verbose,
            progress: !args.no_progress && !args.quiet && std::io::stderr().is_terminal(),
            github_output: if env.is_true(ev::GITHUB_ACTIONS) {
                env.get(ev::GITHUB_OUTPUT).map(PathBuf::from)
            } else {
                None
            },
            step_summary: if env.is_true(ev::GITHUB_ACTIONS) {
                env.get(ev::GITHUB_STEP_SUMMARY).map(PathBuf::from)
            } else {
                None
            },
        };
        let trust = settle_trust(&env)?;
        Ok(Self {
            store_url,
            project,
            output,
            env,
            ci,
            cwd,
            trust,
        })
    }

    /// Opens the store; on GitHub Actions every secret it comes to hold (the signatures of
    /// the URLs GitHub's services sign) is masked in the job's log first.
    pub fn open_store(&self) -> Result<ferry_core::store::Store, CliError> {
        let options = ferry_core::store::OpenOptions {
            secrets: self.output.mask_sink(),
        };
        Ok(ferry_core::store::Store::open_with(
            &self.store_url,
            &self.env,
            &options,
        )?)
    }

    /// The store, with its transfers drawing a byte-count bar showing `msg` on a terminal.
    pub fn open_store_with_bar(
        &self,
        msg: impl Into<String>,
    ) -> Result<
        (
            ferry_core::store::Store,
            Option<Arc<crate::output::TransferBar>>,
        ),
        CliError,
    > {
        let store = self.open_store()?;
        Ok(match self.output.transfer_bar(msg) {
            Some(bar) => (store.with_progress(bar.clone()), Some(bar)),
            None => (store, None),
        })
    }

    pub fn path_context(&self) -> ferry_core::paths::PathContext {
        ferry_core::paths::PathContext {
            cwd: self.cwd.clone(),
            env: self.env.clone(),
        }
    }

    /// Renders a key template against this run.
    pub fn render(&self, template: &str) -> Result<String, CliError> {
        let cx = ferry_core::template::TemplateContext {
            ci: &self.ci,
            env: &self.env,
            project: &self.project,
            cwd: &self.cwd,
            epoch: chrono::Utc::now().timestamp(),
        };
        Ok(ferry_core::template::render(template, &cx)?)
    }
}

/// `FERRY_SIGNING_KEY` and `FERRY_TRUSTED_KEYS`, read once.
fn settle_trust(env: &Environment) -> Result<Trust, CliError> {
    let signer = match env.get(ev::FERRY_SIGNING_KEY) {
        Some(text) => Some(Arc::new(Signer::parse(text)?)),
        None => None,
    };
    let trusted = match env.get(ev::FERRY_TRUSTED_KEYS) {
        Some(text) => Some(TrustedKeys::parse(text)?).filter(|k| !k.is_empty()),
        None => None,
    };
    Ok(Trust { signer, trusted })
}

/// A scope as given: `default` (or nothing) is the project-wide scope.
pub fn settle_scope(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty() && *s != "default")
        .map(str::to_string)
}

/// One command, settled into what its mode crate takes.
pub enum Action {
    CacheSave(SaveRequest),
    CacheRestore {
        request: RestoreRequest,
        /// Exit 3 (5 when only untrusted entries matched) on a miss.
        fail_on_miss: bool,
    },
    CacheLs {
        prefix: Option<String>,
    },
    CacheRm {
        scope: Option<String>,
        keys: Vec<String>,
    },
    CacheExport(ExportRequest),
    WorkspacePersist(PersistRequest),
    WorkspaceAttach(AttachRequest),
    WorkspaceLs {
        workflow: String,
    },
    ArtifactsUpload(UploadRequest),
    ArtifactsLs(Target),
    ArtifactsDownload(DownloadRequest),
    ArtifactsUrl {
        target: Target,
        path: String,
        expires: Duration,
    },
    Prune(PruneRequest),
    /// The key, rendered.
    Key(String),
    Ui {
        request: ferry_ui::UiRequest,
        /// Open the page in the default browser.
        open: bool,
    },
    Keygen,
}

/// Parses nothing and reads the environment once: the command line as clap gave it, the
/// environment and the CI context become the globals and one [`Action`].
pub fn settle(cli: Cli) -> Result<(Globals, Action), CliError> {
    let globals = Globals::settle(&cli.global)?;
    let action = match cli.command {
        Command::Cache(c) => settle_cache(c, &globals)?,
        Command::Workspace(c) => settle_workspace(c, &globals)?,
        Command::Artifacts(c) => settle_artifacts(c, &globals)?,
        Command::Prune(args) => Action::Prune(PruneRequest {
            project: globals.project.clone(),
            dry_run: args.dry_run,
            max_cache_size: args
                .max_cache_size
                .as_deref()
                .map(units::parse_size)
                .transpose()?,
            grace: prune_grace(&globals.env)?,
            as_of: args
                .as_of
                .as_deref()
                .map(|t| units::parse_instant(t, chrono::Utc::now()))
                .transpose()?,
            repack: args.repack,
            trust: globals.trust.clone(),
        }),
        Command::Key(args) => Action::Key(globals.render(&args.template)?),
        Command::Ui(args) => Action::Ui {
            request: ferry_ui::UiRequest {
                store_url: globals.store_url.clone(),
                project: globals.project.clone(),
                listen: args.listen.trim().parse().map_err(|_| {
                    CliError::Usage(format!(
                        "--listen {:?} is not an address and port; e.g. 127.0.0.1:8421 (port 0 picks a free one)",
                        args.listen
                    ))
                })?,
                allow_delete: args.allow_delete,
                trust: globals.trust.clone(),
                prune_grace: prune_grace(&globals.env)?,
            },
            open: args.open,
        },
        Command::Keygen => Action::Keygen,
    };
    Ok((globals, action))
}

/// How old unreferenced data must be before prune deletes it.
fn prune_grace(env: &Environment) -> Result<Duration, CliError> {
    Ok(match env.get(ev::FERRY_PRUNE_GRACE) {
        Some(g) => units::parse_duration(g)?,
        None => ferry_core::retention::DEFAULT_GRACE,
    })
}

/// `--format`: `chunked` (format 2) or a compression of format 1's archive.
fn settle_format(raw: &str) -> Result<(Encoding, Format), CliError> {
    if raw.trim().eq_ignore_ascii_case("chunked") {
        return Ok((Encoding::Chunked, Format::Zstd));
    }
    let format = Format::parse(raw.trim()).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown --format {raw:?}; use chunked, zstd, gzip or tar"
        ))
    })?;
    Ok((Encoding::Tar, format))
}

/// Scopes as given to `--fallback-scope`, blanks dropped.
fn settle_scopes(raw: &[String]) -> Vec<Option<String>> {
    raw.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| settle_scope(Some(s)))
        .collect()
}

/// Lines of a multi-line flag value, trimmed, blank ones dropped.
fn lines(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.lines())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

fn ttl_after(raw: &str) -> Result<Duration, CliError> {
    match units::parse_ttl(raw, false)? {
        Ttl::After(d) => Ok(d),
        Ttl::Never => Err(CliError::Usage(format!("--ttl {raw} is not allowed here"))),
    }
}

fn settle_cache(command: CacheCommand, globals: &Globals) -> Result<Action, CliError> {
    Ok(match command {
        CacheCommand::Save(args) => {
            let (encoding, format) = settle_format(&args.format)?;
            if let Some(level) = args.level {
                let ok = match (encoding, format) {
                    (Encoding::Chunked, _) | (_, Format::Zstd) => (1..=22).contains(&level),
                    (_, Format::Gzip) => (0..=9).contains(&level),
                    (_, Format::Tar) => true,
                };
                if !ok {
                    return Err(CliError::Usage(format!(
                        "--level {level} is out of range for {} (zstd and chunked 1-22, gzip 0-9)",
                        args.format
                    )));
                }
            }
            let restore_keys = lines(&args.restore_keys)
                .iter()
                .map(|t| globals.render(t))
                .collect::<Result<Vec<_>, _>>()?;
            Action::CacheSave(SaveRequest {
                project: globals.project.clone(),
                key: globals.render(&args.key)?,
                paths: args.paths,
                excludes: args.excludes,
                encoding,
                format,
                level: args.level,
                ttl: ttl_after(&args.ttl)?,
                force: args.force,
                scope: settle_scope(args.scope.scope.as_deref()),
                restore_keys,
                fallback_scopes: settle_scopes(&args.fallback_scopes),
                state_dir: state_dir(&globals.env, "caches"),
                trust: globals.trust.clone(),
                at: globals.path_context(),
            })
        }
        CacheCommand::Restore(args) => {
            let max_age = match &args.max_age {
                Some(d) => Some(units::parse_duration(d)?),
                None => None,
            };
            let restore_keys = lines(&args.restore_keys)
                .iter()
                .map(|t| globals.render(t))
                .collect::<Result<Vec<_>, _>>()?;
            Action::CacheRestore {
                request: RestoreRequest {
                    project: globals.project.clone(),
                    key: globals.render(&args.key)?,
                    restore_keys,
                    exact: args.exact,
                    lookup_only: args.lookup_only,
                    keep_root_links: args.links.keep_root_links,
                    scope: settle_scope(args.scope.scope.as_deref()),
                    fallback_scopes: settle_scopes(&args.fallback_scopes),
                    expected_paths: lines(&args.paths),
                    max_age,
                    trust: globals.trust.clone(),
                    at: globals.path_context(),
                    state_dir: state_dir(&globals.env, "caches"),
                    footprints: footprint_dir(&globals.env),
                },
                fail_on_miss: args.fail_on_miss,
            }
        }
        CacheCommand::Ls(args) => Action::CacheLs {
            prefix: args.prefix,
        },
        CacheCommand::Rm(args) => Action::CacheRm {
            scope: settle_scope(args.scope.scope.as_deref()),
            keys: args.keys,
        },
        CacheCommand::Export(args) => Action::CacheExport(ExportRequest {
            project: globals.project.clone(),
            key: args.key,
            scope: settle_scope(args.scope.scope.as_deref()),
            trust: globals.trust.clone(),
            out: match args.output.as_deref().map(str::trim) {
                None | Some("-") => None,
                Some(o) => Some(folder_or_file("--output", o, globals)?),
            },
        }),
    })
}

fn settle_workspace(command: WorkspaceCommand, globals: &Globals) -> Result<Action, CliError> {
    Ok(match command {
        WorkspaceCommand::Persist(args) => Action::WorkspacePersist(PersistRequest {
            project: globals.project.clone(),
            workflow: workspace_workflow(&args.run.workflow, globals)?,
            job: workspace_job(&args.job.job, globals)
                .ok_or_else(|| CliError::Usage(no_job_message()))?,
            root: folder("--root", &args.root, globals)?,
            paths: args.paths,
            ttl: ttl_after(&args.ttl)?,
            state_dir: workspace_state_dir(&globals.env)?,
            trust: globals.trust.clone(),
            encoding: settle_format(&args.format)?.0,
            format: settle_format(&args.format)?.1,
        }),
        WorkspaceCommand::Attach(args) => Action::WorkspaceAttach(AttachRequest {
            project: globals.project.clone(),
            workflow: workspace_workflow(&args.run.workflow, globals)?,
            job: workspace_job(&args.job.job, globals),
            at: folder("--at", &args.at, globals)?,
            from: lines(&args.from),
            state_dir: workspace_state_dir(&globals.env)?,
            keep_root_links: args.links.keep_root_links,
            trust: globals.trust.clone(),
        }),
        WorkspaceCommand::Ls(args) => Action::WorkspaceLs {
            workflow: workspace_workflow(&args.run.workflow, globals)?,
        },
    })
}

fn settle_artifacts(command: ArtifactsCommand, globals: &Globals) -> Result<Action, CliError> {
    Ok(match command {
        ArtifactsCommand::Upload(args) => Action::ArtifactsUpload(UploadRequest {
            project: globals.project.clone(),
            target: artifact_target(&args.target, globals)?,
            paths: args.paths,
            destination: args.destination.filter(|d| !d.trim().is_empty()),
            ttl: units::parse_ttl(&args.ttl, true)?,
            overwrite: args.overwrite,
            trust: globals.trust.clone(),
            at: globals.path_context(),
        }),
        ArtifactsCommand::Ls(args) => Action::ArtifactsLs(artifact_target(&args.target, globals)?),
        ArtifactsCommand::Download(args) => {
            let to = args.to.trim();
            if to.is_empty() {
                return Err(CliError::Usage(
                    "--to needs a folder to download into".into(),
                ));
            }
            let cx = globals.path_context();
            cx.check(to)
                .map_err(|reason| CliError::Usage(format!("--to {to:?}: {reason}")))?;
            Action::ArtifactsDownload(DownloadRequest {
                project: globals.project.clone(),
                target: artifact_target(&args.target, globals)?,
                pattern: args.pattern.filter(|p| !p.trim().is_empty()),
                to: cx.resolve(to),
                trust: globals.trust.clone(),
            })
        }
        ArtifactsCommand::Url(args) => Action::ArtifactsUrl {
            target: artifact_target(&args.target, globals)?,
            path: args.path,
            expires: units::parse_duration(&args.expires)?,
        },
    })
}

/// Where a mode keeps the state of a job (`what`: `caches`, `workspaces`): the runner's
/// per-job temporary folder on GitHub Actions, else `$XDG_STATE_HOME/ferry/<what>`, else
/// `~/.local/state/ferry/<what>`; `None` when neither is set.
fn state_dir(env: &Environment, what: &str) -> Option<PathBuf> {
    if let Some(tmp) = env.get(ev::RUNNER_TEMP) {
        return Some(PathBuf::from(tmp).join("ferry").join(what));
    }
    if let Some(state) = env.get(ev::XDG_STATE_HOME) {
        return Some(PathBuf::from(state).join("ferry").join(what));
    }
    env.get(ev::HOME)
        .map(|home| PathBuf::from(home).join(".local/state/ferry").join(what))
}

/// Where chunked restores leave their footprints: `$XDG_STATE_HOME/ferry/footprints`, else
/// `~/.local/state/ferry/footprints`; never the job's temporary folder, since what they
/// describe is the tree a self-hosted runner's next job restores into.
fn footprint_dir(env: &Environment) -> Option<PathBuf> {
    if let Some(state) = env.get(ev::XDG_STATE_HOME) {
        return Some(PathBuf::from(state).join("ferry/footprints"));
    }
    env.get(ev::HOME)
        .map(|home| PathBuf::from(home).join(".local/state/ferry/footprints"))
}

/// A file named on the command line, resolved against the current folder and `~/`.
fn folder_or_file(flag: &str, value: &str, globals: &Globals) -> Result<PathBuf, CliError> {
    folder(flag, value, globals)
}

/// Where the workspace commands keep each job's state (the layers it attached): the runner's
/// per-job temporary folder on GitHub Actions, else `$XDG_STATE_HOME/ferry/workspaces`, else
/// `~/.local/state/ferry/workspaces`. Never inside the user's tree.
fn workspace_state_dir(env: &Environment) -> Result<PathBuf, CliError> {
    if let Some(tmp) = env.get(ev::RUNNER_TEMP) {
        return Ok(PathBuf::from(tmp).join("ferry/workspaces"));
    }
    if let Some(state) = env.get(ev::XDG_STATE_HOME) {
        return Ok(PathBuf::from(state).join("ferry/workspaces"));
    }
    env.get(ev::HOME)
        .map(|home| PathBuf::from(home).join(".local/state/ferry/workspaces"))
        .ok_or_else(|| {
            CliError::Usage("workspaces keep state outside your tree but neither XDG_STATE_HOME nor HOME is set; set one of them".into())
        })
}

/// The workflow run of a workspace: `--workflow`/`FERRY_WORKFLOW`, else the CI's run
/// (`GITHUB_RUN_ID`, shared by every attempt, or `CIRCLE_WORKFLOW_ID`).
fn workspace_workflow(flag: &Option<String>, globals: &Globals) -> Result<String, CliError> {
    flag.as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .or_else(|| globals.ci.workflow.clone())
        .or_else(|| globals.env.get(ev::GITHUB_RUN_ID).map(str::to_string))
        .or_else(|| globals.env.get(ev::CIRCLE_WORKFLOW_ID).map(str::to_string))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no workflow run for the workspace: pass --workflow ID or set {} (on GitHub Actions {} is used, on CircleCI {})",
                ev::FERRY_WORKFLOW,
                ev::GITHUB_RUN_ID,
                ev::CIRCLE_WORKFLOW_ID
            ))
        })
}

/// The job of a workspace command: `--job`/`FERRY_JOB`, else `GITHUB_JOB` or `CIRCLE_JOB`.
fn workspace_job(flag: &Option<String>, globals: &Globals) -> Option<String> {
    flag.as_deref()
        .map(str::trim)
        .filter(|j| !j.is_empty())
        .map(str::to_string)
        .or_else(|| globals.ci.job.clone())
        .or_else(|| globals.env.get(ev::GITHUB_JOB).map(str::to_string))
        .or_else(|| globals.env.get(ev::CIRCLE_JOB).map(str::to_string))
}

fn no_job_message() -> String {
    format!(
        "no job name for the layer: pass --job NAME or set {} (on GitHub Actions {} is used, on CircleCI {})",
        ev::FERRY_JOB,
        ev::GITHUB_JOB,
        ev::CIRCLE_JOB
    )
}

/// A folder given on the command line, resolved against the current folder and `~/`.
fn folder(flag: &str, value: &str, globals: &Globals) -> Result<PathBuf, CliError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(CliError::Usage(format!("{flag} needs a folder")));
    }
    let cx = globals.path_context();
    cx.check(value)
        .map_err(|reason| CliError::Usage(format!("{flag} {value:?}: {reason}")))?;
    Ok(cx.resolve(value))
}

/// The run and job of an artifacts command: `--run`/`FERRY_RUN`, else the CI's run
/// (`GITHUB_RUN_ID`, `CIRCLE_WORKFLOW_ID`); `--job`/`FERRY_JOB`, else `GITHUB_JOB`, `CIRCLE_JOB`.
/// Either missing is a usage error naming the flag and variable to set.
fn artifact_target(args: &cli::ArtifactRunArgs, globals: &Globals) -> Result<Target, CliError> {
    let pick = |flag: &Option<String>, ci: &Option<String>, vars: [&str; 2]| {
        flag.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .or_else(|| ci.clone())
            .or_else(|| {
                vars.iter()
                    .find_map(|v| globals.env.get(v))
                    .map(str::to_string)
            })
    };
    let missing = |what: &str, flag: &str, var: &str, vars: [&str; 2]| {
        CliError::Usage(format!(
            "no {what} for artifacts: pass {flag} or set {var} (on GitHub Actions {} is used, on CircleCI {})",
            vars[0], vars[1]
        ))
    };
    let run_vars = [ev::GITHUB_RUN_ID, ev::CIRCLE_WORKFLOW_ID];
    let job_vars = [ev::GITHUB_JOB, ev::CIRCLE_JOB];
    Ok(Target {
        run: pick(&args.run, &globals.ci.run, run_vars)
            .ok_or_else(|| missing("run", "--run ID", ev::FERRY_RUN, run_vars))?,
        job: pick(&args.job, &globals.ci.job, job_vars)
            .ok_or_else(|| missing("job", "--job NAME", ev::FERRY_JOB, job_vars))?,
    })
}
