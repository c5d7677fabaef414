"""One teacher batch: seeds -> paraphrases (with the setting's metadata) -> judge -> labelled candidates.

Deterministic in (seed, batch index) apart from the teacher's replies, which the response cache replays,
so a killed run resumes by replaying the batch from the cache at no cost.
"""

from __future__ import annotations

import asyncio
import json
import random

from textbook.contract import format_target
from textbook.prompts import Prompts
from textbook.settings import judge, paraphrase
from textbook.settings.language import A
from textbook.settings.pipeline import Chunk, Context, emit
from textbook.teacher.client import Teacher, TeacherRejected

EXPECTED_KEEP = 0.5  # share of asked paraphrases a batch keeps (judge, dedup): sizes the Batch API rounds


async def teacher_chunk(ctx: Context, teacher: Teacher, prompts: Prompts, b: int) -> Chunk:
    cfg, settings = ctx.cfg, ctx.catalogue.settings
    g = cfg.chunk(b)  # run-wide: slices of a --shard run ask disjoint batches
    rng = random.Random(f"{cfg.seed}:teacher:{g}")
    jobs = []
    for j in range(cfg.teacher_batch):
        seed = ctx.bank.draw(rng, ctx.chooser.pick(rng))
        if seed is not None:
            jobs.append((seed, paraphrase.styles_for(cfg.paraphrases, g * cfg.teacher_batch + j),
                         random.Random(f"{cfg.seed}:judge:{g}:{j}")))
    para_sha = prompts.get(paraphrase.TEMPLATE).sha256
    judge_sha = prompts.get(judge.TEMPLATE).sha256

    async def work(job):
        seed, styles, jrng = job
        s = settings[seed.setting]
        messages = paraphrase.render(prompts, s, seed=seed.text, action=seed.action, value=seed.value, styles=styles)
        prompt = messages[-1]["content"]
        reply = await teacher.complete(messages, template_sha=para_sha, json_schema=paraphrase.schema(styles),
                                       validate=lambda obj: paraphrase.parse(obj, styles, prompt), stage="paraphrase")
        pairs = paraphrase.parse(reply.parsed, styles, prompt)
        if not cfg.judge:
            return (pairs, []), [(None, None)] * len(pairs)
        candidates = judge.shortlist(ctx.catalogue, seed.setting, ctx.groups[seed.setting], jrng)
        try:
            verdict = await teacher.complete(judge.render(prompts, candidates, [t for _, t in pairs]),
                                             template_sha=judge_sha, json_schema=judge.schema(len(pairs), [c.id for c in candidates]),
                                             temperature=0.0, stage="judge",
                                             validate=lambda obj: judge.parse(obj, len(pairs)))
        except TeacherRejected as exc:  # no verdict, no label check: these paraphrases cannot be trusted
            failed = {"judge_reply": (exc.raw or exc.detail or "")[:2000]}  # the verdict the checks refused, kept
            return (pairs, []), [(f"judge_failed_{exc.reason}", failed)] * len(pairs)
        answers = judge.parse(verdict.parsed, len(pairs))
        picks = [a.get("id") for a in answers.values() if a.get("id") != "none"]
        positions = ["first" if p == candidates[0].id else "other" for p in picks]
        return (pairs, positions), [(judge.disagreement(answers.get(k), s.id, seed.action, seed.value), answers.get(k))
                       for k in range(len(pairs))]

    results = await teacher.map(jobs, work)
    out = Chunk()
    noise_rng = random.Random(f"{cfg.seed}:teacher-noise:{g}")
    for (seed, _, _), result in zip(jobs, results):
        s = settings[seed.setting]
        target = format_target(seed.action, s.id, seed.value)
        if isinstance(result, TeacherRejected):
            out.drop(f"paraphrase_failed_{result.reason}", query="", clean=seed.text, target=target, source="teacher",
                     style="", detail=(result.raw or result.detail or "")[:2000])
            continue
        (pairs, positions), verdicts = result
        out.judge_picks.update(positions)
        for (style, text), (reason, answer) in zip(pairs, verdicts):
            if reason:
                out.drop(reason, query=text, clean=text, target=target, source="teacher", style=style,
                         detail=json.dumps(answer, ensure_ascii=False) if answer else "")
                continue
            tokens = text.split()
            emit(ctx, noise_rng, out, tokens=tokens, kinds=[ctx.lexicon.kind(t, A) for t in tokens], action=seed.action,
                 index=seed.setting, value=seed.value, style=style, source="teacher", group=seed.text)
    return out


class _Collector:
    """A teacher stand-in for the Batch API rounds: a request the cache can answer is answered (through the
    real teacher), any other is collected as a Pending first attempt and rejected as `deferred`."""

    def __init__(self, teacher: Teacher):
        self.teacher, self.pending = teacher, []

    async def complete(self, messages, **kwargs):
        from textbook.teacher.batch import Pending

        key, body, cached = self.teacher.first_request(messages, **kwargs)
        if cached:
            return await self.teacher.complete(messages, **kwargs)
        self.pending.append(Pending(key, body, kwargs.get("stage", "teacher")))
        raise TeacherRejected("deferred")

    async def map(self, jobs, fn):
        async def one(job):
            try:
                return await fn(job)
            except TeacherRejected as exc:
                return exc

        return await asyncio.gather(*(one(job) for job in jobs))


def chunks_needed(cfg, remaining: int, per_chunk: float | None) -> int:
    """Teacher batches that likely give `remaining` samples: at the yield seen so far in this run, else at
    EXPECTED_KEEP of the paraphrases asked; one more for the batch the run asks ahead."""
    per_chunk = per_chunk or cfg.teacher_batch * cfg.paraphrases * EXPECTED_KEEP
    return max(1, -(-remaining // max(1, int(per_chunk)))) + 1


async def batch_rounds(ctx: Context, teacher: Teacher, prompts: Prompts, first: int, count: int, directory) -> dict[str, int]:
    """--batch: the paraphrases, then the judges, of teacher batches first..first+count-1 through the Batch
    API into the cache (two rounds: a judge reads its paraphrases). The run then takes them from the cache;
    only re-asks go online. Each round has its own state directory, so a killed run resumes its polling."""
    from textbook.teacher.batch import BatchRun

    counts: dict[str, int] = {}
    for name in ("paraphrase", "judge") if ctx.cfg.judge else ("paraphrase",):
        collector = _Collector(teacher)
        for b in range(first, first + count):
            await teacher_chunk(ctx, collector, prompts, b)
        done = await BatchRun(teacher, directory / f"{first:06d}-{name}").run(collector.pending)
        counts = {k: counts.get(k, 0) + v for k, v in done.items()}
    return counts
