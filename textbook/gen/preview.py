"""`textbook gen --preview N`: the first N plan items rendered, sent, parsed and verified, shown, nothing written.

What a user runs before paying for 100,000 calls: does the template say what I mean, does this teacher
answer in the shape the checks want, what would be kept and why would the rest be rejected. Nothing is
cached or written (no lock, no shards, no ledger): a preview costs N requests (and their re-asks) every time.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from textbook.gen.config import GenConfig
from textbook.gen.records import RejectRow
from textbook.gen.topics import bundled_topics, expand_topics, leaves
from textbook.prompts import Prompts
from textbook.report import Report
from textbook.teacher.config import TeacherConfig

SHOWN_CHARS = 900  # of each reply: enough to judge it, short enough to read N of them


async def preview(gen: GenConfig, teacher_cfg: TeacherConfig, prompts: Prompts, vocabulary: dict, n: int,
                  out: Path, topics_file: str | Path | None) -> Report:
    from textbook.gen.run import _Run, _known_topics, _plan
    from textbook.teacher.client import Teacher

    async with Teacher(teacher_cfg, cache_path=None, progress=False) as teacher:
        await teacher.check()
        tree, where = _known_topics(gen, out, topics_file)
        if tree is None:
            tree = bundled_topics(gen.topic, gen.prompts)
            where = f"the bundled tree for {gen.topic!r}" if tree is not None else ""
        if tree is None:
            tree = await expand_topics(teacher, prompts, gen.topic, depth=gen.depth, breadth=gen.breadth)
            where = f"expanded by the teacher now ({len(leaves(tree))} leaves; not saved)"
        items = _plan(gen, tree, vocabulary)[:n]
        run = _Run(gen, teacher_cfg, teacher, prompts, None)
        outcomes = await asyncio.gather(*(run.outcome(item) for item in items))
        stats = teacher.stats.as_dict()
    return _report(gen, items, outcomes, where, stats)


def _report(gen: GenConfig, items: list, outcomes: list[tuple[Any, str | None, str]], where: str, stats: dict) -> Report:
    lines: list[str] = []
    verdicts: Counter = Counter()
    for k, (item, (record, _, raw)) in enumerate(zip(items, outcomes), 1):
        rejected = isinstance(record, RejectRow)
        verdict = f"rejected: {record.reason} ({record.detail})" if rejected else "kept"
        verdicts["kept" if not rejected else record.reason] += 1
        shown = (record.raw or raw) if rejected else (getattr(record, "text", None) or f"{record.prompt}\n{record.solution}\n{record.tests}")
        shown = shown or "(no reply)"
        cut = shown if len(shown) <= SHOWN_CHARS else shown[:SHOWN_CHARS] + f" … ({len(shown):,} chars)"
        lines += [
            f"── {k}/{len(items)} · {gen.kind} · {' > '.join(item.topic_path)} · {item.audience} · {item.style} · {item.difficulty}"
            + (f" · {item.function_name}" if item.function_name else ""),
            f"   words: {', '.join(item.words)} · template {record.template} ({record.template_sha[:8]}), "
            f"{record.prompt_tokens:,} prompt + {record.completion_tokens:,} completion tokens",
            "\n".join("   │ " + line for line in cut.rstrip().splitlines()),
            f"   verdict: {verdict}",
        ]
    kept = verdicts.pop("kept", 0)
    why = ", ".join(f"{reason} {count}" for reason, count in verdicts.most_common())
    lines.append(f"preview: {len(items)} items from {where}: {kept} would be kept, {sum(verdicts.values())} rejected"
                 + (f" ({why})" if why else "") + f"; {stats['requests']} requests sent, nothing written")
    return Report({"preview": len(items), "kept": kept, "rejected": dict(verdicts), "teacher": stats}, lines)
