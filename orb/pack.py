#!/usr/bin/env python3
"""Packs an orb's source tree into one orb.yml, as `circleci orb pack` does.

    python3 orb/pack.py orb/src > orb.yml

The tree maps onto the YAML: `@orb.yml` (any `@*.yml`) is the root mapping, each
folder becomes a key holding a mapping, and each `NAME.yml` in a folder becomes
the key NAME holding that file's content. A string value that is exactly
`<<include(PATH)>>` is replaced by the text of PATH, relative to the source
root (as `circleci orb pack` requires, the include must be the whole value).
"""

import pathlib
import re
import sys

import yaml

INCLUDE = re.compile(r"^\s*<<\s*include\(\s*([^)]+?)\s*\)\s*>>\s*$")


class PackError(Exception):
    pass


def load(path):
    try:
        with open(path, encoding="utf-8") as file:
            return yaml.safe_load(file)
    except yaml.YAMLError as error:
        raise PackError(f"{path}: not valid YAML: {error}") from error


def merge(into, extra, where):
    for key, value in (extra or {}).items():
        if key in into:
            raise PackError(f"{where}: key {key!r} is defined twice")
        into[key] = value


def pack_dir(folder):
    mapping = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            if path.name == "scripts":
                continue  # only reachable through <<include(...)>>
            merge(mapping, {path.name: pack_dir(path)}, path)
        elif path.suffix in (".yml", ".yaml"):
            content = load(path)
            if path.name.startswith("@"):
                if not isinstance(content, dict):
                    raise PackError(f"{path}: must hold a mapping")
                merge(mapping, content, path)
            else:
                merge(mapping, {path.stem: content}, path)
    return mapping


def inline(value, root, where):
    if isinstance(value, dict):
        return {key: inline(item, root, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [inline(item, root, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, str):
        match = INCLUDE.match(value)
        if match:
            path = (root / match.group(1)).resolve()
            if root.resolve() not in path.parents:
                raise PackError(f"{where}: include {match.group(1)!r} is outside {root}")
            if not path.is_file():
                raise PackError(f"{where}: included file {match.group(1)} does not exist")
            return path.read_text(encoding="utf-8")
        if "<<include(" in value.replace(" ", ""):
            raise PackError(f"{where}: <<include(...)>> must be the whole value")
    return value


class Dumper(yaml.SafeDumper):
    pass


def represent_str(dumper, text):
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


Dumper.add_representer(str, represent_str)


def pack(src):
    root = pathlib.Path(src)
    if not (root / "@orb.yml").is_file():
        raise PackError(f"{root}: no @orb.yml at the root of the orb source")
    orb = inline(pack_dir(root), root, "orb")
    return yaml.dump(orb, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: pack.py SRC_DIR > orb.yml", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(pack(argv[1]))
    except PackError as error:
        print(f"pack.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
