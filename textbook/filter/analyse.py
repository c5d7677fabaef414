"""Pass 1 of a filter run: everything that needs a document's text, one batch at a time.

For each document: the input problem or heuristic reason (None = passed), the hash of its
normalised text (exact dedup), its MinHash band keys (near dedup) and its edu_score. What comes back
is small and fixed-size per document, so the later dedup decisions never hold texts.
Batches run in worker processes (fork: the loaded classifier is shared, not pickled per batch).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from textbook.filter.classifier import EduClassifier
from textbook.filter.config import FilterRun, Preset
from textbook.filter.heuristics import Heuristics
from textbook.minhash import MinHasher, WordTable, band_keys
from textbook.shards import atomic_write_bytes
from textbook.workers import process_pool

TIMERS = ("tokens", "heuristics", "minhash", "classifier")
GROUP_CHARS = 2_000_000


def part_schema(bands: int, perms: int = 0) -> pa.Schema:
    """Pass-1 columns; `perms` > 0 adds the MinHash signatures (only kept when dedup verifies pairs)."""
    sig = [pa.field("sig", pa.list_(pa.uint32(), perms))] if perms else []
    return pa.schema([
        pa.field("id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("exact", pa.uint64()),
        pa.field("keys", pa.list_(pa.uint64(), bands)),
        pa.field("score", pa.float32()),
        pa.field("chars", pa.int64()),
        *sig,
    ])


def part_name(file: int, batch: int) -> str:
    """Pass-1 part of batch `batch` (of batch_size rows) of input file `file`: names sort in input order."""
    return f"part-{file:05d}-{batch:07d}.arrow"


def write_part(path: Path, batch: pa.RecordBatch, timers: dict[str, float]) -> None:
    """One part, atomically, with the stage timers in its schema metadata."""
    meta = {k.encode(): str(v).encode() for k, v in timers.items()}
    batch = batch.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())


class Analyser:
    def __init__(self, preset: Preset, run: FilterRun, classifier: EduClassifier | None):
        self.preset, self.run = preset, run
        self.heuristics = Heuristics(preset)
        d = preset.dedup
        self.hasher = MinHasher(num_perm=d.bands * d.rows, ngram=d.ngram, seed=d.seed)
        self.classifier = classifier if preset.classifier.enabled else None
        self.perms = d.bands * d.rows if d.verify > 0 else 0
        self.schema = part_schema(d.bands, self.perms)

    def __call__(self, job: tuple[list, list[str | None], list[str | None]]) -> tuple[pa.RecordBatch, dict[str, float]]:
        ids, texts, problems = job
        n = len(texts)
        timers = dict.fromkeys(TIMERS, 0.0)
        reason: list[str | None] = list(problems)
        stage: list[str | None] = ["input" if p else None for p in problems]
        for i, text in enumerate(texts):
            if reason[i] is None:
                if text is None:
                    reason[i], stage[i] = "null_text", "input"
                elif len(text) > self.run.max_doc_chars:
                    reason[i], stage[i] = "doc_too_long", "input"
        d = self.preset.dedup
        exact = np.zeros(n, dtype=np.uint64)
        keys = np.zeros((n, d.bands), dtype=np.uint64)
        sigs = np.zeros((n, self.perms), dtype=np.uint32)
        score = np.full(n, np.nan, dtype=np.float32)
        chars = np.array([len(t) if t is not None else 0 for t in texts], dtype=np.int64)
        todo = [i for i in range(n) if reason[i] is None]
        # groups of at most GROUP_CHARS characters bound the numpy work arrays, whatever the documents
        group: list[int] = []
        size = 0
        for i in todo:
            if group and size + chars[i] > GROUP_CHARS:
                self._group(group, texts, reason, stage, exact, keys, sigs, score, timers)
                group, size = [], 0
            group.append(i)
            size += chars[i]
        if group:
            self._group(group, texts, reason, stage, exact, keys, sigs, score, timers)
        batch = pa.RecordBatch.from_arrays([
            pa.array(ids, pa.string()),
            pa.array(reason, pa.string()),
            pa.array(stage, pa.string()),
            pa.array(exact, pa.uint64()),
            pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel(), pa.uint64()), d.bands),
            pa.array(score, pa.float32(), from_pandas=True),
            pa.array(chars, pa.int64()),
            *([pa.FixedSizeListArray.from_arrays(pa.array(sigs.ravel(), pa.uint32()), self.perms)] if self.perms else []),
        ], schema=self.schema)
        return batch, timers

    def _group(self, todo: list[int], texts, reason, stage, exact, keys, sigs, score, timers) -> None:
        """Tokenise, apply the heuristics, hash and score the documents `todo` (indices into texts)."""
        sub = [texts[i] for i in todo]
        t = time.perf_counter()
        words = WordTable(sub)
        timers["tokens"] += time.perf_counter() - t

        t = time.perf_counter()
        for i, r in zip(todo, self.heuristics.reasons(sub, words, timers)):
            if r is not None:
                reason[i], stage[i] = r, "heuristics"
        timers["heuristics"] += time.perf_counter() - t

        d = self.preset.dedup
        passed = np.array([reason[i] is None for i in todo], dtype=bool)
        rows = np.asarray(todo, dtype=np.int64)[passed]
        if not len(rows):
            return
        t = time.perf_counter()
        exact[rows] = words.doc_hashes()[passed]
        if d.near:
            signatures = self.hasher.signatures_of(words)
            keys[rows] = band_keys(signatures, d.bands, d.rows)[passed]
            if self.perms:
                sigs[rows] = signatures[passed]
        timers["minhash"] += time.perf_counter() - t
        if self.classifier is not None:
            t = time.perf_counter()
            # scoring the whole WordTable and keeping the survivors is cheaper than re-tokenising
            score[rows] = self.classifier.score(sub, words)[passed]
            timers["classifier"] += time.perf_counter() - t


_WORKER: Analyser | None = None  # each worker process's own, set by its initializer


def _start_worker(analyser: Analyser) -> None:
    global _WORKER
    _WORKER = analyser


def _work(job):
    return _WORKER(job)


def analyse_all(analyser: Analyser, jobs: Iterable, workers: int) -> Iterator[tuple[pa.RecordBatch, dict[str, float]]]:
    """Results in job order. With workers > 1, a bounded number of batches is in flight."""
    if workers <= 1:
        for job in jobs:
            yield analyser(job)
        return
    with process_pool(workers, _start_worker, analyser) as pool:
        pending = []
        for job in jobs:
            pending.append(pool.submit(_work, job))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()
