"""`textbook filter score FILES --out DIR`: every input row with its edu_score, nothing dropped.

For users who choose their own threshold, or mix data by score (FineWeb-Edu's int_score, Nemotron-CC's
buckets): the input's columns as they are, plus `edu_score` (0-5, float) and `edu_model` (the classifier's
name). A row whose text is missing or not text keeps its place with a null score. Resumable like every
command: a rerun continues after the last checkpoint, with no row twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textbook.card import write_card
from textbook.config import public_dict
from textbook.errors import TextbookError
from textbook.filter.classifier import load_classifier
from textbook.filter.config import ScoreConfig
from textbook.filter.inputs import PROBLEM, expand, open_source
from textbook.progress import progress_bar
from textbook.report import Report
from textbook.rundir import RunDir
from textbook.shards import ShardWriter, read_table

SCORED = "scored"
EDU_SCORE, EDU_MODEL = "edu_score", "edu_model"


def score_files(files: list[str], out: str | Path, cfg: ScoreConfig = ScoreConfig()) -> Report:
    from textbook.filter.run import content_sample

    out = Path(out)
    paths = [p for p in expand(files) if not p.resolve().is_relative_to(out.resolve())]
    if not paths:
        raise TextbookError("no input files: pass Parquet, JSONL or Arrow files, directories or globs")
    sources = [open_source(p) for p in paths]
    for source in sources:
        if cfg.text_column not in source.schema.names:
            raise TextbookError(f"{source.path} has no column {cfg.text_column!r} (it has {', '.join(source.schema.names)}): "
                                "pass --text-column")
    classifier = load_classifier(cfg.classifier)
    name = str(classifier.meta.get("name") or "custom")
    try:
        columns = pa.unify_schemas([pa.schema([f for f in s.schema if f.name != PROBLEM]) for s in sources],
                                   promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TextbookError(f"the inputs' columns do not agree ({exc}): score files of one layout per run") from None
    for taken in (EDU_SCORE, EDU_MODEL):
        if taken in columns.names:
            raise TextbookError(f"the input already has a column {taken!r}: rename it, or score the original data")
    schema = columns.append(pa.field(EDU_SCORE, pa.float32())).append(pa.field(EDU_MODEL, pa.string()))
    fingerprint = {"inputs": [{"path": str(s.path.resolve()), "bytes": s.path.stat().st_size, "rows": s.rows,
                               "sample": content_sample(s.path)} for s in sources],
                   "classifier": classifier.meta.get("weights_sha256"), "text_column": cfg.text_column}
    with RunDir(out) as rundir:
        rundir.claim(fingerprint, "scores")
        writer = ShardWriter(out / SCORED, schema, fmt=cfg.format, meta={"config": public_dict(cfg), "classifier": name})
        totals = _score(sources, writer, cfg, classifier, name, schema)
        card = write_card(out, "Documents with their educational-value score", {SCORED: SCORED},
                          about=f"Every input row with `edu_score` (0-5) from the `{name}` classifier; nothing dropped.",
                          tags=["educational-value"], provenance={"classifier": name, **fingerprint, "totals": totals})
        rundir.finish()
    lines = [f"{totals['rows']:,} documents scored with {name}: mean {totals['mean']}, "
             f"{totals['at_or_above_3']:,} at or above 3, {totals['unscored']:,} without text (null score)",
             "  " + "  ".join(f"[{k}] {v:,}" for k, v in totals["histogram"].items()),
             f"scored: {out / SCORED}  card: {card}"]
    return Report({"out": str(out), **totals}, lines)


def _score(sources, writer: ShardWriter, cfg: ScoreConfig, classifier, name: str, schema: pa.Schema) -> dict[str, Any]:
    done = int(writer.state.get("row", 0))
    total = sum(s.rows for s in sources)
    bar = progress_bar(total, initial=done, desc="score", unit="doc")
    offset, since = 0, 0
    for source in sources:
        if offset + source.rows <= done:
            offset += source.rows
            continue
        for batch in source.batches(cfg.batch_size):
            n = batch.num_rows
            if offset + n <= done:
                offset += n
                continue
            batch = batch.slice(max(done - offset, 0))
            text = batch.column(cfg.text_column)
            ok = pc.fill_null(pc.is_valid(text), False) if pa.types.is_string(text.type) else pa.repeat(False, len(batch))
            if PROBLEM in batch.schema.names:  # a JSONL line that was not usable: no text to score
                ok = pc.and_(ok, pc.is_null(batch.column(PROBLEM)))
            ok_np = ok.to_numpy(zero_copy_only=False).astype(bool)
            scores = np.full(len(batch), np.nan, dtype=np.float32)
            if ok_np.any():
                scores[ok_np] = classifier.score(text.filter(ok).to_pylist())
            cols = {f.name: (batch.column(f.name).cast(f.type) if f.name in batch.schema.names else pa.nulls(len(batch), f.type))
                    for f in schema if f.name not in (EDU_SCORE, EDU_MODEL)}
            cols[EDU_SCORE] = pa.array(scores, pa.float32(), mask=~ok_np)
            cols[EDU_MODEL] = pa.array([name] * len(batch), pa.string())
            writer.write_batch(pa.table(cols, schema=schema))
            offset += n
            since += len(batch)
            bar.update(len(batch))
            if since >= cfg.checkpoint_rows:
                writer.checkpoint(state={"row": offset})
                since = 0
    bar.close()
    writer.checkpoint(state={"row": offset})
    values = read_table(writer.directory, [EDU_SCORE]).column(EDU_SCORE).to_numpy(zero_copy_only=False)
    scored = values[~np.isnan(values)]
    edges = [0, 1, 2, 3, 4, 5]
    hist = {f"{a}-{b}": int(((scored >= a) & ((scored < b) if b < 5 else (scored <= b))).sum()) for a, b in zip(edges, edges[1:])}
    totals = {"rows": int(len(values)), "scored": int(len(scored)), "unscored": int(len(values) - len(scored)),
              "mean": round(float(scored.mean()), 3) if len(scored) else None,
              "at_or_above_3": int((scored >= 3).sum()), "histogram": hist}
    writer.close(totals=totals, state={"row": offset})
    return totals
