#!/usr/bin/env python3
"""Format-2 restores into a folder that holds 98% of the entry, several ferry binaries side
by side: each binary restores into a folder of its own (with the job state, and so the
footprint, of its own), 2% of whose files are then removed or appended to, the same files
for every binary in a round; the binaries alternate, and the order flips every round.

    python3 bench/restore98.py --ferry OLD,NEW --runs 9                  # bench/work/restore98
    python3 bench/restore98.py --ferry OLD,NEW --runs 9 --at /dev/shm/r98  # tmpfs: no disk

The entry is `node_modules` from corpora.py (made when missing), saved once with the first
binary. Each round also times each binary's restore into an empty folder (removed after),
so the 98% restore is compared with an empty one in the same run. Prints each binary's
medians and every run in seconds (wall time of the restore), and the median processor time
(user and system) of the 98% restores, which the machine's other work disturbs less. A/B
only: `chunked.py` is what bench/README.md records.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def damage(root: Path, seed: int) -> None:
    """As chunked.py's damage_2_percent: every other picked file removed, the rest appended to."""
    rng = random.Random(seed)
    files = sorted(Path(d) / f for d, _, fs in os.walk(root) for f in fs
                   if not os.path.islink(Path(d) / f))
    for i, f in enumerate(rng.sample(files, len(files) // 50)):
        if i % 2:
            f.unlink()
        else:
            with open(f, "ab") as h:
                h.write(b"edited since the restore\n")


# Processor seconds (user and system) of each ferry run, in the order they ran.
CPU: list[float] = []


def ferry(exe: str, at: Path, cwd: Path, state: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "CIRCLE", "FERRY_", "RUNNER_", "ACTIONS_"))}
    env.update(XDG_STATE_HOME=str(state), NO_COLOR="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    r = subprocess.run([exe, "--store", str(at / "store"), "--project", "bench", "--no-progress",
                        *args], cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if r.returncode:
        raise SystemExit(f"{exe} {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferry", required=True, help="comma-separated ferry binaries")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--at", default=str(BENCH_DIR / "work" / "restore98"))
    ap.add_argument("--corpora", default=str(BENCH_DIR / "corpora"))
    args = ap.parse_args()
    exes = [str(Path(e).resolve()) for e in args.ferry.split(",")]
    corpus = Path(args.corpora) / "node_modules"
    if not corpus.exists():
        subprocess.run([sys.executable, str(BENCH_DIR / "corpora.py"), "node_modules"], check=True)
    at = Path(args.at)
    shutil.rmtree(at, ignore_errors=True)
    (at / "job").mkdir(parents=True)
    subprocess.run(["cp", "-a", str(corpus), str(at / "job" / "node_modules")], check=True)
    ferry(exes[0], at, at / "job", at / "state-save", "cache", "save", "--key", "B",
          "--format", "chunked", "--path", "node_modules")
    for j, exe in enumerate(exes):
        (at / f"dest{j}").mkdir()
        ferry(exe, at, at / f"dest{j}", at / f"state{j}", "cache", "restore", "--key", "B")
    times: list[list[float]] = [[] for _ in exes]
    empty: list[list[float]] = [[] for _ in exes]
    cpu: list[list[float]] = [[] for _ in exes]
    for i in range(args.runs):
        order = range(len(exes)) if i % 2 == 0 else reversed(range(len(exes)))
        for j in order:
            fresh = at / "empty"
            fresh.mkdir()
            empty[j].append(ferry(exes[j], at, fresh, at / "state-empty", "cache", "restore",
                                  "--key", "B"))
            shutil.rmtree(fresh)
            shutil.rmtree(at / "state-empty")
            damage(at / f"dest{j}", 100 + i)
            times[j].append(ferry(exes[j], at, at / f"dest{j}", at / f"state{j}",
                                  "cache", "restore", "--key", "B"))
            cpu[j].append(CPU[-1])
    for exe, t, e, c in zip(exes, times, empty, cpu):
        m, me = statistics.median(t), statistics.median(e)
        print(f"{exe}: 98% median {m:.3f} s, empty median {me:.3f} s, ratio {m / me:.3f}; "
              f"98% processor time median {statistics.median(c):.3f} s")
        print(f"    98%   {' '.join(f'{x:.3f}' for x in t)}")
        print(f"    empty {' '.join(f'{x:.3f}' for x in e)}")
    shutil.rmtree(at, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
