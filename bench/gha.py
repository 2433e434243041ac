#!/usr/bin/env python3
"""ferry on `gha://` against @actions/cache, through the same fake of GitHub's results service
and the same Azurite: `ferry cache save`/`restore` and `saveCache`/`restoreCache` of the same
tree, alternating, medians.

    python3 bench/gha.py                                  # node_modules, 5 runs each
    python3 bench/gha.py --corpus target --runs 3 --ferry target/release/ferry
    python3 bench/gha.py --record                         # also writes its table into bench/README.md

Needs the fake running (`.ci/servers.sh start-gha`) and GitHub's client installed in
tests/gha/clients (`tests/gha/run.sh` installs it; this script runs `npm ci` there when it
is missing), Node 20+, GNU tar and zstd (which @actions/cache runs). bench/README.md
("ferry on gha:// against actions/cache") says what is measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import corpora
import measure
import run as bench
from measure import MiB, fresh_dir, remove, settle

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / "work" / "gha"
CLIENTS = REPO / "tests" / "gha" / "clients"
ENV_FILE = Path(os.environ.get("FERRY_SERVERS_DIR", REPO / ".ci" / "cache")) / "store-gha.env"
README = BENCH_DIR / "README.md"
TABLE_OPEN, TABLE_CLOSE = "<!-- gha-table -->", "<!-- /gha-table -->"


def log(msg: str = "") -> None:
    print(msg, flush=True)


def fake_admin() -> str:
    if not ENV_FILE.exists():
        log(f"bench/gha.py: {ENV_FILE} is missing; start the fake: .ci/servers.sh start-gha")
        sys.exit(2)
    for line in ENV_FILE.read_text().splitlines():
        if line.startswith("export FERRY_GHA_FAKE_URL="):
            return line.split("=", 1)[1].strip("'")
    log(f"bench/gha.py: {ENV_FILE} names no FERRY_GHA_FAKE_URL")
    sys.exit(2)


def new_job(admin: str) -> dict:
    """A new job of the fake, a run of its own: what the runner gives a JavaScript action."""
    req = urllib.request.Request(f"{admin}/jobs", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["env"]


def ensure_clients() -> None:
    if not (CLIENTS / "node_modules" / "@actions" / "cache").is_dir():
        log("bench: npm ci in tests/gha/clients (GitHub's clients, pinned)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENTS,
                       check=True, stdin=subprocess.DEVNULL)


def client_env(base: dict, job: dict, workspace: Path, temp: Path) -> dict:
    """What @actions/cache reads: the job's two variables, the v2 cache service on github.com,
    the workspace its paths are relative to and the runner's temp folder for its archive."""
    return {**base, "ACTIONS_RESULTS_URL": job["ACTIONS_RESULTS_URL"],
            "ACTIONS_RUNTIME_TOKEN": job["ACTIONS_RUNTIME_TOKEN"], "ACTIONS_CACHE_SERVICE_V2": "True",
            "GITHUB_SERVER_URL": "https://github.com", "GITHUB_WORKSPACE": str(workspace),
            "RUNNER_TEMP": str(temp), "FERRY_BENCH_CLIENTS": str(CLIENTS)}


def ferry_env(base: dict, job: dict) -> dict:
    """What ferry gets from the action: the job's two variables and nothing else of GitHub's,
    so it picks gha:// by itself."""
    return {**base, "ACTIONS_RESULTS_URL": job["ACTIONS_RESULTS_URL"],
            "ACTIONS_RUNTIME_TOKEN": job["ACTIONS_RUNTIME_TOKEN"]}


def one(series: bench.Series, fn) -> measure.Run:
    """One timed run after the machine settled. The fake and Azurite work during every run
    of both tools, so "others" counts them and no run is repeated for being disturbed."""
    settle(log, warm=bench.TOOLS)
    r = fn()
    status = "" if r.ok else "  FAILED: " + r.failure()[:400]
    log(f"    {series.label:<28} {r.wall:8.3f} s  rss {r.peak_rss / MiB:6.1f} MiB{status}")
    series.add(r)
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default="node_modules", choices=bench.CACHE_BENCHES)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ferry", type=Path, metavar="PATH", help="use this binary instead of building one")
    ap.add_argument("--record", action="store_true", help="write the table into bench/README.md")
    ap.add_argument("--quiet", type=float, default=measure.QUIET, metavar="FRACTION")
    args = ap.parse_args()
    measure.QUIET = args.quiet

    admin = fake_admin()
    ensure_clients()
    tools = bench.check_tools()
    WORK.mkdir(parents=True, exist_ok=True)
    measure.TRASH = measure.Trash(WORK / "trash")
    measure.TRASH.empty()
    stamp = corpora.ensure(bench.CORPUS_OF[args.corpus], log=lambda m: log("  " + m))
    src = corpora.CORPORA_DIR / bench.CORPUS_OF[args.corpus]
    payload = stamp["payload"]
    want = corpora.tree_entries(src / payload)

    built = args.ferry.resolve() if args.ferry else bench.build_ferry()
    exe, exe_sha256 = bench.private_copy(built)
    node = measure.which("node")
    bench.TOOLS[:] = [str(exe), node] + [p for p in (measure.which(t) for t in ("tar", "zstd")) if p]
    base = bench.ferry_env()
    temp = fresh_dir(WORK / "runner-temp")
    project = f"bench-gha-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]

    def ferry_save(key: str) -> measure.Run:
        env = ferry_env(base, new_job(admin))
        return measure.run([[str(exe), "--json", "--no-progress", "--project", project, "cache", "save",
                             "--key", key, "--path", payload]], cwd=src, env=env, scratch=WORK)

    def ferry_restore(key: str, into: Path) -> measure.Run:
        env = ferry_env(base, new_job(admin))
        return measure.run([[str(exe), "--json", "--no-progress", "--project", project, "cache", "restore",
                             "--key", key, "--path", payload]], cwd=into, env=env, scratch=WORK)

    def client(op: str, key: str, cwd: Path) -> measure.Run:
        env = client_env(base, new_job(admin), cwd, temp)
        return measure.run([[node, str(BENCH_DIR / "gha_client.mjs"), op, key, payload]], cwd=cwd, env=env,
                           scratch=WORK)

    s = {k: bench.Series(k) for k in ["ferry save", "@actions/cache save", "ferry restore", "@actions/cache restore"]}
    verify, notes = {}, []

    log(f"bench: gha:// against @actions/cache, {args.corpus} ({stamp['files']} files, "
        f"{stamp['bytes'] / 1e6:.0f} MB), {args.runs} runs each, fake at {admin}")
    log("  warm-up and check (untimed)")
    warm_ferry, warm_client = f"warm-{tag}-ferry", f"warm-{tag}-client"
    for label, r in [("ferry save", ferry_save(warm_ferry)), ("@actions/cache save", client("save", warm_client, src))]:
        if not r.ok:
            log(f"    {label} failed: {r.failure()}")
            return 1
    d = fresh_dir(WORK / "restore")
    r = ferry_restore(warm_ferry, d)
    verify["ferry"] = compare(r, want, d / payload)
    d = fresh_dir(WORK / "restore")
    r = client("restore", warm_client, d)
    verify["@actions/cache"] = compare(r, want, d / payload)
    remove(d)
    for k, v in verify.items():
        log(f"    {k} restore: {v}")

    log(f"  save, {args.runs} runs each, alternating (a new key each time)")
    keys = {"ferry": [], "client": []}
    for i in range(args.runs):
        k = f"bench-{tag}-ferry-{i}"
        if one(s["ferry save"], lambda: ferry_save(k)).ok:
            keys["ferry"].append(k)
        k = f"bench-{tag}-client-{i}"
        if one(s["@actions/cache save"], lambda: client("save", k, src)).ok:
            keys["client"].append(k)

    log(f"  restore, {args.runs} runs each, alternating (exact hits, into an empty folder)")
    for i in range(args.runs):
        d = fresh_dir(WORK / "restore")
        one(s["ferry restore"], lambda: ferry_restore(keys["ferry"][i % len(keys["ferry"])], d))
        d = fresh_dir(WORK / "restore")
        one(s["@actions/cache restore"], lambda: client("restore", keys["client"][i % len(keys["client"])], d))
    remove(WORK / "restore")
    remove(temp)

    series = {k: v.summary() for k, v in s.items()}
    ratios = {
        "save": ratio(series["ferry save"], series["@actions/cache save"]),
        "restore": ratio(series["ferry restore"], series["@actions/cache restore"]),
    }
    result = {
        "bench": "gha",
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": bench.git_commit(),
        "binary_sha256": exe_sha256,
        "corpus": {k: stamp[k] for k in ("name", "payload", "files", "bytes", "digest")},
        "runs": args.runs,
        "machine": bench.machine(),
        "tools": {**tools, "node": measure.tool_version([node, "--version"]),
                  "@actions/cache": json.loads((CLIENTS / "node_modules/@actions/cache/package.json").read_text())["version"]},
        "series": series,
        "ratios": ratios,
        "verify": verify,
        "notes": notes,
    }
    out = WORK.parent / f"results-gha-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    table = render(result)
    log("")
    log(table)
    log(f"bench: results in {out.relative_to(REPO)}")
    if args.record:
        text = README.read_text()
        start, end = text.index(TABLE_OPEN) + len(TABLE_OPEN), text.index(TABLE_CLOSE)
        README.write_text(text[:start] + "\n" + table + "\n" + text[end:])
        log("bench: table written into bench/README.md")
    ok = all(r is not None and r <= 1.0 for r in ratios.values())
    return 0 if ok else 1


def compare(r: measure.Run, want: dict, restored: Path) -> str:
    if not r.ok:
        return "failed: " + r.failure()[:300]
    got = corpora.tree_entries(restored) if restored.is_dir() else {}
    return bench.compare_trees(want, got)


def ratio(a: dict, b: dict) -> float | None:
    x, y = a.get("median_seconds"), b.get("median_seconds")
    return x / y if x and y else None


def render(res: dict) -> str:
    s = res["series"]
    m = res["machine"]
    c = res["corpus"]

    def sec(x):
        return "-" if x is None else f"{x:.2f} s"

    lines = [
        f"Measured {res['date']} on commit `{res['commit']}` (release build, binary sha256 "
        f"{res['binary_sha256'][:12]}), {m['cores']} cores, {m['memory_bytes'] / 2**30:.0f} GiB RAM, "
        f"{res['runs']} runs each, median wall time; `{c['name']}` ({c['files']:,} files, "
        f"{c['bytes'] / 1e6:.0f} MB); @actions/cache {res['tools']['@actions/cache']} on Node "
        f"{res['tools']['node'].strip()}; the fake and Azurite on this machine.",
        "",
        "| | ferry (gha://) | @actions/cache | ferry / actions/cache | ferry peak RSS | restored tree |",
        "|---|---|---|---|---|---|",
    ]
    for op in ("save", "restore"):
        f, a = s[f"ferry {op}"], s[f"@actions/cache {op}"]
        r = res["ratios"][op]
        rss = f.get("peak_rss_bytes")
        tree = res["verify"].get("ferry", "") if op == "restore" else ""
        lines.append(f"| {op} | {sec(f.get('median_seconds'))} | {sec(a.get('median_seconds'))} | "
                     f"{'-' if r is None else f'{r:.2f}'} | {'-' if rss is None else f'{rss / MiB:.0f} MiB'} | {tree} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
