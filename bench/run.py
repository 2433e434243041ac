#!/usr/bin/env python3
"""ferry's benchmark: `ferry cache save|restore` against `tar | zstd` and gzip tar, plus
workspace attach (issue 3) and artifacts upload/download (issue 4).

    python3 bench/run.py                 # everything, 5 runs each; records the results
    python3 bench/run.py --quick         # 2 runs each, nothing recorded
    python3 bench/run.py --corpus node_modules --runs 3 --ferry target/debug/ferry

Python 3.11 standard library only. Needs GNU tar, zstd and gzip (Debian: `apt-get install
tar zstd gzip time`). bench/README.md says what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
import uuid
from pathlib import Path

import afterdelete
import corpora
import measure
import realtrees
import report
import scale
import scratchfs
from measure import TOOLS, MiB, Run, Series, fresh_dir, remove, settle, timed

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / "work"
RESULTS_JSON = BENCH_DIR / "results.json"
README = BENCH_DIR / "README.md"

GENERATED_CACHE_BENCHES = ["node_modules", "target", "big"]
REAL_BENCHES = ["npm-real", "cargo-real"]
CACHE_BENCHES = GENERATED_CACHE_BENCHES + REAL_BENCHES
# after-delete goes last: its deletions slow the root file system down for minutes.
BENCHES = CACHE_BENCHES + ["workspace", "artifacts", "lookup", "artifacts-30k", "after-delete"]
CORPUS_OF = {"node_modules": "node_modules", "target": "target", "big": "big",
             "npm-real": "npm-real", "cargo-real": "cargo-real",
             "workspace": "layers", "artifacts": "artifacts", "after-delete": "npm-real"}
PROJECT = "bench"

# Where timed restores write: a journaled ext4 made for the run (scratchfs.py) unless
# --no-ext4 or it cannot be made here; then bench/work on the root file system.
DEST = WORK / "dest"
DEST_INFO: dict = {"kind": "root file system", "path": str(DEST)}

# --baseline: an older ferry binary timed beside this one, alternating, on the cache corpora,
# so that a regression is measured in one run rather than across runs.
BASELINE: "Ferry | None" = None

# Targets of issue 7.
SAVE_RATIO_MAX = 1.0
SAVE_RATIO_AIM = 0.8
STORED_BYTES_SLACK = 0.05
RESTORE_RATIO_MAX = {"node_modules": 0.7, "target": 1.0, "big": 1.0, "npm-real": 0.8, "cargo-real": 0.8}
# Real trees (issue 12): a restore costs at most this many times `cp -a` of the same tree.
RESTORE_VS_CP_MAX = {"npm-real": 1.5, "cargo-real": 1.5}
ATTACH_VS_CP_MAX = 1.5
RSS_MAX = 100 * MiB
EXISTING_KEY_MAX = 0.100


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------
# Set-up: tools, the binary, the environment ferry runs in
# ---------------------------------------------------------------------------------------

def check_tools() -> dict:
    """Versions of the reference tools; exits with advice when one is missing."""
    missing = []
    versions = {}
    for tool, argv in [("tar", ["tar", "--version"]), ("zstd", ["zstd", "--version"]),
                       ("gzip", ["gzip", "--version"])]:
        if not measure.which(tool):
            missing.append(tool)
            continue
        versions[tool] = measure.tool_version(argv)
    if "tar" in versions and "GNU tar" not in versions["tar"]:
        missing.append("tar (GNU tar is needed; found: " + versions["tar"] + ")")
    if missing:
        log("bench: missing reference tools: " + ", ".join(missing))
        log("  on Debian/Ubuntu: sudo apt-get install -y tar zstd gzip time")
        sys.exit(2)
    if not measure.GNU_TIME:
        log("bench: note: GNU time (/usr/bin/time, Debian package `time`) not found; peak RSS")
        log("  falls back to os.wait4, which counts the harness's own ~20 MiB as a floor")
    versions["rss"] = measure.rss_method()
    return versions


def build_ferry() -> Path:
    """`cargo build --release -p ferry`; returns the executable cargo reports."""
    log("bench: building ferry: cargo build --release -p ferry")
    p = subprocess.run(["cargo", "build", "--release", "-p", "ferry",
                        "--message-format=json-render-diagnostics"],
                       cwd=REPO, stdout=subprocess.PIPE, text=True)
    exe = None
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg.get("target", {}).get("name") == "ferry":
            exe = msg["executable"]
    if p.returncode != 0 or not exe:
        log("bench: the build failed; fix it or pass --ferry PATH")
        sys.exit(1)
    return Path(exe)


def private_copy(exe: Path) -> tuple[Path, str]:
    """Copies the binary into bench/work and returns (copy, its SHA-256).

    target/ is shared: anyone's `cargo build --release` replaces target/release/ferry,
    and did so in the middle of a measurement once. The benchmark runs its own copy."""
    data = exe.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    d = WORK / "bin" / digest[:16]
    d.mkdir(parents=True, exist_ok=True)
    copy = d / "ferry"
    if not copy.exists():
        tmp = d / "ferry.tmp"
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        tmp.rename(copy)
    return copy, digest


def ferry_env(fmt: str = "zstd") -> dict:
    """The environment ferry runs in: this one minus every CI and FERRY_ variable (ferry
    must not think it is in a CI job or read a developer's settings), with its state and
    config folders inside bench/work, and `fmt` the format of its saves and layers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "CIRCLE", "FERRY_", "RUNNER_", "ACTIONS_", "BUILDKITE", "DRONE"))
           and k not in ("CI", "RUST_LOG")}
    for var in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        env[var] = str(WORK / "xdg" / var.split("_")[1].lower())
        Path(env[var]).mkdir(parents=True, exist_ok=True)
    env["NO_COLOR"] = "1"
    env["FERRY_FORMAT"] = fmt
    return env


class Ferry:
    def __init__(self, exe: Path, env: dict):
        self.exe = str(exe)
        self.env = env

    def argv(self, store: Path, *args: str) -> list[str]:
        return [self.exe, "--store", str(store), "--project", PROJECT, "--json", "--no-progress", *args]

    def run(self, store: Path, *args: str, cwd: Path) -> Run:
        return measure.run([self.argv(store, *args)], cwd=cwd, env=self.env, scratch=WORK)

    def supports(self, command: str) -> tuple[bool, str]:
        r = measure.run([[self.exe, command, "--help"]], cwd=WORK, env=self.env, scratch=WORK)
        if r.ok:
            return True, ""
        return False, f"`ferry {command} --help` exited {r.returncodes[0]}"

    def version(self) -> str:
        return measure.tool_version([self.exe, "--version"])


def git_dirty_files() -> list[str]:
    st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":(exclude)bench/README.md", ":(exclude)bench/results.json"],
                        cwd=REPO, capture_output=True, text=True).stdout
    return [line[3:] for line in st.splitlines()]


def git_commit() -> str:
    """Short HEAD, with "-dirty" when tracked files other than the results differ."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                         ":(exclude)bench/README.md", ":(exclude)bench/results.json"],
                        cwd=REPO, capture_output=True, text=True).stdout
    return head + ("-dirty" if st.strip() else "")


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    fs = subprocess.run(["df", "-T", str(BENCH_DIR)], capture_output=True, text=True).stdout.splitlines()
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_bytes": mem,
        "kernel": platform.release(),
        "filesystem": fs[-1].split()[1] if len(fs) > 1 else "",
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------
# Comparing trees
# ---------------------------------------------------------------------------------------

def compare_trees(want: dict, got: dict) -> str:
    """A one-line verdict on a restored tree against the original's entries."""
    if want == got:
        return "identical"
    missing = [p for p in want if p not in got]
    extra = [p for p in got if p not in want]
    content = [p for p in want if p in got and want[p][:3] != got[p][:3]]
    mtime = [p for p in want if p in got and want[p][:3] == got[p][:3] and want[p][3] != got[p][3]]
    parts = []
    for label, paths in [("missing", missing), ("extra", extra), ("differ", content), ("mtime differs", mtime)]:
        if paths:
            parts.append(f"{len(paths)} {label} (e.g. {sorted(paths)[0]})")
    if not missing and not extra and not content:
        only_dirs = all(want[p][0] == "d" for p in mtime)
        return ("identical except folder mtimes: " if only_dirs else "identical except mtimes: ") + "; ".join(parts)
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------
# Cache save / restore on one corpus
# ---------------------------------------------------------------------------------------

def payload_paths(stamp: dict) -> list[str]:
    """The cached paths of a corpus: one for generated corpora, several for real ones
    (`target` and `cargo-home/registry`)."""
    return list(stamp.get("paths") or [stamp["payload"]])


def entries_of(root: Path, paths: list[str]) -> dict:
    """Every entry below each of `paths` in `root`, named from `root`."""
    return {f"{p}/{rel}": e for p in paths for rel, e in corpora.tree_entries(root / p).items()}


def bench_cache(name: str, ferry: Ferry | None, stamp: dict, runs: int, gzip: bool) -> dict:
    src = corpora.CORPORA_DIR / CORPUS_OF[name]
    paths = payload_paths(stamp)
    path_args = [a for p in paths for a in ("--path", p)]
    work = fresh_dir(WORK / name)
    key = f"bench-{name}"
    ref_zst = work / "ref.tar.zst"
    ref_gz = work / "ref.tar.gz"
    # Restores (and cp -a) write on the scratch file system when there is one (see DEST).
    restore_dir = DEST / name / "restore"
    warm_store = work / "store-warm"
    want = entries_of(src, paths)

    zstd_save = [["tar", "--posix", "-cf", "-", *paths], ["zstd", "-T0", "-3", "-q", "-f", "-o", str(ref_zst)]]
    gzip_save = [["tar", "-czf", str(ref_gz), *paths]]
    zstd_restore = [["zstd", "-d", "-c", "-q", str(ref_zst)], ["tar", "-xf", "-"]]
    gzip_restore = [["tar", "-xzf", str(ref_gz)]]
    # The floor: creating the same files from an unpacked copy, no archive involved.
    cp_restore = lambda d: [["cp", "-a", "--parents", *paths, str(d)]]

    s = {k: Series(k) for k in ["ferry save", "tar|zstd save", "tar -z save", "ferry save, key exists",
                                "ferry restore", "zstd -d|tar restore", "tar -xz restore", "cp -a"]}
    base = BASELINE if ferry else None
    base_store = work / "store-warm-baseline"
    if base:
        s["baseline save"], s["baseline restore"] = Series("baseline save"), Series("baseline restore")
    verify = {}
    notes = []

    log(f"  [{name}] warm-up (untimed)")
    ferry_ok = ferry is not None
    if ferry:
        r = ferry.run(fresh_dir(warm_store), "cache", "save", "--key", key, *path_args, cwd=src)
        if not r.ok:
            notes.append("ferry cache save failed: " + r.failure())
            log("    " + notes[-1])
            ferry_ok = False
        s["ferry save"].extra["json"] = r.json
    if base:
        r = base.run(fresh_dir(base_store), "cache", "save", "--key", key, *path_args, cwd=src)
        if not r.ok:
            notes.append("the baseline's cache save failed: " + r.failure())
            base = None
    measure.run(zstd_save, cwd=src, scratch=WORK)
    if gzip:
        measure.run(gzip_save, cwd=src, scratch=WORK)

    log(f"  [{name}] save, {runs} runs each, alternating")
    stored = []
    for i in range(runs):
        if ferry_ok:
            store = fresh_dir(work / "store")
            r = timed(s["ferry save"], lambda: ferry.run(store, "cache", "save", "--key", key, *path_args, cwd=src),
                      reset=lambda: fresh_dir(store), warm=[src / p for p in paths])
            if r.ok:
                stored.append(measure.store_data_bytes(store))
            remove(store)
        if base:
            store = fresh_dir(work / "store")
            timed(s["baseline save"], lambda: base.run(store, "cache", "save", "--key", key, *path_args, cwd=src),
                  reset=lambda: fresh_dir(store), warm=[src / p for p in paths])
            remove(store)
        remove(ref_zst)
        timed(s["tar|zstd save"], lambda: measure.run(zstd_save, cwd=src, scratch=WORK), reset=lambda: remove(ref_zst),
              warm=[src / p for p in paths])
        if gzip:
            remove(ref_gz)
            timed(s["tar -z save"], lambda: measure.run(gzip_save, cwd=src, scratch=WORK), reset=lambda: remove(ref_gz),
                  warm=[src / p for p in paths])
    zst_bytes = ref_zst.stat().st_size
    s["tar|zstd save"].extra["stored_bytes"] = zst_bytes
    if gzip and ref_gz.exists():
        s["tar -z save"].extra["stored_bytes"] = ref_gz.stat().st_size
    if stored:
        s["ferry save"].extra["stored_bytes"] = stored[-1][0]
        s["ferry save"].extra["store_total_bytes"] = stored[-1][1]
        s["ferry save"].extra["stored_bytes_from"] = stored[-1][2]

    if ferry_ok:
        n = max(5, 2 * runs + 1)
        log(f"  [{name}] save of an existing key, {n} runs")
        for i in range(n):
            r = timed(s["ferry save, key exists"],
                      lambda: ferry.run(warm_store, "cache", "save", "--key", key, *path_args, cwd=src))
            if r.ok and r.json is not None and r.json.get("saved") is not False:
                s["ferry save, key exists"].error = f"the save was not skipped: {json.dumps(r.json)[:200]}"
        s["ferry save, key exists"].extra["json"] = r.json

    log(f"  [{name}] restore warm-up and check (untimed)")
    if ferry_ok:
        r = ferry.run(warm_store, "cache", "restore", "--key", key, cwd=fresh_dir(restore_dir))
        s["ferry restore"].extra["json"] = r.json
        if not r.ok:
            notes.append("ferry cache restore failed: " + r.failure())
            log("    " + notes[-1])
            ferry_ok = False
        else:
            verify["ferry"] = compare_trees(want, entries_of(restore_dir, paths))
            log(f"    ferry restore: {verify['ferry']}")
    if base:
        r = base.run(base_store, "cache", "restore", "--key", key, cwd=fresh_dir(restore_dir))
        if r.ok:
            verify["baseline"] = compare_trees(want, entries_of(restore_dir, paths))
        else:
            notes.append("the baseline's cache restore failed: " + r.failure())
            base = None
    measure.run(zstd_restore, cwd=fresh_dir(restore_dir), scratch=WORK)
    verify["tar|zstd"] = compare_trees(want, entries_of(restore_dir, paths))
    log(f"    zstd -d | tar -x: {verify['tar|zstd']}")
    if gzip:
        measure.run(gzip_restore, cwd=fresh_dir(restore_dir), scratch=WORK)
    r = measure.run(cp_restore(fresh_dir(restore_dir)), cwd=src, scratch=WORK)
    if not r.ok:
        notes.append("cp -a failed: " + r.failure())
    remove(restore_dir)

    log(f"  [{name}] restore, {runs} runs each, alternating")
    for i in range(runs):
        if ferry_ok:
            d = fresh_dir(restore_dir)
            timed(s["ferry restore"], lambda: ferry.run(warm_store, "cache", "restore", "--key", key, cwd=d),
                  reset=lambda: fresh_dir(d), warm=[warm_store])
        if base:
            d = fresh_dir(restore_dir)
            timed(s["baseline restore"], lambda: base.run(base_store, "cache", "restore", "--key", key, cwd=d),
                  reset=lambda: fresh_dir(d), warm=[base_store])
        d = fresh_dir(restore_dir)
        timed(s["zstd -d|tar restore"], lambda: measure.run(zstd_restore, cwd=d, scratch=WORK), reset=lambda: fresh_dir(d),
              warm=[ref_zst])
        if gzip:
            d = fresh_dir(restore_dir)
            timed(s["tar -xz restore"], lambda: measure.run(gzip_restore, cwd=d, scratch=WORK), reset=lambda: fresh_dir(d),
                  warm=[ref_gz])
        d = fresh_dir(restore_dir)
        timed(s["cp -a"], lambda: measure.run(cp_restore(d), cwd=src, scratch=WORK), reset=lambda: fresh_dir(d),
              warm=[src / p for p in paths])
    remove(restore_dir)
    remove(work)

    out = {
        "bench": name,
        "corpus": corpus_record(stamp),
        "restore_fs": DEST_INFO,
        "series": {k: v.summary() for k, v in s.items()},
        "verify": verify,
        "notes": notes,
    }
    out["targets"] = cache_targets(name, out["series"])
    return out


def corpus_record(stamp: dict) -> dict:
    keys = ("name", "kind", "what", "payload", "paths", "files", "bytes", "entries", "dirs", "symlinks",
            "files_over_1mib", "bytes_in_files_over_1mib", "largest_files", "digest", "recipe_digest",
            "tools", "seed", "generator_version")
    return {k: stamp[k] for k in keys if k in stamp}


def ratio(a: dict, b: dict) -> float | None:
    x, y = a.get("median_seconds"), b.get("median_seconds")
    return x / y if x and y else None


def cache_targets(name: str, s: dict) -> list[dict]:
    t = []
    r = ratio(s["ferry save"], s["tar|zstd save"])
    t.append(target("save time vs tar|zstd -T0", r, f"≤ {SAVE_RATIO_MAX} (aim {SAVE_RATIO_AIM})",
                    None if r is None else r <= SAVE_RATIO_MAX, fmt="ratio"))
    fb, zb = s["ferry save"].get("stored_bytes"), s["tar|zstd save"].get("stored_bytes")
    over = (fb / zb - 1) if fb and zb else None
    t.append(target("stored bytes vs .tar.zst", over, f"≤ +{STORED_BYTES_SLACK:.0%}",
                    None if over is None else over <= STORED_BYTES_SLACK, fmt="percent"))
    r = ratio(s["ferry restore"], s["zstd -d|tar restore"])
    lim = RESTORE_RATIO_MAX[name]
    t.append(target("restore time vs zstd -d|tar -x", r, f"≤ {lim}", None if r is None else r <= lim, fmt="ratio"))
    if name in RESTORE_VS_CP_MAX:
        r = ratio(s["ferry restore"], s["cp -a"])
        lim = RESTORE_VS_CP_MAX[name]
        t.append(target("restore time vs cp -a", r, f"≤ {lim}", None if r is None else r <= lim, fmt="ratio"))
    for k in ("ferry save", "ferry restore"):
        rss = s[k].get("peak_rss_bytes")
        t.append(target(f"{k.split()[1]} peak RSS", rss, "≤ 100 MiB", None if rss is None else rss <= RSS_MAX, fmt="bytes"))
    e = s["ferry save, key exists"]
    m = e.get("median_seconds")
    t.append(target("save of an existing key", m, "< 100 ms",
                    None if m is None else (m < EXISTING_KEY_MAX and not e.get("error")), fmt="seconds"))
    return t


def target(what: str, value, limit: str, ok: bool | None, fmt: str) -> dict:
    return {"target": what, "value": value, "limit": limit, "pass": ok, "format": fmt}


# ---------------------------------------------------------------------------------------
# Workspace attach (issue 3)
# ---------------------------------------------------------------------------------------

def bench_workspace(ferry: Ferry, stamp: dict, runs: int) -> dict:
    src = corpora.CORPORA_DIR / CORPUS_OF["workspace"]
    jobs = sorted(p for p in (src / stamp["payload"]).iterdir() if p.is_dir())
    work = fresh_dir(WORK / "workspace")
    s = {k: Series(k) for k in ["ferry workspace persist (all 10)", "ferry workspace attach",
                                "ferry cache save (same files)", "ferry cache restore (same files)",
                                "zstd -d|tar restore (same files)", "cp -a (same files)"]}
    # The floor for an attach: copying every job's files into one folder, as the layers are laid.
    cp_layers = lambda d: [["cp", "-a", *[f"{j}/." for j in jobs], str(d)]]
    ref_zst = work / "ref.tar.zst"
    zstd_restore = [["zstd", "-d", "-c", "-q", str(ref_zst)], ["tar", "-xf", "-"]]
    measure.run([["tar", "--posix", "-cf", "-", stamp["payload"]], ["zstd", "-T0", "-3", "-q", "-f", "-o", str(ref_zst)]],
                cwd=src, scratch=WORK)
    want_layers: dict = {}
    for j in jobs:
        want_layers.update(corpora.tree_entries(j))
    want_cache = corpora.tree_entries(src / stamp["payload"])
    verify, notes = {}, []
    persist_each: list[float] = []

    def one_round(timing: bool) -> bool:
        store = fresh_dir(work / "store")
        wf = f"bench-{uuid.uuid4().hex[:12]}"
        rounds = []
        if timing:
            settle(log, warm=[src / stamp["payload"], *TOOLS])
        for n, root in enumerate(jobs):
            r = ferry.run(store, "workspace", "persist", "--root", str(root), "--path", ".",
                          "--workflow", wf, "--job", f"job{n}", cwd=src)
            rounds.append(r)
            if not r.ok:
                notes.append("ferry workspace persist failed: " + r.failure())
                log("    " + notes[-1])
                return False
        if timing:
            total = Run(argv=[r.argv[0] for r in rounds], wall=sum(r.wall for r in rounds), returncodes=[0],
                        maxrss=[max(r.peak_rss for r in rounds)], cpu=[sum(sum(r.cpu) for r in rounds)],
                        extra={"background_cpu": measure.median([r.extra["background_cpu"] for r in rounds
                                                                 if r.extra.get("background_cpu") is not None])})
            s["ferry workspace persist (all 10)"].add(total)
            persist_each.extend(r.wall for r in rounds)
            log(f"    {'ferry workspace persist x10':<34} {total.wall:8.3f} s  rss {total.peak_rss / MiB:6.1f} MiB")
            timed(s["ferry cache save (same files)"],
                  lambda: ferry.run(store, "cache", "save", "--key", "ws-equivalent", "--path", stamp["payload"], cwd=src),
                  reset=lambda: ferry.run(store, "cache", "rm", "ws-equivalent", cwd=work), warm=[src / stamp["payload"]])
        else:
            r = ferry.run(store, "cache", "save", "--key", "ws-equivalent", "--path", stamp["payload"], cwd=src)
            if not r.ok:
                notes.append("ferry cache save failed: " + r.failure())
        at = fresh_dir(DEST / "workspace" / "attach")
        if timing:
            r = timed(s["ferry workspace attach"],
                      lambda: ferry.run(store, "workspace", "attach", "--at", str(at), "--workflow", wf, cwd=work),
                      reset=lambda: fresh_dir(at), warm=[store])
        else:
            r = ferry.run(store, "workspace", "attach", "--at", str(at), "--workflow", wf, cwd=work)
            s["ferry workspace attach"].extra["json"] = r.json
            if r.ok:
                verify["ferry workspace attach"] = compare_trees(want_layers, corpora.tree_entries(at))
                log(f"    attach: {verify['ferry workspace attach']}")
            else:
                notes.append("ferry workspace attach failed: " + r.failure())
                log("    " + notes[-1])
                return False
        remove(at)
        d = fresh_dir(DEST / "workspace" / "restore")
        if timing:
            timed(s["ferry cache restore (same files)"],
                  lambda: ferry.run(store, "cache", "restore", "--key", "ws-equivalent", cwd=d),
                  reset=lambda: fresh_dir(d), warm=[store])
        else:
            r = ferry.run(store, "cache", "restore", "--key", "ws-equivalent", cwd=d)
            if r.ok:
                verify["ferry cache restore"] = compare_trees(want_cache, corpora.tree_entries(d / stamp["payload"]))
        d = fresh_dir(DEST / "workspace" / "restore")
        if timing:
            timed(s["zstd -d|tar restore (same files)"], lambda: measure.run(zstd_restore, cwd=d, scratch=WORK),
                  reset=lambda: fresh_dir(d), warm=[ref_zst])
        else:
            measure.run(zstd_restore, cwd=d, scratch=WORK)
        d = fresh_dir(DEST / "workspace" / "cp")
        if timing:
            timed(s["cp -a (same files)"], lambda: measure.run(cp_layers(d), cwd=src, scratch=WORK),
                  reset=lambda: fresh_dir(d), warm=jobs)
        else:
            r = measure.run(cp_layers(d), cwd=src, scratch=WORK)
            verify["cp -a"] = compare_trees(want_layers, corpora.tree_entries(d))
        remove(d)
        remove(store)
        return True

    log("  [workspace] warm-up and check (untimed)")
    if one_round(False):
        log(f"  [workspace] {runs} rounds: persist 10 layers, cache save, attach, cache restore, zstd|tar restore")
        for i in range(runs):
            one_round(True)
    remove(work)
    remove(DEST / "workspace")
    s["ferry workspace persist (all 10)"].extra["median_seconds_each"] = measure.median(persist_each)
    out = {
        "bench": "workspace",
        "corpus": corpus_record(stamp),
        "restore_fs": DEST_INFO,
        "layers": len(jobs),
        "series": {k: v.summary() for k, v in s.items()},
        "verify": verify,
        "notes": notes,
    }
    series = out["series"]
    x = ratio(series["ferry workspace attach"], series["cp -a (same files)"])
    out["targets"] = [target("attach time vs cp -a of the same files", x, f"≤ {ATTACH_VS_CP_MAX}",
                             None if x is None else x <= ATTACH_VS_CP_MAX, fmt="ratio")]
    for k in ("ferry workspace attach", "ferry workspace persist (all 10)"):
        rss = series[k].get("peak_rss_bytes")
        out["targets"].append(target(f"{k.split(' (')[0].removeprefix('ferry workspace ')} peak RSS", rss, "≤ 100 MiB",
                                     None if rss is None else rss <= RSS_MAX, fmt="bytes"))
    return out


# ---------------------------------------------------------------------------------------
# Artifacts upload / download (issue 4)
# ---------------------------------------------------------------------------------------

def bench_artifacts(ferry: Ferry, stamp: dict, runs: int) -> dict:
    src = corpora.CORPORA_DIR / CORPUS_OF["artifacts"]
    payload = stamp["payload"]
    work = fresh_dir(WORK / "artifacts")
    s = {k: Series(k) for k in ["ferry artifacts upload", "ferry artifacts download", "cp -a (same files)"]}
    want = corpora.tree_entries(src / payload)
    verify, notes = {}, []
    run_id, job = "bench-run", "bench-job"

    def up(store: Path) -> Run:
        return ferry.run(store, "artifacts", "upload", payload, "--destination", "d", "--run", run_id, "--job", job, cwd=src)

    def down(store: Path, to: Path) -> Run:
        return ferry.run(store, "artifacts", "download", "--to", str(to), "--run", run_id, "--job", job, cwd=work)

    log("  [artifacts] warm-up and check (untimed)")
    store = fresh_dir(work / "store")
    ok = True
    r = up(store)
    s["ferry artifacts upload"].extra["json"] = r.json
    if not r.ok:
        notes.append("ferry artifacts upload failed: " + r.failure())
        ok = False
    else:
        out = fresh_dir(DEST / "artifacts" / "out")
        r = down(store, out)
        s["ferry artifacts download"].extra["json"] = r.json
        if not r.ok:
            notes.append("ferry artifacts download failed: " + r.failure())
            ok = False
        else:
            got = corpora.tree_entries(out / "d") if (out / "d").is_dir() else corpora.tree_entries(out)
            # Artifacts keep bytes and modes; mtimes are not promised.
            strip = lambda es: {p: v[:3] for p, v in es.items() if v[0] != "d"}
            verify["ferry artifacts download"] = "identical bytes and modes" if strip(want) == strip(got) \
                else compare_trees(want, got)
            log(f"    download: {verify['ferry artifacts download']}")
    for n in notes:
        log("    " + n)
    (DEST / "artifacts").mkdir(parents=True, exist_ok=True)
    measure.run([["cp", "-a", payload, str(DEST / "artifacts" / "cp")]], cwd=src, scratch=WORK)
    remove(DEST / "artifacts" / "cp")
    if ok:
        log(f"  [artifacts] {runs} rounds: upload 10,000 files, download them, cp -a")
        for i in range(runs):
            store = fresh_dir(work / "store")
            timed(s["ferry artifacts upload"], lambda: up(store), reset=lambda: fresh_dir(store), warm=[src / payload])
            out = fresh_dir(DEST / "artifacts" / "out")
            timed(s["ferry artifacts download"], lambda: down(store, out), reset=lambda: fresh_dir(out), warm=[store])
            remove(out)
            remove(store)
            timed(s["cp -a (same files)"], lambda: measure.run([["cp", "-a", payload, str(DEST / "artifacts" / "cp")]], cwd=src, scratch=WORK),
                  reset=lambda: remove(DEST / "artifacts" / "cp"), warm=[src / payload])
            remove(DEST / "artifacts" / "cp")
    remove(work)
    remove(DEST / "artifacts")
    return {
        "bench": "artifacts",
        "corpus": corpus_record(stamp),
        "restore_fs": DEST_INFO,
        "series": {k: v.summary() for k, v in s.items()},
        "verify": verify,
        "notes": notes,
    }


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(
        description="Benchmark ferry's cache save/restore against tar|zstd, gzip tar and cp -a, on generated "
                    "and real trees, plus workspace attach, artifacts, lookups in big stores and restores "
                    "right after a mass deletion.",
        epilog="Results: bench/results.json and the tables in bench/README.md.")
    ap.add_argument("--quick", action="store_true", help="2 runs each; results are not recorded unless --record")
    ap.add_argument("--runs", type=int, help="timed runs of each command (default 5, --quick 2)")
    ap.add_argument("--corpus", action="append", choices=BENCHES, metavar="NAME",
                    help=f"only this benchmark or lane (repeatable): {', '.join(BENCHES)}")
    ap.add_argument("--ferry", type=Path, metavar="PATH", help="use this binary instead of building one")
    ap.add_argument("--baseline", type=Path, metavar="PATH",
                    help="an older ferry binary to time beside this one on the cache corpora, alternating")
    ap.add_argument("--baseline-name", metavar="TEXT", help="what the baseline is (its commit), for the report")
    ap.add_argument("--format", default="zstd",
                    help="format of ferry's saves and workspace layers: zstd (format 1, the default, "
                         "which the results in bench/README.md measure) or chunked (format 2, which "
                         "bench/chunked.py measures against format 1)")
    ap.add_argument("--no-gzip", action="store_true", help="skip the gzip tar reference (the slowest part)")
    ap.add_argument("--no-real", action="store_true",
                    help="skip the real-tree corpora (npm-real, cargo-real), which need npm and crates.io once")
    ap.add_argument("--no-ext4", action="store_true",
                    help="restore onto bench/work on the root file system instead of a loop-mounted ext4")
    ap.add_argument("--ext4-size", type=float, default=8, metavar="GIB", help="size of the scratch ext4 image")
    ap.add_argument("--no-seaweedfs", action="store_true", help="lookup lane: local store only")
    ap.add_argument("--lookup-fill", choices=["direct", "ferry"], default="direct",
                    help="lookup lane: write the 10,000 caches in the store format (fast) or save each with ferry")
    ap.add_argument("--record", action="store_true", help="record results even for --quick or a --corpus subset")
    ap.add_argument("--no-record", action="store_true", help="do not write bench/results.json or bench/README.md")
    ap.add_argument("--quiet", type=float, default=measure.QUIET, metavar="FRACTION",
                    help="before each timed run, wait (up to --quiet-wait s) until other processes use less "
                         f"than this fraction of the CPU (default {measure.QUIET}; 0: never wait)")
    ap.add_argument("--quiet-wait", type=float, default=measure.QUIET_MOST, metavar="SECONDS",
                    help=f"longest wait for quiet before one timed run (default {measure.QUIET_MOST:.0f})")
    ap.add_argument("--disturbed", type=float, default=measure.DISTURBED, metavar="FRACTION",
                    help="repeat a run during which others used more than this fraction of the CPU "
                         f"(default {measure.DISTURBED}; 1: never)")
    ap.add_argument("--seed", type=int, default=corpora.DEFAULT_SEED, help=argparse.SUPPRESS)
    ap.add_argument("--generate-only", action="store_true", help="make the corpora and stop")
    args = ap.parse_args()

    runs = args.runs or (2 if args.quick else 5)
    measure.QUIET, measure.QUIET_MOST, measure.DISTURBED = args.quiet, args.quiet_wait, args.disturbed
    benches = args.corpus or [b for b in BENCHES if not (args.no_real and (b in REAL_BENCHES or b == "after-delete"))]
    # A quick or partial run must not overwrite the recorded table by accident.
    record = not args.no_record and (args.record or (not args.quick and not args.corpus))
    WORK.mkdir(parents=True, exist_ok=True)

    tools = check_tools()
    measure.TRASH = measure.Trash(WORK / "trash")
    measure.TRASH.empty()  # what an interrupted run left
    log("bench: corpora in bench/corpora/ (generated once, deterministic; real trees built once)")
    stamps = {}
    for b in benches:
        c = CORPUS_OF.get(b)
        if c is None:
            continue
        if c in realtrees.REAL:
            ok, why = realtrees.available(c)
            try:
                if not ok:
                    raise RuntimeError(why)
                stamps[b] = realtrees.ensure(c, log=lambda m: log("  " + m))
            except RuntimeError as e:
                log(f"  {b}: skipped: {e}")
                stamps[b] = None
        else:
            stamps[b] = corpora.ensure(c, args.seed, log=lambda m: log("  " + m))
    if corpora.GENERATED:
        measure.TRASH.mark()  # regenerating deleted the old corpus
    if args.generate_only:
        return 0

    commit = git_commit()
    dirty = git_dirty_files()
    if args.ferry:
        built = args.ferry.resolve()
        if not os.access(built, os.X_OK):
            log(f"bench: {built} is not an executable file")
            return 2
    else:
        built = build_ferry()
    exe, exe_sha256 = private_copy(built)
    ferry = Ferry(exe, ferry_env(args.format))
    global BASELINE
    baseline_meta = None
    if args.baseline:
        base_exe, base_sha256 = private_copy(args.baseline.resolve())
        BASELINE = Ferry(base_exe, ferry_env(args.format))
        baseline_meta = {"binary": str(args.baseline), "binary_sha256": base_sha256,
                         "name": args.baseline_name or str(args.baseline)}
    TOOLS[:] = [str(exe)] + ([str(BASELINE.exe)] if BASELINE else []) + [p for p in (measure.which(t) for t in ("tar", "zstd", "gzip", "cp")) if p]

    with contextlib.ExitStack() as stack:
        global DEST, DEST_INFO
        why_not = "--no-ext4" if args.no_ext4 else scratchfs.why_unavailable()
        if why_not is None:
            fs = scratchfs.LoopExt4(WORK / "scratch-ext4", int(args.ext4_size * scratchfs.GiB))
            DEST = stack.enter_context(fs)
            DEST_INFO = {"kind": "journaled ext4 made for the run (loop-mounted image)", **fs.info}
            measure.FAST_DELETE.append(DEST)
            log(f"bench: timed restores write to {DEST} ({fs.info['mount']}; features: {fs.info['features']})")
        else:
            DEST = WORK / "dest"
            DEST_INFO = {"kind": "root file system", "path": str(DEST), "why": why_not}
            log(f"bench: timed restores write to {DEST} on the root file system ({why_not})")
        meta = {
            "commit": commit,
            "dirty_files": dirty,
            "binary": str(built) if args.ferry else "cargo build --release -p ferry",
            "binary_sha256": exe_sha256,
            "ferry_version": ferry.version(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "runs": runs,
            "machine": machine(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "tools": tools,
            "quiet": args.quiet,
            "disturbed": measure.DISTURBED,
            "seed": args.seed,
            "generator_version": corpora.GENERATOR_VERSION,
            "restore_fs": DEST_INFO,
            "baseline": baseline_meta,
            "argv": sys.argv[1:],
        }
        log(f"bench: ferry {meta['ferry_version']} ({exe}), commit {commit}, {runs} runs each, "
            f"{meta['machine']['cores']} cores, load {meta['load_average_at_start']}")
        results = run_benches(benches, ferry, stamps, runs, args, meta)

    measure.TRASH.empty()
    scratch_json = WORK / f"results-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    doc = {"meta": meta, "benches": results}
    scratch_json.write_text(json.dumps(doc, indent=1) + "\n")
    log("")
    log(report.markdown(doc))
    if record:
        merged = report.brief(report.merge(RESULTS_JSON, doc))
        RESULTS_JSON.write_text(json.dumps(merged, indent=1) + "\n")
        report.write_readme(README, report.markdown(merged))
        log(f"bench: recorded in {RESULTS_JSON.relative_to(REPO)} and {README.relative_to(REPO)}")
    else:
        log(f"bench: not recorded (quick or partial run); full JSON in {scratch_json.relative_to(REPO)}")
    missed = [f"{b}: {t['target']}" for b, r in results.items() for t in r.get("targets", []) if t["pass"] is False]
    if missed:
        log("bench: targets missed: " + "; ".join(missed))
    return 0


def run_benches(benches: list[str], ferry: Ferry, stamps: dict, runs: int, args, meta: dict) -> dict:
    results = {}
    for b in benches:
        t0 = time.monotonic()
        load = os.getloadavg()
        log(f"bench: {b}")
        if b in stamps and stamps[b] is None:
            results[b] = {"bench": b, "skipped": "its corpus could not be built here"}
            continue
        try:
            res = run_bench(b, ferry, stamps, runs, args)
        except (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError) as e:
            # One lane's failure (a server that would not start, a binary without a command)
            # must not cost the others' measurements.
            log(f"  {b} failed: {e!r}")
            log("".join(traceback.format_exc()).rstrip())
            res = {"bench": b, "skipped": f"failed: {e!r}"[:500]}
        res["measured"] = {"commit": meta["commit"], "date": meta["date"], "runs": runs,
                           "load_average": [round(x, 2) for x in load],
                           "load_average_after": [round(x, 2) for x in os.getloadavg()],
                           "minutes": round((time.monotonic() - t0) / 60, 1)}
        results[b] = res
    return results


def run_bench(b: str, ferry: Ferry, stamps: dict, runs: int, args) -> dict:
    """Runs benchmark or lane `b`; its results."""
    if b in CACHE_BENCHES:
        res = bench_cache(b, ferry, stamps[b], runs, gzip=not args.no_gzip and b not in REAL_BENCHES)
    elif b in ("workspace", "artifacts", "artifacts-30k"):
        command = "workspace" if b == "workspace" else "artifacts"
        ok, why = ferry.supports(command)
        if not ok:
            log(f"  skipped: {why} (this ferry has no `{command}` command yet)")
            return {"bench": b, "skipped": why}
        if b == "artifacts-30k":
            res = scale.bench_artifacts_scale(ferry, runs, DEST)
        else:
            res = (bench_workspace if b == "workspace" else bench_artifacts)(ferry, stamps[b], runs)
    elif b == "lookup":
        seaweed = None
        if not args.no_seaweedfs:
            seaweed = scale.SeaweedFS(WORK / "seaweedfs", WORK / "seaweedfs" / "venv")
            why = seaweed.install()
            if why:
                log(f"  SeaweedFS not measured: {why}")
                seaweed = None
        res = scale.bench_lookup(ferry, runs, DEST, WORK, seaweed, args.lookup_fill)
        res["restore_fs"] = DEST_INFO
    elif b == "after-delete":
        res = afterdelete.bench_after_delete(ferry, stamps[b], runs, WORK)
    else:
        raise AssertionError(b)
    return res


if __name__ == "__main__":
    sys.exit(main())
