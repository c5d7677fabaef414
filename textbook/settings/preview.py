"""`textbook gen settings --preview N`: N seeds paraphrased and judged by the teacher, shown, nothing written.

The same batch code as a run (textbook.settings.batch): what would be kept (with the noise a run adds)
and what the judge or the checks would drop, and why. No cache, no ledger, no output directory.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from textbook.report import Report
from textbook.settings.config import SettingsConfig
from textbook.settings.pipeline import build_context
from textbook.teacher.config import TeacherConfig


async def preview(cfg: SettingsConfig, teacher_cfg: TeacherConfig, n: int) -> Report:
    from textbook.prompts import Prompts
    from textbook.settings.batch import teacher_chunk
    from textbook.teacher.client import Teacher

    ctx = build_context(dataclasses.replace(cfg, teacher_batch=n))
    async with Teacher(teacher_cfg, cache_path=None, progress=False) as teacher:
        await teacher.check()
        chunk = await teacher_chunk(ctx, teacher, Prompts(cfg.prompts), 0)
        sent = teacher.stats.requests
    cols = chunk.cols
    lines = []
    for i in range(len(chunk)):
        noisy = f"   (noised: {cols['query'][i]!r})" if cols["query"][i] != cols["clean_query"][i] else ""
        lines.append(f"kept     [{cols['style'][i]}] {cols['clean_query'][i]!r} -> {cols['target'][i]}{noisy}")
    reasons = Counter(r["reason"] for r in chunk.removed)
    for r in chunk.removed:
        detail = f"  ({r['detail'][:160]})" if r["detail"] else ""
        lines.append(f"dropped  {r['reason']}: {r['query'] or r['clean_query']!r} (asked for {r['target']}){detail}")
    why = ", ".join(f"{k} {v}" for k, v in reasons.most_common())
    lines.append(f"preview: {n} seeds: {len(chunk)} samples would be kept, {len(chunk.removed)} dropped"
                 + (f" ({why})" if why else "") + f"; {sent} requests sent, nothing written")
    return Report({"preview": n, "kept": len(chunk), "dropped": dict(reasons), "requests": sent}, lines)
