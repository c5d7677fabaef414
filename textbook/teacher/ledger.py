"""The usage ledger: what a run asked of its teacher and what it cost, by stage, across every resume.

One row per request sent (whatever came back: a reply, a 429, a timeout), one per completion served
from the response cache and one per completion rejected, in `OUT/teacher-ledger.sqlite`. Rows are only
ever added, each in its own transaction, and a paid reply is on the ledger before it reaches the cache:
a run killed at any point and resumed counts every request it sent exactly once (a reply lost with the
kill was paid and is counted; its resend is paid again and counted again). Totals are sums over the rows.

Cost: what the provider reports in `usage.cost` (OpenRouter, LiteLLM proxies) where it does, otherwise an
estimate from the price table (`textbook.teacher.pricing`, dated), marked as an estimate.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from textbook.errors import TextbookError
from textbook.teacher.cache import connect

LEDGER_FILE = "teacher-ledger.sqlite"  # OUT/<this> for every command that asks a teacher
OK, CACHE, REJECTED = "ok", "cache", "rejected"  # other outcomes name a failed request: timeout, rate_limited, ...


class Ledger:
    """`record(...)` one event; `totals()` by stage and in all. Used from one event loop thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = connect(self.path)  # each row is durable
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, stage TEXT NOT NULL, outcome TEXT NOT NULL,"
                " retry INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
                " cost_usd REAL, cost_reported INTEGER NOT NULL, at REAL NOT NULL, ref TEXT)"
            )
            # ref: a Batch API reply's id, so ingesting a batch again (after a kill) counts it once
            self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_ref ON events (ref)")
        except sqlite3.DatabaseError as exc:
            raise TextbookError(f"usage ledger {self.path} cannot be used ({exc}): delete it to start a new one") from None

    def record(self, stage: str, outcome: str, *, retry: bool = False, prompt_tokens: int = 0, completion_tokens: int = 0,
               cost_usd: float | None = None, cost_reported: bool = False, ref: str | None = None) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO events (stage, outcome, retry, prompt_tokens, completion_tokens, cost_usd, cost_reported,"
            " at, ref) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (stage, outcome, int(retry), prompt_tokens, completion_tokens, cost_usd, int(cost_reported), time.time(), ref),
        )

    def totals(self) -> dict[str, Any]:
        """{"stages": {stage: counts}, "total": counts}; counts as `_counts` describes."""
        rows = self._db.execute(
            "SELECT stage, outcome, count(*), sum(retry), sum(prompt_tokens), sum(completion_tokens),"
            " sum(cost_usd), count(cost_usd), sum(cost_reported) FROM events GROUP BY stage, outcome"
        ).fetchall()
        stages: dict[str, dict[str, Any]] = {}
        for stage, *row in rows:
            _add(stages.setdefault(stage, _empty()), *row)
        total = _empty()
        for counts in stages.values():
            for key in ("sent", "succeeded", "failed", "from_cache", "rejected", "retried", "prompt_tokens",
                        "completion_tokens", "_costed", "_reported"):
                total[key] += counts[key]
            total["cost_usd"] += counts["cost_usd"]
            total["failures"].update({k: total["failures"].get(k, 0) + v for k, v in counts["failures"].items()})
        return {"stages": {s: _finish(c) for s, c in sorted(stages.items())}, "total": _finish(total)}

    def close(self) -> None:
        self._db.close()


def _empty() -> dict[str, Any]:
    return {"sent": 0, "succeeded": 0, "failed": 0, "from_cache": 0, "rejected": 0, "retried": 0, "prompt_tokens": 0,
            "completion_tokens": 0, "cost_usd": 0.0, "failures": {}, "_costed": 0, "_reported": 0}


def _add(c: dict[str, Any], outcome: str, n: int, retries: int, prompt: int, completion: int, cost: float | None,
         costed: int, reported: int) -> None:
    if outcome == CACHE:
        c["from_cache"] += n
        return
    if outcome == REJECTED:
        c["rejected"] += n
        return
    c["sent"] += n
    c["retried"] += retries or 0
    c["prompt_tokens"] += prompt or 0
    c["completion_tokens"] += completion or 0
    c["cost_usd"] += cost or 0.0
    c["_costed"] += costed
    c["_reported"] += reported or 0
    if outcome == OK:
        c["succeeded"] += n
    else:
        c["failed"] += n
        c["failures"][outcome] = c["failures"].get(outcome, 0) + n


def _finish(c: dict[str, Any]) -> dict[str, Any]:
    """Cost: reported (every paid reply carried a cost), estimated (some came from the price table), or
    None (a paid reply the table does not price: a sum would understate it)."""
    costed, reported, paid = c.pop("_costed"), c.pop("_reported"), c["succeeded"]
    c["cost_usd"] = round(c["cost_usd"], 6) if costed >= paid else None
    c["cost_is"] = "reported" if paid and reported >= paid else ("estimated" if c["cost_usd"] is not None else "unknown")
    return c


def describe(ledger: dict[str, Any], indent: str = "  ") -> list[str]:
    """Summary lines: one per stage (several stages) and the total."""
    from textbook.teacher.pricing import PRICES_AS_OF

    def line(name: str, c: dict[str, Any]) -> str:
        fails = ", ".join(f"{k} {v:,}" for k, v in sorted(c["failures"].items(), key=lambda kv: -kv[1]))
        if c["cost_is"] == "unknown":
            cost = "cost unknown: the model is not in the price table"
        else:
            cost = f"${c['cost_usd']:,.4f} " + ("as reported" if c["cost_is"] == "reported" else f"estimated (prices as of {PRICES_AS_OF})")
        return (f"{indent}{name}: {c['sent']:,} requests sent ({c['succeeded']:,} answered, {c['retried']:,} retries"
                + (f"; failed: {fails}" if fails else "") + f"), {c['from_cache']:,} from the cache, "
                f"{c['rejected']:,} rejected; {c['prompt_tokens']:,} prompt + {c['completion_tokens']:,} completion tokens, {cost}")

    stages = ledger.get("stages") or {}
    lines = [line(f"teacher {name}", c) for name, c in stages.items()] if len(stages) > 1 else []
    if ledger.get("total"):
        lines.append(line("teacher, all runs into this output", ledger["total"]))
    return lines
