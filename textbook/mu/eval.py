"""Evaluation of a trained run: settings exact match (by action and noise style) and LM perplexity.

Settings: greedy decoding of every query of a split. An output counts as correct when it parses as
a function call (`textbook.contract.parse_target`), is valid for the catalogue (`validate_target`;
the CLI passes the catalogue the shards were generated from) and its canonical text equals the
target's; outputs that fail either check are "invalid". Latency is measured per request (batch of
one, tokenize -> encode -> decode -> parse) on the first `latency_samples` rows, apart from the
batched accuracy pass. The report keeps 20 mistakes; every mistake, with its style and noise, goes
to `eval-settings-SPLIT-errors.jsonl` beside it.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F

from textbook.contract import (
    ACTION, NOISE_OPS, QUERY, SPLIT, STYLE, TARGET, CatalogueView, TargetError, canonical, parse_target,
    validate_target,
)
from textbook.errors import TextbookError
from textbook.mu.calls import CallTries, load_calls
from textbook.mu.checkpoint import WEIGHTS, load_lexicon, load_model, tokenizer_path
from textbook.mu.compare import outcomes, wilson
from textbook.mu.data import IGNORE, BatchStream, check_shards
from textbook.mu.evalconfig import EvalLMConfig, EvalSettingsConfig
from textbook.mu.neighbours import FLOOR, K, LEXICAL, REBUILD, TEMPERATURE, Neighbours, load_neighbours
from textbook.mu.sentence import pooled
from textbook.mu.tokenizer import load_tokenizer, source_text
from textbook.shards import atomic_write_bytes, atomic_write_json, read_shard, sha256_file
from textbook.progress import progress_bar
from textbook.report import Report


def read_rows(directories: list[Path], split: str | None) -> pa.Table:
    """Rows of settings shard directories, or of JSONL files of requests written by hand (`query`, `target`,
    `style`; no split: every row counts), such as tests/data/settings/realstyle.jsonl."""
    files = [d for d in directories if d.is_file() and d.suffix.lower() == ".jsonl"]
    shards = check_shards([d for d in directories if d not in files], [QUERY, TARGET]) if len(files) < len(directories) else []
    tables = [read_shard(path).slice(0, rows) for path, rows in shards] + [_jsonl(f) for f in files]
    if not tables:
        raise TextbookError(f"no rows in {', '.join(map(str, directories))}: the shards are empty")
    table = pa.concat_tables(tables, promote_options="default")
    if split and SPLIT in table.column_names:
        table = table.filter(pc.equal(table[SPLIT], split))
    if table.num_rows == 0:
        raise TextbookError(f"no {split!r} rows in {', '.join(map(str, directories))}: pass --split with a split the shards hold")
    return table


def _jsonl(path: Path) -> pa.Table:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TextbookError(f"{path}:{number} is not JSON ({exc.msg}): fix that line") from None
        if not isinstance(row, dict) or not isinstance(row.get(QUERY), str) or not isinstance(row.get(TARGET), str):
            raise TextbookError(f"{path}:{number} needs text fields {QUERY!r} and {TARGET!r}")
        rows.append({QUERY: row[QUERY], TARGET: row[TARGET], STYLE: row.get(STYLE)})
    return pa.Table.from_pylist(rows, schema=pa.schema([(QUERY, pa.string()), (TARGET, pa.string()), (STYLE, pa.string())]))


def _page(text: str, catalogue: CatalogueView | None) -> str | None:
    """The page a call lands on (its setting's URI; "none" for none), or None when it names no known setting."""
    try:
        call = parse_target(text)
    except TargetError:
        return None
    if call.action == "none":
        return "none"
    setting = catalogue.get(call.id or "") if catalogue is not None else None
    return getattr(setting, "uri", None) or (call.id if catalogue is None else None)


def encode_queries(tokenizer, texts: list[str], cfg, lexicon=None) -> list[list[int]]:
    """Queries as the trainer fed them: normalised as the model expects, then the ids and EOS."""
    texts = [source_text(t, cfg.lowercase_source, lexicon) for t in texts]
    return [e.ids + [cfg.eos_id] for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def pad_rows(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids.to(device), mask.to(device)


def answer(model, src: torch.Tensor, mask: torch.Tensor, tries: CallTries | None, index: Neighbours | None,
           texts: list[str] | None = None) -> tuple[list[list[int]], list[float]]:
    """Each row's call tokens and log-probability: with an index, the nearest training requests choose the setting
    and the decoder writes the call within it (neighbours.py; `texts`: the rows as the encoder reads them,
    tokenizer.py source_text); else constrained (or free) greedy decoding."""
    if index is None:
        return model.generate_scored(src, mask, allowed=tries.full.allowed if tries is not None else None)
    memory = model.encode(src, mask)
    vectors = F.normalize(pooled(memory, mask).float(), dim=-1).cpu()
    choices = index.choose((vectors @ torch.from_numpy(index.vectors).T).numpy(), texts)  # torch's threads: see .choose
    return model.generate_scored(src, mask, allowed=[tries.steer(c.head, c.shares, FLOOR, c.numbers) for c in choices],
                                 scored_by=tries.full.allowed, memory=memory)


def _action(target: str) -> str:
    try:
        return parse_target(target).action
    except TargetError:
        return "?"


def _judge(text: str, gold: str, catalogue: CatalogueView | None) -> tuple[bool, bool]:
    """(valid, correct) for one output; without a catalogue, valid = in the grammar."""
    try:
        target = parse_target(text)
    except TargetError:
        return False, False
    if catalogue is not None and validate_target(target, catalogue):
        return False, False
    return True, target.to_json() == canonical(gold)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@torch.no_grad()
def eval_settings(
    run: str | Path, data: list[str | Path], config: EvalSettingsConfig = EvalSettingsConfig(), *,
    catalogue: CatalogueView | None = None, calls: list[str] | None = None, progress: bool = True,
) -> Report:
    """Exact match of a run's function calls on a settings split; the report is also saved in RUN.

    `catalogue` (textbook.settings.config.catalogue_for(data, config.catalogue) in `textbook eval
    settings`) is what outputs are validated against; None checks the grammar only (exact match is the
    same either way: a target is valid, so an output equal to it is too). With `config.constrained`, decoding
    keeps to the run's own valid calls (RUN/calls.json), else to `calls` (the CLI passes the catalogue's).
    """
    split, batch_size, device = config.split, config.batch_size, config.device
    model, cfg = load_model(run, device)
    tokenizer = load_tokenizer(tokenizer_path(run))
    lexicon = load_lexicon(run, cfg)
    calls = (load_calls(run) or calls) if config.constrained else None
    tries = CallTries(calls, tokenizer, cfg.eos_id) if calls else None
    index = load_neighbours(run, sha256_file(Path(run) / WEIGHTS), REBUILD) if tries is not None and config.retrieval else None
    table = read_rows([Path(d) for d in data], split)
    if config.limit:
        table = table.slice(0, config.limit)
    rows = table.to_pylist()
    texts = [source_text(r[QUERY] or "", cfg.lowercase_source, lexicon) for r in rows]  # as the encoder reads them
    sources = encode_queries(tokenizer, texts, cfg)
    too_long = sum(len(s) > cfg.max_source_len for s in sources)
    if too_long:
        raise TextbookError(f"{too_long} queries are longer than the model's {cfg.max_source_len} tokens: they cannot be evaluated")
    outputs: list[str] = [""] * len(rows)
    confidences: list[float] = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: len(sources[i]))  # little padding per batch
    for start in progress_bar(iterable=range(0, len(order), batch_size), show=progress, unit="batch", desc="eval"):
        idx = order[start : start + batch_size]
        src, mask = pad_rows([sources[i] for i in idx], cfg.pad_id, device)
        tokens, logprobs = answer(model, src, mask, tries, index, [texts[i] for i in idx])
        for i, row_tokens, logprob in zip(idx, tokens, logprobs):
            outputs[i] = tokenizer.decode(row_tokens)
            confidences[i] = math.exp(logprob)

    groups: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    pages: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # style -> [right page, rows]
    valid_count = correct_count = page_count = 0
    errors = []
    right: list[bool] = []
    on_pages: list[bool] = []
    for row, text, confidence in zip(rows, outputs, confidences):
        valid, correct = _judge(text, row[TARGET], catalogue)
        right.append(correct)
        on_page = correct or (_page(text, catalogue) is not None and _page(text, catalogue) == _page(row[TARGET], catalogue))
        on_pages.append(on_page)
        valid_count += valid
        correct_count += correct
        page_count += on_page
        pages[row.get(STYLE) or "?"][0] += on_page
        pages[row.get(STYLE) or "?"][1] += 1
        keys = {"action": [row.get(ACTION) or _action(row[TARGET])], "style": [row.get(STYLE) or "?"],
                "noise": list(row.get(NOISE_OPS) or []) or ["clean"]}
        for group, names in keys.items():
            for name in names:
                groups[group][name][0] += correct
                groups[group][name][1] += 1
        if not correct:
            errors.append({"query": row[QUERY], "target": row[TARGET], "output": text, "valid": valid,
                           "confidence": round(confidence, 4), "style": row.get(STYLE), "noise": keys["noise"]})

    latencies = []
    for row in rows[:config.latency_samples]:
        t0 = time.perf_counter()
        text = source_text(row[QUERY] or "", cfg.lowercase_source, lexicon)
        src, mask = pad_rows(encode_queries(tokenizer, [text], cfg), cfg.pad_id, device)
        _judge(tokenizer.decode(answer(model, src, mask, tries, index, [text])[0][0]), row[TARGET], catalogue)
        latencies.append((time.perf_counter() - t0) * 1000)

    n = len(rows)
    report = {
        "run": str(run), "split": split, "rows": n,
        "exact_match": correct_count / n, "invalid_rate": 1 - valid_count / n, "constrained": tries is not None,
        "retrieval": {"indexed": len(index), "k": K, "temperature": TEMPERATURE, "lexical": LEXICAL, "floor": FLOOR}
        if index is not None else None,
        "page_match": page_count / n,  # the call lands on the right Settings page (the exact call or another on it)
        "ci95": {"exact_match": wilson(correct_count, n), "page_match": wilson(page_count, n)},  # compare.py
        "page_by_style": {k: {"page_match": c / t, "rows": t} for k, (c, t) in sorted(pages.items())},
        "by_action": {k: {"exact_match": c / t, "rows": t} for k, (c, t) in sorted(groups["action"].items())},
        "by_style": {k: {"exact_match": c / t, "rows": t} for k, (c, t) in sorted(groups["style"].items())},
        "by_noise": {k: {"exact_match": c / t, "rows": t} for k, (c, t) in sorted(groups["noise"].items())},
        "by_confidence": _by_confidence(confidences, right),
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95), "requests": len(latencies),
                       "device": device, "threads": torch.get_num_threads()} if latencies else None,
        "errors": [{k: e[k] for k in ("query", "target", "output")} for e in errors[:20]],
        # request by request, for `textbook eval compare` (paired: sharper than two intervals)
        "outcomes": outcomes([(r[QUERY] or "", r[TARGET]) for r in rows], right, on_pages,
                             [r.get(STYLE) or "?" for r in rows]),
    }
    # a JSONL set of its own is reported under its name, not the split's
    name = Path(data[0]).stem if len(data) == 1 and Path(data[0]).suffix.lower() == ".jsonl" else split
    report["split"] = name
    atomic_write_bytes(Path(run) / f"eval-settings-{name}-errors.jsonl",
                       "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors).encode())
    atomic_write_json(Path(run) / f"eval-settings-{name}.json", report)
    return Report(report, _settings_lines(report, Path(run)))


COVERAGES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def _by_confidence(confidences: list[float], right: list[bool]) -> list[dict[str, float]]:
    """Selective answering: for each coverage, the exact match of the most confident share of the requests and
    the confidence it takes (`textbook infer --min-confidence`); the rest would get search results instead."""
    order = sorted(range(len(right)), key=lambda i: -confidences[i])
    out = []
    for coverage in COVERAGES:
        kept = order[: max(1, math.ceil(coverage * len(order)))]
        out.append({"coverage": coverage, "exact_match": sum(right[i] for i in kept) / len(kept),
                    "min_confidence": round(confidences[kept[-1]], 4)})
    return out


def _settings_lines(report: dict[str, Any], run: Path) -> list[str]:
    """What `textbook eval settings` prints: exact match overall and by style, noise and action."""
    split = report["split"]
    (el, eh), (pl, ph) = report["ci95"]["exact_match"], report["ci95"]["page_match"]
    lines = [f"{report['rows']} {split} rows: exact match {report['exact_match']:.2%} [95% CI {el:.1%}, {eh:.1%}], "
             f"right page {report['page_match']:.2%} [{pl:.1%}, {ph:.1%}], invalid {report['invalid_rate']:.2%}"]
    if report.get("retrieval"):
        lines.append(f"retrieval: the {report['retrieval']['k']} nearest of {report['retrieval']['indexed']:,} training requests "
                     "chose each setting (--no-retrieval: the decoder alone)")
    if report["latency_ms"]:
        lat = report["latency_ms"]
        lines.append(f"latency per request ({lat['requests']} on {lat['device']}): p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
    if report.get("by_confidence"):
        lines.append("answering only the most confident (the rest to search): " + ", ".join(
            f"{c['coverage']:.0%} {c['exact_match']:.1%} (>= {c['min_confidence']:.2f})" for c in report["by_confidence"]))
    for group in ("by_style", "by_noise", "by_action"):
        lines.append(group.replace("_", " ") + ":")
        pages = report["page_by_style"] if group == "by_style" else {}
        lines += [f"  {name:<24} {stats['exact_match']:7.2%}" + (f"  page {pages[name]['page_match']:7.2%}" if name in pages else "")
                  + f"  ({stats['rows']} rows)" for name, stats in report[group].items()]
    lines.append(f"report: {run / f'eval-settings-{split}.json'}, every mistake: {run / f'eval-settings-{split}-errors.jsonl'}")
    return lines


@torch.no_grad()
def eval_lm(
    run: str | Path, data: list[str | Path], config: EvalLMConfig = EvalLMConfig(), *, progress: bool = True,
) -> Report:
    """Perplexity of the decoder's continuations (the pretraining task: prefix -> continuation)."""
    device, limit_batches = config.device, config.limit_batches
    model, cfg = load_model(run, device)
    tokenizer = load_tokenizer(tokenizer_path(run))
    stream = BatchStream(list(data), tokenizer, cfg, task="pretrain", split=None, text_column=config.text_column,
                         batch_size=config.batch_size)
    nll, tokens = 0.0, 0
    for i, batch in enumerate(progress_bar(iterable=stream.one_pass(), show=progress, unit="batch", desc="eval")):
        if limit_batches is not None and i >= limit_batches:
            break
        batch = batch.to(device)
        logits = model(batch.src_ids, batch.src_mask, batch.tgt_in)
        nll += float(F.cross_entropy(logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE, reduction="sum"))
        tokens += int((batch.labels != IGNORE).sum())
    report = {"run": str(run), "tokens": tokens, "nll_per_token": nll / tokens, "perplexity": math.exp(nll / tokens)}
    atomic_write_json(Path(run) / "eval-lm.json", report)
    return Report(report, [f"perplexity {report['perplexity']:.3f} over {report['tokens']:,} target tokens"])
