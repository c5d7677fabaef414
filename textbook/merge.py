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
from pathlib import Path
from typing import Any

from textbook.errors import TextbookError
from textbook.report import Report
from textbook.rundir import RunDir, differences
from textbook.shards import MANIFEST, join_shards


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
            counts[stream] = join_shards([d / stream for d in ordered], out / stream, "rerun that slice's command")
        rundir.finish(slices=[str(d) for d in ordered])
    lines = [f"merged {total} slices of one plan into {out}"]
    lines += [f"  {stream}: {rows:,} rows" for stream, rows in counts.items()]
    return Report({"out": str(out), "slices": total, "rows": counts}, lines)
