"""Totals of a gen output, counted from its shards (so they cover every run that resumed into it)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.compute as pc

from textbook.report import Report
from textbook.shards import read_table
from textbook.teacher.ledger import describe
from textbook.teacher.pricing import price_for


@dataclass(eq=False)
class GenSummary(Report):
    """What `textbook gen` prints at the end; `totals()` is what its manifest keeps."""

    kind: str
    planned: int
    rows: int
    rejected: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None when the model is not in the price table
    seconds: float
    this_run: dict  # the teacher's counters for this process only (requests sent, cache hits, paid cost)
    paths: dict[str, str] = field(default_factory=dict)
    ledger: dict = field(default_factory=dict)  # textbook.teacher.ledger totals: every run into this output
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict:
        """What the manifest keeps (plain JSON)."""
        return {
            "planned": self.planned, "rows": self.rows, "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(self.rejected), "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "cost_usd": self.cost_usd, "ledger": self.ledger,
        }

    def facts(self) -> dict:
        return {"kind": self.kind, **self.totals(), "seconds": round(self.seconds, 3), "this_run": self.this_run,
                "paths": self.paths}

    def lines(self) -> list[str]:
        run = self.this_run
        cost = "cost unknown: the model is not in the price table" if self.cost_usd is None else f"${self.cost_usd:,.4f}"
        lines = [
            f"{self.kind}: {self.rows:,} rows kept, {sum(self.rejected.values()):,} rejected, of {self.planned:,} planned",
        ]
        for reason, count in sorted(self.rejected.items(), key=lambda kv: -kv[1]):
            lines.append(f"  rejected {reason}: {count:,}")
        lines.append(f"  tokens of the rows and rejects written: {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion ({cost})")
        lines += describe(self.ledger)
        if run:
            paid = f", ${run['cost_usd']:,.4f} paid" if run.get("priced") else ""
            lines.append(
                f"  this run: {run['requests']:,} requests sent, {run['cache_hits']:,} cache hits, {run['retries']:,} retries{paid}"
            )
        lines.append(f"  time: {self.seconds:,.1f} s")
        lines += [f"  {note}" for note in self.notes]
        lines += [f"  {name}: {path}" for name, path in self.paths.items()]
        return lines


def count_output(kept_dir: Path, rejects_dir: Path, model: str, price_file: str | None) -> tuple[int, dict[str, int], int, int, float | None]:
    """Rows, rejects by reason, prompt and completion tokens, and their cost, over everything written."""
    kept = read_table(kept_dir, ["prompt_tokens", "completion_tokens"])
    rejects = read_table(rejects_dir, ["reason", "prompt_tokens", "completion_tokens"])
    by_reason = Counter(rejects.column("reason").to_pylist())
    prompt = int(pc.sum(kept["prompt_tokens"]).as_py() or 0) + int(pc.sum(rejects["prompt_tokens"]).as_py() or 0)
    completion = int(pc.sum(kept["completion_tokens"]).as_py() or 0) + int(pc.sum(rejects["completion_tokens"]).as_py() or 0)
    price = price_for(model, price_file)
    cost = None if price is None else round((prompt * price[0] + completion * price[1]) / 1e6, 6)
    return kept.num_rows, dict(by_reason), prompt, completion, cost
