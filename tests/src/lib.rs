//! The test context of the end-to-end tests: each test gets its own store, home and work
//! folders and a clean environment (nothing inherited from `GITHUB_*` or `CIRCLE*`), and runs
//! the real `ferry` binary.
//!
//! The store comes from `FERRY_TEST_STORE`: `local` (the default), `memory`, or the name of a
//! server started by `.ci/servers.sh` (`seaweedfs`, `ministack`, `moto`, `azurite`, `gcs`,
//! `gha`), whose variables are read from `.ci/cache/store-<name>.env`. Cloud stores get a
//! fresh prefix per test; on `gha` (the fake of GitHub's results service) each test is also a
//! job of a run of its own, with the variables a JavaScript action gets for GitHub's services
//! and none of the `GITHUB_*` context, so tests see the store and not a CI.

pub mod gha;
pub mod hostile;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use serde_json::Value;

/// The folder of the repository (for `.ci/cache`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// The `ferry` binary under test: `FERRY_BIN`, else the one cargo built beside the tests.
pub fn ferry_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("FERRY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test binary has a path");
    // target/<profile>/deps/<test> -> target/<profile>/ferry
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("ferry"))
        .expect("test binaries live in target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build -p ferry` before the end-to-end tests (or set FERRY_BIN)",
        bin.display()
    );
    bin
}

/// Which store the tests run against.
pub fn store_name() -> String {
    std::env::var("FERRY_TEST_STORE").unwrap_or_else(|_| "local".into())
}

/// True on `gha://` (the fake of GitHub's services), where GitHub's documented rules differ
/// from an object store's: the service records use and evicts by itself (no restore-hit
/// markers), and a job uploads at most 500 artifacts.
pub fn on_gha() -> bool {
    store_name() == "gha"
}

/// Variables of a server-backed store, from `.ci/cache/store-<name>.env`.
pub fn store_env(name: &str) -> BTreeMap<String, String> {
    let path = repo_root()
        .join(".ci/cache")
        .join(format!("store-{name}.env"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "FERRY_TEST_STORE={name} but {} cannot be read ({e}); start the servers with `.ci/servers.sh start`",
            path.display()
        )
    });
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            Some((
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            ))
        })
        .collect()
}

/// One test's world: a temporary root with `home/`, `work/` and (locally) `store/`.
pub struct TestContext {
    /// On `gha`, the fake's run this context's job belongs to.
    pub gha_run: Option<u64>,
    _root: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    pub work: PathBuf,
    pub store: String,
    env: BTreeMap<String, String>,
}

impl Default for TestContext {
    fn default() -> Self {
        Self::new()
    }
}

impl TestContext {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir
            .path()
            .canonicalize()
            .expect("the temporary folder resolves");
        let home = root.join("home");
        let work = root.join("work");
        std::fs::create_dir_all(&home).expect("create home");
        std::fs::create_dir_all(&work).expect("create work");
        let mut env = BTreeMap::new();
        let mut gha_run = None;
        let name = store_name();
        let store = match name.as_str() {
            "local" => root.join("store").display().to_string(),
            "memory" => "memory://".to_string(),
            server => {
                env = store_env(server);
                if server == "gha" {
                    let job = gha::new_job(&env, &serde_json::json!({}));
                    gha_run = job["run_id"].as_u64();
                    env = gha::store_vars(&env, &job);
                }
                let base = env
                    .remove("FERRY_STORE")
                    .unwrap_or_else(|| panic!("store-{server}.env sets no FERRY_STORE"));
                let unique = root
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("t")
                    .replace('.', "");
                format!("{}/{unique}", base.trim_end_matches('/'))
            }
        };
        env.insert("FERRY_STORE".into(), store.clone());
        env.insert("FERRY_PROJECT".into(), "acme/app".into());
        Self {
            gha_run,
            _root: dir,
            root,
            home,
            work,
            store,
            env,
        }
    }

    /// True when the store is a local folder (tests that reach into the store's files).
    pub fn local_store(&self) -> Option<PathBuf> {
        (store_name() == "local").then(|| PathBuf::from(&self.store))
    }

    /// Uses `other`'s store, as a later job of the same workflow run does: on `gha` this
    /// context becomes a new job of `other`'s run (GitHub's artifact service is per run).
    pub fn share_store_of(&mut self, other: &TestContext) {
        self.env.insert("FERRY_STORE".into(), other.store.clone());
        self.store = other.store.clone();
        if let Some(run) = other.gha_run {
            self.become_gha_job(&serde_json::json!({ "run_id": run }));
        }
    }

    /// On `gha`: makes this context a new job of the fake as `spec` describes it (`run_id`,
    /// `job`, `ref`, `base_ref`, `cache_mode`, as `POST /_fake/jobs` takes them), with that
    /// job's store variables; the fake's answer (its `env` has the whole CI context).
    pub fn become_gha_job(&mut self, spec: &serde_json::Value) -> serde_json::Value {
        let job = gha::new_job(&self.env, spec);
        for (k, v) in gha::store_vars(&BTreeMap::new(), &job) {
            self.env.insert(k, v);
        }
        self.gha_run = job["run_id"].as_u64();
        job
    }

    /// A call to the gha fake's admin API (`route` below `/_fake`).
    pub fn gha_admin(
        &self,
        method: &str,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        gha::admin(&self.env, method, route, body)
    }

    /// Sets a variable for every later command of this context.
    pub fn set_env(&mut self, k: &str, v: impl Into<String>) {
        self.env.insert(k.to_string(), v.into());
    }

    pub fn remove_env(&mut self, k: &str) {
        self.env.remove(k);
    }

    /// The variables every command of this context gets (besides PATH, HOME and LANG).
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A `ferry` command in `work/` with a clean environment.
    pub fn ferry(&self) -> Command {
        self.ferry_in(&self.work)
    }

    /// A `ferry` command in `dir` with a clean environment.
    pub fn ferry_in(&self, dir: &Path) -> Command {
        self.command_in(ferry_bin(), dir)
    }

    /// Any program in `dir` with the clean environment `ferry` gets (the store's variables
    /// included), for scripts that call ferry the way a CI job does.
    pub fn command_in(&self, program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .envs(&self.env)
            .current_dir(dir);
        cmd
    }

    /// Runs `ferry ARGS` in `work/`.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_in(&self.work, args)
    }

    /// Runs `ferry ARGS` in `dir`.
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Run {
        let out = self.ferry_in(dir).args(args).output().expect("ferry runs");
        Run::from(out)
    }

    /// Runs `ferry ARGS` in `dir`, killed after `secs` seconds (exit code 124 then): for
    /// inputs that could make a broken ferry run forever.
    pub fn run_with_timeout(&self, dir: &Path, secs: u32, args: &[&str]) -> Run {
        let mut cmd = Command::new("timeout");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .envs(&self.env)
            .current_dir(dir)
            .arg(secs.to_string())
            .arg(ferry_bin())
            .args(args);
        Run::from(cmd.output().expect("timeout runs ferry"))
    }

    /// Writes a file below `work/`, making its folders.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.work.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent folders");
        }
        std::fs::write(&p, contents).expect("write a test file");
        p
    }

    /// A fresh empty folder below the test root.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p).expect("create a folder");
        p
    }
}

/// A finished run of ferry.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// The one JSON object on stdout.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        self.expect_code(0)
    }
}

/// Bytes no compressor shrinks, from a seed.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A snapshot of a tree: for each path, its kind, mode, mtime (seconds), and content or
/// link target. Two trees are the same when their snapshots are equal.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.expect("walk the tree");
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("below root")
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(entry.path()).expect("metadata");
        let desc = if meta.file_type().is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(entry.path())
                    .expect("read link")
                    .display()
            )
        } else if meta.is_dir() {
            format!("dir mode {:o} mtime {}", meta.mode() & 0o7777, meta.mtime())
        } else {
            let bytes = std::fs::read(entry.path()).expect("read file");
            use sha2::Digest;
            format!(
                "file mode {:o} mtime {} sha256 {:x}",
                meta.mode() & 0o7777,
                meta.mtime(),
                sha2::Sha256::digest(&bytes)
            )
        };
        out.insert(rel, desc);
    }
    out
}

/// The step outputs in a `$GITHUB_OUTPUT` file, parsed as the Actions runner parses them:
/// lines end at `\n`, `\r\n` or `\r` (its line reader splits on each), a line `name=value`
/// sets one output, and `name<<DELIMITER` starts a value that runs until a line equal to the
/// delimiter. Later records replace earlier ones of the same name.
pub fn github_outputs(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).expect("read the outputs file");
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines = text.split('\n');
    let mut out = BTreeMap::new();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let heredoc = line.find("<<");
        let equals = line.find('=');
        match (heredoc, equals) {
            (Some(h), e) if e.is_none_or(|e| h < e) => {
                let (name, delimiter) = (&line[..h], &line[h + 2..]);
                let mut value = Vec::new();
                loop {
                    let next = lines
                        .next()
                        .unwrap_or_else(|| panic!("output {name} never ends with {delimiter}"));
                    if next == delimiter {
                        break;
                    }
                    value.push(next);
                }
                out.insert(name.to_string(), value.join("\n"));
            }
            (_, Some(e)) => {
                out.insert(line[..e].to_string(), line[e + 1..].to_string());
            }
            _ => panic!("not an output record: {line:?}"),
        }
    }
    out
}
