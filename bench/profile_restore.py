#!/usr/bin/env python3
"""Where a `ferry cache restore` spends its time: perf, strace and rusage of one restore.

    python3 bench/profile_restore.py                          # cargo-real, the slow case
    python3 bench/profile_restore.py --corpus npm-real --ferry target/release/ferry
    python3 bench/profile_restore.py --no-perf                # strace and rusage only

The restore goes into an empty folder on a journaled ext4 made for the run (as in run.py),
from a local store holding the corpus, with the store in the page cache. Each tool runs on
its own restore (they disturb each other): GNU time -v (wall, user, system, context
switches), `perf stat` (software events), `perf record --call-graph dwarf` (then `perf
report` by thread, by shared object and by symbol, user and kernel), `strace -c -f` (system
calls: counts, errors, time) and `strace -f -c -w` (wall time inside each call, which shows
where threads wait). Everything goes to bench/work/profile/<time>/, with summary.md.

Needs root for the ext4 image (else --no-ext4), perf (Debian: linux-perf) and strace; perf
must be allowed to sample (kernel.perf_event_paranoid <= 2 for one's own processes; the
kernel symbols need root or kptr_restrict=0).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import corpora
import measure
import realtrees
import run as harness
import scratchfs

OUT = harness.WORK / "profile"
# perf.data with stacks grows fast (a restore right after a mass deletion switches threads
# hundreds of thousands of times); a cap keeps it from filling the disk.
MAX_PERF_DATA = "400M"


def sh(argv, cwd=None, env=None, out: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if out is not None:
        out.write_text(p.stdout + ("\n--- stderr ---\n" + p.stderr if p.stderr.strip() else ""))
    return p


def threads_table(by_tid: Path, by_tid_sym: Path) -> list[str]:
    """Markdown rows: per thread of ferry, its share of the samples and hottest symbols."""
    share: dict[int, float] = collections.Counter()
    syms: dict[int, list[str]] = collections.defaultdict(list)
    for ln in by_tid.read_text().splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+):(\S+)\s*$", ln)
        if m and m.group(3) in ("tokio-rt-worker", "ferry"):
            share[int(m.group(2))] += float(m.group(1))
    for ln in by_tid_sym.read_text().splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+):(\S+)\s+\[(.)\]\s+(.*)$", ln)
        if not m or m.group(3) not in ("tokio-rt-worker", "ferry"):
            continue
        tid, pct = int(m.group(2)), float(m.group(1))
        if len(syms[tid]) < 5:
            kind = "k" if m.group(4) == "k" else "u"
            syms[tid].append(f"{m.group(5).strip()[:60]} ({kind}) {pct:.1f}%")
    rows = ["| thread | share of CPU samples | hottest symbols |", "|---|--:|---|"]
    for rank, tid in enumerate(sorted(share), 1):
        rows.append(f"| #{rank} ({tid}) | {share[tid]:.1f}% | {'; '.join(syms[tid])} |")
    return rows


def sched_table(text: str) -> list[str]:
    """Markdown rows: per thread of the ferry process, run, blocked and runnable time."""
    pat = re.compile(r"^\s*([\d.]+)\s+\[\d+\]\s+(.+?)\[(\d+)(?:/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")
    rows = []
    for ln in text.splitlines():
        m = pat.match(ln)
        if m:
            t, name, tid, pid, wait, delay, run = m.groups()
            rows.append((float(t), name, int(tid), int(pid or tid), float(wait), float(delay), float(run)))
    pids = {r[3] for r in rows if r[1] == "ferry"}
    acc: dict[int, list[float]] = {}
    for t, name, tid, pid, wait, delay, run in rows:
        if pid not in pids:
            continue
        a = acc.setdefault(tid, [t, t, 0.0, 0.0, 0.0])
        a[0], a[1] = min(a[0], t - (wait + delay + run) / 1000), max(a[1], t)
        a[2] += run
        a[3] += wait
        a[4] += delay
    out = ["| thread | lifetime | run | blocked | runnable |", "|---|--:|--:|--:|--:|"]
    for rank, tid in enumerate(sorted(acc), 1):
        first, last, run, wait, delay = acc[tid]
        out.append(f"| #{rank} ({tid}) | {(last - first) * 1000:.0f} ms | {run:.0f} ms | {wait:.0f} ms | {delay:.0f} ms |")
    tot = [sum(a[i] for a in acc.values()) for i in (2, 3, 4)]
    out.append(f"| all | | {tot[0]:.0f} ms | {tot[1]:.0f} ms | {tot[2]:.0f} ms |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="cargo-real",
                    choices=[*realtrees.REAL, *corpora.CACHE_CORPORA])
    ap.add_argument("--ferry", type=Path, help="binary to profile (default: cargo build --release -p ferry)")
    ap.add_argument("--no-ext4", action="store_true", help="restore into bench/work on the root file system")
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--freq", type=int, default=1999, help="perf sampling frequency (Hz)")
    ap.add_argument("--keep-data", action="store_true", help="keep perf.data and the other recordings (hundreds of MB)")
    ap.add_argument("--after-delete", type=int, default=0, metavar="COPIES",
                    help="before each profiled restore, copy the corpus COPIES times on the root file system "
                         "and delete the copies, then restore there (implies --no-ext4): the after-delete lane")
    args = ap.parse_args()

    if args.corpus in realtrees.REAL:
        stamp = realtrees.ensure(args.corpus)
    else:
        stamp = corpora.ensure(args.corpus)
    paths = harness.payload_paths(stamp)
    src = corpora.CORPORA_DIR / args.corpus
    exe = args.ferry.resolve() if args.ferry else harness.build_ferry()
    exe, sha = harness.private_copy(exe)
    ferry = harness.Ferry(exe, harness.ferry_env())
    out = OUT / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{args.corpus}"
    out.mkdir(parents=True)
    store = out / "store"
    key = f"profile-{args.corpus}"
    r = ferry.run(store, "cache", "save", "--key", key, *[a for p in paths for a in ("--path", p)], cwd=src)
    if not r.ok:
        print("ferry cache save failed: " + r.failure())
        return 1
    restore = ferry.argv(store, "cache", "restore", "--key", key)
    ref_zst = out / "ref.tar.zst"
    subprocess.run(f"tar --posix -cf - {' '.join(paths)} | zstd -T0 -3 -q -f -o {ref_zst}", shell=True,
                   cwd=src, check=True)
    have_perf = not args.no_perf and shutil.which("perf") is not None
    summary = [f"# Profile of `ferry cache restore` of {args.corpus}", "",
               f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}, commit `{harness.git_commit()}`, binary sha256 "
               f"{sha[:12]}; {stamp['files']:,} files, {stamp['bytes'] / 1e6:.0f} MB; load at start "
               f"{[round(x, 2) for x in os.getloadavg()]}.", ""]

    with contextlib.ExitStack() as stack:
        why = ("--after-delete" if args.after_delete else "--no-ext4" if args.no_ext4
               else scratchfs.why_unavailable())
        if why is None:
            fs = scratchfs.LoopExt4(harness.WORK / "scratch-ext4")
            dest_root = stack.enter_context(fs)
            summary.append(f"Restored into a journaled ext4 made for the run: `{fs.info['mount']}`.")
        else:
            dest_root = harness.WORK / "profile-dest"
            summary.append(f"Restored into {dest_root} on the root file system ({why}).")
            if args.after_delete:
                summary.append(f"Right before each profiled restore, {args.after_delete} copies of the corpus "
                               "(and the previous restore) were deleted there.")
        summary.append("")

        def fresh() -> Path:
            d = dest_root / "restore"
            doomed = [d] if d.exists() else []
            for i in range(args.after_delete):
                v = harness.WORK / "profile-victims" / str(i)
                v.mkdir(parents=True)
                doomed.append(v)
                try:
                    subprocess.run(["cp", "-a", "--parents", *paths, str(v)], cwd=src, check=True)
                except subprocess.CalledProcessError:
                    subprocess.run(["rm", "-rf", *map(str, doomed)])
                    raise
            os.sync()
            if doomed:
                subprocess.run(["rm", "-rf", *map(str, doomed)], check=True)
            d.mkdir(parents=True)
            os.sync()
            measure.prewarm([store, exe])
            return d

        # 1. rusage
        d = fresh()
        p = sh(["/usr/bin/time", "-v", *restore], cwd=d, env=ferry.env, out=out / "time-v.txt")
        wanted = ("Elapsed (wall clock)", "User time", "System time", "Percent of CPU", "Maximum resident",
                  "Voluntary context switches", "Involuntary context switches", "File system outputs")
        lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip().startswith(wanted)]
        summary += ["## rusage (GNU time -v)", "", *[f"- {ln}" for ln in lines], ""]

        # 2. strace: counts, then wall time per call
        if shutil.which("strace"):
            d = fresh()
            sh(["strace", "-f", "-c", "-o", str(out / "strace-c.txt"), *restore], cwd=d, env=ferry.env)
            d = fresh()
            sh(["strace", "-f", "-c", "-w", "-o", str(out / "strace-cw.txt"), *restore], cwd=d, env=ferry.env)
            summary += ["## System calls (`strace -f -c`, all threads; CPU time in the kernel)", "", "```",
                        *(out / "strace-c.txt").read_text().splitlines()[:22], "```", "",
                        "## Wall time inside system calls (`strace -f -c -w`, summed over threads)", "", "```",
                        *(out / "strace-cw.txt").read_text().splitlines()[:16], "```", ""]

        # 3. perf
        if have_perf:
            d = fresh()
            sh(["perf", "stat", "-o", str(out / "perf-stat.txt"), "-e",
                "task-clock,context-switches,cpu-migrations,page-faults", *restore], cwd=d, env=ferry.env)
            summary += ["## perf stat", "", "```", *[ln for ln in (out / "perf-stat.txt").read_text().splitlines()
                                                    if ln.strip() and not ln.startswith("#")], "```", ""]
            d = fresh()
            data = out / "perf.data"
            rec = sh(["perf", "record", "-F", str(args.freq), "--call-graph", "dwarf,16384", "--max-size", MAX_PERF_DATA,
                      "-o", str(data),
                      "--", *restore], cwd=d, env=ferry.env)
            if data.exists():
                rep = lambda name, *a: sh(["perf", "report", "-i", str(data), "--stdio", *a], out=out / name)
                rep("perf-by-thread.txt", "--no-children", "--sort", "comm", "-g", "none")
                rep("perf-by-dso.txt", "--no-children", "--sort", "comm,dso", "-g", "none")
                rep("perf-by-symbol.txt", "--no-children", "--sort", "comm,sym", "-g", "none", "--percent-limit", "0.3")
                rep("perf-callers.txt", "--no-children", "--sort", "sym", "-g", "caller,0.5,callee,function,percent",
                    "--percent-limit", "2")
                rep("perf-children.txt", "--children", "--sort", "sym", "-g", "none", "--percent-limit", "3")
                rep("perf-by-tid-symbol.txt", "--no-children", "--sort", "pid,sym", "-g", "none", "--percent-limit", "0.2")
                rep("perf-by-tid.txt", "--no-children", "--sort", "pid", "-g", "none")

                def table(name: str, n: int) -> list[str]:
                    rows = [ln for ln in (out / name).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
                    return rows[:n]
                summary += ["## perf: CPU samples by thread, with each thread's hottest symbols", "",
                            "Threads are numbered in the order they were created (every thread of ferry "
                            "is called tokio-rt-worker, since threads inherit their creator's name).", "",
                            *threads_table(out / "perf-by-tid.txt", out / "perf-by-tid-symbol.txt"), "",
                            "## perf: by thread and shared object", "", "```", *table("perf-by-dso.txt", 20), "```", "",
                            "## perf: hottest symbols (self time, by thread)", "", "```",
                            *table("perf-by-symbol.txt", 45), "```", "",
                            "## perf: inclusive time (children), symbols over 3%", "", "```",
                            *table("perf-children.txt", 45), "```", ""]
            else:
                summary += ["perf record failed: " + rec.stderr.strip()[-500:], ""]
        if have_perf:
            d = fresh()
            sd = out / "sched.data"
            sh(["perf", "sched", "record", "-o", str(sd), "--", *restore], cwd=d, env=ferry.env)
            if sd.exists():
                th = sh(["perf", "sched", "timehist", "-i", str(sd)], out=out / "sched-timehist.txt")
                summary += ["## Scheduler: where each thread's time went (`perf sched timehist`, another restore)", "",
                            "run: on a CPU; blocked: asleep until woken (a full or empty queue, a lock, I/O); "
                            "runnable: woken but waiting for a CPU (the machine was busy).", "",
                            *sched_table(th.stdout), ""]
        if have_perf:
            d = fresh()
            od = out / "offcpu.data"
            sh(["perf", "record", "-e", "sched:sched_switch", "--call-graph", "dwarf,8192", "--max-size", MAX_PERF_DATA,
                "-o", str(od),
                "--", *restore], cwd=d, env=ferry.env)
            if od.exists():
                sh(["perf", "report", "-i", str(od), "--stdio", "--no-children", "--sort", "pid", "-g", "none"],
                   out=out / "offcpu-by-tid.txt")
                rep2 = sh(["perf", "report", "-i", str(od), "--stdio", "--no-children", "--sort", "pid,sym",
                           "-g", "caller,2,callee,function,percent", "--percent-limit", "4"],
                          out=out / "offcpu-stacks.txt")
                body = [ln for ln in rep2.stdout.splitlines() if not ln.startswith("#")]
                summary += ["## Off-CPU: where threads block (`perf record -e sched:sched_switch`, by count)", "",
                            "Each sample is one switch away from the CPU, with the stack that led to it; "
                            "offcpu-stacks.txt has them all.", "", "```",
                            *[ln for ln in (out / "offcpu-by-tid.txt").read_text().splitlines()
                              if ln.strip() and not ln.startswith("#")][:14], "```", "", "```",
                            *body[:140], "```", ""]
        for ref, argv, cwd in (("zstd -d | tar -x", ["sh", "-c", f"zstd -d -c -q {ref_zst} | tar -xf -"], None),
                               ("cp -a", ["cp", "-a", "--parents", *paths], src)):
            d = fresh()
            a = argv if cwd is None else [*argv, str(d)]
            measure.prewarm([ref_zst])
            p = sh(["/usr/bin/time", "-v", *a], cwd=cwd or d)
            lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip().startswith(wanted)]
            summary += [f"## For comparison: `{ref}` of the same tree, same place (GNU time -v)", "",
                        *[f"- {ln}" for ln in lines], ""]
        if (dest_root / "restore").exists():
            subprocess.run(["rm", "-rf", str(dest_root / "restore")], check=True)
    subprocess.run(["rm", "-rf", str(store), str(ref_zst)], check=True)
    if not args.keep_data:
        for f in ("perf.data", "offcpu.data", "sched.data"):
            (out / f).unlink(missing_ok=True)
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    print(f"\nprofile: everything in {out.relative_to(harness.REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
