//! End-to-end tests that only mean something on a cloud store: a server that dies in the
//! middle of an upload, wrong credentials, racing saves on a real server, and a cache too
//! big for memory.
//!
//! Each test names the store it is for and runs when `FERRY_TEST_STORE` is that store (as
//! `.ci/run` sets it in turn); under any other store it passes with a note, so the local
//! run of the suite stays fast. The 2 GiB measurement also needs `FERRY_TEST_LARGE=1`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{TestContext, Value, store_name};
use sha2::{Digest, Sha256};

/// True when the store under test is one of `stores`; otherwise notes the skip.
fn runs_on(test: &str, stores: &[&str]) -> bool {
    let name = store_name();
    if stores.contains(&name.as_str()) {
        return true;
    }
    eprintln!(
        "note: {test} runs only with FERRY_TEST_STORE={}; skipped under {name}",
        stores.join(" or ")
    );
    false
}

/// Writes `bytes` of incompressible data to `path`, so compression cannot shrink the upload.
fn random_file(path: &Path, bytes: u64) {
    std::fs::create_dir_all(path.parent().expect("a parent folder")).expect("mkdir");
    let mut src = std::fs::File::open("/dev/urandom")
        .expect("/dev/urandom")
        .take(bytes);
    let mut dst = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    std::io::copy(&mut src, &mut dst).expect("fill");
    dst.flush().expect("flush");
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).expect("open");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("{:x}", h.finalize())
}

/// Waits for a child with a deadline, killing it if it overruns.
fn wait_for(mut child: Child, limit: Duration) -> (i32, String, String) {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("poll").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("ferry did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// --- a private SeaweedFS, which a test may stop and start ----------------------------

/// A SeaweedFS (`weed mini`, installed by `.ci/servers.sh install`) this test started, on
/// its own ports and data folder; killed when dropped.
struct PrivateSeaweedFs {
    child: Option<Child>,
    /// HTTP ports of its master, volume server, filer, S3 gateway and admin server. Each
    /// also serves gRPC on its port + 10000, SeaweedFS's default, which its admin worker
    /// assumes whatever the flags say.
    ports: [u16; 5],
    root: PathBuf,
    log: PathBuf,
}

const BUCKET: &str = "ferry-test";
const KEY: &str = "private-key-id";
const SECRET: &str = "private-secret";
const GRPC_OFFSET: u16 = 10000;

impl PrivateSeaweedFs {
    fn start(root: PathBuf) -> Self {
        std::fs::create_dir_all(root.join("tmp")).expect("data folder");
        let log = root.with_extension("log");
        let mut s = Self {
            child: None,
            ports: free_port_pairs(),
            root,
            log,
        };
        s.restart();
        s
    }

    fn master_port(&self) -> u16 {
        self.ports[0]
    }
    fn filer_port(&self) -> u16 {
        self.ports[2]
    }
    fn s3_port(&self) -> u16 {
        self.ports[3]
    }

    /// Starts (again) on the same ports and data folder, and waits until it serves.
    fn restart(&mut self) {
        let weed = ferry_tests::repo_root().join(".ci/cache/venv-seaweedfs/bin/weed");
        assert!(
            weed.exists(),
            "{} is missing; run `.ci/servers.sh install`",
            weed.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let [master, volume, filer, s3, admin] = self.ports;
        let dir = self.root.display();
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={dir}"))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={BUCKET}"))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-admin.port={admin}"))
            .arg(format!("-filer.localSocket={dir}/filer.sock"))
            .arg(format!("-s3.localSocket={dir}/s3.sock"))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("TMPDIR", self.root.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("weed runs");
        self.child = Some(child);
        let start = Instant::now();
        while !self.ready() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "SeaweedFS did not start; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The S3 port is open, the bucket exists, and a volume server has registered with the
    /// master (until it has, after a restart, reads of stored objects fail).
    fn ready(&self) -> bool {
        let volume_server = http_get(self.master_port(), "/dir/status").is_some_and(|v| {
            v["Topology"]["DataCenters"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|dc| dc["Racks"].as_array().into_iter().flatten())
                .any(|rack| rack["DataNodes"].as_array().is_some_and(|n| !n.is_empty()))
        });
        volume_server
            && http_get(self.filer_port(), &format!("/buckets/{BUCKET}/")).is_some()
            && std::net::TcpStream::connect(("127.0.0.1", self.s3_port())).is_ok()
    }

    /// Kills the server at once, as a crash or a lost network would.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Parts of multipart uploads received so far: SeaweedFS keeps each as a file in the
    /// upload's folder under the bucket's `.uploads/`, which its filer lists.
    fn parts_received(&self) -> usize {
        let entries = |v: &Value| -> Vec<String> {
            v["Entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["FullPath"].as_str().map(str::to_string))
                .collect()
        };
        let Some(uploads) = http_get(self.filer_port(), &format!("/buckets/{BUCKET}/.uploads/"))
        else {
            return 0;
        };
        entries(&uploads)
            .iter()
            .filter_map(|dir| http_get(self.filer_port(), &format!("{dir}/")))
            .map(|parts| {
                entries(&parts)
                    .iter()
                    .filter(|p| p.ends_with(".part"))
                    .count()
            })
            .sum()
    }

    fn configure(&self, ctx: &mut TestContext, store: &str) {
        for k in ["AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"] {
            ctx.remove_env(k);
        }
        ctx.set_env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", self.s3_port()),
        );
        ctx.set_env("AWS_ACCESS_KEY_ID", KEY);
        ctx.set_env("AWS_SECRET_ACCESS_KEY", SECRET);
        ctx.set_env("AWS_REGION", "us-east-1");
        ctx.set_env("FERRY_STORE", store);
    }
}

impl Drop for PrivateSeaweedFs {
    fn drop(&mut self) {
        self.kill();
        // Killed, it cannot remove the gRPC sockets it keeps in /tmp (whatever TMPDIR says).
        for port in self.ports {
            for part in ["master", "volume", "filer", "s3", "admin"] {
                let sock = format!("/tmp/seaweedfs-{part}-grpc-{}.sock", port + GRPC_OFFSET);
                let _ = std::fs::remove_file(sock);
            }
        }
    }
}

/// Five free loopback ports, each with port + [`GRPC_OFFSET`] free too.
fn free_port_pairs() -> [u16; 5] {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 5 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = l.local_addr().expect("an address").port();
        held.push(l);
        let Some(pair) = port.checked_add(GRPC_OFFSET) else {
            continue;
        };
        if let Ok(p) = std::net::TcpListener::bind(("127.0.0.1", pair)) {
            held.push(p);
            ports.push(port);
        }
    }
    ports.try_into().expect("five ports")
}

/// A GET on loopback answered 200 with JSON; `None` for anything else. HTTP/1.0, so the
/// body comes whole, neither chunked nor kept alive.
fn http_get(port: u16, path: &str) -> Option<Value> {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        conn,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    (head.split_whitespace().nth(1) == Some("200")).then_some(())?;
    serde_json::from_slice(&raw[split + 4..]).ok()
}

/// A server stopped in the middle of a large upload: the save fails with a message naming
/// the store and what to check, publishes nothing, and the same save succeeds once the
/// server is back.
#[test]
fn server_stopped_mid_upload_fails_clearly_and_publishes_nothing() {
    if !runs_on(
        "server_stopped_mid_upload_fails_clearly_and_publishes_nothing",
        &["seaweedfs"],
    ) {
        return;
    }
    let mut ctx = TestContext::new();
    let mut server = PrivateSeaweedFs::start(ctx.dir("seaweedfs-data"));
    let store = format!("s3://{BUCKET}/interrupted");
    server.configure(&mut ctx, &store);
    random_file(&ctx.work.join("tree/blob.bin"), 160 << 20);
    let want = sha256_file(&ctx.work.join("tree/blob.bin"));

    let save_args = [
        "--json", "cache", "save", "--key", "big", "--path", "tree", "--format", "tar",
    ];
    let child = ctx
        .ferry()
        .args(save_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let start = Instant::now();
    while server.parts_received() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the upload never reached the server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    let killed = Instant::now();
    // ferry retries for a minute or two against a dead server, then gives up.
    let (code, _stdout, stderr) = wait_for(child, Duration::from_secs(300));
    eprintln!(
        "ferry gave up {:.0?} after the server died:\n{stderr}",
        killed.elapsed()
    );
    assert_eq!(code, 1, "a failed upload is an error\n{stderr}");
    assert!(
        stderr.contains(&store),
        "the error names the store URL:\n{stderr}"
    );
    assert!(
        stderr.contains("AWS_ENDPOINT_URL") && stderr.contains("AWS_ACCESS_KEY_ID"),
        "the error names the variables to check:\n{stderr}"
    );

    server.restart();
    let dest = ctx.dir("probe");
    let probe = ctx.run_in(
        &dest,
        &[
            "--json",
            "cache",
            "restore",
            "--key",
            "big",
            "--lookup-only",
        ],
    );
    probe.ok();
    assert_eq!(
        probe.json()["hit"],
        "miss",
        "nothing was published: {}",
        probe.stdout
    );

    let again = ctx.run(&save_args);
    again.ok();
    assert_eq!(
        again.json()["saved"],
        true,
        "the same save succeeds once the server is back"
    );
    let dest = ctx.dir("restored");
    ctx.run_in(&dest, &["cache", "restore", "--key", "big", "--exact"])
        .ok();
    assert_eq!(sha256_file(&dest.join("tree/blob.bin")), want);
}

/// Wrong credentials fail the first command with one message naming the store URL and the
/// credential variables; nothing is published.
#[test]
fn wrong_credentials_name_the_store_and_the_variables() {
    // MiniStack, moto and fake-gcs-server accept any credentials; these two check signatures.
    if !runs_on(
        "wrong_credentials_name_the_store_and_the_variables",
        &["seaweedfs", "azurite"],
    ) {
        return;
    }
    let mut ctx = TestContext::new();
    let good = ferry_tests::store_env(&store_name());
    let (var, bad) = match store_name().as_str() {
        "seaweedfs" => ("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_string()),
        _ => {
            let cs = &good["AZURE_STORAGE_CONNECTION_STRING"];
            // Still valid base64 of the same length: a well-formed but wrong key.
            (
                "AZURE_STORAGE_CONNECTION_STRING",
                cs.replacen("AccountKey=E", "AccountKey=X", 1),
            )
        }
    };
    ctx.set_env(var, bad);
    ctx.write("tree/a.txt", "a");
    let run = ctx.run(&["cache", "save", "--key", "creds", "--path", "tree"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&ctx.store),
        "names the store URL:\n{}",
        run.stderr
    );
    let names = match store_name().as_str() {
        "seaweedfs" => ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
        _ => [
            "AZURE_STORAGE_CONNECTION_STRING",
            "AZURE_STORAGE_ACCOUNT_KEY",
        ],
    };
    for n in names {
        assert!(run.stderr.contains(n), "names {n}:\n{}", run.stderr);
    }
    eprintln!("{}", run.stderr);

    ctx.set_env(var, good[var].clone());
    let probe = ctx.run(&[
        "--json",
        "cache",
        "restore",
        "--key",
        "creds",
        "--lookup-only",
    ]);
    probe.ok();
    assert_eq!(probe.json()["hit"], "miss", "nothing was published");
}

/// Ten jobs save one key at once on a real server, each with several MiB of its own:
/// exactly one publishes, the other nine report `exists`, and a restore gives one job's
/// tree, whole. Twenty rounds, each on a new key (`FERRY_TEST_RACE_ROUNDS` changes that).
///
/// Runs on the servers whose conditional create is atomic under concurrency (SeaweedFS,
/// MiniStack, Azurite); moto's is not, so it is no evidence here (docs/stores.md).
#[test]
fn ten_concurrent_saves_of_one_key_publish_once() {
    if !runs_on(
        "ten_concurrent_saves_of_one_key_publish_once",
        &["seaweedfs", "ministack", "azurite"],
    ) {
        return;
    }
    let rounds: usize = std::env::var("FERRY_TEST_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ctx = TestContext::new();
    let started = Instant::now();
    for round in 0..rounds {
        let key = format!("race-{round}");
        // Each job: text files naming it, and 4 MiB of its own random bytes.
        let blobs: Vec<String> = (0..10)
            .map(|i| {
                let dir = ctx.dir(&format!("r{round}/job{i}"));
                for f in 0..8 {
                    let p = dir.join(format!("tree/f{f}.txt"));
                    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&p, format!("job {i} file {f}\n").repeat(500)).expect("write");
                }
                random_file(&dir.join("tree/blob.bin"), 4 << 20);
                sha256_file(&dir.join("tree/blob.bin"))
            })
            .collect();
        let children: Vec<Child> = (0..10)
            .map(|i| {
                ctx.ferry_in(&ctx.root.join(format!("r{round}/job{i}")))
                    .args(["--json", "cache", "save", "--key", &key, "--path", "tree"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let results: Vec<Value> = children
            .into_iter()
            .map(|c| {
                let (code, stdout, stderr) = wait_for(c, Duration::from_secs(300));
                assert_eq!(code, 0, "{stderr}");
                serde_json::from_str(stdout.trim()).expect("one JSON object")
            })
            .collect();
        let saved = results.iter().filter(|r| r["saved"] == true).count();
        let exists = results.iter().filter(|r| r["reason"] == "exists").count();
        assert_eq!(
            (saved, exists),
            (1, 9),
            "round {round}: exactly one save publishes: {results:?}"
        );

        let dest = ctx.dir(&format!("r{round}/restored"));
        ctx.run_in(&dest, &["cache", "restore", "--key", &key, "--exact"])
            .ok();
        let first = std::fs::read_to_string(dest.join("tree/f0.txt")).expect("f0");
        let job: usize = first
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a job number");
        for f in 0..8 {
            let body = std::fs::read_to_string(dest.join(format!("tree/f{f}.txt"))).expect("file");
            assert_eq!(
                body,
                format!("job {job} file {f}\n").repeat(500),
                "round {round}: a restore mixes saves"
            );
        }
        assert_eq!(
            sha256_file(&dest.join("tree/blob.bin")),
            blobs[job],
            "round {round}: the restored blob is job {job}'s"
        );
    }
    eprintln!(
        "note: {rounds} rounds of 10 racing saves on {}: one published each round ({:.1?})",
        store_name(),
        started.elapsed()
    );
}

/// Runs ferry under `/usr/bin/time -v`; returns the JSON result, seconds and peak RSS in KiB.
fn timed(ctx: &TestContext, dir: &Path, args: &[&str]) -> (Value, f64, u64) {
    let base = ctx.ferry_in(dir);
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v").arg(base.get_program()).args(args).env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.current_dir(dir);
    let start = Instant::now();
    let out = cmd.output().expect("/usr/bin/time (Debian package `time`)");
    let secs = start.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ferry {args:?} failed:\n{stderr}");
    let rss = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|v| v.trim().parse().ok())
        .expect("time -v reports the peak RSS");
    let json = serde_json::from_slice(&out.stdout).expect("one JSON object");
    (json, secs, rss)
}

/// A 2 GiB cache saves to and restores from SeaweedFS with peak memory under 256 MiB.
/// Needs `FERRY_TEST_LARGE=1` (about 6 GiB of disk); `FERRY_TEST_LARGE_BYTES` changes the size.
#[test]
fn large_cache_round_trip_stays_under_256_mib() {
    if std::env::var("FERRY_TEST_LARGE").ok().as_deref() != Some("1") {
        eprintln!("note: large_cache_round_trip_stays_under_256_mib needs FERRY_TEST_LARGE=1");
        return;
    }
    if !runs_on("large_cache_round_trip_stays_under_256_mib", &["seaweedfs"]) {
        return;
    }
    let total: u64 = std::env::var("FERRY_TEST_LARGE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30);
    let ctx = TestContext::new();
    let files = 16u64;
    let mut sums = Vec::new();
    for i in 0..files {
        let p = ctx.work.join(format!("big/part-{i:02}.bin"));
        random_file(&p, total / files);
        sums.push(sha256_file(&p));
    }

    let (saved, save_secs, save_rss) = timed(
        &ctx,
        &ctx.work,
        &["--json", "cache", "save", "--key", "large", "--path", "big"],
    );
    assert_eq!(saved["saved"], true, "{saved}");
    let dest = ctx.dir("restored");
    let (restored, restore_secs, restore_rss) = timed(
        &ctx,
        &dest,
        &["--json", "cache", "restore", "--key", "large", "--exact"],
    );
    assert_eq!(restored["hit"], "exact", "{restored}");
    for (i, want) in sums.iter().enumerate() {
        assert_eq!(
            &sha256_file(&dest.join(format!("big/part-{i:02}.bin"))),
            want,
            "file {i}"
        );
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    eprintln!(
        "large cache on SeaweedFS: {:.0} MiB; save {save_secs:.1}s ({:.0} MiB/s), peak RSS {:.0} MiB; \
         restore {restore_secs:.1}s ({:.0} MiB/s), peak RSS {:.0} MiB",
        mib(total),
        mib(total) / save_secs,
        save_rss as f64 / 1024.0,
        mib(total) / restore_secs,
        restore_rss as f64 / 1024.0,
    );
    assert!(save_rss < 256 * 1024, "save peaked at {save_rss} KiB");
    assert!(
        restore_rss < 256 * 1024,
        "restore peaked at {restore_rss} KiB"
    );
}
