"""Corpora made from real dependency installs: a `node_modules` from `npm ci` of a pinned
`package-lock.json`, and a Cargo `target/` plus the registry sources it was built from, from
`cargo build --locked` of a pinned `Cargo.lock`.

Generated corpora (`corpora.py`) are the same bytes everywhere, but they missed what real
trees hold: a real `target/` has fewer, larger files (rlibs, incremental caches, a debug
executable) than the generated one, and that is where restores differ most. These corpora are
the real thing, at the price of needing the npm registry and crates.io the first time.

The recipes live in `bench/real/npm/` and `bench/real/cargo/` (committed, lockfiles
included). Each corpus is built once into `bench/corpora/<name>/` and reused by later runs:
its stamp (`<name>.stamp.json`) records a digest of the recipe, the tool versions, the file
and byte counts and a digest of the tree (paths, types, modes, content, link targets; not
mtimes, which a reinstall changes). A run reuses the corpus when the recipe digest matches and
a stat walk finds the same file and byte counts; `python3 bench/realtrees.py --verify`
re-hashes it against the stamp.

    python3 bench/realtrees.py               # build (or reuse) both, print their sizes
    python3 bench/realtrees.py --verify      # re-hash against the stamps
    python3 bench/realtrees.py --force cargo-real
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import corpora

BENCH_DIR = Path(__file__).resolve().parent
RECIPES = BENCH_DIR / "real"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# name -> where its recipe is, which files make it, and which paths of the built folder
# are the cached payload (what a CI job would cache).
REAL = {
    "npm-real": {
        "recipe": RECIPES / "npm",
        "files": ["package.json", "package-lock.json"],
        "paths": ["node_modules"],
        "needs": ["node", "npm"],
        "what": "`npm ci --ignore-scripts` of bench/real/npm/package-lock.json (a React/Next.js "
                "web app's dependencies)",
    },
    "cargo-real": {
        "recipe": RECIPES / "cargo",
        "files": ["Cargo.toml", "Cargo.lock", "src/main.rs"],
        "paths": ["target", "cargo-home/registry"],
        "needs": ["cargo"],
        "what": "`cargo build --locked` (debug) of bench/real/cargo (tokio, axum, reqwest, serde, "
                "clap, tracing, ...): its `target/` and the `registry/` of a private CARGO_HOME",
    },
}
BUILD_VERSION = 2  # bump when the way a corpus is built changes


def available(name: str) -> tuple[bool, str]:
    missing = [t for t in REAL[name]["needs"] if not shutil.which(t)]
    if missing:
        return False, "needs " + ", ".join(missing)
    return True, ""


def recipe_digest(name: str) -> str:
    spec = REAL[name]
    h = hashlib.sha256(f"build {BUILD_VERSION}\n".encode())
    for f in spec["files"]:
        h.update(f.encode() + b"\0" + (spec["recipe"] / f).read_bytes() + b"\0")
    return h.hexdigest()


def tool_versions(name: str) -> dict:
    argvs = {"npm-real": {"node": ["node", "--version"], "npm": ["npm", "--version"]},
             "cargo-real": {"rustc": ["rustc", "--version"], "cargo": ["cargo", "--version"]}}[name]
    out = {}
    for tool, argv in argvs.items():
        try:
            out[tool] = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out[tool] = ""
    return out


def entries(root: Path, paths: list[str]) -> dict[str, tuple]:
    """Every entry below each payload path of `root`, named from `root` (`target/...`)."""
    out: dict[str, tuple] = {}
    for p in paths:
        for rel, e in corpora.tree_entries(root / p).items():
            out[f"{p}/{rel}"] = e
    return out


def hard_links(root: Path, paths: list[str]) -> dict:
    """Regular files with more than one name (cargo hard-links the binaries it uplifts)."""
    n = size = 0
    for p in paths:
        for dirpath, _, files in os.walk(root / p):
            for f in files:
                st = os.lstat(os.path.join(dirpath, f))
                if st.st_nlink > 1 and not os.path.islink(os.path.join(dirpath, f)):
                    n += 1
                    size += st.st_size
    return {"files": n, "bytes": size}


def stat_counts(root: Path, paths: list[str]) -> tuple[int, int]:
    files = total = 0
    for p in paths:
        f, b = corpora.quick_stat(root / p)
        files += f
        total += b
    return files, total


def _build(name: str, root: Path, log) -> None:
    spec = REAL[name]
    root.mkdir(parents=True, exist_ok=True)
    for f in spec["files"]:
        dest = root / f
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(spec["recipe"] / f, dest)
    env = dict(os.environ)
    if name == "npm-real":
        # npm ci removes node_modules itself; the download cache sits beside the corpus so
        # a rebuild does not fetch again.
        if os.path.exists(CA_BUNDLE):
            env.setdefault("NODE_EXTRA_CA_CERTS", CA_BUNDLE)
        argv = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel", "error",
                "--cache", str(corpora.CORPORA_DIR / ".npm-cache")]
    else:
        # From scratch, so the corpus is what the recipe makes and not the leftovers of an
        # earlier build (a rebuild adds a second incremental session hard-linked to the first).
        for d in ("target", "cargo-home"):
            if (root / d).exists():
                shutil.rmtree(root / d)
        # A private CARGO_HOME: the registry sources are part of the corpus, and the
        # developer's ~/.cargo is neither read nor changed.
        env["CARGO_HOME"] = str(root / "cargo-home")
        env["CARGO_TARGET_DIR"] = str(root / "target")
        for k in ("RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WRAPPER", "CARGO_BUILD_JOBS"):
            env.pop(k, None)
        argv = ["cargo", "build", "--locked", "--quiet"]
    log(f"building corpus {name}: {' '.join(argv)} (in {root}; once, then reused)")
    t0 = time.monotonic()
    p = subprocess.run(["nice", "-n", "10", *argv], cwd=root, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"building corpus {name} failed: `{' '.join(argv)}` exited {p.returncode}")
    log(f"  built in {time.monotonic() - t0:.0f} s")


def ensure(name: str, base: Path = corpora.CORPORA_DIR, log=print, force: bool = False) -> dict:
    """The stamp of real corpus `name`, building it first when missing or stale."""
    spec = REAL[name]
    root = base / name
    sp = corpora.stamp_path(name, base)
    want = recipe_digest(name)
    if not force and sp.exists() and root.exists():
        try:
            stamp = json.loads(sp.read_text())
        except ValueError:
            stamp = {}
        if stamp.get("recipe_digest") == want:
            if stat_counts(root, spec["paths"]) == (stamp.get("files"), stamp.get("bytes")):
                return stamp
            log(f"corpus {name} changed on disk; rebuilding")
        else:
            log(f"corpus {name}: its recipe changed; rebuilding")
    ok, why = available(name)
    if not ok:
        raise RuntimeError(f"cannot build corpus {name}: {why}")
    t0 = time.monotonic()
    _build(name, root, log)
    es = entries(root, spec["paths"])
    files, total = stat_counts(root, spec["paths"])
    sizes = sorted((e[0] == "f" and os.path.getsize(root / p)) or 0 for p, e in es.items())
    stamp = {
        "name": name,
        "kind": "real",
        "what": spec["what"],
        "recipe_digest": want,
        "tools": tool_versions(name),
        "paths": spec["paths"],
        "payload": spec["paths"][0],
        "files": files,
        "bytes": total,
        "entries": len(es),
        "dirs": sum(1 for e in es.values() if e[0] == "d"),
        "symlinks": sum(1 for e in es.values() if e[0] == "l"),
        "largest_files": sizes[-5:][::-1],
        "hard_linked_files": hard_links(root, spec["paths"]),
        "files_over_1mib": sum(1 for s in sizes if s > 1 << 20),
        "bytes_in_files_over_1mib": sum(s for s in sizes if s > 1 << 20),
        "digest": corpora.digest_of(es, with_mtime=False),
        "seed": None,
        "generator_version": f"real-{BUILD_VERSION}",
        "generate_seconds": round(time.monotonic() - t0, 1),
    }
    sp.write_text(json.dumps(stamp, indent=2) + "\n")
    log(f"corpus {name}: {files:,} files ({stamp['dirs']:,} folders, {stamp['symlinks']:,} symlinks), "
        f"{total / 1e6:.0f} MB, digest {stamp['digest'][:16]}")
    return stamp


def verify(name: str, base: Path = corpora.CORPORA_DIR) -> bool:
    stamp = json.loads(corpora.stamp_path(name, base).read_text())
    return corpora.digest_of(entries(base / name, stamp["paths"]), with_mtime=False) == stamp["digest"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", default=list(REAL), help=f"corpora (default: {', '.join(REAL)})")
    ap.add_argument("--verify", action="store_true", help="re-hash existing corpora against their stamps")
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = ap.parse_args()
    ok = True
    for name in args.names:
        if args.verify:
            good = verify(name)
            ok &= good
            print(f"{name}: {'ok' if good else 'DIGEST MISMATCH'}")
        else:
            s = ensure(name, force=args.force)
            print(f"{name}: {s['files']:,} files, {s['bytes'] / 1e6:.0f} MB, digest {s['digest'][:16]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
