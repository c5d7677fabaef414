"""`textbook gen`: topics -> plan -> teacher -> parse -> verify -> dedup -> Arrow shards, resumable.

Resume is exact because every row (kept or rejected) carries its plan id: a rerun reads the plan
ids already in DIR/<kind>/ and DIR/<kind>-rejects/ (only rows a manifest vouches for), rebuilds the
plan (deterministic), and asks only for the rest. Rows written after the last checkpoint are lost
on a kill, but their replies sit in the teacher's cache, so asking again costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from textbook.config import public_dict
from textbook.errors import ConfigError, TextbookError
from textbook.gen import exercise, sandbox, section
from textbook.gen.config import GenConfig
from textbook.gen.dryrun import DryRunSummary, dry_run
from textbook.gen.plan import Axes, PlanItem, build_plan, load_vocabulary, plan_sha
from textbook.gen.records import ROWS, RejectRow
from textbook.gen.report import GenSummary, count_output
from textbook.gen.request import ParseError, Rendered
from textbook.gen.sink import Sink
from textbook.gen.topics import bundled_topics, expand_topics, leaves, load_topics, save_topics
from textbook.prompts import Prompts
from textbook.card import write_card
from textbook.report import Report
from textbook.rundir import RunDir
from textbook.teacher.cache import CACHE_FILE
from textbook.teacher.ledger import LEDGER_FILE, describe
from textbook.teacher.config import TeacherConfig, require_teacher
from textbook.teacher.failures import nothing_usable

TOPICS_FILE = "topics.json"


def generate(
    gen: GenConfig,
    teacher: TeacherConfig,
    *,
    out: str | Path,
    topics_file: str | Path | None = None,
    dry: bool = False,
    progress: bool | None = None,
    confirm: Callable[[str], bool] | None = None,
    preview: int = 0,
    batch: bool = False,
) -> GenSummary | DryRunSummary | Report:
    """Run (or with `dry`, only render) the plan into `out`. `confirm(estimate)` may veto a paid run.
    `preview` N: the first N items sent, checked and shown instead, nothing written (textbook.gen.preview).
    `batch`: first attempts through the Batch API (textbook.teacher.batch), the rest online."""
    if batch and not teacher.cache:
        raise ConfigError("--batch hands its replies to the run through the response cache: drop --no-cache")
    if preview:
        from textbook.gen.preview import preview as run_preview

        require_teacher(teacher)
        return asyncio.run(run_preview(gen, teacher, Prompts(gen.prompts), load_vocabulary(gen.prompts), preview,
                                       Path(out), topics_file))
    with RunDir(out) as rundir:
        return _start(gen, teacher, Path(out), topics_file, dry, progress, confirm, rundir, batch)


def _start(gen: GenConfig, teacher: TeacherConfig, out: Path, topics_file: str | Path | None, dry: bool,
           progress: bool | None, confirm: Callable[[str], bool] | None, rundir: RunDir,
           batch: bool = False) -> GenSummary | DryRunSummary:
    prompts = Prompts(gen.prompts)
    vocabulary = load_vocabulary(gen.prompts)
    if dry:
        tree, note = _offline_topics(gen, out, topics_file)
        save_topics(out / TOPICS_FILE, tree)
        plan = _plan(gen, tree, vocabulary)
        return dry_run(gen, teacher, prompts, out=out, plan=plan, topics_note=note)
    require_teacher(teacher)
    return asyncio.run(_generate(gen, teacher, out, topics_file, prompts, vocabulary, progress, confirm, rundir, batch))


def _offline_topics(gen: GenConfig, out: Path, topics_file: str | Path | None) -> tuple[dict, str]:
    tree, note = _known_topics(gen, out, topics_file)
    if tree is None:
        tree = bundled_topics(gen.topic, gen.prompts)
        if tree is None:
            raise TextbookError(
                f"no topic tree for {gen.topic!r} without a teacher: pass --topics FILE (a topics.json), "
                "or run without --dry-run so the teacher expands the topic"
            )
        note = f"bundled tree for {gen.topic!r} ({len(leaves(tree))} leaves); a real run into this --out uses it too"
    return tree, note


def _known_topics(gen: GenConfig, out: Path, topics_file: str | Path | None) -> tuple[dict | None, str]:
    """--topics FILE wins; else the tree an earlier run saved in DIR (resume, or a user's edit of it)."""
    if topics_file is not None:
        tree = load_topics(topics_file)
        return tree, f"{topics_file} ({len(leaves(tree))} leaves)"
    saved = out / TOPICS_FILE
    if saved.is_file():
        tree = load_topics(saved)
        if tree["topic"].strip().lower() != gen.topic.strip().lower():
            raise TextbookError(
                f"{saved} is about {tree['topic']!r}, not {gen.topic!r}: use another --out, "
                f"or pass --topics {saved} to keep generating from it"
            )
        return tree, f"{saved} from an earlier run ({len(leaves(tree))} leaves)"
    return None, ""


def _axes(gen: GenConfig) -> Axes:
    return Axes(gen.audiences, gen.styles, gen.difficulties, gen.words_per_prompt)


def _plan(gen: GenConfig, tree: dict, vocabulary: dict) -> list[PlanItem]:
    """The seeded plan, or with --shard I/N its slice: the items whose plan_id % N == I. Item i depends only
    on i, so N machines planning the same tree get disjoint slices of one plan (`textbook shards merge`)."""
    items = build_plan(tree, n=gen.n, seed=gen.seed, axes=_axes(gen), vocabulary=vocabulary, function_names=gen.kind == "exercises")
    i, n = gen.slice
    return items if n == 1 else [item for item in items if item.plan_id % n == i]


@contextlib.contextmanager
def _frozen_heap():
    """The plan, tables and modules live for the whole run: frozen, the cyclic GC stops re-scanning them,
    which otherwise stalls the event loop ~100 ms per full collection (all replies wait). A process that
    froze objects of its own (a server, a notebook) manages its GC itself: then nothing is touched, since
    unfreezing would release its objects too."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _Run:
    """One generation run: turns each plan item into a row or a reject and hands it to the sink."""

    def __init__(self, gen: GenConfig, teacher_cfg: TeacherConfig, teacher: Any, prompts: Prompts, out: Path | None):
        self.gen, self.teacher_cfg, self.teacher, self.prompts = gen, teacher_cfg, teacher, prompts
        self.module = section if gen.kind == "textbook" else exercise
        self.row_cls = ROWS[gen.kind]
        meta = {"kind": gen.kind, "config": {"gen": public_dict(gen), "teacher": public_dict(teacher_cfg)}}
        self.sink = Sink(gen, self.row_cls, out, meta, teacher.stats) if out is not None else None  # None: a preview
        self.limits = sandbox.Limits(gen.exec_timeout_s, gen.exec_cpu_s, gen.exec_memory_mb)
        self.exec_workers = gen.exec_workers or os.cpu_count() or 1
        self.exec_slots = asyncio.Semaphore(self.exec_workers)

    def resume(self) -> set[int]:
        return self.sink.resume(["text"] if self.module is section else ["prompt", "solution"])

    def _fields(self, item: PlanItem, request: Rendered, reply: Any) -> dict[str, Any]:
        return dict(
            plan_id=item.plan_id, topic=item.topic, topic_path=list(item.topic_path), audience=item.audience,
            style=item.style, difficulty=item.difficulty, words=list(item.words), function_name=item.function_name,
            template=request.template, template_sha=request.template_sha, prompt_sha=request.prompt_sha,
            model=reply.model if reply is not None else self.teacher_cfg.model,
            sampling=json.dumps(reply.params if reply is not None else self._params(item), sort_keys=True),
            prompt_tokens=reply.usage.prompt_tokens if reply is not None else 0,
            completion_tokens=reply.usage.completion_tokens if reply is not None else 0,
            cached=reply.cached if reply is not None else False,
            latency_s=round(reply.latency_s, 4) if reply is not None else 0.0,
            created_at=_now(),
        )

    def _params(self, item: PlanItem) -> dict[str, Any]:
        cfg = self.teacher_cfg
        return {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens, "seed": item.seed}

    def _reject(self, item, request, reply, reason: str, detail: str, raw: str | None, spent=None) -> RejectRow:
        fields = self._fields(item, request, reply)
        if spent is not None:  # every attempt was refused: the row still says what they cost and how the last was sent
            fields.update(prompt_tokens=spent.usage.prompt_tokens, completion_tokens=spent.usage.completion_tokens)
            if spent.params:
                fields["sampling"] = json.dumps(spent.params, sort_keys=True)
        return RejectRow(**fields, reason=reason, detail=detail, raw=raw or "")

    async def process(self, item: PlanItem) -> None:
        self.sink.put(*await self.outcome(item))

    def request(self, item: PlanItem) -> tuple[Rendered, dict[str, Any]]:
        """The rendered prompt and the teacher's keyword arguments for one plan item."""
        request = self.module.render(self.prompts, item)
        kwargs: dict[str, Any] = {"template_sha": request.template_sha, "seed": item.seed, "stage": self.gen.kind}
        if self.module is exercise:
            kwargs["json_schema"] = exercise.SCHEMA
            kwargs["validate"] = lambda value: exercise.parse(value, item.function_name)
        return request, kwargs

    async def submit_batch(self, todo: list[PlanItem], out: Path) -> dict[str, int]:
        """--batch: the first attempt of every item not yet answered goes through the Batch API into the cache."""
        from textbook.teacher.batch import BATCH_DIR, BatchRun, Pending

        pending = []
        for item in todo:
            request, kwargs = self.request(item)
            key, body, cached = self.teacher.first_request(request.messages, **kwargs)
            if not cached:
                pending.append(Pending(key, body, self.gen.kind))
        return await BatchRun(self.teacher, out / BATCH_DIR).run(pending)

    async def outcome(self, item: PlanItem) -> tuple[Any, str | None, str]:
        """The row (with the text it is deduplicated on and the raw reply) or the reject the plan item becomes."""
        from textbook.teacher.client import TeacherRejected

        request, kwargs = self.request(item)
        try:
            reply = await self.teacher.complete(request.messages, **kwargs)
        except TeacherRejected as exc:
            # parse_* reasons are our own validator's (the teacher kept failing it); others are the teacher's
            reason = exc.reason if exc.reason.startswith("parse_") else f"teacher_{exc.reason}"
            return self._reject(item, request, None, reason, exc.detail or str(exc), exc.raw, exc), None, ""
        try:
            if self.module is section:
                text = section.parse(reply.text)
                return self.row_cls(**self._fields(item, request, reply), text=text), text, reply.text
            ex = exercise.parse(reply.parsed, item.function_name)
        except ParseError as exc:
            return self._reject(item, request, reply, exc.reason, str(exc), reply.text), None, ""
        async with self.exec_slots:
            outcome = await sandbox.run_code(exercise.program(ex), self.limits)
        if not outcome.ok:
            return self._reject(item, request, reply, f"exec_{outcome.reason}", outcome.detail, reply.text), None, ""
        row = self.row_cls(**self._fields(item, request, reply), prompt=ex.prompt, solution=ex.solution, tests=ex.tests,
                           run_s=round(outcome.seconds, 4))
        return row, f"{ex.prompt}\n{ex.solution}", reply.text

    async def run(self, todo: list[PlanItem]) -> None:
        items = iter(todo)

        async def worker() -> None:
            for item in items:  # one shared iterator: each item goes to exactly one worker
                await self.process(item)

        # The teacher bounds requests in flight; twice as many workers keep its slots full while others
        # parse, write or sit in the sandbox.
        n_workers = min(len(todo), 2 * self.teacher_cfg.concurrency + (self.exec_workers if self.module is exercise else 0))
        tasks = [asyncio.create_task(worker()) for _ in range(max(1, n_workers))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.sink.checkpoint()  # whatever happened, what was done stays done
            self.sink.close_bar()


def _fingerprint(gen: GenConfig, teacher_cfg: TeacherConfig, tree: dict, vocabulary: dict, template_sha: str) -> dict:
    """What decides a gen output's rows: a rerun resumes only when it matches (--n aside: a larger one
    extends the plan), so rows of two plans or two teachers never mix in one output."""
    slice_of = {"n": gen.n, "shard": gen.shard} if gen.shard else {}  # slices of one plan: its size is fixed
    return {**slice_of, "kind": gen.kind, "topic": gen.topic, "seed": gen.seed, "audiences": list(gen.audiences),
            "styles": list(gen.styles), "difficulties": list(gen.difficulties), "words_per_prompt": gen.words_per_prompt,
            "template_sha": template_sha, "topics": hashlib.sha256(json.dumps(leaves(tree)).encode()).hexdigest()[:16],
            "model": teacher_cfg.model,
            # all of it (the vocabulary too) in one hash; the fields above say in words what changed
            "plan": plan_sha(tree, seed=gen.seed, axes=_axes(gen), vocabulary=vocabulary, extra=[gen.kind, template_sha])}


async def _generate(gen, teacher_cfg, out, topics_file, prompts, vocabulary, progress, confirm, rundir,
                    batch_mode: bool = False) -> GenSummary:
    from textbook.teacher.client import Teacher

    start = time.perf_counter()
    cache_path = out / CACHE_FILE if teacher_cfg.cache else None
    # The teacher's own bar stays off: the run's bar counts rows and shows the teacher's counters.
    async with Teacher(teacher_cfg, cache_path=cache_path, ledger_path=out / LEDGER_FILE, progress=False) as teacher:
        await teacher.check()
        tree, _ = _known_topics(gen, out, topics_file)
        if tree is None and gen.shard:  # every slice must plan from one tree: not one the teacher writes anew
            tree = bundled_topics(gen.topic, gen.prompts)
            if tree is None:
                raise ConfigError("--shard: every slice must plan from the same topic tree: pass --topics FILE (the "
                                  "topics.json of an earlier run, or one you write)")
        if tree is None:
            tree = await expand_topics(teacher, prompts, gen.topic, depth=gen.depth, breadth=gen.breadth)
        save_topics(out / TOPICS_FILE, tree)
        plan = _plan(gen, tree, vocabulary)
        run = _Run(gen, teacher_cfg, teacher, prompts, out)
        rundir.claim(_fingerprint(gen, teacher_cfg, tree, vocabulary, prompts.get(run.module.TEMPLATE).sha256), "a gen output")
        done = run.resume()
        if len(done) > gen.n:
            raise TextbookError(f"{out} already holds {len(done):,} planned rows, more than --n {gen.n:,}: pass --n {len(done)} or more, or a new --out")
        todo = [item for item in plan if item.plan_id not in done]
        if todo and confirm is not None and not confirm(f"{len(todo):,} requests to {teacher_cfg.model} ({len(done):,} already done)"):
            raise TextbookError("cancelled: nothing was generated")
        batch = await run.submit_batch(todo, out) if batch_mode and todo else None
        run.sink.open_bar(len(plan), len(done), progress)
        with _frozen_heap():
            await run.run(todo)
        this_run = teacher.stats.as_dict()
        ledger = teacher.ledger.totals()
        context = teacher.server.context
    sink = run.sink
    rows, rejected, prompt_tokens, completion_tokens, cost = count_output(
        sink.kept_dir, sink.rejects_dir, teacher_cfg.model, teacher_cfg.price_file
    )
    summary = GenSummary(
        gen.kind, len(plan), rows, rejected, prompt_tokens, completion_tokens, cost, time.perf_counter() - start, this_run,
        paths={"rows": str(sink.kept_dir), "rejects": str(sink.rejects_dir), "topics": str(out / TOPICS_FILE)},
        ledger=ledger, notes=list(teacher.notes),
    )
    if gen.kind == "exercises":
        summary.notes.append(f"sandbox: {sandbox.isolation()}")
    if batch:
        summary.notes.append(f"batch: {batch['submitted']:,} requests submitted, {batch['answered']:,} answered through "
                             f"{batch['batches']} batch(es) at half price, {batch['errors']:,} left to the online path")
    sink.close(summary.totals())
    totals = {k: v for k, v in summary.totals().items() if k != "ledger"}
    write_card(out, f"Synthetic {gen.kind} about {gen.topic}", {gen.kind: gen.kind, f"{gen.kind}-rejects": f"{gen.kind}-rejects"},
               about=f"Synthetic {gen.kind} written by a teacher LLM in the manner of phi-1 (\"Textbooks Are All You Need\"): "
                     "a seeded plan crosses a topic tree with audiences, styles, difficulties and random words; every row "
                     "passed its checks" + (" and its tests ran in a sandbox." if gen.kind == "exercises" else "."),
               tags=["synthetic", gen.kind, "phi"], ledger_lines=describe(ledger),
               provenance={"gen": public_dict(gen), "teacher": public_dict(teacher_cfg),
                           "template": {run.module.TEMPLATE: prompts.get(run.module.TEMPLATE).sha256}, "totals": totals})
    rundir.finish()
    if summary.rows == 0 and rejected:  # saved above: the rejects (raw replies) and the cache stay
        fixes = {"length": f"the teacher's slots hold {context} tokens, prompt and reply: give its server more context "
                           "per slot (llama.cpp: a larger -c, or fewer --parallel slots), or use a --model that answers "
                           "more briefly"} if context else None
        raise nothing_usable(rejected, asked=summary.planned, what="planned rows", where=sink.rejects_dir, fixes=fixes)
    return summary
