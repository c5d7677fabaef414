"""`textbook infer DIR --input FILE`: every request of a file answered by one loaded model.

A text file gives one request per line; a JSONL file (`.jsonl`, or a first line that is a JSON object) gives
each line's `query` field. Each request gets one output line, in order: the canonical call the model emitted,
or `{"error": ...}` for an empty line, a request longer than the export takes, or an output outside the call
grammar, so line N of the output always answers line N of the input. `--confidence` adds the answer's
probability; `--min-confidence P` withholds the calls the model is less sure of than P (the caller falls back to
search). The model is loaded once: 10,000 requests are one process, not 10,000.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

from textbook.contract import TargetError, canonical
from textbook.errors import TextbookError


def read_queries(path: str | Path) -> Iterator[str]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TextbookError(f"{path} does not exist: pass a text file (one request per line) or a JSONL file with a `query` field") from None
    except UnicodeDecodeError:
        raise TextbookError(f"{path} is not UTF-8 text: save it as UTF-8 and rerun") from None
    first = next((line for line in lines if line.strip()), "")
    jsonl = path.suffix.lower() == ".jsonl" or first.lstrip().startswith("{")
    for number, line in enumerate(lines, 1):
        if not jsonl:
            yield line.strip()
            continue
        if not line.strip():
            yield ""
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TextbookError(f"{path}:{number} is not JSON ({exc.msg}): fix that line, or pass a plain text file") from None
        if not isinstance(record, dict) or not isinstance(record.get("query"), str):
            raise TextbookError(f"{path}:{number} has no text field `query`: each JSONL line needs {{\"query\": \"...\"}}")
        yield record["query"].strip()


def answer_all(runner, queries: Iterator[str], stats: dict, *, confidence: bool = False,
               min_confidence: float = 0.0) -> Iterator[str]:
    """One output line per query; `stats` gets requests, errors, abstentions and per-request milliseconds.
    `confidence` adds the answer's probability to its line; below `min_confidence` the call is withheld
    (`{"abstain": true, "confidence": p, "call": {...}}`)."""
    stats.update(requests=0, errors=0, abstained=0, ms=[])
    for query in queries:
        stats["requests"] += 1
        if not query:
            stats["errors"] += 1
            yield json.dumps({"error": "empty request"})
            continue
        t = time.perf_counter()
        try:
            text, generation = runner(query)
        except TextbookError as exc:  # this request only (longer than the export takes): the others go on
            stats["errors"] += 1
            yield json.dumps({"error": str(exc)}, ensure_ascii=False)
            continue
        stats["ms"].append((time.perf_counter() - t) * 1000)
        try:
            call = canonical(text)
        except TargetError:
            stats["errors"] += 1
            yield json.dumps({"error": "not a settings call", "output": text}, ensure_ascii=False)
            continue
        p = round(generation.confidence, 4)
        if p < min_confidence:
            stats["abstained"] += 1
            yield json.dumps({"abstain": True, "confidence": p, "call": json.loads(call)}, ensure_ascii=False)
        elif confidence:
            yield json.dumps({**json.loads(call), "confidence": p}, ensure_ascii=False, separators=(",", ":"))
        else:
            yield call
