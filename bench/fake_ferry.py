#!/usr/bin/env python3
"""A stand-in for the ferry binary, for testing the harness's plumbing only:
`python3 bench/run.py --quick --ferry bench/fake_ferry.py`. It shells out to tar and zstd,
so its figures say nothing about ferry. Understands just the commands the harness runs."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--project", default="p")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--version", action="store_true")
    ap.add_argument("words", nargs="*")
    ap.add_argument("--key")
    ap.add_argument("--path", action="append", default=[])
    ap.add_argument("--root")
    ap.add_argument("--workflow")
    ap.add_argument("--job")
    ap.add_argument("--at")
    ap.add_argument("--destination")
    ap.add_argument("--run")
    ap.add_argument("--to")
    if "--version" in sys.argv:
        print("ferry 0.0.0-fake")
        return 0
    if "--help" in sys.argv:
        return 0
    a = ap.parse_intermixed_args()
    t0 = time.monotonic()
    store = Path(a.store) / "ferry-v1" / a.project
    cmd = a.words[:2]
    if cmd == ["cache", "save"]:
        d = store / "caches" / a.key
        if (d / "manifest.json").exists():
            print(json.dumps({"saved": False, "reason": "exists", "key": a.key}))
            return 0
        d.mkdir(parents=True)
        data = d / "data.tar.zst"
        subprocess.run(f"tar --posix -cf - {' '.join(a.path)} | zstd -T0 -3 -q -o {data}", shell=True, check=True)
        size = data.stat().st_size
        (d / "manifest.json").write_text(json.dumps({"data": {"path": str(data), "size": size}}))
        print(json.dumps({"saved": True, "key": a.key, "bytes": size, "seconds": time.monotonic() - t0}))
    elif cmd == ["cache", "restore"]:
        data = store / "caches" / a.key / "data.tar.zst"
        if not data.exists():
            print(json.dumps({"hit": "miss", "key": a.key}))
            return 0
        subprocess.run(f"zstd -d -c -q {data} | tar -xf -", shell=True, check=True)
        print(json.dumps({"hit": "exact", "key": a.key, "matched_key": a.key}))
    elif cmd == ["workspace", "persist"]:
        d = store / "workspaces" / a.workflow
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(f"tar --posix -cf - {' '.join(a.path)} | zstd -T0 -3 -q -o {d / (a.job + '.tar.zst')}",
                       shell=True, check=True, cwd=a.root)
        print(json.dumps({"layer": a.job}))
    elif cmd == ["workspace", "attach"]:
        d = store / "workspaces" / a.workflow
        os.makedirs(a.at, exist_ok=True)
        for layer in sorted(d.iterdir()):
            subprocess.run(f"zstd -d -c -q {layer} | tar -xf -", shell=True, check=True, cwd=a.at)
        print(json.dumps({"layers": len(list(d.iterdir()))}))
    elif cmd == ["artifacts", "upload"]:
        d = store / "artifacts" / a.run / a.job / a.destination
        d.mkdir(parents=True)
        src = a.words[2]
        subprocess.run(["cp", "-a", src + "/.", str(d)], check=True)
        print(json.dumps({"uploaded": True}))
    elif cmd == ["artifacts", "download"]:
        d = store / "artifacts" / a.run / a.job
        subprocess.run(["cp", "-a", str(d) + "/.", a.to], check=True)
        print(json.dumps({"downloaded": True}))
    else:
        print(f"fake ferry: unsupported {a.words}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
