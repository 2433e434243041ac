#!/usr/bin/env bash
# Makes the seed corpora in fuzz/corpus/: real archives and manifests written by ferry itself
# (a debug build of the binary, FERRY_BIN or target/debug/ferry), hand-made hostile tars, and
# the store-v1 fixture's manifest. Seeds of `unpack_tar` start with its two settings bytes
# (fuzz_targets/unpack_tar.rs, `Settings::parse`). Run from anywhere; safe to run twice.
set -euo pipefail
fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz")"
ferry="${FERRY_BIN:-$repo/target/debug/ferry}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
corpus="$fuzz/corpus"
mkdir -p "$corpus/unpack_tar" "$corpus/manifest" "$corpus/rules" "$corpus/chunk_index"

# The fixed key the `manifest` target trusts (fuzz_targets/manifest.rs, SECRET).
secret='ferry-ed25519-secret:0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a09080706050403020100f'

# A tree holding what restores meet: files, an empty folder, links in and out, modes.
mkdir -p "$work/w/c" "$work/h/u"
cd "$work/w/c"
mkdir -p a/sub a/empty b/c "$work/h/u/.x"
printf 'hello\n' > a/f
printf 'run\n' > a/sub/tool && chmod 0755 a/sub/tool
ln -s sub/tool a/link
ln -s ../../../outside a/out
ln -s ../b/c/y a/across
printf 'y\n' > b/c/y
printf 'cfg\n' > "$work/h/u/.x/cfg"
export HOME="$work/h/u" FERRY_STORE="$work/store" FERRY_PROJECT=acme/app FERRY_NO_PROGRESS=true
export FERRY_SIGNING_KEY="$secret"
for format in tar zstd gzip; do
  "$ferry" -q cache save --key "seed-$format" --format "$format" --path a --path b/c --path '~/.x'
done
"$ferry" -q workspace persist --root . --path a --workflow seed --job build
"$ferry" -q artifacts upload a/f --run seed --job build
"$ferry" -q cache save --key seed-chunked --format chunked --path a --path b/c --path '~/.x'
unset FERRY_SIGNING_KEY
"$ferry" -q cache save --key seed-unsigned --format tar --path a
cd "$work"

# Data objects (with the settings byte of the format their manifest records) and manifests.
find "$FERRY_STORE" -name '*.json' | sort | python3 -c '
import json, os, sys
store, corpus = sys.argv[1], sys.argv[2]
for path in sys.stdin.read().split():
    m = json.load(open(path))
    if "kind" not in m:
        continue  # a cache'"'"'s last-use record
    label = "-".join(x for x in (m["kind"], m.get("key") or m.get("job"), "signed" if "signature" in m else "") if x)
    open(os.path.join(corpus, "manifest", "ferry-" + label + ".json"), "w").write(open(path).read())
    if m.get("encoding") == "chunked":
        data = open(os.path.join(store, m["data"]["path"]), "rb").read()
        open(os.path.join(corpus, "chunk_index", "ferry-" + label + ".index.zst"), "wb").write(data)
    elif m["kind"] in ("cache", "layer"):
        data = open(os.path.join(store, m["data"]["path"]), "rb").read()
        flags = {"tar": 0, "zstd": 6, "gzip": 7}[m["compression"]]
        open(os.path.join(corpus, "unpack_tar", "ferry-" + label), "wb").write(bytes([flags, 0]) + data)
' "$FERRY_STORE" "$corpus"
cp "$repo"/tests/fixtures/store-v1/ferry-v1/*/caches/keys/*.json "$corpus/manifest/fixture-v1.json"
cp "$repo"/tests/fixtures/store-v2/ferry-v1/*/caches/data/*.index.zst "$corpus/chunk_index/fixture-v2.index.zst"
# The fixture's index as its JSON (the target also reads its input as JSON it compresses).
zstd -dcq "$corpus/chunk_index/fixture-v2.index.zst" > "$corpus/chunk_index/fixture-v2.json"

# Hostile tars, each meant to be refused or to stay inside (see the `unpack_tar` oracle).
python3 - "$corpus/unpack_tar" <<'EOF'
import io, os, sys, tarfile
out = sys.argv[1]

def tar(entries, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            kind, name = e[0], e[1]
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            data = b""
            if kind == "f":
                data = e[2] if len(e) > 2 else b"x"
                info.mode = e[3] if len(e) > 3 else 0o644
                info.size = len(data)
            elif kind == "d":
                info.type = tarfile.DIRTYPE
                info.mode = e[2] if len(e) > 2 else 0o755
            elif kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = e[2]
            elif kind == "h":
                info.type = tarfile.LNKTYPE
                info.linkname = e[2]
            elif kind == "c":
                info.type = tarfile.CHRTYPE
            elif kind == "p":
                info.type = tarfile.FIFOTYPE
            elif kind == "x":
                info.pax_headers = e[2]
                info.size = 1
                data = b"x"
            t.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()

cases = {
    "through-existing-link": (0, [("f", "a/pre/x")]),
    "through-inside-link": (0, [("f", "a/inlink/g")]),
    "link-then-through": (0, [("l", "a/l", "../../../outside"), ("f", "a/l/x")]),
    "parent-name": (0, [("f", "../outside/x")]),
    "absolute-name": (0, [("f", "/outside/x")]),
    "home-climb": (0, [("f", "~/.x/../../../outside/x")]),
    "normalises-inside": (0, [("l", "a/s", "."), ("l", "a/l", "s/s/../../outside")]),
    "hard-link-existing": (0, [("h", "a/h", "a/existing")]),
    "hard-link-out": (0, [("h", "a/h", "../../../outside/sentinel")]),
    "hard-link-ok": (0, [("f", "a/f", b"data"), ("h", "a/h", "a/f")]),
    "duplicate": (0, [("f", "a/x"), ("f", "a/x")]),
    "file-and-folder": (0, [("f", "a/x"), ("d", "a/x"), ("f", "a/x/y")]),
    "setuid": (0, [("f", "a/suid", b"#!", 0o6755)]),
    "long-name": (0, [("f", "a/" + "n" * 150)]),
    "pax-path": (0, [("x", "a/p", {"path": "a/" + "p" * 120})]),
    "pax-size": (0, [("x", "a/p", {"size": "1"})]),
    "device": (0, [("c", "a/dev")]),
    "fifo": (0, [("p", "a/fifo")]),
    "over-existing-folder": (0, [("f", "a/sub")]),
    "folder-mode-0": (0, [("d", "a/locked", 0o000), ("f", "a/locked/x")]),
    "root-as-link": (0, [("l", "a", "b/c")]),
    "across-roots": (0, [("f", "b/c/y"), ("l", "a/l", "../b/c/y")]),
    "abs-root": (0, [("d", "/abs"), ("f", "/abs/x"), ("l", "/abs/l", "x")]),
    "up-root": (0, [("f", "../up/x"), ("l", "../up/l", "../up/x")]),
    "home-root": (0, [("f", "~/.x/new"), ("l", "~/.x/l", "cfg")]),
    "recorded-link-out": (0, [("l", "a/out", "../../../outside")]),
    "recorded-link-then-through": (0, [("l", "a/out", "../../../outside"), ("f", "a/out/x")]),
    # Settings: keep root links (8) with `a` a link (128); byte 1 (below) makes `b/c` one too.
    "kept-root-across": (8 | 128, [("l", "a/l", "../b/c/y")]),
    "kept-root-file": (8 | 128, [("f", "a/new"), ("f", "b/c/new")]),
    "replaced-root-link": (128, [("f", "a/new"), ("f", "b/c/new")]),
    "kept-roots-both": ((8 | 128, 128), [("f", "a/new"), ("d", "b/c"), ("f", "b/c/new")]),
    # Settings: the whole folder (64).
    "whole-folder": (64, [("f", "a/pre/x"), ("f", "kept/k2"), ("l", "z", "kept")]),
    "whole-folder-up": (64, [("l", "l", "../c/a/f")]),
    # Settings: bounded (16).
    "bounded": (16, [("f", "a/%d" % i) for i in range(20)]),
}
for name, (flags, entries) in cases.items():
    data = tar(entries, tarfile.PAX_FORMAT if name.startswith("pax") else tarfile.GNU_FORMAT)
    settings = bytes(flags) if isinstance(flags, tuple) else bytes([flags, 0])
    open(os.path.join(out, "hostile-" + name), "wb").write(settings + data)

# Two layers (32): the split byte counts 512-byte blocks.
one = tar([("f", "a/x", b"1"), ("d", "a/d")])[:-1024]
two = tar([("f", "a/x", b"2"), ("f", "a/d")])
open(os.path.join(out, "layers-replace"), "wb").write(bytes([32, len(one) // 512]) + one + two)
# Compressed here (4 zstd, 5 gzip), and cut short.
base = tar([("f", "a/z", b"zz"), ("l", "a/zl", "z")])
open(os.path.join(out, "zstd-here"), "wb").write(bytes([4, 0]) + base)
open(os.path.join(out, "gzip-here"), "wb").write(bytes([5, 0]) + base)
open(os.path.join(out, "truncated"), "wb").write(bytes([0, 0]) + base[:700])
EOF

# Manifests a writer of the bucket could plant: duplicate keys, a second signature, odd numbers.
python3 - "$corpus/manifest" <<'EOF'
import os, sys
d = sys.argv[1]
path = os.path.join(d, "ferry-cache-seed-tar-signed.json")
if os.path.exists(path):
    text = open(path).read()
    # The same key twice: a reader that keeps the first would restore other paths than signed.
    dup = text.replace('"paths": [', '"paths": ["../../.ssh"], "paths": [', 1)
    open(os.path.join(d, "hostile-duplicate-paths.json"), "w").write(dup)
    dup_first = text.replace('{', '{"format": 2, ', 1)
    open(os.path.join(d, "hostile-duplicate-format.json"), "w").write(dup_first)
open(os.path.join(d, "hostile-numbers.json"), "w").write(
    '{"format":1.0,"kind":"cache","created":"2026-01-01T00:00:00Z","expires":null,'
    '"data":{"path":"d","size":1e3,"sha256":"ab"},"key":"k","compression":"tar",'
    '"paths":["a"],"files":18446744073709551616,"unpacked_bytes":0,"ttl_seconds":1}')
EOF

# `rules` takes structured input (arbitrary); a few bytes are enough to start from.
printf '\x7f\x00\x01\x02\x03\x04\x05\x06\x07' > "$corpus/rules/seed-0"
printf '\xff\xff\x02\x00\x01\x09\x00\x09\x01\x02\x00\x09\x05\x09' > "$corpus/rules/seed-1"
echo "seeds: $(ls "$corpus/unpack_tar" | wc -l) unpack_tar, $(ls "$corpus/manifest" | wc -l) manifest, $(ls "$corpus/rules" | wc -l) rules, $(ls "$corpus/chunk_index" | wc -l) chunk_index"
