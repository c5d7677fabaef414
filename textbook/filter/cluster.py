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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from textbook.errors import ConfigError
from textbook.filter.analyse import Analyser, part_name, write_part
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
        raise ConfigError(f"no Ray cluster at --ray-address {address} ({exc}): start one with `ray start --head` (if it "
                          "asks for a token, set RAY_AUTH_TOKEN from `ray get-auth-token`), or leave --ray-address out "
                          "for a local Ray") from None


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


# -- pieces of the input --------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """Rows [start, start + rows) of input file `source` (global rows from `offset` + start). A Parquet
    piece starts at a multiple of batch_size and is read on its own (the row groups it overlaps); an
    Arrow or JSONL piece is the whole file, read from its start."""

    source: int
    offset: int
    start: int
    rows: int
    whole: bool


def pieces(sources: list[Source], cpus: int, batch_size: int) -> list[Piece]:
    total = sum(s.rows for s in sources)
    # a few pieces per CPU, so the last ones do not leave CPUs idle for long; capped, so that at scale a
    # piece (what a rerun redoes, what pass 2 holds the decisions of) stays small
    size = min(max(total // (4 * cpus), 1), 500_000)
    size = -(-size // batch_size) * batch_size
    out, offset = [], 0
    for i, s in enumerate(sources):
        if s.kind == "parquet":
            out += [Piece(i, offset, a, min(size, s.rows - a), False) for a in range(0, s.rows, size)]
        else:
            out.append(Piece(i, offset, 0, s.rows, True))
        offset += s.rows
    return out


def read_piece(source: Source, unit: Piece, batch_size: int, cols: list[str] | None
               ) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """(batch index, its first row in the file, batch) over the piece, cut as `Source.batches` cuts the
    whole file: batch k holds the file's rows [k x batch_size, (k + 1) x batch_size) (Arrow: per record batch)."""
    if unit.whole:
        offset = 0
        for bi, batch in enumerate(source.batches(batch_size, cols)):
            yield bi, offset, batch
            offset += batch.num_rows
        return
    lo, hi = unit.start, unit.start + unit.rows
    groups, row = _row_groups(source, lo, hi)
    carry: list[pa.RecordBatch] = []  # rows read but not yet handed out: less than a batch (streamed, not whole)
    held, bi = 0, lo // batch_size
    for batch in source.batches(batch_size, cols, row_groups=groups):
        a, b = max(lo - row, 0), min(hi - row, batch.num_rows)
        row += batch.num_rows
        if b <= a:
            continue
        carry.append(batch.slice(a, b - a))
        held += b - a
        while held >= batch_size or (held and row >= hi):
            table = pa.Table.from_batches(carry)
            yield bi, bi * batch_size, table.slice(0, batch_size).combine_chunks().to_batches()[0]
            rest = table.slice(batch_size)
            carry, held, bi = rest.combine_chunks().to_batches() if rest.num_rows else [], rest.num_rows, bi + 1
        if row >= hi:
            break


def _row_groups(source: Source, lo: int, hi: int) -> tuple[list[int], int]:
    """The Parquet row groups holding rows [lo, hi) of the file, and the first row of the first one."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(source.path).metadata
    groups, start, first = [], 0, None
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if start < hi and start + n > lo:
            groups.append(g)
            first = start if first is None else first
        start += n
    return groups, first or 0


# -- 1. pass 1 ----------------------------------------------------------------------------------------
def analyse_on_ray(ray, analyser: Analyser, sources: list[Source], layout: OutputLayout, batch_size: int,
                   parts: Path, cpus: int) -> Iterator[tuple[int, float]]:
    """Pass 1 as one task per input piece: the task reads its rows itself and writes their parts (the
    local engine's batches and part names), so the driver ships no text; (rows, read seconds) per piece
    as pieces finish. Ray hands pieces to CPUs as they free up."""
    shipped = [ray.put(analyser)]  # inside a list: each worker fetches it once (_analyser), not every task
    pending = {}
    for unit in pieces(sources, cpus, batch_size):
        source = sources[unit.source]
        first = unit.start // batch_size
        last = source.batch_count(batch_size) if unit.whole else -(-(unit.start + unit.rows) // batch_size)
        if all((parts / part_name(unit.source, b)).exists() for b in range(first, last)):
            continue
        task = remote(ray, _analyse_piece).remote(shipped, source, unit, layout, batch_size, str(parts))
        pending[task] = True
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        del pending[done[0]]
        yield ray.get(done[0])


_ANALYSERS: dict = {}


def _analyser(ray, shipped: list) -> Analyser:
    key = shipped[0].hex()
    if key not in _ANALYSERS:  # unpickling it (classifier weights and all) costs 3x a batch's analysis
        _ANALYSERS.clear()
        _ANALYSERS[key] = ray.get(shipped[0])
    return _ANALYSERS[key]


def _analyse_piece(shipped: list, source: Source, unit: Piece, layout: OutputLayout, batch_size: int,
                   parts: str) -> tuple[int, float]:
    import ray

    analyser = _analyser(ray, shipped)
    cols = layout.read_columns(source)
    t = time.perf_counter()
    read = 0.0
    rows = 0
    for bi, offset, batch in read_piece(source, unit, batch_size, cols):
        path = Path(parts) / part_name(unit.source, bi)
        rows += batch.num_rows
        if path.exists():
            continue
        job = layout.job(source, batch, offset)
        read += time.perf_counter() - t
        result, timers = analyser(job)
        write_part(path, result, timers)
        t = time.perf_counter()
    return rows, read


# -- 3. pass 2 ----------------------------------------------------------------------------------------
def write_on_ray(ray, sources: list[Source], layout: OutputLayout, parts: list[Part], out: Path, work: Path,
                 fmt: str, shard_bytes: int, batch_size: int, meta: dict, cpus: int) -> dict[str, float]:
    t0 = time.perf_counter()
    units = pieces(sources, cpus, batch_size)
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
    for _, _, batch in read_piece(source, unit, batch_size, None):
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

