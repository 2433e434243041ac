"""A journaled ext4 file system made for the run, where every timed restore writes.

This machine's root file system is ext4 *without* a journal, and there every tool slows
down for minutes after many files are deleted: the kernel will not hand out an inode number
freed in the last 60 s (`recently_deleted()` in `fs/ext4/ialloc.c`, checked only when the
file system has no journal) and pays a block lookup for each one it skips. Timing restores
there measures how recently something was deleted as much as the tool. A fresh journaled
ext4 in a loop-mounted image is what CI runners mostly have, and on it one tool's clean-up
does not slow the next.

`LoopExt4` makes it (`truncate`, `mkfs.ext4` with a journal and fully initialised inode
tables, so no background `ext4lazyinit` writes during the runs; `mount -o loop`) and takes
it down again (unmount, delete the image) on exit, on an exception and on SIGTERM/SIGHUP.
A mount left by a killed run is unmounted the next time. Needs root, a loop device and
`mkfs.ext4` (Debian: e2fsprogs, mount).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

GiB = 1 << 30


def why_unavailable() -> str | None:
    """None when a loop-mounted ext4 can be made here, else what is missing."""
    if os.geteuid() != 0:
        return "not running as root (mount needs it)"
    for tool in ("mkfs.ext4", "mount", "umount", "losetup", "truncate"):
        if not shutil.which(tool):
            return f"{tool} not found (Debian: apt-get install e2fsprogs mount coreutils)"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control (loop devices)"
    return None


def mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    try:
        with open("/proc/mounts") as f:
            return any(line.split()[1] == target for line in f)
    except OSError:
        return False


def _umount(path: Path) -> None:
    for attempt in range(10):
        if not mounted(path):
            return
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)  # a process still inside (a killed tool's child): try again
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


class LoopExt4:
    """`with LoopExt4(dir, size) as mnt:` — a fresh journaled ext4 mounted at `mnt`."""

    def __init__(self, where: Path, size: int = 8 * GiB):
        self.where = Path(where)
        self.image = self.where / "ext4.img"
        self.mount = self.where / "mnt"
        self.size = size
        self.info: dict = {}
        self._old_handlers: dict = {}

    def __enter__(self) -> Path:
        self.where.mkdir(parents=True, exist_ok=True)
        _umount(self.mount)  # left by a run that was killed
        self.image.unlink(missing_ok=True)
        self.mount.mkdir(exist_ok=True)
        subprocess.run(["truncate", "-s", str(self.size), str(self.image)], check=True)
        mkfs = ["mkfs.ext4", "-q", "-F", "-L", "ferry-bench", "-O", "has_journal",
                "-E", "lazy_itable_init=0,lazy_journal_init=0", str(self.image)]
        subprocess.run(mkfs, check=True)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        subprocess.run(["mount", "-o", "loop", str(self.image), str(self.mount)], check=True)
        opts = ""
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if parts[1] == os.path.realpath(self.mount):
                    opts = f"{parts[0]} {parts[2]} {parts[3]}"
        features = ""
        dump = subprocess.run(["dumpe2fs", "-h", str(self.image)], capture_output=True, text=True).stdout
        for line in dump.splitlines():
            if line.startswith("Filesystem features:"):
                features = line.split(":", 1)[1].strip()
        self.info = {"image": str(self.image), "size_bytes": self.size, "mkfs": " ".join(mkfs[:-1]),
                     "mount": opts, "features": features,
                     "backing_fs": _fs_type(self.where)}
        return self.mount

    def _on_signal(self, signum, frame):
        # Turn the signal into an exception so the `with` block's exit runs and unmounts.
        raise SystemExit(128 + signum)

    def __exit__(self, *exc) -> None:
        # A second signal (`timeout` forwards the one the process group already got) must
        # not cut the clean-up short and leave the image mounted.
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            self._old_handlers.setdefault(sig, signal.getsignal(sig))
            signal.signal(sig, signal.SIG_IGN)
        try:
            os.sync()
            _umount(self.mount)
            self.image.unlink(missing_ok=True)
        finally:
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)


def _fs_type(path: Path) -> str:
    out = subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout.splitlines()
    return out[-1].split()[1] if len(out) > 1 else ""


if __name__ == "__main__":
    # Smoke test: make, write, take down.
    where = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ferry-bench-ext4")
    with LoopExt4(where, 1 * GiB) as m:
        (m / "hello").write_text("hi\n")
        print(m, (m / "hello").read_text().strip())
    print("unmounted:", not mounted(where / "mnt"))
