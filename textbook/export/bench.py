"""`textbook infer DIR --bench`: latency of every variant of an export, side by side.

Per request (batch of one, as the Settings search box sends them): tokenize, encode, greedy decode
to EOS. First-token latency = tokenize + encoder + first decoder step; decode tokens/s counts the
steps after the first; end-to-end p50/p95 over all requests. Variants run interleaved request by
request, so a background load on the machine hits them alike; ratios are against fp32 in the same run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from textbook.errors import TextbookError
from textbook.export.config import THREADS, InferConfig
from textbook.export.runner import Runner, read_export_manifest


@dataclass(slots=True)
class BenchRow:
    variant: str
    requests: int
    bytes: int
    first_token_ms_p50: float
    decode_tokens_per_s: float
    e2e_ms_p50: float
    e2e_ms_p95: float
    tokens_per_request: float


def bench(directory, cfg: InferConfig) -> list[BenchRow]:
    """`textbook infer DIR --bench`: cfg.requests queries (from cfg.data's split, else the built-in examples,
    repeated as needed) through every variant, or cfg.variant only."""
    from textbook.export.exporter import EXAMPLE_QUERIES
    from textbook.export.samples import read_samples

    if cfg.data is None:
        queries = list(EXAMPLE_QUERIES)
    else:
        queries = [s.query for s in read_samples(cfg.data, split=cfg.split, limit=cfg.requests)]
    queries = (queries * (cfg.requests // max(len(queries), 1) + 1))[:cfg.requests]
    return benchmark(directory, queries, variants=[cfg.variant] if cfg.variant else None, threads=cfg.threads,
                     retrieval=cfg.retrieval)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def benchmark(directory, queries: list[str], *, variants: list[str] | None = None, warmup: int = 3, threads: int = THREADS,
              retrieval: bool = True) -> list[BenchRow]:
    """Per-request latency of each variant (with the export's retrieval index, when it has one, unless `retrieval` is False)."""
    manifest = read_export_manifest(directory)
    names = variants or list(manifest["variants"])
    runners = {v: Runner(directory, v, threads=threads, retrieval=retrieval) for v in names}
    fits = [q for q in queries if len(next(iter(runners.values())).source_tokens(q)) <= manifest["shapes"]["source_len"]]
    if not fits:
        raise TextbookError("no benchmark query fits the export's --max-source-len")
    stats = {v: {"first": [], "e2e": [], "decode_s": 0.0, "decode_tokens": 0, "tokens": 0} for v in names}
    for runner in runners.values():  # first sessions runs allocate and tune: not what a user waits for twice
        for q in fits[:warmup]:
            runner(q)
    for q in fits:
        for v, runner in runners.items():
            start = time.perf_counter()
            ids = runner.source_ids(q)
            tokenized = time.perf_counter() - start
            gen, _ = runner.run(ids, text=q)
            runner.decode_text(gen.tokens)
            e2e = time.perf_counter() - start
            s = stats[v]
            s["first"].append((tokenized + gen.first_token_s) * 1000)
            s["e2e"].append(e2e * 1000)
            s["decode_s"] += gen.total_s - gen.first_token_s
            s["decode_tokens"] += gen.steps - 1
            s["tokens"] += gen.steps
    return [
        BenchRow(
            v, len(fits), runners[v].bytes, percentile(s["first"], 50),
            s["decode_tokens"] / s["decode_s"] if s["decode_s"] else float("nan"),
            percentile(s["e2e"], 50), percentile(s["e2e"], 95), s["tokens"] / len(fits),
        )
        for v, s in stats.items()
    ]


def format_bench(rows: list[BenchRow]) -> str:
    base = next((r for r in rows if r.variant == "fp32"), rows[0])
    lines = [f"{'variant':<9}{'size MB':>9}{'size':>7}{'first token ms':>16}{'decode tok/s':>14}"
             f"{'e2e p50 ms':>12}{'e2e p95 ms':>12}{'speedup':>9}{'tokens/req':>12}"]
    for r in rows:
        lines.append(
            f"{r.variant:<9}{r.bytes / 1e6:>9.1f}{r.bytes / base.bytes:>7.0%}{r.first_token_ms_p50:>16.1f}"
            f"{r.decode_tokens_per_s:>14.0f}{r.e2e_ms_p50:>12.1f}{r.e2e_ms_p95:>12.1f}"
            f"{base.e2e_ms_p50 / r.e2e_ms_p50:>8.2f}x{r.tokens_per_request:>12.1f}"
        )
    lines.append(f"({rows[0].requests} requests per variant, batch of one; speedup = fp32 e2e p50 / variant e2e p50)")
    return "\n".join(lines) + "\n"
