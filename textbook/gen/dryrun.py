"""`--dry-run`: render every prompt of the plan without a teacher; write them out; estimate tokens and cost.

Outputs, beside where a real run would write:
- DIR/<kind>-prompts/: a shard of PromptRow (plan constraints + the exact messages), to inspect;
- DIR/<kind>-batch.jsonl: one OpenAI Batch API request per line (custom_id, method, url, body), to
  upload as is (`client.batches.create(..., endpoint="/v1/chat/completions")`) when half-price
  asynchronous generation suits better than a live run.
Token counts are estimated as characters / 4 (tiktoken is not used: it downloads its vocabulary on
first use, and a dry run must work offline); completion tokens are bounded by max_tokens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from textbook.config import public_dict
from textbook.gen import exercise, section
from textbook.gen.config import GenConfig
from textbook.gen.plan import PlanItem
from textbook.gen.records import PromptRow
from textbook.prompts import Prompts
from textbook.report import Report
from textbook.shards import ShardWriter, schema_for
from textbook.teacher.config import TeacherConfig
from textbook.teacher.pricing import price_for
from textbook.teacher.structured import response_format

ESTIMATE_MODEL = "gpt-4o-mini"  # priced when no --model is given, so the estimate still means something


@dataclass(eq=False)
class DryRunSummary(Report):
    kind: str
    requests: int
    prompt_tokens: int
    max_completion_tokens: int
    model: str
    model_given: bool
    cost_prompt_usd: float | None
    cost_max_usd: float | None
    topics_note: str
    paths: dict[str, str]

    def facts(self) -> dict:
        return {"dry_run": True, "kind": self.kind, "requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "max_completion_tokens": self.max_completion_tokens, "model": self.model,
                "cost_prompt_usd": self.cost_prompt_usd, "cost_max_usd": self.cost_max_usd, "paths": self.paths}

    def lines(self) -> list[str]:
        lines = [
            f"dry run: {self.requests:,} {self.kind} requests rendered, none sent",
            f"  topics: {self.topics_note}",
            f"  estimated prompt tokens: {self.prompt_tokens:,} (characters / 4)",
            f"  completion tokens: at most {self.max_completion_tokens:,} (max_tokens per request)",
        ]
        model = self.model if self.model_given else f"{self.model} (no --model given; priced as this)"
        if self.cost_prompt_usd is None:
            lines.append(f"  estimated cost: unknown, {model} is not in the price table (add it with a price file)")
        else:
            lines.append(
                f"  estimated cost with {model}: ${self.cost_prompt_usd:,.2f} for prompts, "
                f"at most ${self.cost_max_usd:,.2f} in all"
            )
        lines += [f"  {name}: {path}" for name, path in self.paths.items()]
        return lines


def _render(prompts: Prompts, kind: str, item: PlanItem):
    return (section if kind == "textbook" else exercise).render(prompts, item)


def dry_run(
    gen: GenConfig, teacher: TeacherConfig, prompts: Prompts, *, out: Path, plan: list[PlanItem], topics_note: str
) -> DryRunSummary:
    model = teacher.model or ESTIMATE_MODEL
    sampling = {"temperature": teacher.temperature, "top_p": teacher.top_p, "max_tokens": teacher.max_tokens}
    prompt_dir = out / f"{gen.kind}-prompts"
    batch_path = out / f"{gen.kind}-batch.jsonl"
    # A dry run is cheap and always complete: start from nothing rather than resume.
    for stale in prompt_dir.glob("*") if prompt_dir.is_dir() else ():
        stale.unlink()
    writer = ShardWriter(
        prompt_dir, schema_for(PromptRow), fmt=gen.format, max_bytes=gen.shard_bytes,
        meta={"kind": f"{gen.kind}-prompts", "config": {"gen": public_dict(gen), "teacher": public_dict(teacher)}},
    )
    tokens = 0
    tmp = batch_path.with_name(f".{batch_path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as batch:
        for item in plan:
            request = _render(prompts, gen.kind, item)
            est = sum(len(m["content"]) for m in request.messages) // 4 + 4 * len(request.messages)
            tokens += est
            custom_id = f"{gen.kind}-{item.plan_id}"
            params = {**sampling, "seed": item.seed}
            body = {"model": model, "messages": request.messages, **params}
            if gen.kind == "exercises":
                body["response_format"] = response_format(exercise.SCHEMA, "exercise")
            batch.write(json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}, ensure_ascii=False) + "\n")
            writer.write(PromptRow(
                plan_id=item.plan_id, topic=item.topic, topic_path=list(item.topic_path), audience=item.audience,
                style=item.style, difficulty=item.difficulty, words=list(item.words), function_name=item.function_name,
                custom_id=custom_id, template=request.template, template_sha=request.template_sha,
                prompt_sha=request.prompt_sha, model=model, sampling=json.dumps(params, sort_keys=True),
                messages=json.dumps(request.messages, ensure_ascii=False), est_prompt_tokens=est,
            ))
        batch.flush()
        os.fsync(batch.fileno())
    os.replace(tmp, batch_path)
    max_completion = teacher.max_tokens * len(plan)
    price = price_for(model, teacher.price_file)
    cost_prompt = cost_max = None
    if price is not None:
        cost_prompt = tokens * price[0] / 1e6
        cost_max = cost_prompt + max_completion * price[1] / 1e6
    totals = {"requests": len(plan), "est_prompt_tokens": tokens, "max_completion_tokens": max_completion,
              "est_cost_usd_prompt": cost_prompt, "est_cost_usd_max": cost_max, "estimate_model": model}
    writer.close(totals=totals)
    return DryRunSummary(
        gen.kind, len(plan), tokens, max_completion, model, teacher.model is not None, cost_prompt, cost_max,
        topics_note, {"prompts": str(prompt_dir), "batch file": str(batch_path), "topics": str(out / "topics.json")},
    )
