"""Where processed plan items go: kept rows (after the near-duplicate check) and rejects, checkpointed.

Kept rows wait in a small batch so their MinHash signatures are computed in one numpy pass; the
batch is flushed before every checkpoint, so what a checkpoint makes durable is final. Rows still
waiting when the process is killed are lost, and come back from the teacher's cache on resume.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any


from textbook.gen.config import GenConfig
from textbook.gen.dedup import NearDuplicates
from textbook.gen.records import Generated, RejectRow
from textbook.shards import ShardWriter, iter_batches, read_manifest, schema_for
from textbook.progress import progress_bar

DEDUP_BATCH = 64
_PROVENANCE = [f.name for f in dataclasses.fields(Generated)]


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _row(record: Any) -> dict[str, Any]:
    # Shallow: dataclasses.asdict deep-copies every list and costs more than the rest of a row's write.
    return {name: getattr(record, name) for name in _names(type(record))}


class Sink:
    def __init__(self, gen: GenConfig, row_cls: type, out: Path, meta: dict[str, Any], stats: Any):
        self.gen, self.stats = gen, stats
        self.kept_dir, self.rejects_dir = out / gen.kind, out / f"{gen.kind}-rejects"
        self.kept = ShardWriter(self.kept_dir, schema_for(row_cls), fmt=gen.format, max_bytes=gen.shard_bytes, meta=meta)
        self.rejects = ShardWriter(self.rejects_dir, schema_for(RejectRow), fmt=gen.format, max_bytes=gen.shard_bytes,
                                   meta={**meta, "kind": f"{gen.kind}-rejects"})
        self.dedup = NearDuplicates(gen.dedup_bands, gen.dedup_rows) if gen.dedup else None
        self.counts = {"kept": 0, "rejected": 0}
        self.bar = None  # textbook.progress.bar while a run writes
        self._pending: list[tuple[Any, str, str]] = []  # (row, text to dedup on, raw reply)
        self._since_checkpoint, self._last_checkpoint, self._next_postfix = 0, time.monotonic(), 0.0

    # -- resume ---------------------------------------------------------------------------------
    def resume(self, dedup_columns: list[str]) -> set[int]:
        """Plan ids already written (kept or rejected), and the kept ones back in the dedup index.
        (That they belong to this plan, RunDir.claim checked.)"""
        # The manifests say which rows count (the writers above already dropped any they do not vouch for).
        done: set[int] = set()
        if read_manifest(self.rejects_dir) is not None:
            for batch in iter_batches(self.rejects_dir, ["plan_id"]):
                done.update(batch.column(0).to_pylist())
        if read_manifest(self.kept_dir) is not None:
            for batch in iter_batches(self.kept_dir, ["plan_id", *(dedup_columns if self.dedup else [])]):
                ids = batch.column(0).to_pylist()
                done.update(ids)
                if self.dedup is not None:
                    texts = ["\n".join(parts) for parts in zip(*(batch.column(c).to_pylist() for c in dedup_columns))]
                    self.dedup.add(ids, texts)
        return done

    # -- writing --------------------------------------------------------------------------------
    def put(self, record: Any, dedup_text: str | None = None, raw: str = "") -> None:
        """A reject, or a row (with the text it is deduplicated on, and the raw reply for a reject)."""
        if isinstance(record, RejectRow):
            self._write(self.rejects, record, "rejected")
        elif self.dedup is None or dedup_text is None:
            self._write(self.kept, record, "kept")
        else:
            self._pending.append((record, dedup_text, raw))
            if len(self._pending) >= DEDUP_BATCH:
                self.flush()
        if self._since_checkpoint >= self.gen.checkpoint_rows or time.monotonic() - self._last_checkpoint >= self.gen.checkpoint_s:
            self.checkpoint()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        originals = self.dedup.add([row.plan_id for row, _, _ in pending], [text for _, text, _ in pending])
        for (row, _, raw), original in zip(pending, originals):
            if original is None:
                self._write(self.kept, row, "kept")
            else:
                provenance = {name: getattr(row, name) for name in _PROVENANCE}
                reject = RejectRow(**provenance, reason="near_duplicate", detail=f"near-duplicate of plan_id {original}", raw=raw)
                self._write(self.rejects, reject, "rejected")

    def _write(self, writer: ShardWriter, record: Any, counter: str) -> None:
        writer.write(_row(record))
        self.counts[counter] += 1
        self._since_checkpoint += 1
        if self.bar is not None:
            now = time.monotonic()
            if now >= self._next_postfix:  # formatting the postfix per row would cost more than the row
                self._next_postfix = now + 0.5
                s = self.stats
                cost = f"${s.cost_usd:.2f}" if s.priced else "$?"
                self.bar.set_postfix_str(
                    f"kept {self.counts['kept']} rej {self.counts['rejected']} | tok {s.prompt_tokens + s.completion_tokens:,} "
                    f"{cost} hit {s.cache_hits} retry {s.retries}", refresh=False)
            self.bar.update(1)

    def checkpoint(self) -> None:
        self.flush()
        # Rejects first: a kill between the two loses kept rows, which come back from the cache.
        self.rejects.checkpoint()
        self.kept.checkpoint()
        self._since_checkpoint, self._last_checkpoint = 0, time.monotonic()

    def open_bar(self, total: int, initial: int, progress: bool | None) -> None:
        self.bar = progress_bar(total, initial=initial, desc=f"gen {self.gen.kind}", unit="row", show=progress)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self, totals: dict[str, Any]) -> None:
        self.rejects.close(totals=totals)
        self.kept.close(totals=totals)
