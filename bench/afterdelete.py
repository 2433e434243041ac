"""The `after-delete` lane: restores on the root file system right after a mass deletion.

This machine's root file system is ext4 without a journal. After many files are deleted
there, the kernel will not reuse their inode numbers for a while (60 s, longer while the
inode table is dirty: `recently_deleted()` in `fs/ext4/ialloc.c`) and pays a block lookup
for each one it skips, so every tool that creates files slows down, mostly in the kernel.
A CI runner meets this whenever a job deletes a big tree and restores another. The other
lanes avoid it (journaled scratch ext4, deletions moved out of the way); this one measures it.

Each round: copy the corpus a few times (untimed) so that about as many entries are deleted
in every round, wait for the machine to be quiet, delete them together with the previous
round's restored trees, then at once run ferry restore, `zstd -d | tar -x` and `cp -a`, each
into an empty folder, in an order that rotates from round to round (the first tool after
the deletion pays most). Wall, user and system time are recorded for each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import corpora
import measure
from measure import Series, log

# Target of issue 12: never slower than tar in the same conditions.
VS_TAR_MAX = 1.0


def _count(path: Path) -> int:
    n = 0
    for _, dirs, files in os.walk(path):
        n += len(dirs) + len(files)
    return n


def _rm(paths: list[Path]) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        subprocess.run(["rm", "-rf", "--", *existing], check=True)


def bench_after_delete(ferry, stamp: dict, runs: int, work: Path, copies_first: int = 4) -> dict:
    src = corpora.CORPORA_DIR / stamp["name"]
    paths = list(stamp.get("paths") or [stamp["payload"]])
    lane = work / "after-delete"
    _rm([lane])
    lane.mkdir(parents=True)
    store = lane / "store"
    ref = lane / "ref.tar.zst"
    key = f"bench-{stamp['name']}"
    notes: list[str] = []
    log(f"  [after-delete] {stamp['name']}: ferry cache save and tar | zstd (untimed)")
    r = ferry.run(store, "cache", "save", "--key", key, *[a for p in paths for a in ("--path", p)], cwd=src)
    if not r.ok:
        return {"bench": "after-delete", "notes": ["ferry cache save failed: " + r.failure()]}
    measure.run([["tar", "--posix", "-cf", "-", *paths], ["zstd", "-T0", "-3", "-q", "-f", "-o", str(ref)]],
                cwd=src, scratch=lane)
    tools = {
        "ferry restore": lambda d: [ferry.argv(store, "cache", "restore", "--key", key)],
        "zstd -d|tar restore": lambda d: [["zstd", "-d", "-c", "-q", str(ref)], ["tar", "-xf", "-"]],
        "cp -a": lambda d: [["cp", "-a", "--parents", *paths, str(d)]],
    }
    cwd_of = {"ferry restore": None, "zstd -d|tar restore": None, "cp -a": src}
    s = {k: Series(k) for k in tools}
    order_names = list(tools)
    rounds = []
    outputs: list[Path] = []
    for i in range(runs):
        victims = []
        for c in range(copies_first if i == 0 else 1):
            v = lane / f"victim-{i}-{c}"
            v.mkdir()
            subprocess.run(["cp", "-a", "--parents", *paths, str(v)], cwd=src, check=True)
            victims.append(v)
        doomed = victims + outputs
        entries = sum(_count(p) for p in doomed)
        os.sync()
        if measure.QUIET > 0:
            measure.wait_quiet(measure.QUIET, measure.QUIET_MOST, log)
        measure.prewarm([store, ref, *[src / p for p in paths], *measure.TOOLS])
        t0 = time.perf_counter()
        _rm(doomed)
        deleted = time.perf_counter() - t0
        os.sync()
        k0 = i % len(order_names)
        order = order_names[k0:] + order_names[:k0]
        outputs = []
        record = {"round": i, "deleted_entries": entries, "delete_seconds": round(deleted, 2), "order": order,
                  "runs": {}}
        t_round = time.perf_counter()
        for pos, name in enumerate(order):
            d = lane / f"out-{i}-{pos}"
            d.mkdir()
            outputs.append(d)
            r = measure.run(tools[name](d), cwd=cwd_of[name] or d, env=ferry.env if name.startswith("ferry") else None,
                            scratch=lane)
            r.extra.update(round=i, position=pos, since_delete=round(time.perf_counter() - t_round, 2))
            s[name].add(r)
            sys_ = sum(r.extra.get("sys") or [0])
            user = sum(r.cpu) - sys_
            record["runs"][name] = {"wall": round(r.wall, 3), "user": round(user, 3), "sys": round(sys_, 3)}
            log(f"    round {i} #{pos + 1} {name:<22} {r.wall:7.2f} s  user {user:6.2f} s  sys {sys_:6.2f} s"
                + ("" if r.ok else "  FAILED: " + r.failure()[:200]))
            os.sync()
        rounds.append(record)
    _rm([lane])
    if measure.TRASH is not None:
        measure.TRASH.mark()  # later lanes on this file system wait out the window
    series = {k: v.summary() for k, v in s.items()}
    for name, v in series.items():
        ok = [r for r in s[name].runs if r.ok]
        v["median_user_seconds"] = measure.median([sum(r.cpu) - sum(r.extra.get("sys") or [0]) for r in ok])
    # Rounds differ (inodes freed by earlier rounds are still recent in later ones), so
    # ferry is compared with tar within each round, and the median of those ratios is taken.
    per_round = [r["runs"]["ferry restore"]["wall"] / r["runs"]["zstd -d|tar restore"]["wall"]
                 for r in rounds if "ferry restore" in r["runs"] and "zstd -d|tar restore" in r["runs"]
                 and r["runs"]["zstd -d|tar restore"]["wall"] > 0]
    x = measure.median(per_round)
    return {
        "bench": "after-delete",
        "corpus": {k: stamp[k] for k in ("name", "files", "bytes", "entries", "digest") if k in stamp},
        "filesystem": _fs(lane.parent),
        "series": series,
        "rounds": rounds,
        "notes": notes,
        "ratios_by_round": [round(v, 3) for v in per_round],
        "targets": [{"target": "restore right after a mass deletion vs zstd -d|tar -x (median of each round's ratio)",
                     "value": x,
                     "limit": f"≤ {VS_TAR_MAX}", "pass": None if x is None else x <= VS_TAR_MAX, "format": "ratio"}],
    }


def _fs(path: Path) -> str:
    out = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", str(path)],
                         capture_output=True, text=True).stdout.strip() if shutil.which("findmnt") else ""
    return out
