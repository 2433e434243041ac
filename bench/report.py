"""Turning benchmark results into the markdown table of bench/README.md and merging them
into bench/results.json (a partial run replaces only the benchmarks it measured)."""

from __future__ import annotations

import json
from pathlib import Path

MiB = 1024 * 1024
CACHE_BENCHES = ["node_modules", "target", "big", "npm-real", "cargo-real"]
ORDER = CACHE_BENCHES + ["workspace", "artifacts", "lookup", "artifacts-30k", "after-delete"]
START = "<!-- results -->"
END = "<!-- /results -->"


def secs(x) -> str:
    if x is None:
        return "—"
    if x < 1:
        return f"{x * 1000:.0f} ms"
    return f"{x:.2f} s"


def mib(x) -> str:
    return "—" if x is None else f"{x / MiB:.0f} MiB"


def mb(x) -> str:
    return "—" if x is None else f"{x / 1e6:.1f} MB"


def esc(cell: str) -> str:
    return cell.replace("|", "\\|")


def pair(a: dict, b: dict, key: str, f) -> str:
    return f"{f(a.get(key))} / {f(b.get(key))}"


def ratio(a, b) -> str:
    return f"{a / b:.2f}" if a and b else "—"


def fmt_value(t: dict) -> str:
    v = t["value"]
    if v is None:
        return "not measured"
    return {"ratio": lambda: f"{v:.2f}", "percent": lambda: f"{v:+.1%}", "bytes": lambda: mib(v),
            "seconds": lambda: secs(v)}[t["format"]]()


def verdict(ok) -> str:
    return {True: "pass", False: "**FAIL**", None: "—"}[ok]


def _med(s: dict, key: str):
    return s.get(key, {}).get("median_seconds")


def baseline_table(meta: dict, benches: dict, cache: list[str]) -> list[str]:
    """This ferry against the baseline binary timed beside it (`--baseline`), if any: each
    one's ratio to the reference of the same run, and this one's time over the baseline's."""
    rows = [b for b in cache if "baseline save" in benches[b].get("series", {})]
    base = meta.get("baseline") or {}
    if not rows:
        return []
    out = [f"This ferry against the baseline `{base.get('name', '?')}` (binary sha256 "
           f"{base.get('binary_sha256', '')[:12]}), timed in the same runs, alternating:", "",
           "| corpus | step | ferry | baseline | ferry / baseline | ferry / ref | baseline / ref |",
           "|---|---|--:|--:|--:|--:|--:|"]
    for b in rows:
        s = benches[b]["series"]
        for step, ref in (("save", "tar|zstd save"), ("restore", "zstd -d|tar restore")):
            f, g, r = _med(s, f"ferry {step}"), _med(s, f"baseline {step}"), _med(s, ref)
            out.append(f"| {b} | {step} | {secs(f)} | {secs(g)} | {ratio(f, g)} | {ratio(f, r)} | {ratio(g, r)} |")
    out.append("")
    checks = [f"{b}: {benches[b]['verify']['baseline']}" for b in rows if "baseline" in benches[b].get("verify", {})]
    if checks:
        out.append("The baseline's restores compared with the corpus: " + "; ".join(checks) + ".")
        out.append("")
    return out


def markdown(doc: dict) -> str:
    meta = doc["meta"]
    m = meta["machine"]
    benches = doc["benches"]
    bg = sorted(r["extra"]["background_cpu"] for b in benches.values() for ser in b.get("series", {}).values()
                for r in ser.get("runs", []) if r.get("extra", {}).get("background_cpu") is not None)
    noise = ""
    if bg:
        noise = (f" In the runs kept, other processes used a median {bg[len(bg) // 2]:.0%} of the machine's CPU "
                 f"(at most {bg[-1]:.0%}).")
    quiet = ("before each timed run the harness waited for other work to quieten"
             if meta.get("quiet", 0.25) > 0 else "the harness did not wait for quiet")
    if meta.get("disturbed", 0.15) < 1:
        quiet += f", and repeated a run during which others used more than {meta.get('disturbed', 0.15):.0%} of the CPU"
    else:
        quiet += ", and did not repeat runs that others disturbed"
    out = []
    out.append(
        f"Measured {meta['date']} on commit `{meta['commit']}` ({meta['ferry_version'] or 'ferry'}, "
        f"release build{', binary sha256 ' + meta['binary_sha256'][:12] if meta.get('binary_sha256') else ''}), {m['cores']} cores ({m['cpu']}), {m['memory_bytes'] / 2**30:.0f} GiB RAM, "
        f"Linux {m['kernel']}, {m['filesystem']}; {meta['runs']} runs each, median wall time, warm page cache. "
        f"**A shared machine** (other engineers compiling): {quiet}.{noise}")
    out.append("")
    fs = meta.get("restore_fs") or {}
    if fs:
        where = fs.get("kind", "")
        if fs.get("mount"):
            where += f" (`{fs['mount']}`, {fs.get('size_bytes', 0) / 2**30:.0f} GiB image on {fs.get('backing_fs', '?')})"
        elif fs.get("why"):
            where += f" ({fs['why']})"
        out.append(f"Timed restores, attaches, downloads and `cp -a` write to: {where}.")
        out.append("")
    cache = [b for b in CACHE_BENCHES if b in benches]
    if cache:
        out.append("| corpus | step | ferry | reference | ferry / ref | cp -a | ferry / cp -a | gzip tar | CPU: ferry / ref | system CPU: ferry / ref | peak RSS: ferry / ref | stored: ferry / ref |")
        out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for b in cache:
            r = benches[b]
            if "series" not in r:
                out.append(f"| {b} | skipped: {r.get('skipped', '')} | | | | | | | | | | |")
                continue
            c = r["corpus"]
            s = r["series"]
            label = f"{b} ({c['files']:,} file{'s' if c['files'] != 1 else ''}, {c['bytes'] / 1e6:.0f} MB)"
            if r["measured"]["commit"] != meta["commit"]:
                label += f" at `{r['measured']['commit']}`"
            fs_, zs, gs = s["ferry save"], s["tar|zstd save"], s["tar -z save"]
            fr, zr, gr = s["ferry restore"], s["zstd -d|tar restore"], s["tar -xz restore"]
            cp = s.get("cp -a", {})
            ek = s["ferry save, key exists"]
            out.append(f"| {label} | save (ref: `tar --posix -cf - \\| zstd -T0 -3`) | {secs(fs_['median_seconds'])} | "
                       f"{secs(zs['median_seconds'])} | {ratio(fs_['median_seconds'], zs['median_seconds'])} | | | "
                       f"{secs(gs['median_seconds'])} | {pair(fs_, zs, 'median_cpu_seconds', secs)} | "
                       f"{pair(fs_, zs, 'median_sys_seconds', secs)} | "
                       f"{pair(fs_, zs, 'peak_rss_bytes', mib)} | {pair(fs_, zs, 'stored_bytes', mb)} |")
            out.append(f"| | restore (ref: `zstd -d -c \\| tar -xf -`) | {secs(fr['median_seconds'])} | "
                       f"{secs(zr['median_seconds'])} | {ratio(fr['median_seconds'], zr['median_seconds'])} | "
                       f"{secs(cp.get('median_seconds'))} | {ratio(fr['median_seconds'], cp.get('median_seconds'))} | "
                       f"{secs(gr['median_seconds'])} | {pair(fr, zr, 'median_cpu_seconds', secs)} | "
                       f"{pair(fr, zr, 'median_sys_seconds', secs)} | "
                       f"{pair(fr, zr, 'peak_rss_bytes', mib)} | |")
            out.append(f"| | save, key exists | {secs(ek['median_seconds'])} | | | | | | {secs(ek['median_cpu_seconds'])} | | "
                       f"{mib(ek['peak_rss_bytes'])} | |")
        out.append("")
        real = [b for b in cache if benches[b].get("corpus", {}).get("kind") == "real"]
        for b in real:
            c = benches[b]["corpus"]
            out.append(f"- {b}: {c.get('what', '')}; {c['files']:,} files, {c.get('dirs', 0):,} folders, "
                       f"{c.get('symlinks', 0):,} symlinks, {c['bytes'] / 1e6:.0f} MB; {c.get('files_over_1mib', 0):,} files "
                       f"over 1 MiB hold {c.get('bytes_in_files_over_1mib', 0) / 1e6:.0f} MB; digest `{c['digest'][:16]}`.")
        if real:
            out.append("")
        out.append("| corpus | target | measured | limit | result |")
        out.append("|---|---|--:|---|---|")
        for b in cache:
            for t in benches[b].get("targets", []):
                out.append(f"| {b} | {esc(t['target'])} | {fmt_value(t)} | {t['limit']} | {verdict(t['pass'])} |")
        out.append("")
        out.extend(baseline_table(meta, benches, cache))
        checks = [f"{b}: ferry {benches[b]['verify'].get('ferry', 'not checked')}"
                  for b in cache if "verify" in benches[b]]
        if checks:
            out.append("Restored trees compared with the corpus (paths, types, modes, bytes, link targets, mtimes): "
                       + "; ".join(checks) + ".")
            out.append("")
        for b in cache:
            for n in benches[b].get("notes", []):
                out.append(f"- {b}: {n}")
    ws = benches.get("workspace")
    if ws:
        out.append("")
        if "series" not in ws:
            out.append(f"Workspace (issue 3): skipped ({ws.get('skipped', '')}).")
        else:
            c, s = ws["corpus"], ws["series"]
            out.append(f"Workspace (issue 3): {ws['layers']} layers of {c['files'] // ws['layers']:,} files "
                       f"({c['bytes'] / 1e6:.0f} MB in all), persisted by {ws['layers']} jobs, then attached into an "
                       f"empty folder; beside it one cache of the same {c['files']:,} files.")
            out.append("")
            out.append("| step | median | peak RSS |")
            out.append("|---|--:|--:|")
            for k, v in s.items():
                extra = ""
                if v.get("median_seconds_each") is not None:
                    extra = f" ({secs(v['median_seconds_each'])} each)"
                out.append(f"| {esc(k)} | {secs(v['median_seconds'])}{extra} | {mib(v['peak_rss_bytes'])} |")
            a, cr = _med(s, "ferry workspace attach"), _med(s, "ferry cache restore (same files)")
            cpa = _med(s, "cp -a (same files)")
            out.append("")
            if a and cr:
                out.append(f"Attach / cache restore of the same files: {a / cr:.2f}." +
                           (f" Attach / `cp -a` of the same files: {a / cpa:.2f}." if cpa else ""))
            for t in ws.get("targets", []):
                out.append(f"Target: {esc(t['target'])}: {fmt_value(t)} ({t['limit']}): {verdict(t['pass'])}.")
            for k, v in ws.get("verify", {}).items():
                out.append(f"Checked: {k}: {v}.")
            for n in ws.get("notes", []):
                out.append(f"- {n}")
    ar = benches.get("artifacts")
    if ar:
        out.append("")
        if "series" not in ar:
            out.append(f"Artifacts (issue 4): skipped ({ar.get('skipped', '')}).")
        else:
            c, s = ar["corpus"], ar["series"]
            out.append(f"Artifacts (issue 4): upload and download of {c['files']:,} small files "
                       f"({c['bytes'] / 1e6:.0f} MB), one object each.")
            out.append("")
            out.append("| step | median | files/s | peak RSS |")
            out.append("|---|--:|--:|--:|")
            for k, v in s.items():
                m_ = v["median_seconds"]
                rate = f"{c['files'] / m_:,.0f}" if m_ else "—"
                out.append(f"| {esc(k)} | {secs(m_)} | {rate} | {mib(v['peak_rss_bytes'])} |")
            out.append("")
            for k, v in ar.get("verify", {}).items():
                out.append(f"Checked: {k}: {v}.")
            for n in ar.get("notes", []):
                out.append(f"- {n}")
    out.extend(lookup_md(benches.get("lookup")))
    out.extend(artifacts_scale_md(benches.get("artifacts-30k")))
    out.extend(after_delete_md(benches.get("after-delete")))
    return "\n".join(out).rstrip() + "\n"


def _targets_md(res: dict) -> list[str]:
    out = ["", "| target | measured | limit | result |", "|---|--:|---|---|"]
    for t in res.get("targets", []):
        out.append(f"| {esc(t['target'])} | {fmt_value(t)} | {t['limit']} | {verdict(t['pass'])} |")
    return out


def _at(res: dict, meta_commit: str | None = None) -> str:
    m = res.get("measured", {})
    return f" (measured {m.get('date', '?')}, commit `{m.get('commit', '?')}`, {m.get('runs', '?')} runs each)"


def lookup_md(res: dict | None) -> list[str]:
    if not res:
        return []
    if "skipped" in res:
        return ["", f"Lookups among 10,000 caches (issue 12): skipped ({res['skipped']})."]
    out = ["", f"Lookups among {res['caches']:,} caches (issue 12): keys `{res['prefix']}<sha256>`, "
               f"the store filled {res['fill']['how']}{_at(res)}."]
    if "stores" not in res or not res["stores"]:
        return out + [f"- {n}" for n in res.get("notes", [])]
    names = list(res["stores"])
    out += ["", "| command | " + " | ".join(names) + " | checked |", "|---|" + "--:|" * len(names) + "---|"]
    first = res["stores"][names[0]]
    for k in first["series"]:
        cells = []
        for n in names:
            s = res["stores"][n]["series"].get(k, {})
            cells.append(secs(s.get("median_seconds")))
        checked = "; ".join(f"{n}: {res['stores'][n]['checks'].get(k, '')}" for n in names)
        out.append(f"| `{esc(k)}` | " + " | ".join(cells) + f" | {esc(checked)} |")
    st = res.get("strace_prefix_restore")
    if st and st.get("syscalls"):
        top = ", ".join(f"{x['syscall']} {x['calls']:,}" for x in st["syscalls"][:8])
        out += ["", f"`strace -c -f` of one prefix restore among {res['caches']:,} (local store): "
                    f"{st['total_calls']:,} system calls; most called: {top}."]
    st = res.get("strace_miss")
    if st and st.get("syscalls"):
        top = ", ".join(f"{x['syscall']} {x['calls']:,}" for x in st["syscalls"][:5])
        out.append(f"The same for a miss: {st['total_calls']:,} system calls; most called: {top}.")
    if res.get("seaweedfs"):
        out.append(f"SeaweedFS: `weed mini` {res['seaweedfs'].get('version', '')} on loopback; the server's CPU "
                   "time is counted as part of the command, not as others' work.")
    out += _targets_md(res)
    out += [f"- {n}" for n in res.get("notes", [])]
    return out


def artifacts_scale_md(res: dict | None) -> list[str]:
    if not res:
        return []
    if "skipped" in res:
        return ["", f"One job holding 30,000 artifacts (issue 12): skipped ({res['skipped']})."]
    out = ["", f"One job holding {res.get('artifacts', 0):,} artifacts (issue 12), uploaded by `ferry artifacts upload` "
               f"in {res.get('upload_seconds', '?')} s; the path asked for: `{res.get('path', '')}`{_at(res)}."]
    if "series" not in res:
        return out + [f"- {n}" for n in res.get("notes", [])]
    out += ["", "| command | median | peak RSS | checked |", "|---|--:|--:|---|"]
    for k, v in res["series"].items():
        out.append(f"| `{esc(k)}` | {secs(v['median_seconds'])} | {mib(v['peak_rss_bytes'])} | "
                   f"{esc(str(res.get('checks', {}).get(k, '')))} |")
    out += _targets_md(res)
    out += [f"- {n}" for n in res.get("notes", [])]
    return out


def after_delete_md(res: dict | None) -> list[str]:
    if not res:
        return []
    if "skipped" in res:
        return ["", f"Right after a mass deletion (issue 12): skipped ({res['skipped']})."]
    c = res.get("corpus", {})
    out = ["", f"Right after a mass deletion, on the root file system (`{res.get('filesystem', '')}`): each round "
               f"deletes about {max((r['deleted_entries'] for r in res.get('rounds', [])), default=0):,} entries, then "
               f"restores {c.get('name', '')} ({c.get('files', 0):,} files) with each tool at once, in rotating "
               f"order{_at(res)}."]
    if "series" not in res:
        return out + [f"- {n}" for n in res.get("notes", [])]
    out += ["", "| tool | median wall | median user | median system | every run (wall / system, position after the deletion) |",
            "|---|--:|--:|--:|---|"]
    for k, v in res["series"].items():
        each = []
        for rnd in res.get("rounds", []):
            x = rnd["runs"].get(k)
            if x:
                each.append(f"{x['wall']:.2f}/{x['sys']:.2f} s #{rnd['order'].index(k) + 1}")
        out.append(f"| {esc(k)} | {secs(v['median_seconds'])} | {secs(v.get('median_user_seconds'))} | "
                   f"{secs(v.get('median_sys_seconds'))} | {'; '.join(each)} |")
    if res.get("ratios_by_round"):
        out += ["", "ferry / `zstd -d | tar -x` in each round: " + ", ".join(f"{x:.2f}" for x in res["ratios_by_round"]) + "."]
    out += _targets_md(res)
    out += [f"- {n}" for n in res.get("notes", [])]
    return out


def merge(path: Path, doc: dict) -> dict:
    """`doc` over the recorded results: benchmarks measured now replace recorded ones."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return doc
    if not isinstance(old, dict) or "benches" not in old:
        return doc
    benches = dict(old["benches"])
    benches.update(doc["benches"])
    return {"meta": doc["meta"], "benches": {k: benches[k] for k in ORDER if k in benches}}


LIST_MOST = 50  # longer lists (ferry's JSON listing 10,000 artifacts) are cut in results.json


def brief(o):
    """`o` with every list longer than LIST_MOST cut to its first items and a count of the
    rest: results.json keeps the measurements, not every file a command listed (the full
    output stays in bench/work/results-*.json)."""
    if isinstance(o, dict):
        return {k: brief(v) for k, v in o.items()}
    if isinstance(o, list):
        if len(o) > LIST_MOST:
            return [brief(x) for x in o[:5]] + [f"... and {len(o) - 5} more"]
        return [brief(x) for x in o]
    return o


def write_readme(path: Path, table: str) -> None:
    text = path.read_text()
    block = f"{START}\n{table}{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    # Re-renders the README's table from bench/results.json (after a change to this file).
    here = Path(__file__).resolve().parent
    write_readme(here / "README.md", markdown(json.loads((here / "results.json").read_text())))
