//! Every environment variable ferry reads, declared once.
//!
//! The README's table is generated from [`ALL`]; a test keeps the two in step.

/// One environment variable ferry reads, with what it means.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    pub name: &'static str,
    pub doc: &'static str,
}

macro_rules! env_vars {
    ($($(#[doc = $doc:literal])+ $ident:ident = $name:literal;)+) => {
        $( $(#[doc = $doc])+ pub const $ident: &str = $name; )+
        /// Every variable above, in declaration order.
        pub const ALL: &[EnvVar] = &[ $( EnvVar { name: $name, doc: concat!($($doc),+) } ),+ ];
    };
}

env_vars! {
    /// Store URL (`--store`): a path, `file:///abs`, `s3://bucket/prefix`, `gs://…`, `az://…`,
    /// `gha://` or `memory://`. Inside GitHub Actions with neither it nor `--store` set, and
    /// `ACTIONS_RESULTS_URL` present, the store is `gha://`.
    FERRY_STORE = "FERRY_STORE";
    /// Project namespace (`--project`) all three keyspaces live under.
    FERRY_PROJECT = "FERRY_PROJECT";
    /// Workflow run id of workspaces (`--workflow`).
    FERRY_WORKFLOW = "FERRY_WORKFLOW";
    /// Job name (`--job`) of workspace layers and artifacts.
    FERRY_JOB = "FERRY_JOB";
    /// Run id of artifacts (`--run`).
    FERRY_RUN = "FERRY_RUN";
    /// Print one JSON object on stdout (`--json`) when `true`/`1`.
    FERRY_JSON = "FERRY_JSON";
    /// Turn progress bars off (`--no-progress`) when `true`/`1`.
    FERRY_NO_PROGRESS = "FERRY_NO_PROGRESS";
    /// Format of caches and workspace layers (`--format`): `chunked` (the default; format 2: content-defined chunks in shared packs, so a save uploads only what changed), or format 1's one archive, `zstd`, `gzip` or `tar`.
    FERRY_FORMAT = "FERRY_FORMAT";
    /// Compression level (`--level`).
    FERRY_LEVEL = "FERRY_LEVEL";
    /// Retention (`--ttl`) of what is saved, persisted or uploaded.
    FERRY_TTL = "FERRY_TTL";
    /// Scope of the caches a job saves and first restores (`--scope`); `default` or unset is
    /// the project-wide scope. Scopes are object-name prefixes a bucket policy can fence.
    FERRY_SCOPE = "FERRY_SCOPE";
    /// Scopes a restore searches after its own, in order, comma-separated (`--fallback-scope`).
    FERRY_FALLBACK_SCOPES = "FERRY_FALLBACK_SCOPES";
    /// Caches saved longer ago than this are misses on restore (`--max-age`).
    FERRY_MAX_AGE = "FERRY_MAX_AGE";
    /// ed25519 secret key (`ferry keygen` prints one) that signs every manifest this job publishes.
    FERRY_SIGNING_KEY = "FERRY_SIGNING_KEY";
    /// Public keys, comma-separated: when set, only entries signed by one of them are restored.
    FERRY_TRUSTED_KEYS = "FERRY_TRUSTED_KEYS";
    /// Follow a symlink found at a saved path on restore (`--keep-root-links`) instead of
    /// replacing it with the entry's folder, when `true`/`1`.
    FERRY_KEEP_ROOT_LINKS = "FERRY_KEEP_ROOT_LINKS";
    /// How old data no manifest references must be before `ferry prune` deletes it (default `6h`): longer than any save runs.
    FERRY_PRUNE_GRACE = "FERRY_PRUNE_GRACE";
    /// Address `ferry ui` listens on (`--listen`), default `127.0.0.1:8421`; any non-loopback
    /// address requires the token it prints.
    FERRY_UI_LISTEN = "FERRY_UI_LISTEN";
    /// Home folder that `~/` paths are saved from and restored into.
    HOME = "HOME";
    /// Base of the default local store (`$XDG_CACHE_HOME/ferry`).
    XDG_CACHE_HOME = "XDG_CACHE_HOME";
    /// Base of the job state outside CI's temp folder (`$XDG_STATE_HOME/ferry/`, else
    /// `~/.local/state/ferry/`): which layers each job attached and which caches it restored.
    XDG_STATE_HOME = "XDG_STATE_HOME";
    /// Folder of the unnamed file a chunked restore keeps the chunks that later files use
    /// again in, past the 2 MiB it keeps in memory (`/tmp` when unset; in memory when no file
    /// can be made there).
    TMPDIR = "TMPDIR";
    /// `true` on GitHub Actions.
    GITHUB_ACTIONS = "GITHUB_ACTIONS";
    /// `owner/repo` on GitHub Actions: the default project.
    GITHUB_REPOSITORY = "GITHUB_REPOSITORY";
    /// Workflow run id on GitHub Actions, shared by every attempt: workspace and artifact keyspace.
    GITHUB_RUN_ID = "GITHUB_RUN_ID";
    /// Run number on GitHub Actions: `{{ .BuildNum }}`.
    GITHUB_RUN_NUMBER = "GITHUB_RUN_NUMBER";
    /// Attempt of the run on GitHub Actions (informational; attempts share a workspace).
    GITHUB_RUN_ATTEMPT = "GITHUB_RUN_ATTEMPT";
    /// Job id on GitHub Actions: `{{ .Job }}` and the job of layers and artifacts.
    GITHUB_JOB = "GITHUB_JOB";
    /// Workflow name on GitHub Actions (informational: `{{ .Workflow }}` is the run, `GITHUB_RUN_ID`).
    GITHUB_WORKFLOW = "GITHUB_WORKFLOW";
    /// Commit on GitHub Actions: `{{ .Revision }}`.
    GITHUB_SHA = "GITHUB_SHA";
    /// Branch or tag name on GitHub Actions: `{{ .Branch }}`.
    GITHUB_REF_NAME = "GITHUB_REF_NAME";
    /// Source branch of a pull request on GitHub Actions, preferred for `{{ .Branch }}`.
    GITHUB_HEAD_REF = "GITHUB_HEAD_REF";
    /// Full git ref on GitHub Actions (`refs/heads/main`): `{{ .Commit.Ref }}`.
    GITHUB_REF = "GITHUB_REF";
    /// Owner of the repository on GitHub Actions: `{{ .Repo.Namespace }}` and `{{ .Repo.Owner }}`.
    GITHUB_REPOSITORY_OWNER = "GITHUB_REPOSITORY_OWNER";
    /// Web address of the GitHub server (`https://github.com`), for `{{ .Repo.Link }}`,
    /// `{{ .Commit.Link }}`, `{{ .Commit.Remote }}` and `{{ .Build.Link }}`.
    GITHUB_SERVER_URL = "GITHUB_SERVER_URL";
    /// Event that started the run on GitHub Actions (`push`, `pull_request`): `{{ .Build.Event }}`.
    GITHUB_EVENT_NAME = "GITHUB_EVENT_NAME";
    /// File holding the event payload on GitHub Actions: the repository's default branch
    /// (`{{ .Repo.Branch }}`) and visibility (`{{ .Repo.Private }}`).
    GITHUB_EVENT_PATH = "GITHUB_EVENT_PATH";
    /// File that step outputs (`cache-hit`, …) are appended to on GitHub Actions.
    GITHUB_OUTPUT = "GITHUB_OUTPUT";
    /// File the step's Markdown summary is appended to on GitHub Actions: each command adds a
    /// short table of what it restored, saved or moved.
    GITHUB_STEP_SUMMARY = "GITHUB_STEP_SUMMARY";
    /// Per-job temporary folder on GitHub Actions, emptied between jobs: where the state of the
    /// job (the layers it attached, the caches it restored) is kept.
    RUNNER_TEMP = "RUNNER_TEMP";
    /// `true` on CircleCI.
    CIRCLECI = "CIRCLECI";
    /// Project owner on CircleCI.
    CIRCLE_PROJECT_USERNAME = "CIRCLE_PROJECT_USERNAME";
    /// Project name on CircleCI.
    CIRCLE_PROJECT_REPONAME = "CIRCLE_PROJECT_REPONAME";
    /// Workflow id on CircleCI: workspace and artifact keyspace, `{{ .Workflow }}`.
    CIRCLE_WORKFLOW_ID = "CIRCLE_WORKFLOW_ID";
    /// Job name on CircleCI.
    CIRCLE_JOB = "CIRCLE_JOB";
    /// Branch on CircleCI.
    CIRCLE_BRANCH = "CIRCLE_BRANCH";
    /// Commit on CircleCI.
    CIRCLE_SHA1 = "CIRCLE_SHA1";
    /// Build number on CircleCI.
    CIRCLE_BUILD_NUM = "CIRCLE_BUILD_NUM";
    /// Link to the job on CircleCI: `{{ .Build.Link }}`.
    CIRCLE_BUILD_URL = "CIRCLE_BUILD_URL";
    /// Git URL of the repository on CircleCI: `{{ .Commit.Remote }}`.
    CIRCLE_REPOSITORY_URL = "CIRCLE_REPOSITORY_URL";
    /// `true` on drone and on Harness CI, which sets drone's `DRONE_*` variables too.
    DRONE = "DRONE";
    /// `owner/name` of the repository on drone and Harness: the default project.
    DRONE_REPO = "DRONE_REPO";
    /// Repository name on drone and Harness: `{{ .Repo.Name }}`.
    DRONE_REPO_NAME = "DRONE_REPO_NAME";
    /// Repository namespace on drone and Harness: `{{ .Repo.Namespace }}`.
    DRONE_REPO_NAMESPACE = "DRONE_REPO_NAMESPACE";
    /// Repository owner on drone and Harness: `{{ .Repo.Owner }}`.
    DRONE_REPO_OWNER = "DRONE_REPO_OWNER";
    /// Default branch of the repository on drone and Harness: `{{ .Repo.Branch }}`.
    DRONE_REPO_BRANCH = "DRONE_REPO_BRANCH";
    /// Web address of the repository on drone and Harness: `{{ .Repo.Link }}`.
    DRONE_REPO_LINK = "DRONE_REPO_LINK";
    /// Repository avatar on drone: `{{ .Repo.Avatar }}`.
    DRONE_REPO_AVATAR = "DRONE_REPO_AVATAR";
    /// `true` for a private repository on drone and Harness: `{{ .Repo.Private }}`.
    DRONE_REPO_PRIVATE = "DRONE_REPO_PRIVATE";
    /// `true` for a trusted repository on drone: `{{ .Repo.Trusted }}`.
    DRONE_REPO_TRUSTED = "DRONE_REPO_TRUSTED";
    /// Build number on drone and Harness: `{{ .BuildNum }}`, `{{ .Build.Number }}`, and the
    /// workspace and artifact keyspace on drone.
    DRONE_BUILD_NUMBER = "DRONE_BUILD_NUMBER";
    /// Event that started the build on drone and Harness (`push`, `pull_request`, `tag`): `{{ .Build.Event }}`.
    DRONE_BUILD_EVENT = "DRONE_BUILD_EVENT";
    /// Link to the build on drone and Harness: `{{ .Build.Link }}`.
    DRONE_BUILD_LINK = "DRONE_BUILD_LINK";
    /// Unix time the build was created on drone and Harness: `{{ .Build.Created }}`.
    DRONE_BUILD_CREATED = "DRONE_BUILD_CREATED";
    /// Unix time the build started on drone and Harness: `{{ .Build.Started }}`.
    DRONE_BUILD_STARTED = "DRONE_BUILD_STARTED";
    /// Unix time the build finished on drone and Harness: `{{ .Build.Finished }}`.
    DRONE_BUILD_FINISHED = "DRONE_BUILD_FINISHED";
    /// Build status so far on drone and Harness (`success`, `failure`): `{{ .Build.Status }}`.
    DRONE_BUILD_STATUS = "DRONE_BUILD_STATUS";
    /// Deployment target on drone: `{{ .Build.Deploy }}`.
    DRONE_DEPLOY_TO = "DRONE_DEPLOY_TO";
    /// Pipeline (stage) name on drone and Harness: `{{ .Job }}` and the job of layers and artifacts.
    DRONE_STAGE_NAME = "DRONE_STAGE_NAME";
    /// Branch on drone and Harness: `{{ .Branch }}`, `{{ .Commit.Branch }}`.
    DRONE_COMMIT_BRANCH = "DRONE_COMMIT_BRANCH";
    /// Commit on drone and Harness: `{{ .Revision }}`, `{{ .Commit.Sha }}`.
    DRONE_COMMIT_SHA = "DRONE_COMMIT_SHA";
    /// Full git ref on drone and Harness (`refs/heads/main`): `{{ .Commit.Ref }}`.
    DRONE_COMMIT_REF = "DRONE_COMMIT_REF";
    /// Link to the commit on drone and Harness: `{{ .Commit.Link }}`.
    DRONE_COMMIT_LINK = "DRONE_COMMIT_LINK";
    /// Commit message on drone and Harness: `{{ .Commit.Message }}`.
    DRONE_COMMIT_MESSAGE = "DRONE_COMMIT_MESSAGE";
    /// Clone URL of the repository on drone and Harness: `{{ .Commit.Remote }}`.
    DRONE_REMOTE_URL = "DRONE_REMOTE_URL";
    /// Commit author's user name on drone and Harness: `{{ .Commit.Author.Name }}`.
    DRONE_COMMIT_AUTHOR = "DRONE_COMMIT_AUTHOR";
    /// Commit author's email on drone and Harness: `{{ .Commit.Author.Email }}`.
    DRONE_COMMIT_AUTHOR_EMAIL = "DRONE_COMMIT_AUTHOR_EMAIL";
    /// Commit author's avatar on drone and Harness: `{{ .Commit.Author.Avatar }}`.
    DRONE_COMMIT_AUTHOR_AVATAR = "DRONE_COMMIT_AUTHOR_AVATAR";
    /// The pipeline execution on Harness CI, one id for all its stages: `{{ .Workflow }}` and
    /// the workspace and artifact keyspace there (its build numbers count per pipeline, not per repository).
    HARNESS_EXECUTION_ID = "HARNESS_EXECUTION_ID";
    /// S3 access key id.
    AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID";
    /// S3 secret access key.
    AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY";
    /// S3 session token (temporary credentials).
    AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN";
    /// S3 region.
    AWS_REGION = "AWS_REGION";
    /// S3 region, when `AWS_REGION` is unset.
    AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION";
    /// S3-compatible endpoint (MinIO, R2, Ceph); path-style addressing is used with it.
    AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL";
    /// Google service-account key file.
    GOOGLE_APPLICATION_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS";
    /// Google Cloud Storage emulator (`host:port` or URL).
    STORAGE_EMULATOR_HOST = "STORAGE_EMULATOR_HOST";
    /// Azure storage account name.
    AZURE_STORAGE_ACCOUNT_NAME = "AZURE_STORAGE_ACCOUNT_NAME";
    /// Azure storage account key.
    AZURE_STORAGE_ACCOUNT_KEY = "AZURE_STORAGE_ACCOUNT_KEY";
    /// Azure storage connection string (takes the place of name and key).
    AZURE_STORAGE_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING";
    /// Use the Azurite emulator when `true`.
    AZURE_STORAGE_USE_EMULATOR = "AZURE_STORAGE_USE_EMULATOR";
    /// Azurite's blob endpoint with `AZURE_STORAGE_USE_EMULATOR` (default `http://127.0.0.1:10000`).
    AZURITE_BLOB_STORAGE_URL = "AZURITE_BLOB_STORAGE_URL";
    /// Base URL of GitHub's Actions results service (the cache and artifact services) that
    /// `gha://` uses; the runner sets it for JavaScript and container actions, not `run:` steps.
    ACTIONS_RESULTS_URL = "ACTIONS_RESULTS_URL";
    /// The job's token for the results service (`gha://`), set beside `ACTIONS_RESULTS_URL`;
    /// it lasts about 6 hours from the job's start.
    ACTIONS_RUNTIME_TOKEN = "ACTIONS_RUNTIME_TOKEN";
    /// What the job may do with caches on `gha://`: `read`, `write`, `write-only` or `none`;
    /// a save it forbids is a warning, a restore it forbids a miss.
    ACTIONS_CACHE_MODE = "ACTIONS_CACHE_MODE";
    /// A GitHub token for the REST API: `gha://` lists and removes caches (`cache ls`, `cache
    /// rm`, `prune`) and reads other runs' artifacts with it. The action passes `github.token`.
    GITHUB_TOKEN = "GITHUB_TOKEN";
    /// GitHub's REST API (`https://api.github.com`, or a GitHub Enterprise host's).
    GITHUB_API_URL = "GITHUB_API_URL";
}

/// A snapshot of the environment, taken once by the settings step.
///
/// Library code reads variables through this, never from `std::env`, so that tests and the
/// settings step decide what a command sees.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: std::collections::BTreeMap<String, String>,
}

impl Environment {
    /// Takes every variable of the current process whose value is valid UTF-8.
    pub fn capture() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// Builds an environment from explicit pairs (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// True when `name` is `true` or `1` (any case).
    pub fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }
}
