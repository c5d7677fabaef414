"""`textbook shards merge SLICE... --out DIR`: the slices of one plan, made on N machines, as one output.

`textbook gen --shard I/N` writes slice I of a seeded plan into its own directory (its own cache, ledger,
shards and run.json). Merging checks what a scheduler cannot: that every directory is a finished slice of
the *same* plan (run.json fingerprints equal but for the slice, else it says what differs), that no slice
is missing or given twice; then it writes one directory per stream whose manifest lists every slice's
shards, in slice order, with their rows and sha256 (files hard-linked where the filesystem allows, copied
otherwise; each checked against its manifest's sha256). Nothing in the slices is changed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from textbook.errors import TextbookError
from textbook.report import Report
from textbook.rundir import RunDir, differences
from textbook.shards import MANIFEST, atomic_write_json, read_manifest, sha256_file


def _slice(directory: Path) -> tuple[int, int, dict[str, Any]]:
    record_path = directory / RunDir.RECORD
    if not record_path.is_file():
        raise TextbookError(f"{directory} holds no {RunDir.RECORD}: pass the --out directories of `textbook gen --shard I/N` runs")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    fingerprint = record.get("fingerprint") or {}
    shard = fingerprint.get("shard")
    if not shard:
        raise TextbookError(f"{directory} is a whole run, not a slice: merge the outputs of `textbook gen --shard I/N`")
    if not record.get("complete"):
        raise TextbookError(f"{directory} (slice {shard}) is not finished: rerun its command to complete it, then merge")
    i, n = (int(x) for x in shard.split("/"))
    return i, n, {k: v for k, v in fingerprint.items() if k != "shard"}


def _place(source: Path, target: Path) -> None:
    """`target` holds `source`'s bytes: a hard link (no copy, no space) where the filesystem allows."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def merge_slices(slices: list[str | Path], out: str | Path) -> Report:
    dirs = [Path(d) for d in slices]
    if not dirs:
        raise TextbookError("no slices given: textbook shards merge SLICE_DIR... --out DIR")
    found: dict[int, Path] = {}
    base: dict[str, Any] | None = None
    total = None
    for directory in dirs:
        i, n, fingerprint = _slice(directory)
        if base is None:
            base, total, first = fingerprint, n, directory
        elif fingerprint != base or n != total:
            what = "; ".join(differences(base, fingerprint)) or f"N: {total} -> {n}"
            raise TextbookError(f"{first} and {directory} are slices of different plans ({what}): merge slices of one plan")
        if i in found:
            raise TextbookError(f"slice {i}/{n} is given twice ({found[i]} and {directory}): pass each slice once")
        found[i] = directory
    missing = [i for i in range(total) if i not in found]
    if missing:
        raise TextbookError(f"slice(s) {', '.join(f'{i}/{total}' for i in missing)} missing: run `textbook gen ... "
                            f"--shard {missing[0]}/{total}` (same options) and merge all {total}")
    ordered = [found[i] for i in range(total)]
    streams = sorted(p.parent.name for p in ordered[0].glob(f"*/{MANIFEST}"))
    out = Path(out)
    counts: dict[str, int] = {}
    with RunDir(out) as rundir:
        rundir.claim({"merged": base, "slices": total}, "a merged output", fresh=True)
        for stream in streams:
            counts[stream] = _merge_stream(stream, ordered, out / stream)
        rundir.finish(slices=[str(d) for d in ordered])
    lines = [f"merged {total} slices of one plan into {out}"]
    lines += [f"  {stream}: {rows:,} rows" for stream, rows in counts.items()]
    return Report({"out": str(out), "slices": total, "rows": counts}, lines)


def _merge_stream(stream: str, slices: list[Path], target: Path) -> int:
    target.mkdir(parents=True, exist_ok=True)
    manifests = []
    for directory in slices:
        manifest = read_manifest(directory / stream)
        if manifest is None or not manifest.get("complete"):
            raise TextbookError(f"{directory / stream} is missing or unfinished: rerun that slice's command")
        manifests.append(manifest)
    if len({m["schema_ipc"] for m in manifests}) > 1:
        raise TextbookError(f"the slices' {stream} shards have different schemas: were they made by the same textbook version?")
    shards, totals = [], {}
    for directory, manifest in zip(slices, manifests):
        for entry in manifest["shards"]:
            source = directory / stream / entry["file"]
            name = f"shard-{len(shards):05d}{source.suffix}"
            _place(source, target / name)
            if sha256_file(target / name) != entry["sha256"]:
                raise TextbookError(f"{source} does not match its manifest's sha256: that slice is damaged; rerun it")
            shards.append({**entry, "file": name, "from": str(source)})
        for key, value in (manifest.get("totals") or {}).items():
            # counts and dollars add up across slices; rates and averages do not, so they are left out
            if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and key.endswith("_usd")):
                totals[key] = totals.get(key, 0) + value
    keep = {k: v for k, v in manifests[0].items() if k not in ("shards", "rows", "totals", "state", "complete")}
    merged = {**keep, "complete": True, "rows": sum(s["rows"] for s in shards), "shards": shards,
              "totals": totals, "merged_from": [str(d / stream) for d in slices], "state": {}}
    atomic_write_json(target / MANIFEST, merged)
    listed = {s["file"] for s in shards} | {MANIFEST}
    for stale in target.iterdir():  # an earlier merge's extra shards: a reader of the directory must not see them
        if stale.is_file() and stale.name not in listed:
            stale.unlink()
    return merged["rows"]
