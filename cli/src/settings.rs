//! Settings: flags, environment and CI context merged once into plain structs. Commands take
//! these and never read clap types or `std::env`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use ferry_core::archive::Format;
use ferry_core::ci::CiContext;
use ferry_core::env_vars::{self as ev, Environment};
use ferry_core::units::{self, Ttl};

use crate::cli::{self, GlobalArgs};
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
}

impl Globals {
    pub fn settle(args: &GlobalArgs) -> Result<Self, CliError> {
        let env = Environment::capture();
        let cwd = std::env::current_dir().map_err(|e| CliError::Usage(format!("cannot read the current folder: {e}")))?;
        let ci = CiContext::detect(&env, &cwd);
        let store_url = match &args.store {
            Some(s) if !s.trim().is_empty() => s.clone(),
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
            json: args.json,
            quiet: args.quiet,
            verbose: args.verbose,
            progress: !args.no_progress && !args.quiet && std::io::stderr().is_terminal(),
            github_output: if env.is_true(ev::GITHUB_ACTIONS) {
                env.get(ev::GITHUB_OUTPUT).map(PathBuf::from)
            } else {
                None
            },
        };
        Ok(Self {
            store_url,
            project,
            output,
            env,
            ci,
            cwd,
        })
    }

    pub fn open_store(&self) -> Result<ferry_core::store::Store, CliError> {
        Ok(ferry_core::store::Store::open(&self.store_url, &self.env)?)
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

/// `cache save`, settled.
pub struct SaveSettings {
    pub key_template: String,
    pub paths: Vec<String>,
    pub excludes: Vec<String>,
    pub format: Format,
    pub level: Option<i32>,
    pub ttl: Duration,
    pub force: bool,
}

impl SaveSettings {
    pub fn settle(args: &cli::SaveArgs) -> Result<Self, CliError> {
        let format = Format::parse(&args.format)
            .ok_or_else(|| CliError::Usage(format!("unknown --format {:?}; use zstd, gzip or tar", args.format)))?;
        if let Some(level) = args.level {
            let ok = match format {
                Format::Zstd => (1..=22).contains(&level),
                Format::Gzip => (0..=9).contains(&level),
                Format::Tar => true,
            };
            if !ok {
                return Err(CliError::Usage(format!(
                    "--level {level} is out of range for {format} (zstd 1-22, gzip 0-9)"
                )));
            }
        }
        let ttl = match units::parse_ttl(&args.ttl, false)? {
            Ttl::After(d) => d,
            Ttl::Never => unreachable!("parse_ttl refuses never when not allowed"),
        };
        Ok(Self {
            key_template: args.key.clone(),
            paths: args.paths.clone(),
            excludes: args.excludes.clone(),
            format,
            level: args.level,
            ttl,
            force: args.force,
        })
    }
}

/// `cache restore`, settled.
pub struct RestoreSettings {
    pub key_template: String,
    pub restore_key_templates: Vec<String>,
    pub exact: bool,
    pub lookup_only: bool,
    pub fail_on_miss: bool,
}

impl RestoreSettings {
    pub fn settle(args: &cli::RestoreArgs) -> Self {
        Self {
            key_template: args.key.clone(),
            restore_key_templates: args
                .restore_keys
                .iter()
                .flat_map(|k| k.lines())
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect(),
            exact: args.exact,
            lookup_only: args.lookup_only,
            fail_on_miss: args.fail_on_miss,
        }
    }
}
