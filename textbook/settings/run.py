"""`textbook gen settings`: the whole run, resumable after a kill.

Layout of OUT: settings/ (SettingsSample shards), settings-removed/ (RemovedSample shards with reasons),
settings-report.json and .md, teacher-cache.sqlite (teacher runs), .settings-resume/ (the duplicate-cap table).

Resume: candidates are a deterministic function of the config and their chunk (or teacher batch) index,
and the only other state (the duplicate-cap table and the tally) is saved at each checkpoint, atomically
with the shard manifest. A rerun replays from the last checkpoint and skips the rows the shards already
hold, so the output is the same as an uninterrupted run's. A larger --n on a finished OUT extends it
(the rows already written stay as they are).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from textbook.config import public_dict
from textbook.errors import ConfigError, TextbookError
from textbook.settings.config import SettingsConfig
from textbook.settings.language import DIR as LANGUAGE_DIR
from textbook.settings.pipeline import Chunk, Context, build_context, candidate_chunk, worker_chunk, worker_init
from textbook.settings.records import RemovedSample, SettingsSample
from textbook.settings.report import Tally, write_report
from textbook.settings.config import MAX_CAP
from textbook.settings.sampling import DupCap
from textbook.card import write_card
from textbook.report import Report
from textbook.rundir import RunDir
from textbook.shards import ShardWriter, atomic_write_bytes, read_manifest, schema_for
from textbook.teacher.cache import CACHE_FILE
from textbook.teacher.ledger import LEDGER_FILE, describe
from textbook.teacher.config import TeacherConfig, require_teacher
from textbook.teacher.failures import nothing_usable, top_reasons
from textbook.workers import worker_pool
from textbook.progress import progress_bar

SAMPLES, REMOVED, RESUME = "settings", "settings-removed", ".settings-resume"
SHARD_ROWS = 65_536  # a shard being filled is held in memory: this bounds peak RSS (~250 MB)
TEACHER_CHECKPOINT_S = 30.0  # seconds of teacher batches between checkpoints
JUDGE_MIN_ANSWERS, JUDGE_FIRST_SHARE = 30, 0.8  # a judge past this share of first-candidate answers is degenerate
LOOKAHEAD = 1  # teacher batches asked ahead of the one being taken
STALL_CHUNKS = 64  # chunks in a row without a new row: the catalogue cannot give --n samples under the cap


@dataclass(eq=False)
class SettingsSummary(Report):
    """What `textbook gen settings` prints at the end."""

    out: Path
    totals: dict[str, Any]
    seconds: float
    resumed_from: int
    already_complete: bool = False
    warnings: list[str] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)  # the teacher's usage over every run into OUT

    def facts(self) -> dict[str, Any]:
        return {**self.totals, "out": str(self.out), "seconds": round(self.seconds, 3), "resumed_from": self.resumed_from,
                "already_complete": self.already_complete, "warnings": self.warnings}

    def lines(self) -> list[str]:
        t = self.totals
        if self.already_complete:
            head = f"{self.out / SAMPLES} is already complete ({t['rows']:,} samples): nothing to do"
        else:
            made = t["rows"] - self.resumed_from
            rate = f", {made / self.seconds:,.0f} samples/s" if self.seconds > 0 else ""
            head = f"wrote {t['rows']:,} settings samples to {self.out / SAMPLES} in {self.seconds:.1f}s{rate}"
            if self.resumed_from:
                head += f" (resumed at {self.resumed_from:,})"
        return [
            head,
            *(f"  warning: {w}" for w in self.warnings),
            f"  splits: train {t['train']:,} / validation {t['validation']:,} / test {t['test']:,}; "
            f"{t['settings_covered']} settings covered; teacher rows {t['teacher_rows']:,}",
            f"  noise rate {t['noise_rate']:.1%}; relabelled {t['relabelled']:,}; removed {t['removed']:,} "
            f"(see {self.out / REMOVED}); duplicates capped {t['duplicates_capped']:,}; judge drop rate {t['judge_drop_rate']:.1%}",
            *describe(self.ledger),
            f"  report: {self.out / 'settings-report.md'}",
        ]


def generate_settings(cfg: SettingsConfig, teacher: TeacherConfig | None = None, *,
                      progress: bool | None = None, preview: int = 0, batch: bool = False) -> SettingsSummary | Report:
    """Write cfg.n settings samples to cfg.out (templates; plus teacher paraphrases unless cfg.offline).
    `preview` N: N seeds paraphrased and judged, shown, nothing written (textbook.settings.preview).
    `batch`: paraphrases and judges through the Batch API first (textbook.settings.batch.batch_rounds)."""
    if batch and (teacher is None or not teacher.cache or cfg.offline):
        raise ConfigError("--batch sends the teacher's requests through the Batch API and hands the replies to the "
                          "run through the response cache: it needs a teacher and the cache (no --offline, no --no-cache)")
    use_teacher = not cfg.offline and cfg.teacher_share > 0
    if use_teacher:
        if teacher is None or not teacher.model:
            raise ConfigError("no teacher configured: pass --offline for a template-only dataset, or --model "
                              "(with --base-url / --api-key, or TEXTBOOK_MODEL / OPENAI_BASE_URL / OPENAI_API_KEY)")
        require_teacher(teacher)
    if preview:
        if not use_teacher:
            raise ConfigError("--preview shows what the teacher writes: it needs a teacher (drop --offline)")
        from textbook.settings.preview import preview as run_preview

        return asyncio.run(run_preview(cfg, teacher, preview))
    with RunDir(cfg.out) as rundir:
        return asyncio.run(_generate(cfg, teacher if use_teacher else None, progress, rundir, batch))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _fingerprint(cfg: SettingsConfig, ctx: Context, teacher: TeacherConfig | None, prompt_shas: dict) -> dict[str, Any]:
    """Everything that decides the content (not where it goes, how many processes render it, or --n:
    a larger --n extends a finished run)."""
    config = {k: v for k, v in public_dict(cfg).items()
              if k not in ("n", "out", "workers", "prompts", "catalogue", "checkpoint_chunks", "shard")}
    slice_of = {"n": cfg.n, "shard": cfg.shard} if cfg.shard else {}  # slices of one run: its size is fixed
    parts = {
        **slice_of,
        "config": config,
        "catalogue": _sha(Path(ctx.catalogue.path)),
        "language": [_sha(p) for p in sorted(LANGUAGE_DIR.glob("*.yaml"))],
        # credentials are not content: a rotated password must not make a run unresumable
        "teacher": {"model": teacher.model, "base_url": public_dict(teacher)["base_url"], "temperature": teacher.temperature}
        if teacher else None,
        "prompts": prompt_shas,
    }
    return parts


class _Sink:
    """Takes chunks in order: caps duplicates, skips rows the shards already hold, tallies, writes."""

    def __init__(self, writer: ShardWriter, removed: ShardWriter, tally: Tally, cap: DupCap, skip: int, skip_removed: int):
        self.writer, self.removed, self.tally, self.cap = writer, removed, tally, cap
        self.skip, self.skip_removed = skip, skip_removed
        self.schema = writer.schema

    def take(self, chunk: Chunk, limit: int) -> int:
        cols, admit = chunk.cols, self.cap.admit
        accepted: list[int] = []
        cutoff = chunk.n
        self.tally.judge_picks.update(chunk.judge_picks)
        for i, key in enumerate(chunk.keys):
            if len(accepted) >= limit:
                cutoff = chunk.pos[i]
                break
            if admit(key):
                accepted.append(i)
            else:
                self.tally.capped += 1
        if len(accepted) == len(chunk.keys):
            data, relabelled = cols, chunk.relabelled
        else:
            data = {c: [v[i] for i in accepted] for c, v in cols.items()}
            relabelled = [chunk.relabelled[i] for i in accepted]
        self.tally.add_rows(data, relabelled)  # rows the shards already hold count too: they are replayed
        skipped = min(self.skip, len(accepted))
        self.skip -= skipped
        if skipped < len(accepted):
            if skipped:
                data = {c: v[skipped:] for c, v in data.items()}
            self.writer.write_batch(pa.table({f.name: pa.array(data[f.name], type=f.type) for f in self.schema}))
        for row in chunk.removed:
            if row["pos"] >= cutoff:
                break
            self.tally.add_removed(row["reason"], row["source"])
            if self.skip_removed:
                self.skip_removed -= 1
            else:
                self.removed.write({k: v for k, v in row.items() if k != "pos"})
        return len(accepted)


def _stalled(rows: int, cap: int) -> str:
    """What to do when no more samples fit under the duplicate cap (which cannot go above MAX_CAP)."""
    more = (f"raise max_duplicates in [settings] of textbook.toml (at most {MAX_CAP})" if cap < MAX_CAP
            else f"add settings or phrasings to the catalogue (max_duplicates is at its limit, {MAX_CAP})")
    return f"only {rows:,} samples fit under the duplicate cap of {cap}: lower --n, or {more}"


def _workers(cfg: SettingsConfig, remaining: int) -> int:
    """Worker processes: as configured, or (0 = auto) one per spare core, up to 4, when there is enough work.
    The main process needs a core of its own for capping and writing: on 2 cores one process is faster
    (measured: 25.7k vs 20.3k samples/s at 1M)."""
    if cfg.workers:
        return cfg.workers
    cores = os.cpu_count() or 1
    return 1 if remaining < 100_000 or cores < 4 else min(4, cores - 1)


def _template_chunks(ctx: Context, start: int, workers: int) -> Iterator[Chunk]:
    if workers <= 1:
        k = start
        while True:
            yield candidate_chunk(ctx, k)
            k += 1
    # fork: children inherit the imports; spawn would re-run `python -m textbook` in each child.
    with worker_pool(workers, worker_init, ctx.cfg) as pool:
        window = deque(pool.apply_async(worker_chunk, (k,)) for k in range(start, start + 2 * workers))
        k = start + len(window)
        while True:
            chunk = window.popleft().get()
            window.append(pool.apply_async(worker_chunk, (k,)))
            k += 1
            yield chunk


async def _generate(cfg: SettingsConfig, teacher_cfg: TeacherConfig | None, progress: bool | None,
                    rundir: RunDir, batch: bool = False) -> SettingsSummary:
    started = time.monotonic()
    out = Path(cfg.out)
    ctx = build_context(cfg)
    prompts = None
    prompt_shas: dict[str, str] = {}
    if teacher_cfg is not None:
        from textbook.prompts import Prompts
        from textbook.settings import judge, paraphrase

        prompts = Prompts(cfg.prompts)
        prompt_shas = {name: prompts.get(name).sha256 for name in (paraphrase.TEMPLATE, judge.TEMPLATE)}
    parts = _fingerprint(cfg, ctx, teacher_cfg, prompt_shas)
    fp = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    samples_dir, removed_dir = out / SAMPLES, out / REMOVED
    old = read_manifest(samples_dir)
    if old is not None and not rundir.path.is_file() and old.get("fingerprint") != fp:  # a run from before run.json
        raise TextbookError(f"{samples_dir} was made with a different config, catalogue or teacher: "
                            "write to a new --out, or delete it to start over")
    rundir.claim(parts, "a settings dataset")
    if old is not None and old.get("complete") and old["rows"] >= cfg.target:
        return SettingsSummary(out, old["totals"], 0.0, old["rows"], already_complete=True)
    meta = {"fingerprint": fp, "config": public_dict(cfg),
            "catalogue": {"name": ctx.catalogue.name, "path": ctx.catalogue.path, "settings": len(ctx.catalogue)},
            "record": "textbook.settings.records.SettingsSample"}
    writer = ShardWriter(samples_dir, schema_for(SettingsSample), fmt=cfg.format, max_rows=SHARD_ROWS, meta=meta)
    removed = ShardWriter(removed_dir, schema_for(RemovedSample), fmt=cfg.format, max_rows=SHARD_ROWS, meta=meta)
    st = writer.state or {"phase": "teacher" if teacher_cfg else "template", "batch": 0, "chunk": 0, "rows": 0,
                          "removed_rows": 0, "sketch": None, "tally": {}, "ledger": {}}
    tally = Tally(st["tally"])
    if st["phase"] == "done":  # a larger --n extends a finished run
        more_teacher = teacher_cfg is not None and tally.source.get("teacher", 0) < round(cfg.target * cfg.teacher_share)
        st["phase"] = "teacher" if more_teacher else "template"
    resume_dir = out / RESUME
    resume_dir.mkdir(parents=True, exist_ok=True)
    sketch = resume_dir / st["sketch"] if st["sketch"] else None
    if sketch is not None and not sketch.is_file():
        raise TextbookError(f"{resume_dir} lost {st['sketch']}, which resuming needs: delete {out} to start over")
    cap = DupCap(cfg.max_duplicates, data=sketch.read_bytes() if sketch else None)
    if writer.rows < st["rows"] or removed.rows < st["removed_rows"]:
        raise TextbookError(f"{out} holds fewer rows than its manifest's resume state: delete {out} to start over")
    sink = _Sink(writer, removed, tally, cap, writer.rows - st["rows"], removed.rows - st["removed_rows"])
    resumed_from = st["rows"]

    def checkpoint(phase: str, batch: int, chunk: int) -> None:
        removed.checkpoint()
        name = f"dupcap-{phase}-{batch}-{chunk}.bin"
        atomic_write_bytes(resume_dir / name, cap.to_bytes())
        st.update(phase=phase, batch=batch, chunk=chunk, rows=tally.rows, removed_rows=sum(tally.removed.values()),
                  sketch=name, tally=tally.state())
        writer.checkpoint(dict(st))
        for old_file in resume_dir.glob("dupcap-*.bin"):
            if old_file.name != name:
                old_file.unlink()

    bar = progress_bar(cfg.target, initial=min(tally.rows, cfg.target), unit="samples", desc="settings", show=progress)
    try:
        if st["phase"] == "teacher":
            await _teacher_phase(ctx, teacher_cfg, prompts, out, sink, st, checkpoint, bar, batch)
        k = st["chunk"]
        chunks = _template_chunks(ctx, k, _workers(cfg, cfg.target - tally.rows))
        stalled = 0
        try:
            while tally.rows < cfg.target:
                before = tally.rows
                sink.take(next(chunks), cfg.target - tally.rows)
                k += 1
                bar.update(tally.rows - before)
                stalled = stalled + 1 if tally.rows == before else 0
                if stalled >= STALL_CHUNKS:
                    raise TextbookError(_stalled(tally.rows, cfg.max_duplicates))
                if k % cfg.checkpoint_chunks == 0:
                    checkpoint("template", st["batch"], k)
        finally:
            chunks.close()
    except BaseException:
        bar.close()
        raise
    bar.close()
    report_meta = {"config": public_dict(cfg), "catalogue": meta["catalogue"], "teacher": st.get("ledger") or {}}
    write_report(out, tally, report_meta)
    checkpoint("done", st["batch"], k)  # kept so a larger --n can extend this run
    totals = tally.summary()
    removed.close(totals=dict(tally.removed))
    writer.close(totals=totals)
    write_card(out, f"Settings-agent requests ({meta['catalogue'].get('name', 'catalogue')})", {SAMPLES: SAMPLES, REMOVED: REMOVED},
               about="Requests typed into an OS settings search box, each labelled with the settings function call it "
                     "asks for (the Mu settings-agent recipe): seed grammar over a catalogue, teacher paraphrases checked "
                     "by a judge, noise injection, smart sampling; split train/validation/test by seed.",
               tags=["synthetic", "settings-agent", "function-calling"], provenance={**report_meta, "totals": totals},
               ledger_lines=describe(st.get("ledger") or {}))
    rundir.finish(rows=tally.rows)
    warnings = [st["teacher_warning"]] if st.get("teacher_warning") else []
    warnings += _judge_warning(tally) + ([st["batch_note"]] if st.get("batch_note") else [])
    return SettingsSummary(out, totals, time.monotonic() - started, resumed_from, warnings=warnings,
                           ledger=st.get("ledger") or {})


def _judge_warning(tally: Tally) -> list[str]:
    """A judge that names the first of its shuffled candidates most of the time is not reading them (a small
    model does this): its verdicts are noise. Reported, since its drops cost rows but its keeps are still
    rows whose label the seed grammar made."""
    from textbook.settings.judge import SHORTLIST

    first, n = tally.judge_picks.get("first", 0), sum(tally.judge_picks.values())
    if n < JUDGE_MIN_ANSWERS or first < JUDGE_FIRST_SHARE * n:
        return []
    return [f"the judge named the first of its shuffled candidates in {first / n:.0%} of {n:,} answers (by chance: "
            f"~{1 / SHORTLIST:.0%}): it is not reading them; use a stronger --model, or pass --no-judge"]


async def _teacher_phase(ctx, teacher_cfg, prompts, out: Path, sink: _Sink, st: dict, checkpoint, bar,
                         batch: bool = False) -> None:
    from textbook.settings.batch import batch_rounds, chunks_needed, teacher_chunk
    from textbook.teacher.batch import BATCH_DIR
    from textbook.teacher.client import Teacher

    cfg, tally = ctx.cfg, sink.tally
    goal = round(cfg.target * cfg.teacher_share)
    b, saved = st["batch"], time.monotonic()
    first, capped, made_before = b, tally.capped, tally.source.get("teacher", 0)
    async with Teacher(teacher_cfg, cache_path=out / CACHE_FILE, ledger_path=out / LEDGER_FILE, progress=False) as teacher:
        await teacher.check()
        batched_until, batched = b, Counter()  # --batch: teacher batches whose first attempts went through the Batch API
        # Each item's paraphrase and judge run one after the other, items concurrently; the next batch
        # starts before this one's slowest items are back (LOOKAHEAD), so the teacher's slots never drain
        # at a batch boundary. Batches are still taken in order: the dataset is the same.
        ahead: deque[asyncio.Task] = deque()
        launched = b
        try:
            while tally.source.get("teacher", 0) < goal:
                while len(ahead) <= LOOKAHEAD:
                    if batch and launched >= batched_until:  # the next round: sized by this run's yield so far
                        made_here = tally.source.get("teacher", 0) - made_before
                        count = chunks_needed(cfg, goal - tally.source.get("teacher", 0), made_here / (b - first) if b > first else None)
                        batched.update(await batch_rounds(ctx, teacher, prompts, launched, count, out / BATCH_DIR))
                        batched_until = launched + count
                        st["batch_note"] = (f"batch: {batched['submitted']:,} requests submitted, {batched['answered']:,} "
                                            f"answered at half price, {batched['errors']:,} left to the online path")
                    ahead.append(asyncio.ensure_future(teacher_chunk(ctx, teacher, prompts, launched)))
                    launched += 1
                before = tally.rows
                chunk = await ahead.popleft()
                sink.take(chunk, goal - tally.source.get("teacher", 0))
                b += 1
                bar.update(tally.rows - before)
                # kept in the checkpoint state, so a resume does not restart the count
                st["teacher_empty"] = st.get("teacher_empty", 0) + 1 if tally.rows == before else 0
                if st["teacher_empty"] >= 3:  # the teacher stopped giving anything usable
                    break
                # Each checkpoint rewrites the shard being filled; replies are cached, so redoing a few batches
                # after a kill costs nothing but time.
                if time.monotonic() - saved >= TEACHER_CHECKPOINT_S:
                    st["ledger"] = teacher.ledger.totals()  # every run into OUT, not this process's
                    checkpoint("teacher", b, st["chunk"])
                    saved = time.monotonic()
        finally:  # a batch asked ahead and not needed: its replies are cached for a larger --n
            for task in ahead:
                task.cancel()
            await asyncio.gather(*ahead, return_exceptions=True)
            st["ledger"] = teacher.ledger.totals()
    made = tally.source.get("teacher", 0)
    reasons = {**tally.teacher_removed, "duplicates_capped": tally.capped - capped}
    if made == 0 and b > first:
        # Not a template-only dataset in disguise: stop, with everything saved (a rerun resumes here).
        checkpoint("teacher", b, st["chunk"])
        degenerate = _judge_warning(tally)
        if degenerate:  # the likeliest cause, named: the judge, not the paraphrases
            raise TextbookError(f"the teacher gave nothing usable: {degenerate[0]}")
        raise nothing_usable(reasons, asked=sum(reasons.values()), what="teacher samples", where=out / REMOVED)
    # Some, not all: templates fill the rest, and the summary says so.
    st["teacher_warning"] = (f"the teacher gave {made:,} of {goal:,} planned paraphrases ({top_reasons(reasons)}); "
                             "templates filled the rest") if made < goal else None
    checkpoint("template", b, st["chunk"])
