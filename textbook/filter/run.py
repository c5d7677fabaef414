"""`textbook filter`: heuristics -> exact + near dedup -> classifier, over files of any size.

Two passes over the input, so memory holds a few fixed-size numbers per document, never texts:
  1. analyse (analyse.py, in worker processes): reasons, text hashes, band keys, scores, saved as
     small Arrow parts under DIR/.work/pass1 (a killed run skips the parts it already has);
  2. decide (dedup.py) from those parts alone, then read the input again and write every row to
     DIR/kept or DIR/removed (shards.ShardWriter, which resumes from its manifest).
Then DIR/report.json, report.md and the score histogram. kept + removed = input, always.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from textbook import __version__
from textbook.errors import TextbookError
from textbook.filter.analyse import TIMERS, Analyser, analyse_all, part_name, part_schema, write_part
from textbook.filter.classifier import EduClassifier, load_classifier
from textbook.filter.config import FilterRun, Preset, describe
from textbook.filter.dedup import Decisions, decide
from textbook.filter.inputs import Source, expand, open_source
from textbook.filter.report import Tally, summary_lines, write_report
from textbook.filter.table import OutputLayout
from textbook.card import write_card
from textbook.report import Report
from textbook.rundir import RunDir
from textbook.shards import ShardWriter, atomic_write_json
from textbook.progress import progress_bar



@dataclass
class Plan:
    """What a run reads and how; its fingerprint goes to DIR/run.json (rundir.RunDir): a rerun must match it."""

    sources: list[Source]
    layout: OutputLayout
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.sources)

    def origins(self, rows: np.ndarray) -> list[str]:
        """`file#row` (the row within its file) for global input row numbers."""
        starts = np.cumsum([0] + [s.rows for s in self.sources])
        which = np.searchsorted(starts, rows, side="right") - 1
        return [f"{self.layout.names[str(self.sources[w].path)]}#{r - starts[w]}" for w, r in zip(which.tolist(), rows.tolist())]


def make_plan(inputs: list[str], run: FilterRun, preset: Preset, classifier: EduClassifier | None,
              out: Path | None = None) -> Plan:
    files = expand(inputs)
    if out is not None:  # --out inside an input directory: a rerun must not read its own output as input
        own = out.resolve()
        files = [f for f in files if not f.resolve().is_relative_to(own)]
    if not files:
        raise TextbookError("no input files: pass Parquet, JSONL or Arrow files, directories or globs")
    sources = [open_source(f) for f in files]
    # a JSONL file without lines has no columns to check or keep: it adds nothing
    sources = [s for s in sources if s.rows or s.kind != "jsonl"]
    if not sources:
        raise TextbookError(f"no rows in {', '.join(map(str, files))}: nothing to filter")
    layout = OutputLayout.from_sources(sources, run)
    config = describe(run, preset)
    for key in ("workers", "shard_bytes", "checkpoint_rows", "engine", "ray_address"):  # how, not what: a rerun may change them
        config["run"].pop(key)
    fingerprint = {
        "version": __version__,
        "inputs": [{"path": str(s.path.resolve()), "bytes": s.path.stat().st_size, "rows": s.rows,
                    "sample": content_sample(s.path)} for s in sources],
        "config": config,
        "classifier": classifier.meta.get("weights_sha256") if classifier else None,
    }
    return Plan(sources, layout, fingerprint)


def content_sample(path: Path, pieces: int = 8, size: int = 1 << 16) -> str:
    """xxh3 of `pieces` evenly spaced 64 KiB pieces of a file (all of it up to 512 KiB): whether a rerun
    reads the same bytes, at a cost that does not grow with the file. Not the mtime: touching or
    copying an input must not block a resume."""
    import xxhash

    digest = xxhash.xxh3_64()
    total = path.stat().st_size
    with path.open("rb") as fh:
        if total <= pieces * size:
            digest.update(fh.read())
        else:
            for i in range(pieces):
                fh.seek((total - size) * i // (pieces - 1))
                digest.update(fh.read(size))
    return digest.hexdigest()


# -- pass 1 -------------------------------------------------------------------------------------------
def _jobs(plan: Plan, run: FilterRun, parts: Path, timings: dict) -> Iterator[tuple[Path, tuple]]:
    """(part path, job) for every input batch whose part is not on disk yet."""
    for fi, source in enumerate(plan.sources):
        cols = plan.layout.read_columns(source)
        offset = 0
        for bi, batch in enumerate(source.batches(run.batch_size, cols)):
            part = parts / part_name(fi, bi)
            if not part.exists():
                t = time.perf_counter()
                job = plan.layout.job(source, batch, offset)
                timings["read"] += time.perf_counter() - t
                yield part, job
            offset += batch.num_rows


def _part_rows(path: Path) -> int:
    return _part_meta(path)[0]


def pass1(plan: Plan, run: FilterRun, preset: Preset, classifier: EduClassifier | None, work: Path,
          ray=None, cpus: int = 1) -> dict:
    parts = work / "pass1"
    parts.mkdir(parents=True, exist_ok=True)
    timings = {"read": 0.0}
    done = sum(_part_rows(p) for p in parts.glob("part-*.arrow"))
    analyser = Analyser(preset, run, classifier)
    bar = progress_bar(plan.rows, desc="analyse", unit="doc")
    bar.update(done)
    t0 = time.perf_counter()
    if ray is not None:  # the tasks read their own input and write their own parts
        from textbook.filter.cluster import analyse_on_ray

        for rows, read_s in analyse_on_ray(ray, analyser, plan.sources, plan.layout, run.batch_size, parts, cpus):
            timings["read"] += read_s
            bar.update(rows)
    else:
        jobs = _jobs(plan, run, parts, timings)
        paths: list[Path] = []

        def job_stream():
            for path, job in jobs:
                paths.append(path)
                yield job

        for batch, timers in analyse_all(analyser, job_stream(), run.workers):
            write_part(paths.pop(0), batch, timers)
            bar.update(batch.num_rows)
    bar.close()
    timings["pass1_wall"] = time.perf_counter() - t0
    return timings


def load_parts(work: Path, bands: int, perms: int = 0) -> tuple[pa.Table, dict[str, float]]:
    """All pass-1 parts in input order, and the summed worker seconds per stage."""
    tables, timers = [], dict.fromkeys(TIMERS, 0.0)
    for path in sorted((work / "pass1").glob("part-*.arrow")):
        table = pa.ipc.open_file(pa.py_buffer(path.read_bytes())).read_all()  # no file handle stays open
        for k, v in (table.schema.metadata or {}).items():  # the stage timers and each step's
            timers[k.decode()] = timers.get(k.decode(), 0.0) + float(v)
        tables.append(table.replace_schema_metadata(None))
    if not tables:
        return part_schema(bands, perms).empty_table(), timers
    return pa.concat_tables(tables), timers


# -- pass 2 -------------------------------------------------------------------------------------------
def pass2(plan: Plan, run: FilterRun, decisions: Decisions, out: Path, meta: dict) -> dict:
    layout = plan.layout
    # the shard being filled stays in memory until it is sealed: 32 MB shards keep that small
    sizes = {"max_rows": 100_000, "max_bytes": run.shard_bytes}
    kept = ShardWriter(out / "kept", layout.kept_schema, fmt=run.format, meta=meta, **sizes)
    removed = ShardWriter(out / "removed", layout.removed_schema, fmt=run.format, meta=meta, **sizes)
    start = {"kept": int(kept.state.get("row", 0)), "removed": int(removed.state.get("row", 0))}
    begin = min(start.values())
    bar = progress_bar(plan.rows, desc="write", unit="doc")
    bar.update(begin)
    t0 = time.perf_counter()
    offset, since = 0, 0
    for source in plan.sources:
        if offset + source.rows <= begin:
            offset += source.rows
            continue
        file_start = offset
        for batch in source.batches(run.batch_size):
            n = batch.num_rows
            if offset + n <= begin:
                offset += n
                continue
            lo = max(begin - offset, 0)
            rows = np.arange(offset + lo, offset + n)
            full = layout.output_batch(source, batch.slice(lo), offset + lo - file_start, rows, decisions)
            is_kept = decisions.stage[rows] == 0
            for name, writer, mask, schema in (("kept", kept, is_kept, layout.kept_schema),
                                               ("removed", removed, ~is_kept, layout.removed_schema)):
                mask = mask & (rows >= start[name])
                if mask.any():
                    writer.write_batch(full.filter(pa.array(mask)).select(schema.names))
            offset += n
            since += n - lo
            bar.update(n - lo)
            if since >= run.checkpoint_rows:
                kept.checkpoint(state={"row": offset})
                removed.checkpoint(state={"row": offset})
                since = 0
    bar.close()
    totals_k = {"rows": int((decisions.stage == 0).sum())}
    totals_r = {"rows": int((decisions.stage != 0).sum())}
    kept.close(totals=totals_k, state={"row": offset})
    removed.close(totals=totals_r, state={"row": offset})
    return {"write": time.perf_counter() - t0}


def _on_this_machine(plan: Plan, run: FilterRun, preset: Preset, classifier, work: Path, out: Path, threshold: float,
                     meta: dict) -> tuple[Tally, dict, dict]:
    timings = pass1(plan, run, preset, classifier, work)
    t = time.perf_counter()
    d = preset.dedup
    parts, worker_s = load_parts(work, d.bands, d.bands * d.rows if d.verify > 0 else 0)
    if parts.num_rows != plan.rows:
        raise TextbookError(f"pass 1 holds {parts.num_rows} rows for {plan.rows} input rows: delete {work} and rerun")
    decisions = decide(parts, preset, threshold, plan.origins)
    if len(decisions.renamed) and not pa.types.is_string(plan.layout.kept_schema.field(plan.layout.id).type):
        plan.layout = plan.layout.with_text_ids()
    timings["decide"] = time.perf_counter() - t
    timings.update(pass2(plan, run, decisions, out, meta))
    return Tally.of(decisions, threshold), worker_s, timings


def _on_ray(plan: Plan, run: FilterRun, preset: Preset, classifier, work: Path, out: Path, threshold: float,
            meta: dict) -> tuple[Tally, dict, dict]:
    """The same steps as Ray tasks (filter/cluster.py): the driver holds one number per part, no row data."""
    from textbook.filter.cluster import ray_session, write_on_ray
    from textbook.filter.spread import Part, decide_on_ray

    with ray_session(run.ray_address, run.workers) as (ray, cpus):
        timings = pass1(plan, run, preset, classifier, work, ray, cpus)
        t = time.perf_counter()
        parts, worker_s, start = [], dict.fromkeys(TIMERS, 0.0), 0
        for path in sorted((work / "pass1").glob("part-*.arrow")):
            rows, timers = _part_meta(path)
            parts.append(Part(str(path), start, rows))
            start += rows
            for k, v in timers.items():
                worker_s[k] = worker_s.get(k, 0.0) + v
        if start != plan.rows:
            raise TextbookError(f"pass 1 holds {start} rows for {plan.rows} input rows: delete {work} and rerun")
        starts = np.cumsum([0] + [s.rows for s in plan.sources])[:-1]
        files = [(int(a), plan.layout.names[str(s.path)]) for a, s in zip(starts, plan.sources)]
        tally = decide_on_ray(ray, parts, preset, threshold, files, cpus)
        if tally.renamed and not pa.types.is_string(plan.layout.kept_schema.field(plan.layout.id).type):
            plan.layout = plan.layout.with_text_ids()
        timings["decide"] = time.perf_counter() - t
        timings.update(write_on_ray(ray, plan.sources, plan.layout, parts, out, work, run.format, run.shard_bytes,
                                    run.batch_size, meta, cpus))
    return tally, worker_s, timings


def _part_meta(path: Path) -> tuple[int, dict[str, float]]:
    """A pass-1 part's rows and stage timers, from its footer (no column is read)."""
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        meta = reader.schema.metadata or {}
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    return rows, {k.decode(): float(v) for k, v in meta.items()}


def run_filter(inputs: list[str], out: str | Path, run: FilterRun, preset: Preset) -> Report:
    """Filter `inputs` into `out`; returns the report (also written to out/report.json)."""
    with RunDir(out) as rundir:
        facts = _run_filter(inputs, Path(out), run, preset, rundir)
    return Report(facts, summary_lines(facts, Path(out)))


def _run_filter(inputs: list[str], out: Path, run: FilterRun, preset: Preset, rundir: RunDir) -> dict[str, Any]:
    t_start = time.perf_counter()
    classifier = load_classifier(run.classifier) if preset.classifier.enabled else None
    plan = make_plan(inputs, run, preset, classifier, out)
    work = out / ".work"
    legacy = work / "plan.json"  # where runs before RunDir kept their fingerprint
    if legacy.is_file() and not rundir.path.is_file():
        atomic_write_json(rundir.path, {"fingerprint": json.loads(legacy.read_text(encoding="utf-8")),
                                        "complete": (out / "report.json").is_file()})
    if rundir.claim(plan.fingerprint) and (out / "report.json").is_file():
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        report["resumed"] = "already complete"
        return report
    work.mkdir(parents=True, exist_ok=True)
    threshold = run.threshold if run.threshold is not None else preset.classifier.threshold
    meta = {"config": plan.fingerprint["config"], "inputs": plan.fingerprint["inputs"], "producer": f"textbook {__version__}"}
    if run.engine == "ray":
        tally, worker_s, timings = _on_ray(plan, run, preset, classifier, work, out, threshold, meta)
    else:
        tally, worker_s, timings = _on_this_machine(plan, run, preset, classifier, work, out, threshold, meta)
    timings["total"] = time.perf_counter() - t_start
    report = write_report(out, plan, tally, worker_s, timings, threshold, classifier)
    write_card(out, "Filtered web text", {"kept": "kept", "removed": "removed"},
               about="Web documents kept by textbook filter (heuristics, exact and MinHash near-duplicate removal, an "
                     "educational-value classifier); every removed document is in `removed`, with its stage and reason.",
               tags=["web", "filtered"], provenance={**meta, "kept": report["kept"], "removed": report["removed"],
                                                     "removed_by_stage": report["removed_by_stage"]})
    rundir.finish()
    shutil.rmtree(work, ignore_errors=True)  # done: run.json marks the run complete, report.json holds its result
    return report

