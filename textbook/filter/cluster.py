"""`textbook filter --engine ray`: the three steps of a filter run as Ray tasks across a cluster.

  1. Pass 1: the same `Analyser` as the local engine runs in one Ray actor per CPU of the cluster (built
     once per actor: unpickling it per task, classifier weights and all, cost 3x the analysis itself), on
     the same jobs (input batches). Parts come back in input order and are written as the local engine
     writes them, so a rerun skips finished parts whichever engine made them.
  2. The dedup decisions: spread.py, shuffles by key and connected components; no process holds every
     document's keys.
  3. Pass 2: one writer task per piece of the input (a run of Parquet row groups, or a file) writes its
     kept and removed rows with its own ShardWriter under work/pass2/; the pieces are then joined, in
     input order, into DIR/kept and DIR/removed with one manifest each (shards.join_shards). A finished
     piece is not rewritten on a rerun.

On several machines, DIR and the inputs must be on a filesystem every node sees (NFS, a mounted bucket),
as with datatrove's and NeMo Curator's executors: tasks read parts and inputs and write outputs by path.
"""

from __future__ import annotations

import shutil
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from textbook.errors import ConfigError
from textbook.filter.analyse import Analyser
from textbook.filter.inputs import Source
from textbook.filter.shuffle import remote
from textbook.filter.spread import Part, decision_path
from textbook.filter.table import OutputLayout
from textbook.progress import progress_bar
from textbook.reaper import reaper
from textbook.shards import ShardWriter, join_shards, read_manifest


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError('--engine ray needs Ray: pip install "textbook[ray]"') from None
    return ray


@contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[tuple[object, int]]:
    """(ray, CPUs of the cluster). Joins the cluster at `address`, or starts a local Ray with `workers`
    CPUs and stops it after (and, should this process be killed, a reaper stops it); a Ray the caller
    already started is used as it is."""
    ray = _ray()
    started = not ray.is_initialized()
    with reaper() if started and not address else nullcontext():
        if started and address:
            _reachable(address)
        if started:
            _init(ray, address, workers)
        try:
            yield ray, max(1, int(ray.cluster_resources().get("CPU", workers)))
        finally:
            if started:
                ray.shutdown()


def _init(ray, address: str | None, workers: int) -> None:
    try:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR")
    except ConnectionError as exc:
        raise ConfigError(f"no Ray cluster at --ray-address {address} ({exc}): start one with `ray start --head`, "
                          "or leave --ray-address out for a local Ray") from None


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT cluster answers on its port, or a one-line error now: Ray itself retries for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if address.startswith(("ray://", "auto")) or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster at --ray-address {address} ({exc.strerror or exc}): start one with "
                          "`ray start --head`, or leave --ray-address out for a local Ray") from None


# -- 1. pass 1 ----------------------------------------------------------------------------------------
def ray_analyse_all(ray, cpus: int, analyser: Analyser, jobs: Iterable
                    ) -> Iterator[tuple[pa.RecordBatch, dict[str, float]]]:
    """Results in job order, each job a call on one of `cpus` actors; at most two jobs per actor in
    flight, which bounds the driver's memory."""
    shipped = ray.put(analyser)
    worker = ray.remote(num_cpus=1)(_Worker)
    actors = [worker.remote(shipped) for _ in range(cpus)]
    pending: deque = deque()
    for i, job in enumerate(jobs):
        pending.append(actors[i % cpus].run.remote(job))  # each actor's jobs queue in order on it
        if len(pending) >= 2 * cpus:
            yield ray.get(pending.popleft())
    while pending:
        yield ray.get(pending.popleft())
    for actor in actors:
        ray.kill(actor)  # their CPUs go to the tasks of the next steps


class _Worker:
    """A Ray actor holding one Analyser for all the jobs it is given."""

    def __init__(self, analyser: Analyser):
        self.analyser = analyser

    def run(self, job):
        return self.analyser(job)


# -- 3. pass 2 ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """Rows [start, start + rows) of input file `source` (global row `offset` + start), read on their own."""

    source: int
    offset: int
    start: int
    rows: int
    row_groups: list[int] | None


def pieces(sources: list[Source], cpus: int) -> list[Piece]:
    total = sum(s.rows for s in sources)
    size = max(1, total // (4 * cpus))  # a few pieces per CPU: the last ones do not leave CPUs idle for long
    out, offset = [], 0
    for i, s in enumerate(sources):
        out += [Piece(i, offset, a, n, groups) for a, n, groups in s.pieces(size)]
        offset += s.rows
    return out


def write_on_ray(ray, sources: list[Source], layout: OutputLayout, parts: list[Part], out: Path, work: Path,
                 fmt: str, shard_bytes: int, batch_size: int, meta: dict, cpus: int) -> dict[str, float]:
    t0 = time.perf_counter()
    units = pieces(sources, cpus)
    dirs = [work / "pass2" / f"piece-{k:05d}" for k in range(len(units))]
    starts = np.array([p.start for p in parts], dtype=np.int64)
    total = sum(s.rows for s in sources)
    bar = progress_bar(total, desc="write", unit="doc")
    pending = {}
    for unit, directory in zip(units, dirs):
        if _finished(directory):
            bar.update(unit.rows)
            continue
        first = unit.offset + unit.start
        lo = int(np.searchsorted(starts, first, side="right")) - 1
        hi = int(np.searchsorted(starts, first + unit.rows, side="left"))
        task = remote(ray, _write_piece).remote(sources[unit.source], unit, parts[lo:max(hi, lo + 1)], layout,
                                                str(directory), fmt, shard_bytes, batch_size, meta)
        pending[task] = unit.rows
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        ray.get(done[0])  # a failed writer raises here
        bar.update(pending.pop(done[0]))
    bar.close()
    hint = "rerun the command to write it again"
    for stream in ("kept", "removed"):
        # the state a local rerun's pass 2 resumes from: every row written
        join_shards([d / stream for d in dirs], out / stream, hint, provenance=False, state={"row": total})
    return {"write": time.perf_counter() - t0}


def _finished(directory: Path) -> bool:
    return all((read_manifest(directory / s) or {}).get("complete") for s in ("kept", "removed"))


class _Rows:
    """The decisions of a run of rows (read from their parts' decision files), indexed from its first row,
    in the shape `OutputLayout.output_batch` reads."""

    def __init__(self, parts: list[Part]):
        tables = [pa.ipc.open_file(pa.py_buffer(decision_path(p).read_bytes())).read_all() for p in parts]
        table = pa.concat_tables(tables)
        self.first = parts[0].start
        self.ids = table.column("id").combine_chunks()
        self.stage = table.column("stage").to_numpy()
        self.cluster = table.column("cluster").to_numpy()
        self.duplicates = table.column("duplicates").to_numpy()
        self.score = table.column("score").to_numpy(zero_copy_only=False).astype(np.float32)
        self.reason = table.column("reason").combine_chunks()

    def reasons(self, rows: np.ndarray) -> list[str | None]:
        return self.reason.take(pa.array(rows)).to_pylist()


def _write_piece(source: Source, unit: Piece, parts: list[Part], layout: OutputLayout, directory: str, fmt: str,
                 shard_bytes: int, batch_size: int, meta: dict) -> None:
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)  # unfinished: written again whole (a piece is small)
    decided = _Rows(parts)
    sizes = {"max_rows": 100_000, "max_bytes": shard_bytes}
    kept = ShardWriter(directory / "kept", layout.kept_schema, fmt=fmt, meta=meta, **sizes)
    removed = ShardWriter(directory / "removed", layout.removed_schema, fmt=fmt, meta=meta, **sizes)
    row = unit.offset + unit.start
    for batch in source.batches(batch_size, row_groups=unit.row_groups):
        rows = np.arange(row, row + batch.num_rows) - decided.first
        full = layout.output_batch(source, batch, row - unit.offset, rows, decided)
        is_kept = decided.stage[rows] == 0
        for writer, mask, schema in ((kept, is_kept, layout.kept_schema), (removed, ~is_kept, layout.removed_schema)):
            if mask.any():
                writer.write_batch(full.filter(pa.array(mask)).select(schema.names))
        row += batch.num_rows
    kept_rows = int((decided.stage[np.arange(unit.offset + unit.start, row) - decided.first] == 0).sum())
    removed.close(totals={"rows": unit.rows - kept_rows})
    kept.close(totals={"rows": kept_rows})  # kept last: a piece whose kept/ is complete is finished

