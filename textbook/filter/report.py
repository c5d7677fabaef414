"""The run's report: DIR/report.json (machine-readable), DIR/report.md (readable), DIR/scores.png.

Counts per stage and reason, the edu_score histogram, seconds and docs/s per stage, and the check
that kept + removed = input.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textbook import __version__
from textbook.filter.dedup import CLASSIFIER, EXACT, HEURISTICS, INPUT, KEPT, NEAR, STAGES, Decisions
from textbook.shards import atomic_write_bytes, atomic_write_json, read_manifest

BINS = np.linspace(0.0, 5.0, 21)


@dataclass
class Tally:
    """What the report counts, summed over rows: made from one Decisions (the local engine's, or a row
    range's under --engine ray) and added up across ranges in row order."""

    rows: int
    stages: list[int]  # documents per stage code (KEPT..CLASSIFIER)
    reasons: dict[str, Counter]  # stage name -> reason -> documents
    histogram: list[int]  # edu_score counts per BINS bin
    scored: int
    score_sum: float
    at_or_above: int
    clusters_with_duplicates: int
    renamed: int
    first_renamed: list[str]

    @classmethod
    def of(cls, decisions: Decisions, threshold: float) -> "Tally":
        stage = decisions.stage
        by_stage: dict[str, Counter] = {STAGES[s]: Counter() for s in range(1, len(STAGES))}
        for s in (INPUT, HEURISTICS):
            reasons = decisions.reason.filter(pa.array(stage == s))
            for item in pc.value_counts(reasons).to_pylist():
                # counted by reason, not by where: `invalid_json:<file>:<line>` is one reason however many lines
                by_stage[STAGES[s]][item["values"].split(":", 1)[0]] += item["counts"]
        by_stage["exact_dedup"]["exact_duplicate_of"] = int((stage == EXACT).sum())
        by_stage["near_dedup"]["near_duplicate_of"] = int((stage == NEAR).sum())
        by_stage["classifier"]["edu_below_threshold"] = int((stage == CLASSIFIER).sum())
        scored = decisions.score[~np.isnan(decisions.score)]
        counts, _ = np.histogram(np.clip(scored, 0, 5), bins=BINS)
        return cls(len(stage), np.bincount(stage, minlength=len(STAGES)).tolist(),
                   {k: Counter({r: c for r, c in v.items() if c}) for k, v in by_stage.items()}, counts.tolist(),
                   len(scored), float(scored.astype(np.float64).sum()), int((scored >= threshold).sum()),
                   int((decisions.duplicates > 0).sum()), len(decisions.renamed),
                   [decisions.ids[r].as_py() for r in decisions.renamed[:3].tolist()])

    @classmethod
    def total(cls, tallies: list["Tally"]) -> "Tally":
        reasons: dict[str, Counter] = {}
        for t in tallies:
            for k, v in t.reasons.items():
                reasons.setdefault(k, Counter()).update(v)
        return cls(sum(t.rows for t in tallies), np.sum([t.stages for t in tallies], axis=0).tolist(), reasons,
                   np.sum([t.histogram for t in tallies], axis=0).tolist(), sum(t.scored for t in tallies),
                   sum(t.score_sum for t in tallies), sum(t.at_or_above for t in tallies),
                   sum(t.clusters_with_duplicates for t in tallies), sum(t.renamed for t in tallies),
                   [name for t in tallies for name in t.first_renamed][:3])


def _plot(path: Path, counts: np.ndarray, threshold: float) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.bar(BINS[:-1], counts, width=np.diff(BINS), align="edge", color="#4878a8", edgecolor="white")
    ax.axvline(threshold, color="#c03030", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel("edu_score")
    ax.set_ylabel("documents")
    ax.set_title("edu_score of documents that reached the classifier")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_report(out: Path, plan, tally: Tally, worker_s: dict[str, float],
                 timings: dict[str, float], threshold: float, classifier) -> dict[str, Any]:
    n = tally.rows
    kept = tally.stages[KEPT]
    reasons = tally.reasons
    kept_rows = read_manifest(out / "kept")["rows"]
    removed_rows = read_manifest(out / "removed")["rows"]
    reached = {"heuristics": n - tally.stages[INPUT]}
    reached["dedup"] = reached["heuristics"] - tally.stages[HEURISTICS]
    reached["classifier"] = reached["dedup"]
    wall = timings.get("total", 0.0)

    def rate(docs, seconds):
        return round(docs / seconds, 1) if seconds > 0 else None

    stages = {
        "read (pass 1)": {"seconds": timings.get("read", 0.0), "docs": n},
        "tokenise": {"seconds": worker_s.get("tokens", 0.0), "docs": reached["heuristics"]},
        "heuristics": {"seconds": worker_s.get("heuristics", 0.0), "docs": reached["heuristics"]},
        **{f"  step {k[5:]}": {"seconds": v, "docs": int(worker_s.get(f"docs.{k[5:]}", 0))}
           for k, v in worker_s.items() if k.startswith("step.")},
        "minhash + text hashes": {"seconds": worker_s.get("minhash", 0.0), "docs": reached["dedup"]},
        "classifier": {"seconds": worker_s.get("classifier", 0.0), "docs": reached["classifier"]},
        "dedup decisions": {"seconds": timings.get("decide", 0.0), "docs": reached["dedup"]},
        "write (pass 2)": {"seconds": timings.get("write", 0.0), "docs": n},
    }
    for v in stages.values():
        v["docs_per_s"] = rate(v["docs"], v["seconds"])
        v["seconds"] = round(v["seconds"], 3)
    report = {
        "producer": f"textbook {__version__}",
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "out": {"kept": str(out / "kept"), "removed": str(out / "removed")},
        "inputs": [{"path": str(s.path), "rows": s.rows} for s in plan.sources],
        "rows": n,
        "kept": kept,
        "removed": n - kept,
        "kept_plus_removed_equals_input": kept_rows + removed_rows == n and kept_rows == kept,
        "removed_by_stage": {k: sum(v.values()) for k, v in reasons.items()},
        "reasons": {k: dict(v.most_common()) for k, v in reasons.items() if v},
        "ids_renamed": {"rows": tally.renamed, "first": tally.first_renamed},
        "dedup": {"clusters_with_duplicates": tally.clusters_with_duplicates,
                  "documents_removed": tally.stages[EXACT] + tally.stages[NEAR]},
        "edu_score": {
            "threshold": threshold, "scored": tally.scored,
            "mean": round(tally.score_sum / tally.scored, 4) if tally.scored else None,
            "at_or_above_threshold": tally.at_or_above,
            "histogram": {"edges": [round(float(e), 2) for e in BINS], "counts": tally.histogram},
            "classifier": (classifier.meta.get("name") or "custom") if classifier else None,
        },
        "timing": {"wall_seconds": round(wall, 2), "docs_per_s": rate(n, wall),
                   "pass1_wall_seconds": round(timings.get("pass1_wall", 0.0), 2), "workers_note":
                   "stage seconds are summed over worker processes; docs/s per stage is per worker-second",
                   "stages": stages},
        "config": plan.fingerprint["config"],
    }
    atomic_write_json(out / "report.json", report)
    _plot(out / "scores.png", np.array(tally.histogram), threshold)
    atomic_write_bytes(out / "report.md", render_markdown(report).encode("utf-8"))
    return report


def render_markdown(r: dict[str, Any]) -> str:
    lines = [
        "# textbook filter report", "",
        f"{r['rows']:,} documents in, **{r['kept']:,} kept**, {r['removed']:,} removed "
        f"(kept + removed = input: {'yes' if r['kept_plus_removed_equals_input'] else 'NO'}).",
        f"Wall time {r['timing']['wall_seconds']} s, {r['timing']['docs_per_s']} docs/s.", "",
        *([f"{r['ids_renamed']['rows']:,} rows repeated an earlier row's id and were kept under a new one "
           f"(ID@FILE#ROW, e.g. {', '.join(r['ids_renamed']['first'])}).", ""] if r["ids_renamed"]["rows"] else []),
        "## Removed, by stage and reason", "", "| stage | reason | documents |", "|---|---|---:|",
    ]
    for stage, reasons in r["reasons"].items():
        for reason, count in reasons.items():
            lines.append(f"| {stage} | {reason} | {count:,} |")
    e = r["edu_score"]
    lines += ["", "## edu_score", "",
              f"{e['scored']:,} documents scored, mean {e['mean']}, {e['at_or_above_threshold']:,} at or above "
              f"the threshold {e['threshold']:g}. Histogram: scores.png.", "", "| bin | documents |", "|---|---:|"]
    edges, counts = e["histogram"]["edges"], e["histogram"]["counts"]
    for lo, hi, c in zip(edges[:-1], edges[1:], counts):
        lines.append(f"| {lo:.2f}-{hi:.2f} | {c:,} |")
    lines += ["", "## Time per stage", "", "| stage | seconds | documents | docs/s |", "|---|---:|---:|---:|"]
    for name, s in r["timing"]["stages"].items():
        lines.append(f"| {name} | {s['seconds']} | {s['docs']:,} | {s['docs_per_s']} |")
    lines += ["", "Stage seconds of analysis are summed over worker processes.", ""]
    return "\n".join(lines)


def summary_lines(report: dict[str, Any], out: Path) -> list[str]:
    """What `textbook filter` prints at the end."""
    lines = [f"{report['rows']:,} documents: {report['kept']:,} kept, {report['removed']:,} removed"
             + (" (already complete; delete the directory to redo it)" if report.get("resumed") else "")]
    for stage, count in report["removed_by_stage"].items():
        if count:
            top = ", ".join(f"{r} {c:,}" for r, c in list(report["reasons"].get(stage, {}).items())[:4])
            lines.append(f"  {stage:<12} -{count:,}  ({top})")
    renamed = report.get("ids_renamed", {}).get("rows", 0)
    if renamed:
        lines.append(f"  note: {renamed:,} rows repeated an earlier row's id: kept as ID@FILE#ROW "
                     f"(e.g. {report['ids_renamed']['first'][0]})")
    t = report["timing"]
    lines.append(f"{t['wall_seconds']} s, {t['docs_per_s']} docs/s")
    lines.append(f"kept: {out / 'kept'}  removed: {out / 'removed'}  report: {out / 'report.md'}")
    return lines
