//! The command line as clap parses it. Nothing here acts: `settings` turns it into plain
//! structs and the commands act on those.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use ferry_core::env_vars as ev;

/// CircleCI-style caches, workspaces and artifacts for any CI.
///
/// Caches reuse expensive downloads between runs (shared by every branch of a project),
/// workspaces hand build outputs to later jobs of the same workflow run, and artifacts keep a
/// job's outputs for people. Data lives in a store: a local folder by default, or an S3, GCS
/// or Azure bucket shared by every runner.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about, long_about = None, max_term_width = 100)]
#[command(
    after_help = "Examples:\n  ferry cache save --key 'deps-{{ checksum \"package-lock.json\" }}' --path node_modules\n  ferry cache restore --key 'deps-{{ checksum \"package-lock.json\" }}' --restore-key deps-\n  ferry key 'v1-{{ .Branch }}-{{ hashFiles \"**/Cargo.lock\" }}'\n\nExit codes: 0 success (a cache miss too), 1 error, 2 usage, 3 cache miss with --fail-on-miss,\n4 workspace conflict, 5 integrity failure (digest mismatch, unsafe archive)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where data lives: a folder, file:///abs/path, s3://bucket[/prefix], gs://bucket[/prefix],
    /// az://container[/prefix], gha:// (GitHub's cache and artifact services) or memory://
    /// [default: gha:// inside GitHub Actions when ACTIONS_RESULTS_URL is set, else
    /// $XDG_CACHE_HOME/ferry or ~/.cache/ferry]
    #[arg(long, global = true, env = ev::FERRY_STORE, value_name = "URL")]
    pub store: Option<String>,
    /// Namespace of every key [default: GITHUB_REPOSITORY, CircleCI's user/repo, the git
    /// remote `origin`, or the current folder's name]
    #[arg(long, global = true, env = ev::FERRY_PROJECT, value_name = "NAME")]
    pub project: Option<String>,
    /// Print one JSON object describing the result on stdout (messages go to stderr)
    #[arg(long, global = true, env = ev::FERRY_JSON, value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub json: bool,
    /// Print only warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (off a terminal, also a line when a transfer's data starts moving)
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Never draw progress bars (they are drawn only when stderr is a terminal)
    #[arg(long, global = true, env = ev::FERRY_NO_PROGRESS, value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save, restore, list and remove caches (shared by every branch of the project)
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Persist and attach the layered workspace of one workflow run
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Upload, list, download and link the artifacts of a run and job
    #[command(subcommand)]
    Artifacts(ArtifactsCommand),
    /// Delete what has expired, and evict least-recently-used caches over a size
    Prune(PruneArgs),
    /// Print what a key template renders to here
    Key(KeyArgs),
    /// Serve a local web page that shows the store: caches, workspace graphs, artifacts, usage
    Ui(UiArgs),
    /// Print a new ed25519 key pair for signed entries (FERRY_SIGNING_KEY, FERRY_TRUSTED_KEYS)
    Keygen,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Save paths under a key; an existing key is skipped unless --force
    Save(SaveArgs),
    /// Restore the entry of a key, else of the newest key starting with a restore key
    Restore(RestoreArgs),
    /// List caches, newest first
    Ls(CacheLsArgs),
    /// Remove caches by key
    Rm(CacheRmArgs),
    /// Write a cache, of either format, as a standard tar stream (GNU tar reads it)
    Export(CacheExportArgs),
}

#[derive(Debug, Args)]
pub struct CacheExportArgs {
    /// Key of the cache (exact)
    #[arg(value_name = "KEY")]
    pub key: String,
    /// Write the tar stream to FILE (whole or not at all) instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Key template, e.g. 'deps-{{ checksum "Cargo.lock" }}'
    #[arg(long, value_name = "TEMPLATE")]
    pub key: String,
    /// File, folder or glob to save (repeatable; `**` allowed; `!GLOB` excludes). Relative
    /// paths restore relative to the current folder, `~/` into the home folder
    #[arg(
        long = "path",
        value_name = "P",
        required = true,
        allow_hyphen_values = true
    )]
    pub paths: Vec<String>,
    /// Leave out paths matching GLOB (repeatable)
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// How the data is stored: `chunked` (format 2: content-defined chunks in packs shared
    /// with earlier entries, so only what changed is uploaded) or one archive (format 1)
    /// compressed with zstd or gzip, or not (`tar`)
    #[arg(long, env = ev::FERRY_FORMAT, value_name = "chunked|zstd|gzip|tar", default_value = DEFAULT_FORMAT)]
    pub format: String,
    /// Compression level [default: 3 for zstd, 6 for gzip]
    #[arg(long, env = ev::FERRY_LEVEL, value_name = "N")]
    pub level: Option<i32>,
    /// Keep the cache this long after its last save or restore
    #[arg(long, env = ev::FERRY_TTL, value_name = "DURATION", default_value = "15d")]
    pub ttl: String,
    /// Replace the entry if the key exists
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// With --format chunked, when this job restored no cache: share the chunks of the newest
    /// cache under this key or prefix (repeatable, as restore takes them)
    #[arg(long = "restore-key", value_name = "TEMPLATE")]
    pub restore_keys: Vec<String>,
    /// With --format chunked: scopes whose caches may be shared (read, never written)
    #[arg(long = "fallback-scope", env = ev::FERRY_FALLBACK_SCOPES, value_delimiter = ',', value_name = "NAME")]
    pub fallback_scopes: Vec<String>,
}

/// The format caches and layers are saved in unless `--format` says otherwise.
pub const DEFAULT_FORMAT: &str = "chunked";

#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Scope of the caches this job saves and restores first [default: the project-wide
    /// scope, also called `default`]
    #[arg(long, env = ev::FERRY_SCOPE, value_name = "NAME")]
    pub scope: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Key template of the entry wanted
    #[arg(long, value_name = "TEMPLATE")]
    pub key: String,
    /// Fallback key or prefix, tried in order after --key (repeatable)
    #[arg(long = "restore-key", value_name = "TEMPLATE")]
    pub restore_keys: Vec<String>,
    /// Match keys exactly: no prefix matching
    #[arg(long)]
    pub exact: bool,
    /// Report what would be restored; download nothing
    #[arg(long)]
    pub lookup_only: bool,
    /// Exit 3 when nothing matches
    #[arg(long)]
    pub fail_on_miss: bool,
    /// Paths the entry must hold (repeatable, as given to save): an entry holding anything
    /// else is refused with exit 5
    #[arg(long = "path", value_name = "P", allow_hyphen_values = true)]
    pub paths: Vec<String>,
    /// Treat caches saved longer ago than this as misses
    #[arg(long, env = ev::FERRY_MAX_AGE, value_name = "DURATION")]
    pub max_age: Option<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Scope searched after --scope when it has no match (repeatable, in order; `default`
    /// is the project-wide scope)
    #[arg(long = "fallback-scope", env = ev::FERRY_FALLBACK_SCOPES, value_delimiter = ',', value_name = "NAME")]
    pub fallback_scopes: Vec<String>,
    #[command(flatten)]
    pub links: RootLinkArgs,
}

#[derive(Debug, Args)]
pub struct RootLinkArgs {
    /// Follow a symlink found at a saved path (e.g. node_modules pointing at another disk)
    /// instead of replacing it with the saved folder
    #[arg(long, env = ev::FERRY_KEEP_ROOT_LINKS, value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub keep_root_links: bool,
}

#[derive(Debug, Args)]
pub struct CacheLsArgs {
    /// Only keys starting with this
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct CacheRmArgs {
    /// Keys to remove (exact)
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
    #[command(flatten)]
    pub scope: ScopeArgs,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Add one immutable layer: the paths under --root, stored relative to it
    Persist(PersistArgs),
    /// Lay the run's layers (or those of --from jobs and their ancestors) under --at
    Attach(AttachArgs),
    /// List the run's layers
    Ls(WorkspaceLsArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workflow run [default: GITHUB_RUN_ID or CIRCLE_WORKFLOW_ID]
    #[arg(long, env = ev::FERRY_WORKFLOW, value_name = "ID")]
    pub workflow: Option<String>,
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// Job name [default: GITHUB_JOB or CIRCLE_JOB]
    #[arg(long, env = ev::FERRY_JOB, value_name = "NAME")]
    pub job: Option<String>,
}

#[derive(Debug, Args)]
pub struct PersistArgs {
    /// Folder the paths are relative to
    #[arg(long, value_name = "DIR")]
    pub root: String,
    /// Path under --root to persist (repeatable; globs allowed)
    #[arg(long = "path", value_name = "P", required = true)]
    pub paths: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub job: JobArgs,
    /// Keep the layer this long after creation
    #[arg(long, env = ev::FERRY_TTL, value_name = "DURATION", default_value = "15d")]
    pub ttl: String,
    /// How the layer is stored: `chunked` (format 2: chunks shared with the layers this job
    /// attached, so only what changed is uploaded) or one archive (`zstd`, `gzip`, `tar`)
    #[arg(long, env = ev::FERRY_FORMAT, value_name = "chunked|zstd|gzip|tar", default_value = DEFAULT_FORMAT)]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Folder to lay the workspace into
    #[arg(long, value_name = "DIR")]
    pub at: String,
    #[command(flatten)]
    pub run: RunArgs,
    /// Only these jobs' layers and their ancestors (repeatable)
    #[arg(long = "from", value_name = "JOB")]
    pub from: Vec<String>,
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub links: RootLinkArgs,
}

#[derive(Debug, Args)]
pub struct WorkspaceLsArgs {
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Store files, one object each, with their modes and digests
    Upload(UploadArgs),
    /// List stored artifacts
    Ls(ArtifactsLsArgs),
    /// Download artifacts (all, or those matching GLOB), checking every digest
    Download(DownloadArgs),
    /// Print a link to one artifact that works without ferry
    Url(UrlArgs),
}

#[derive(Debug, Args)]
pub struct ArtifactRunArgs {
    /// Run [default: GITHUB_RUN_ID or CIRCLE_WORKFLOW_ID]
    #[arg(long, env = ev::FERRY_RUN, value_name = "ID")]
    pub run: Option<String>,
    /// Job [default: GITHUB_JOB or CIRCLE_JOB]
    #[arg(long, env = ev::FERRY_JOB, value_name = "NAME")]
    pub job: Option<String>,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Files or folders to upload
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Store under this prefix: a folder's contents go under PREFIX/, a file as PREFIX/NAME
    #[arg(long, value_name = "PREFIX")]
    pub destination: Option<String>,
    /// Keep artifacts this long after upload, or `never`
    #[arg(long, env = ev::FERRY_TTL, value_name = "DURATION|never", default_value = "30d")]
    pub ttl: String,
    /// Replace artifacts already stored at the same paths
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub target: ArtifactRunArgs,
}

#[derive(Debug, Args)]
pub struct ArtifactsLsArgs {
    #[command(flatten)]
    pub target: ArtifactRunArgs,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// Only stored paths matching this glob
    #[arg(value_name = "GLOB")]
    pub pattern: Option<String>,
    /// Folder to download into
    #[arg(long, value_name = "DIR")]
    pub to: String,
    #[command(flatten)]
    pub target: ArtifactRunArgs,
}

#[derive(Debug, Args)]
pub struct UrlArgs {
    /// Stored path of the artifact
    #[arg(value_name = "PATH")]
    pub path: String,
    /// How long a pre-signed link stays valid
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub expires: String,
    #[command(flatten)]
    pub target: ArtifactRunArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// List what would be deleted; delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// After expiry, evict least-recently-used caches until they fit in SIZE (e.g. 10GB)
    #[arg(long, value_name = "SIZE")]
    pub max_cache_size: Option<String>,
    /// Rewrite packs whose chunks are mostly dead (format 2), keeping only the live ones
    #[arg(long)]
    pub repack: bool,
    /// Judge expiry as of TIME (RFC 3339, or +DURATION such as +7d): with --dry-run, what
    /// will have expired by then
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Address to listen on; anything but loopback requires the token printed at start
    #[arg(long, env = ev::FERRY_UI_LISTEN, value_name = "ADDR:PORT", default_value = "127.0.0.1:8421")]
    pub listen: String,
    /// Open the page in the default browser
    #[arg(long)]
    pub open: bool,
    /// Allow deleting caches from the page (read-only without it)
    #[arg(long)]
    pub allow_delete: bool,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Key template, e.g. 'v1-{{ .Branch }}-{{ checksum "Cargo.lock" }}'
    #[arg(value_name = "TEMPLATE")]
    pub template: String,
}
