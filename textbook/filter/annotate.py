"""`textbook filter annotate`: a teacher LLM scores a sample of documents 0-5 (labels for training).

The sample is a seeded reservoir over all inputs (memory: n documents, whatever the input size).
Each document is cut to its first ~1,000 characters (FineWeb-Edu), placed between markers the text
cannot contain (any copy of them is removed first), and scored with prompts/edu_score.j2 (or the
phi-1 style edu_score_code.j2); the score is the last `Educational score: N` in the reply.
Labels go to Arrow shards in OUT (one Annotation per document, failures included with their
reason and raw reply); a rerun resumes after the rows already written, and the teacher's response
cache means nothing is paid twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textbook.config import public_dict
from textbook.errors import ConfigError, TextbookError
from textbook.filter.config import AnnotateConfig, FilterRun
from textbook.filter.inputs import expand, open_source
from textbook.filter.table import OutputLayout
from textbook.prompts import Prompts
from textbook.card import write_card
from textbook.report import Report
from textbook.rundir import RunDir
from textbook.shards import ShardWriter, schema_for
from textbook.teacher.cache import CACHE_FILE
from textbook.teacher.ledger import LEDGER_FILE, describe
from textbook.teacher.client import Teacher, TeacherRejected
from textbook.teacher.config import TeacherConfig
from textbook.teacher.failures import nothing_usable

BEGIN, END = "<<<BEGIN EXTRACT>>>", "<<<END EXTRACT>>>"
REPLY_TOKENS = 400  # a short justification and the score
SAME_SCORE_MIN = 30  # this many scores, all equal: the teacher is not reading the documents
_SCORE = re.compile(r"Educational score:\s*\**\s*([0-5])(?!\.?\d)", re.IGNORECASE)


@dataclass(slots=True)
class Annotation:
    id: str
    text: str
    edu_score: int | None  # None when the teacher gave no usable score (see `rejected`)
    prompt: str
    template_sha: str
    model: str
    reply: str  # the teacher's justification and score, kept for audit
    rejected: str | None


def cut(text: str, chars: int) -> str:
    """The first ~chars characters, ending at a word boundary when one is near."""
    if len(text) <= chars:
        return text
    head = text[:chars]
    space = head.rfind(" ", int(chars * 0.9))
    return head[:space] if space > 0 else head


def extract(text: str, chars: int) -> str:
    """What the teacher sees: the cut text with the markers removed, so it cannot end its own block."""
    return cut(text, chars).replace(BEGIN, "").replace(END, "")


def parse_score(reply: str) -> int:
    """The last `Educational score: N` (0-5) in the reply; ValueError when there is none."""
    found = _SCORE.findall(reply or "")
    if not found:
        raise ValueError("no 'Educational score: N' in the reply")
    return int(found[-1])


def sample(files: list[str], config: AnnotateConfig) -> list[tuple[str, str]]:
    """A seeded uniform sample of n (id, text) pairs over every input (reservoir sampling)."""
    rng = random.Random(config.seed)
    sources = [open_source(p) for p in expand(files)]
    layout = OutputLayout.from_sources(sources, FilterRun(text_column=config.text_column, id_column=config.id_column))
    reservoir: list[tuple[str, str]] = []
    seen = 0
    for source in sources:
        offset = 0
        for batch in source.batches(4096, layout.read_columns(source)):
            ids, texts, problems = layout.job(source, batch, offset)
            offset += batch.num_rows
            for doc_id, text, problem in zip(ids, texts, problems):
                if problem or not text or not text.strip():
                    continue
                seen += 1
                if len(reservoir) < config.n:
                    reservoir.append((doc_id, text))
                else:
                    j = rng.randrange(seen)
                    if j < config.n:
                        reservoir[j] = (doc_id, text)
    return reservoir


def _request(template, config: AnnotateConfig, text: str) -> tuple[list[dict], dict[str, Any]]:
    """The messages and the teacher's keyword arguments that score one document (run, batch and preview alike)."""
    messages = [{"role": "user", "content": template.render(text=extract(text, config.chars), begin=BEGIN, end=END)}]
    return messages, {"template_sha": template.sha256, "validate": parse_score, "temperature": 0.0,
                      "max_tokens": REPLY_TOKENS, "stage": "annotate"}


async def _annotate(docs, writer: ShardWriter, config: AnnotateConfig, teacher_cfg: TeacherConfig,
                    prompts: Prompts, cache_path: Path, batch: bool = False) -> dict[str, Any]:
    template = prompts.get(config.prompt)

    def request(text: str) -> tuple[list[dict], dict[str, Any]]:
        return _request(template, config, text)

    async def one(doc):
        doc_id, text = doc
        messages, kwargs = request(text)
        try:
            c = await teacher.complete(messages, **kwargs)
            return Annotation(doc_id, text, parse_score(c.text), config.prompt, template.sha256, c.model, c.text, None)
        except TeacherRejected as exc:
            return Annotation(doc_id, text, None, config.prompt, template.sha256, teacher_cfg.model or "",
                              exc.raw or "", exc.reason)

    ledger = cache_path.with_name(f".{LEDGER_FILE}")  # hidden beside the cache: both sit among the shards
    async with Teacher(teacher_cfg, cache_path=cache_path, ledger_path=ledger, progress_desc="annotate") as teacher:
        await teacher.check()
        if batch:  # first attempts through the Batch API, into the cache the loop below reads
            from textbook.teacher.batch import BatchRun, Pending

            pending = []
            for _, text in docs:
                messages, kwargs = request(text)
                key, body, cached = teacher.first_request(messages, **kwargs)
                if not cached:
                    pending.append(Pending(key, body, "annotate"))
            await BatchRun(teacher, cache_path.with_name(".batch")).run(pending)
        step = 64
        for lo in range(0, len(docs), step):  # checkpoint every `step` documents
            for row in await teacher.map(docs[lo : lo + step], one):
                writer.write(row)
            writer.checkpoint(state={"done": writer.rows})
        return {**teacher.stats.as_dict(), "ledger": teacher.ledger.totals()}


async def _preview(files: list[str], config: AnnotateConfig, teacher_cfg: TeacherConfig, prompts: Prompts) -> Report:
    template = prompts.get(config.prompt)
    docs = sample(files, config)
    async with Teacher(teacher_cfg, cache_path=None, progress=False) as teacher:
        await teacher.check()

        async def one(doc):
            messages, kwargs = _request(template, config, doc[1])
            return await teacher.complete(messages, **kwargs)

        replies = await teacher.map(docs, one)
        sent = teacher.stats.requests
    lines, scores = [], Counter()
    for (doc_id, text), reply in zip(docs, replies):
        rejected = isinstance(reply, TeacherRejected)
        verdict = f"rejected: {reply.reason}" if rejected else f"score {parse_score(reply.text)}"
        scores[verdict] += 1
        said = (reply.raw or reply.detail or "") if rejected else reply.text
        lines += [f"── {doc_id}: {' '.join(text.split())[:160]!r}",
                  *("   │ " + line for line in said.strip().splitlines()[-6:]), f"   verdict: {verdict}"]
    lines.append(f"preview: {len(docs)} documents: " + ", ".join(f"{k} x{v}" for k, v in sorted(scores.items()))
                 + f"; {sent} requests sent, nothing written")
    return Report({"preview": len(docs), "verdicts": dict(scores), "requests": sent}, lines)


def annotate(files: list[str], out: str | Path, config: AnnotateConfig, teacher: TeacherConfig,
             *, prompts_dir: str | Path | None = None, batch: bool = False, preview: int = 0) -> Report:
    """Score a sample of the inputs into `out`; returns counts and the teacher's usage. `batch`: first
    attempts through the Batch API (textbook.teacher.batch). `preview` N: N sampled documents scored and
    shown (text, reply, score or reason), nothing written."""
    if preview:
        return asyncio.run(_preview(files, dataclasses.replace(config, n=preview), teacher, Prompts(prompts_dir)))
    if batch and not teacher.cache:
        raise ConfigError("--batch hands its replies to the run through the response cache: drop --no-cache")
    with RunDir(out) as rundir:
        facts = _annotate_into(files, Path(out), config, teacher, prompts_dir, rundir, batch)
    return Report(facts, summary_lines(facts))


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What `textbook filter annotate` prints at the end."""
    lines = [f"{result['sampled']:,} documents sampled: {result['scored']:,} scored, {result['rejected']:,} rejected",
             "  scores  " + "   ".join(f"{k}: {v:,}" for k, v in result["score_counts"].items())]
    t = result["teacher"]
    if t.get("requests") or t.get("cache_hits"):
        cost = f"${t['cost_usd']:,.4f}" if t["priced"] else "cost unknown: the model is not in the price table"
        lines.append(f"  teacher: {t['requests']:,} requests, {t['cache_hits']:,} cache hits, {t['retries']:,} retries; "
                     f"{t['prompt_tokens']:,} prompt + {t['completion_tokens']:,} completion tokens ({cost})")
    else:
        lines.append("  teacher: nothing asked (every sampled document was already scored; delete the directory to redo it)")
    lines.append(f"labels: {result['out']}  (next: textbook filter train {result['out']} --out MODEL_DIR)")
    return lines + describe(t.get("ledger") or {})


def _annotate_into(files: list[str], out: Path, config: AnnotateConfig, teacher: TeacherConfig,
                   prompts_dir: str | Path | None, rundir: RunDir, batch: bool = False) -> dict[str, Any]:
    prompts = Prompts(prompts_dir)
    prompts.get(config.prompt)  # a missing template fails before the (slow) sampling pass
    docs = sample(files, config)
    sha = prompts.get(config.prompt).sha256
    # What decides the labels: a rerun into `out` resumes only when they match (else rows would mix).
    fingerprint = {"annotate": {k: v for k, v in public_dict(config).items() if k != "cache"}, "model": teacher.model,
                   "prompt_sha": sha, "inputs": [{"path": str(p.resolve()), "bytes": p.stat().st_size} for p in expand(files)]}
    rundir.claim(fingerprint, "labels")
    meta = {"annotate": public_dict(config), "teacher": public_dict(teacher), "prompt_sha": sha}
    writer = ShardWriter(out, schema_for(Annotation), fmt="arrow", max_rows=50_000, meta=meta)
    done = writer.rows
    stats = {}
    if docs[done:]:
        stats = asyncio.run(_annotate(docs[done:], writer, config, teacher, prompts, out / f".{CACHE_FILE}", batch))  # hidden: it sits among the shards
    from textbook.shards import read_table

    table = read_table(out, ["edu_score", "rejected"])
    scores = [s for s in table.column("edu_score").to_pylist() if s is not None]
    totals = {"sampled": len(docs), "scored": len(scores), "rejected": table.num_rows - len(scores),
              "score_counts": {str(k): scores.count(k) for k in range(6)}}
    writer.close(totals=totals, state={"done": writer.rows})
    write_card(out, "Educational-value labels", {"labels": ""},
               about=f"Documents scored 0-5 for educational value by a teacher LLM with the `{config.prompt}` rubric "
                     "(FineWeb-Edu's additive scale), with the teacher's justification; rejected replies keep their reason.",
               tags=["educational-value", "labels"], provenance={**meta, "totals": totals},
               ledger_lines=describe(stats.get("ledger") or {}))
    rundir.finish()
    if len(scores) >= SAME_SCORE_MIN and len(set(scores)) == 1:  # saved above too: nothing is lost
        raise TextbookError(f"the teacher gave all {len(scores):,} scored documents the same score ({scores[0]}): it is not "
                            f"reading them, and these labels would teach a classifier nothing (kept in {out}): use a "
                            "stronger --model, or check the prompt (--prompt / --prompts)")
    if table.num_rows and not scores:  # saved above: the rejects (raw replies) and the cache stay
        reasons = Counter(r or "no_score" for r in table.column("rejected").to_pylist())
        raise nothing_usable(reasons, asked=table.num_rows, what="documents", where=out, fixes={
            "length": f"use a --model that scores within {REPLY_TOKENS} tokens (annotate caps each reply there)"})
    return {"out": str(out), **totals, "teacher": stats}
