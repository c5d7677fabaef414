"""Real settings samples for calibration, parity and benchmarks, read from Arrow shards.

The contract is the settings stream's: a string column `query` (what the user typed) and, for exact
match, a string column `target` (the function call the model should emit); a `split` column, when
present, keeps calibration on training rows and parity on held-out rows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc

from textbook.contract import QUERY, SPLIT, TARGET
from textbook.errors import TextbookError
from textbook.shards import read_manifest, read_table


@dataclass(slots=True)
class Sample:
    query: str
    target: str | None  # None when the shards carry no `target` column


def read_samples(directory: str | Path, *, split: str | None, limit: int, seed: int = 0, need_target: bool = False) -> list[Sample]:
    """Up to `limit` rows of `split` (all rows when the shards have no split column), chosen by seed."""
    directory = Path(directory)
    manifest = read_manifest(directory) if directory.is_dir() else None
    if manifest is None:
        raise TextbookError(f"{directory} is not a shard directory (no manifest.json): pass settings shards from `textbook gen settings`")
    types = {f["name"]: f["type"] for f in manifest["schema"]}
    wanted = [QUERY, TARGET] if need_target else [QUERY]
    bad = [c for c in wanted if types.get(c) not in ("string", "large_string")]
    if bad:
        have = ", ".join(f"{n}: {t}" for n, t in types.items())
        raise TextbookError(
            f"{directory} does not have the settings schema: it needs string column(s) {', '.join(bad)} "
            f"(it has {have}); pass shards from `textbook gen settings`"
        )
    columns = [c for c in (QUERY, TARGET, SPLIT) if c in types]
    table = read_table(directory, columns)
    if split and SPLIT in types:
        table = table.filter(pc.equal(table[SPLIT], split))
        if table.num_rows == 0:
            raise TextbookError(f"{directory} has no rows in split {split!r}: pick another --split")
    if table.num_rows == 0:
        raise TextbookError(f"{directory} holds no rows")
    rows = list(range(table.num_rows))
    random.Random(seed).shuffle(rows)
    rows = sorted(rows[:limit])
    queries = table[QUERY].take(rows).to_pylist()
    targets = table[TARGET].take(rows).to_pylist() if TARGET in columns else [None] * len(rows)
    return [Sample(q, t) for q, t in zip(queries, targets) if q]
