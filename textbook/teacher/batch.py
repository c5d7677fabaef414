"""`--batch`: the first attempt of every request through the OpenAI Batch API (half price, within 24 h).

The batch replaces only the *sending*: each request is the exact body the online path would send first,
and each reply goes into the response cache under the key the online path looks up, so the run then
proceeds as a rerun does: parse, verify, dedup and shards are the online code, replies come from the
cache, and only what the batch could not answer (an error line, an expired request) or what fails its
checks (a re-ask) is sent online.

A run directory keeps the submission state in OUT/batch/state.json, written before and after each step
that creates something at the provider: the request file is uploaded, its id recorded, the batch created
(tagged with that file id), its id recorded. A run killed anywhere resumes polling; a kill between
creating a batch and recording it is healed by finding the batch that reads the recorded file, so
nothing is ever submitted twice. A plan larger than a batch may be (50,000 requests, 200 MB) is split.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textbook.errors import TextbookError
from textbook.shards import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

BATCH_DIR = "batch"  # OUT/batch/: the request files, the replies, state.json
MAX_REQUESTS = 50_000  # OpenAI's limits per batch input file
MAX_BYTES = 190 << 20  # of 200 MB, with room for the provider's own accounting
PRICE_FACTOR = 0.5  # the Batch API costs half the online price
POLL_S = (2.0, 60.0)  # first and longest wait between status checks (doubling)
TERMINAL = {"completed", "failed", "expired", "cancelled"}


@dataclass(frozen=True, slots=True)
class Pending:
    """One request for the batch: its cache key (the online path's first attempt), its body and its stage."""

    key: bytes
    body: dict[str, Any]
    stage: str

    @property
    def custom_id(self) -> str:
        return self.key.hex()[:32]


class BatchRun:
    """`await BatchRun(teacher, OUT / BATCH_DIR).run(pending)`: every pending request answered into the cache,
    or left for the online path (an error line, an expired request), without submitting anything twice."""

    def __init__(self, teacher: Any, directory: Path, *, poll_s: tuple[float, float] = POLL_S,
                 max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES):
        self.teacher, self.dir = teacher, Path(directory)
        self.state_path = self.dir / "state.json"
        self.poll_s, self.max_requests, self.max_bytes = poll_s, max_requests, max_bytes
        self.state: dict[str, Any] = {"files": []}
        if self.state_path.is_file():
            try:
                self.state = json.loads(self.state_path.read_text(encoding="utf-8"))
            except ValueError:
                raise TextbookError(f"{self.state_path} is damaged: delete {self.dir} to submit again "
                                    "(batches already submitted would be paid again)") from None
        self.counts = {"submitted": 0, "answered": 0, "errors": 0, "batches": 0}

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)

    async def run(self, pending: list[Pending]) -> dict[str, int]:
        self.dir.mkdir(parents=True, exist_ok=True)
        by_id = {p.custom_id: p for p in pending}
        known = {cid for entry in self.state["files"] for cid in entry["ids"]}
        new = [p for p in pending if p.custom_id not in known]  # earlier batches' leftovers go online, not again
        for part in self._split(new):
            self._write_file(part)
        for entry in self.state["files"]:
            if not entry.get("ingested"):
                await self._finish(entry, by_id)
        return self.counts

    def _split(self, pending: list[Pending]) -> list[list[Pending]]:
        parts: list[list[Pending]] = [[]]
        size = 0
        for p in pending:
            line = len(json.dumps(p.body, ensure_ascii=False).encode()) + 120
            if parts[-1] and (len(parts[-1]) >= self.max_requests or size + line > self.max_bytes):
                parts.append([])
                size = 0
            parts[-1].append(p)
            size += line
        return [part for part in parts if part]

    def _write_file(self, part: list[Pending]) -> None:
        name = f"requests-{len(self.state['files']):04d}.jsonl"
        lines = [json.dumps({"custom_id": p.custom_id, "method": "POST", "url": "/v1/chat/completions", "body": p.body},
                            ensure_ascii=False) for p in part]
        atomic_write_bytes(self.dir / name, ("\n".join(lines) + "\n").encode())
        self.state["files"].append({"name": name, "ids": [p.custom_id for p in part]})
        self._save()

    async def _finish(self, entry: dict[str, Any], by_id: dict[str, Pending]) -> None:
        client = self.teacher.client
        if "file_id" not in entry:
            data = (self.dir / entry["name"]).read_bytes()
            uploaded = await client.files.create(file=(entry["name"], data), purpose="batch")
            entry["file_id"] = uploaded.id
            self._save()
        if "batch_id" not in entry:
            entry["batch_id"] = await self._adopt_or_create(entry)
            self.counts["submitted"] += len(entry["ids"])
            self._save()
        batch = await self._wait(entry["batch_id"])
        if batch.status == "failed":
            errors = "; ".join(e.message or e.code or "" for e in (batch.errors.data if batch.errors and batch.errors.data else []))
            raise TextbookError(f"the batch {batch.id} ({entry['name']}) failed: {errors or 'no reason given'}; delete "
                                f"{self.dir} to submit again, or run without --batch")
        self.counts["batches"] += 1
        for file_id, what in ((batch.output_file_id, "output"), (batch.error_file_id, "errors")):
            if file_id:
                content = await client.files.content(file_id)
                atomic_write_bytes(self.dir / f"{entry['name'].removesuffix('.jsonl')}-{what}.jsonl", content.content)
                self._ingest(content.content, by_id)
        entry["ingested"], entry["status"] = True, batch.status
        self._save()

    async def _adopt_or_create(self, entry: dict[str, Any]) -> str:
        """The batch reading this file: one a killed run created (found by its input file), or a new one."""
        client = self.teacher.client
        async for batch in client.batches.list(limit=100):
            if batch.input_file_id == entry["file_id"]:
                return batch.id
        created = await client.batches.create(input_file_id=entry["file_id"], endpoint="/v1/chat/completions",
                                              completion_window="24h", metadata={"textbook_file": entry["name"]})
        return created.id

    async def _wait(self, batch_id: str):
        wait, started = self.poll_s[0], time.monotonic()
        while True:
            batch = await self.teacher.client.batches.retrieve(batch_id)
            if batch.status in TERMINAL:
                return batch
            counts = batch.request_counts
            done = f", {counts.completed + counts.failed:,} of {counts.total:,} done" if counts else ""
            log.info("batch %s: %s%s (%.0f s)", batch_id, batch.status, done, time.monotonic() - started)
            await asyncio.sleep(wait)
            wait = min(self.poll_s[1], wait * 2)

    def _ingest(self, content: bytes, by_id: dict[str, Pending]) -> None:
        for line in content.splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            pending = by_id.get(item.get("custom_id"))
            if pending is None:  # a request of an earlier plan: nothing here asks for it any more
                continue
            response = item.get("response") or {}
            if response.get("status_code") == 200 and isinstance(response.get("body"), dict):
                self.teacher.store_batch_reply(pending.key, pending.body, json.dumps(response["body"]).encode(),
                                               stage=f"{pending.stage} (batch)", ref=item.get("id") or pending.custom_id,
                                               price_factor=PRICE_FACTOR)
                self.counts["answered"] += 1
            else:  # on the ledger as a failed request, and left to the online path
                self.counts["errors"] += 1
                if self.teacher.ledger is not None:
                    self.teacher.ledger.record(f"{pending.stage} (batch)", f"batch_error_{response.get('status_code')}",
                                               ref=item.get("id") or pending.custom_id)
