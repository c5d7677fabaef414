"""What a settings run made: samples per setting, action, style, split and source, noise, drops and their reasons.

The tally is part of the resume state (it is replayed with the rows), lands in the shard manifest's
totals and in OUT/settings-report.json and OUT/settings-report.md.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from textbook.shards import atomic_write_bytes, atomic_write_json

_TABLES = ("setting", "action", "style", "split", "source", "noise_op", "removed", "teacher_removed", "judge_picks")


class Tally:
    def __init__(self, state: dict | None = None):
        state = state or {}
        for name in _TABLES:
            setattr(self, name, Counter(state.get(name, {})))
        self.rows = int(state.get("rows", 0))
        self.noised = int(state.get("noised", 0))
        self.relabelled = int(state.get("relabelled", 0))
        self.capped = int(state.get("capped", 0))
        self.teacher_paraphrases = int(state.get("teacher_paraphrases", 0))

    def add_rows(self, cols: dict[str, list], relabelled: list[bool]) -> None:
        """Count a batch of rows (columns as lists): Counter.update counts in C."""
        self.rows += len(cols["action"])
        self.setting.update("none" if sid is None else sid for sid in cols["id"])
        self.action.update(cols["action"])
        self.style.update(cols["style"])
        self.split.update(cols["split"])
        self.source.update(cols["source"])
        noised = [ops for ops in cols["noise_ops"] if ops]
        self.noised += len(noised)
        self.noise_op.update(op for ops in noised for op in ops)
        self.relabelled += sum(relabelled)
        self.teacher_paraphrases += cols["source"].count("teacher")

    def add_removed(self, reason: str, source: str) -> None:
        self.removed[reason] += 1
        if source == "teacher":
            self.teacher_removed[reason] += 1

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: dict(getattr(self, name)) for name in _TABLES}
        out.update(rows=self.rows, noised=self.noised, relabelled=self.relabelled, capped=self.capped,
                   teacher_paraphrases=self.teacher_paraphrases)
        return out

    def summary(self) -> dict[str, Any]:
        """Headline numbers (the manifest's totals and the CLI summary)."""
        judged = self.teacher_paraphrases + sum(v for k, v in self.teacher_removed.items() if k.startswith("judge_"))
        judge_drops = sum(v for k, v in self.teacher_removed.items() if k.startswith("judge_"))
        return {
            "rows": self.rows,
            "settings_covered": sum(1 for k in self.setting if k != "none"),
            "noise_rate": round(self.noised / self.rows, 4) if self.rows else 0.0,
            "relabelled": self.relabelled,
            "removed": sum(self.removed.values()),
            "duplicates_capped": self.capped,
            "teacher_rows": self.source.get("teacher", 0),
            "judge_drop_rate": round(judge_drops / judged, 4) if judged else 0.0,
            "train": self.split.get("train", 0),
            "validation": self.split.get("validation", 0),
            "test": self.split.get("test", 0),
        }


def write_report(out: Path, tally: Tally, meta: dict[str, Any]) -> dict[str, Any]:
    report = {"summary": tally.summary(), **meta, **tally.state()}
    atomic_write_json(out / "settings-report.json", report)
    atomic_write_bytes(out / "settings-report.md", _markdown(report).encode())
    return report


def _table(title: str, counts: dict[str, int], total: int, limit: int = 0) -> list[str]:
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = rows[:limit] if limit else rows
    lines = [f"### {title}", "", "| | count | share |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:,} | {v / total:.2%} |" for k, v in shown] if total else []
    if limit and len(rows) > limit:
        lines.append(f"| ... {len(rows) - limit} more (all in settings-report.json) | | |")
    return lines + [""]


def _markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    total = s["rows"]
    lines = ["# textbook gen settings: report", ""]
    lines += [f"- {k.replace('_', ' ')}: {v:,}" if isinstance(v, int) else f"- {k.replace('_', ' ')}: {v}" for k, v in s.items()]
    lines.append("")
    for title, key, limit in (("Actions", "action", 0), ("Styles", "style", 0), ("Splits", "split", 0),
                              ("Sources", "source", 0), ("Settings (most sampled)", "setting", 40)):
        lines += _table(title, report[key], total, limit)
    noised = sum(report["noise_op"].values())
    lines += _table("Noise operations (share of all operations)", report["noise_op"], noised)
    removed = sum(report["removed"].values())
    lines += _table("Removed (share of removed)", report["removed"], removed)
    least = sorted(report["setting"].items(), key=lambda kv: kv[1])[:15]
    lines += ["### Least sampled settings", ""] + [f"- {k}: {v:,}" for k, v in least] + [""]
    return "\n".join(lines)
