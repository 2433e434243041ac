"""Running one timed command or pipeline: wall time, CPU time and peak RSS of every process.

Each stage of a pipeline is its own child of this process. Its peak RSS comes from the
rusage of the process when it is reaped (`ru_maxrss`), which includes any helper it waits
for, such as the `gzip` that `tar -z` starts (the kernel folds a reaped child's peak into
its parent's). A pipeline's peak is reported as the largest of its processes; the record
keeps each one.

Linux also folds the address space a process had *before* `exec` into `ru_maxrss`, so a
child forked straight from this (Python, 10+ MiB) process would report at least Python's
size. Each stage is therefore started through GNU time (`/usr/bin/time`, Debian package
`time`), a small C program whose own footprint (~1 MiB) is all that leaks in; without it
the harness falls back to `os.wait4` and records the floor that the fallback implies.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB


@dataclass
class Run:
    """The outcome of one command or pipeline."""

    argv: list[list[str]]
    wall: float
    returncodes: list[int]
    maxrss: list[int]                        # bytes, one per stage
    cpu: list[float]                         # user + system seconds, one per stage
    stdout: str = ""
    stderr: str = ""
    json: dict | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(rc == 0 for rc in self.returncodes)

    @property
    def peak_rss(self) -> int:
        return max(self.maxrss) if self.maxrss else 0

    def failure(self) -> str:
        cmd = " | ".join(" ".join(a) for a in self.argv)
        tail = self.stderr.strip().splitlines()[-6:]
        return f"`{cmd}` exited {self.returncodes}: " + " / ".join(tail)

    def record(self) -> dict:
        d = asdict(self)
        d.pop("stdout")
        d["stderr"] = self.stderr[-2000:]
        d["peak_rss"] = self.peak_rss
        return d


def run(stages: list[list[str]], cwd: Path, env: dict | None = None, scratch: Path | None = None,
        timeout: float = 3600) -> Run:
    """Runs `stages` as a pipeline in `cwd`, stdout of each into stdin of the next.

    The last stage's stdout and every stage's stderr go to files in `scratch` (never to
    a pipe this process must drain while timing). Returns once every stage has exited.
    """
    scratch = Path(scratch or cwd)
    out_path = scratch / ".bench-stdout"
    err_path = scratch / ".bench-stderr"
    procs: list[subprocess.Popen] = []
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        busy0 = busy_cpu_seconds()
        t0 = time.perf_counter()
        prev = subprocess.DEVNULL
        for i, argv in enumerate(stages):
            last = i == len(stages) - 1
            if GNU_TIME:
                argv = [GNU_TIME, "-f", "%M %U %S", "-o", str(scratch / f".bench-rusage-{i}"), *argv]
            p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=prev,
                                 stdout=out if last else subprocess.PIPE, stderr=err)
            if prev is not subprocess.DEVNULL:
                prev.close()  # the child holds it now; closing ours lets EOF propagate
            prev = p.stdout if not last else None
            procs.append(p)
        codes, rss, cpu, sys_ = [], [], [], []
        # A blocking wait4 per stage (no polling); a timer kills a run that hangs.
        killer = threading.Timer(timeout, lambda: [q.kill() for q in procs if q.returncode is None])
        killer.start()
        try:
            for p in procs:
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                codes.append(p.returncode)
                rss.append(ru.ru_maxrss * KiB)  # Linux reports KiB
                cpu.append(ru.ru_utime + ru.ru_stime)
                sys_.append(ru.ru_stime)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        busy = busy_cpu_seconds() - busy0
    if GNU_TIME:
        for i in range(len(stages)):
            f = scratch / f".bench-rusage-{i}"
            try:
                m, u, sy = f.read_text().strip().splitlines()[-1].split()
                rss[i], cpu[i], sys_[i] = int(m) * KiB, float(u) + float(sy), float(sy)
            except (OSError, ValueError, IndexError):
                pass  # killed before GNU time could write: keep wait4's figures
            f.unlink(missing_ok=True)
    stdout = out_path.read_bytes().decode("utf-8", "replace")
    stderr = err_path.read_bytes().decode("utf-8", "replace")
    out_path.unlink()
    err_path.unlink()
    try:
        parsed = json.loads(stdout)
        parsed = parsed if isinstance(parsed, dict) else None
    except ValueError:
        parsed = _last_json_object(stdout)
    # What else ran meanwhile: the machine's busy CPU time minus this run's own. /proc/stat
    # counts in 10 ms ticks, so for runs shorter than 0.2 s the figure would be noise.
    background = round(max(busy - sum(cpu), 0.0) / (wall * CORES), 3) if wall >= 0.2 else None
    return Run(argv=stages, wall=wall, returncodes=codes, maxrss=rss, cpu=cpu,
               stdout=stdout, stderr=stderr, json=parsed, extra={"background_cpu": background, "sys": sys_})


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


CORES = os.cpu_count() or 1


def others_busy(sample: float = 1.0) -> float:
    """Fraction of the machine's CPU busy over `sample` seconds while this harness sleeps:
    other people's work, on a shared machine."""
    b0 = busy_cpu_seconds()
    time.sleep(sample)
    return (busy_cpu_seconds() - b0) / (sample * CORES)


def wait_quiet(limit: float, most: float, log=print) -> float:
    """Waits (up to `most` seconds) until others use less than `limit` of the CPU; returns
    the last fraction seen."""
    t0 = time.monotonic()
    busy = others_busy()
    said = False
    while busy >= limit and time.monotonic() - t0 < most:
        if not said:
            log(f"    (waiting for other work to finish: {busy:.0%} of the CPU busy)")
            said = True
        time.sleep(4)
        busy = others_busy()
    return busy


def _gnu_time() -> str | None:
    path = shutil.which("time", path="/usr/bin:/bin:/usr/local/bin")
    if not path:
        return None
    try:
        r = subprocess.run([path, "-f", "%M", "true"], capture_output=True, text=True, timeout=10)
        int(r.stderr.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None  # a shell builtin or BSD time: not usable
    return path


GNU_TIME = _gnu_time()


def rss_method() -> str:
    if GNU_TIME:
        return f"GNU time %M per process ({GNU_TIME})"
    floor = run([["true"]], cwd=Path("/")).peak_rss
    return f"os.wait4 ru_maxrss per process; includes the harness's own {floor / MiB:.0f} MiB as a floor"


def _last_json_object(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            v = json.loads(line)
            if isinstance(v, dict):
                return v
        except ValueError:
            continue
    return None


# Deleting many files is itself a hazard for the next timed run on ext4 without a journal
# (as on this machine): a new inode is never given a number freed in the last 60 s, or 6
# minutes while its inode-table block is dirty (kernel `recently_deleted()`), and checking
# costs a block lookup per candidate, so creating 30,000 files right after deleting 30,000
# takes 10-20 s of kernel time instead of 1.5. Trees a run leaves behind are therefore
# moved aside and emptied (files truncated, inodes kept), and deleted only when the whole
# benchmark ends; a timed run waits out the window after any mass deletion.
RECENTLY_DELETED_WINDOW = 390.0  # s: ext4's 60 s + 300 s while dirty, and a margin
MANY_ENTRIES = 200


class Trash:
    def __init__(self, root: Path):
        self.root = root
        self.marker = root.parent / ".last-mass-delete"
        self.count = 0

    def put(self, path: Path) -> None:
        """Moves `path` out of the way and frees its data, keeping its inodes allocated."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.count += 1
        dest = self.root / f"{os.getpid()}-{self.count}"
        os.rename(path, dest)
        for dirpath, _, files in os.walk(dest):
            for f in files:
                p = os.path.join(dirpath, f)
                if not os.path.islink(p):
                    os.truncate(p, 0)

    def empty(self) -> None:
        if self.root.exists():
            subprocess.run(["rm", "-rf", "--", str(self.root)], check=True)
            self.mark()

    def mark(self) -> None:
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(f"{time.time()}\n")

    def wait_window(self, log=print) -> None:
        try:
            last = float(self.marker.read_text())
        except (OSError, ValueError):
            return
        left = last + RECENTLY_DELETED_WINDOW - time.time()
        if left > 0:
            log(f"    (waiting {left:.0f} s: ext4 avoids inodes freed in the last minutes, see measure.py)")
            time.sleep(left)


TRASH: Trash | None = None
# Trees below these roots are deleted at once: they are on a journaled file system
# (scratchfs.py), where a deletion does not slow the next run down.
FAST_DELETE: list[Path] = []


def remove(path: Path) -> None:
    """Removes a file or tree between runs (untimed). Trees of many entries go to the
    trash instead (see `Trash`)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.exists():
        return
    if any(path.is_relative_to(root) for root in FAST_DELETE):
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)
        return
    n = 0
    for _, dirs, files in os.walk(path):
        n += len(dirs) + len(files)
        if n > MANY_ENTRIES:
            break
    if n > MANY_ENTRIES and TRASH is not None:
        TRASH.put(path)
    else:
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)


def fresh_dir(path: Path) -> Path:
    remove(path)
    path.mkdir(parents=True)
    return path


def prewarm(paths) -> int:
    """Reads every file under `paths` (untimed), so a timed run finds them in the page cache.

    "Warm page cache" cannot be taken for granted here: this VM runs DAMON with a `pageout`
    scheme (/sys/kernel/mm/damon/admin/kdamonds/0) that evicts page-cache pages not touched
    for about a minute, so a corpus read by one run may be gone by the next. Returns bytes read."""
    buf = bytearray(1 << 20)
    total = 0

    def read(p: str) -> None:
        nonlocal total
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return
        try:
            with os.fdopen(fd, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    total += n
        except OSError:
            pass

    for path in paths:
        path = str(path)
        if os.path.isfile(path):
            read(path)
            continue
        for dirpath, _, files in os.walk(path):
            for name in files:
                p = os.path.join(dirpath, name)
                if not os.path.islink(p):
                    read(p)
    return total


QUIET = 0.25          # wait for others to use less than this fraction of the CPU...
QUIET_MOST = 300.0     # ...but no longer than this per timed run...
QUIET_BUDGET = 3600.0  # ...nor this much in all, so a machine that is never quiet still gets measured
_quiet_spent = 0.0


def settle(log=print, warm=()) -> None:
    """Before a timed run: waits out ext4's recently-deleted window if a mass deletion was
    recent, flushes dirty pages left by the last run (so they are not written back during
    the next one, charging one tool for another's I/O), and on a shared machine waits for
    other people's work to quieten down."""
    if TRASH is not None:
        TRASH.wait_window(log)
    os.sync()
    prewarm(warm)
    global _quiet_spent
    if QUIET > 0:
        t0 = time.monotonic()
        wait_quiet(QUIET, max(min(QUIET_MOST, QUIET_BUDGET - _quiet_spent), 0.0), log)
        _quiet_spent += time.monotonic() - t0


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def store_data_bytes(store: Path) -> tuple[int, int, str]:
    """(data bytes, all bytes, how) of a local ferry store.

    Data bytes come from the manifests' `data.size` when they can be read (what ferry says
    it stored), else from the largest file in the store (the data object)."""
    total = 0
    largest = 0
    from_manifests = 0
    found_manifest = False
    for dirpath, _, files in os.walk(store):
        for f in files:
            p = os.path.join(dirpath, f)
            size = os.path.getsize(p)
            total += size
            largest = max(largest, size)
            if size < 1 * MiB:
                try:
                    doc = json.loads(Path(p).read_bytes())
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(doc, dict) and isinstance(doc.get("data"), dict) and "size" in doc["data"]:
                    from_manifests += int(doc["data"]["size"])
                    found_manifest = True
    if found_manifest:
        return from_manifests, total, "manifest data.size"
    return largest, total, "largest file in store"


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else ""


def which(name: str) -> str | None:
    return shutil.which(name)


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------
# One series of timed runs
# ---------------------------------------------------------------------------------------

class Series:
    """The timed runs of one command on one corpus, and what to report about them."""

    def __init__(self, label: str):
        self.label = label
        self.runs: list[Run] = []
        self.disturbed: list[Run] = []
        self.error: str | None = None
        self.extra: dict = {}

    def add(self, r: Run) -> None:
        if not r.ok and self.error is None:
            self.error = r.failure()
        self.runs.append(r)

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    def summary(self) -> dict:
        ok = self.ok_runs
        return {
            "label": self.label,
            "median_seconds": median([r.wall for r in ok]),
            "seconds": [round(r.wall, 4) for r in ok],
            "peak_rss_bytes": max((r.peak_rss for r in ok), default=None),
            "median_cpu_seconds": median([sum(r.cpu) for r in ok]),
            "median_sys_seconds": median([sum(r.extra["sys"]) for r in ok if r.extra.get("sys")]),
            "median_background_cpu": median([r.extra["background_cpu"] for r in ok
                                                     if r.extra.get("background_cpu") is not None]),
            "error": self.error,
            **self.extra,
            "runs": [r.record() for r in self.runs],
            "disturbed_runs": [r.record() for r in self.disturbed],
        }


TOOLS: list[str] = []  # executables kept in the page cache along with each run's inputs
DISTURBED = 0.15  # a run during which others used more of the CPU than this is repeated
ATTEMPTS = 3


def timed(series: Series, fn, reset=None, warm=()) -> Run:
    """Runs `fn()` (which returns a Run) after `settle()`; prints one line.

    On a shared machine someone's build may start in the middle of a run: when others
    used more than DISTURBED of the CPU meanwhile, `reset()` puts things back as they were
    before the run and it is repeated (at most ATTEMPTS times; the last one counts). The
    disturbed runs are kept in the results, apart."""
    for attempt in range(1, ATTEMPTS + 1):
        settle(log, warm=[*warm, *TOOLS])
        r = fn()
        bg = r.extra.get("background_cpu")
        rss = f"{r.peak_rss / MiB:6.1f} MiB" if r.maxrss else ""
        status = "" if r.ok else "  FAILED: " + r.failure()[:300]
        others = f"others {bg:4.0%}" if bg is not None else "others    -"
        disturbed = r.ok and bg is not None and bg > DISTURBED and reset is not None and attempt < ATTEMPTS
        again = "  (disturbed: again)" if disturbed else ""
        log(f"    {series.label:<34} {r.wall:8.3f} s  rss {rss}  {others}{status}{again}")
        if not disturbed:
            break
        series.disturbed.append(r)
        reset()
    series.add(r)
    return r
