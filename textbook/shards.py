"""Arrow shards: the only contract between the data side and the model side.

A shard directory holds `shard-00000.arrow` (or `.parquet`) files with one fixed schema and a
`manifest.json` (schema, rows and sha256 per shard, the resolved config, totals, resume state).
Every file is written to a temp name and renamed, so a reader never sees half a shard.

Resume: the manifest is the source of truth, and only `checkpoint()` and `close()` write it, together
with the producer's resume `state`: a shard sealed between two checkpoints is on disk but not listed,
so the rows a manifest vouches for and the position it records always describe the same moment (a
manifest that listed rows past its state made a rerun write them twice). `checkpoint()` rewrites the
shard being filled (it only ever grows) and then the manifest; after a kill, rows a shard file holds
beyond what the manifest lists are dropped on reopen, and files the manifest does not list are
deleted. A producer stores its own position in `state` and reads it back from `ShardWriter.state`.

Formats: `arrow` is the Arrow IPC *file* format (pyarrow.dataset, polars.scan_ipc and
datasets.load_dataset("arrow") open it); `arrow-stream` is the IPC *stream* format that
datasets.Dataset.from_file memory-maps; `parquet` for everything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from textbook.contract import FORMATS
from textbook.errors import TextbookError

MANIFEST = "manifest.json"
_SCALARS = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(), bytes: pa.binary()}


def arrow_type(hint: Any) -> pa.DataType:
    """Map a record field's type hint to an Arrow type (str, int, float, bool, list[...], X | None)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return arrow_type(inner)
    if origin in (list, tuple):
        return pa.list_(arrow_type(typing.get_args(hint)[0]))
    if hint in _SCALARS:
        return _SCALARS[hint]
    raise TypeError(f"no Arrow type for {hint!r}")


def schema_for(record_cls: type) -> pa.Schema:
    """The fixed schema of a stream, derived from its record dataclass (one record type per stream)."""
    hints = typing.get_type_hints(record_cls)
    return pa.schema(
        [pa.field(f.name, arrow_type(hints[f.name]), nullable=_optional(hints[f.name])) for f in dataclasses.fields(record_cls)]
    )


def _optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode())


def _encode(table: pa.Table, fmt: str) -> bytes:
    sink = pa.BufferOutputStream()
    if fmt == "parquet":
        pq.write_table(table, sink, compression="zstd")
    else:
        opener = pa.ipc.new_file if fmt == "arrow" else pa.ipc.new_stream
        with opener(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=8192)
    return sink.getvalue().to_pybytes()


def read_shard(path: Path) -> pa.Table:
    """Read one shard of any of the three formats (detected from the file, not the name)."""
    if path.suffix == ".parquet":
        return pq.read_table(path)
    with pa.memory_map(str(path)) as source:
        head = source.read(6)
        source.seek(0)
        reader = pa.ipc.open_file(source) if head == b"ARROW1" else pa.ipc.open_stream(source)
        return reader.read_all()


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks (the manifests' checksum)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: str | Path) -> dict | None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TextbookError(f"{path} is corrupt ({exc}): delete the directory to start over") from None


def shard_paths(directory: str | Path) -> list[Path]:
    """The shards a manifest lists, in order (the only files that count)."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise TextbookError(f"{directory} has no {MANIFEST}: it is not a shard directory written by textbook")
    return [Path(directory) / s["file"] for s in manifest["shards"]]


def iter_batches(directory: str | Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream record batches from every listed shard, trimmed to the rows the manifest vouches for."""
    manifest = read_manifest(directory)
    for path, entry in zip(shard_paths(directory), manifest["shards"] if manifest else []):
        table = read_shard(path).slice(0, entry["rows"])
        if columns is not None:
            table = table.select(columns)
        yield from table.to_batches()


def read_table(directory: str | Path, columns: list[str] | None = None) -> pa.Table:
    batches = list(iter_batches(directory, columns))
    if not batches:
        manifest = read_manifest(directory) or {}
        schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(manifest["schema_ipc"]))) if "schema_ipc" in manifest else pa.schema([])
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        return schema.empty_table()
    return pa.Table.from_batches(batches)


class ShardWriter:
    """Append records to size-rotated shards; `checkpoint()` makes what was written so far durable."""

    def __init__(
        self,
        directory: str | Path,
        schema: pa.Schema,
        *,
        fmt: str = "arrow",
        max_rows: int = 100_000,
        max_bytes: int = 128 << 20,
        meta: dict[str, Any] | None = None,
    ):
        if fmt not in FORMATS:
            raise TextbookError(f"unknown shard format {fmt!r}: use one of {', '.join(FORMATS)}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.fmt = fmt
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.meta = dict(meta or {})
        self.state: dict[str, Any] = {}
        self.shards: list[dict[str, Any]] = []
        self._current: list[pa.RecordBatch] = []  # the shard being filled (rewritten at each checkpoint)
        self._current_rows = 0
        self._current_bytes = 0
        self._pending: list[dict] = []
        self._open_existing()

    # -- resume ---------------------------------------------------------------------------------
    def _open_existing(self) -> None:
        for leftover in self.directory.glob(".*.tmp"):
            leftover.unlink()
        manifest = read_manifest(self.directory)
        listed = set()
        if manifest is not None:
            if manifest.get("schema_ipc") != self._schema_hex():
                raise TextbookError(
                    f"{self.directory} holds shards with another schema: write to a new --out directory or delete it"
                )
            if manifest.get("format") != self.fmt:
                raise TextbookError(
                    f"{self.directory} holds {manifest.get('format')} shards, not {self.fmt}: use the same --format or a new --out"
                )
            self.shards = list(manifest["shards"])
            self.state = dict(manifest.get("state", {}))
            listed = {s["file"] for s in self.shards}
        for path in self.directory.glob("shard-*"):
            if path.name not in listed:  # written after the last manifest: its rows are not vouched for
                path.unlink()
        if self.shards and self.shards[-1]["rows"] < self.max_rows and not self.shards[-1].get("sealed"):
            last = self.shards.pop()
            table = read_shard(self.directory / last["file"]).slice(0, last["rows"])
            self._current = table.to_batches()
            self._current_rows = table.num_rows
            self._current_bytes = table.nbytes

    def _schema_hex(self) -> str:
        return self.schema.serialize().to_pybytes().hex()

    # -- writing --------------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards) + self._current_rows + len(self._pending)

    def write(self, record: Any) -> None:
        """Buffer one record (a dataclass instance or a dict with the schema's fields)."""
        row = dataclasses.asdict(record) if dataclasses.is_dataclass(record) else record
        self._pending.append(row)
        if len(self._pending) >= 1024:
            self._materialise()

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        self._materialise()
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        try:
            table = table.select(self.schema.names).cast(self.schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise TextbookError(f"rows do not fit the shard schema: {exc}") from None
        for chunk in table.to_batches(max_chunksize=8192):
            self._append(chunk)

    def _materialise(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        try:
            batch = pa.RecordBatch.from_pylist(rows, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
            raise TextbookError(f"a record does not fit the shard schema: {exc}") from None
        self._append(batch)

    def _append(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            room = self.max_rows - self._current_rows
            head, batch = batch.slice(0, room), batch.slice(room)
            self._current.append(head)
            self._current_rows += head.num_rows
            self._current_bytes += head.nbytes
            if self._current_rows >= self.max_rows or self._current_bytes >= self.max_bytes:
                self._write_current(seal=True)

    def _write_current(self, *, seal: bool) -> None:
        if not self._current_rows:
            return
        name = f"shard-{len(self.shards):05d}{FORMATS[self.fmt]}"
        data = _encode(pa.Table.from_batches(self._current, schema=self.schema), self.fmt)
        atomic_write_bytes(self.directory / name, data)
        entry = {"file": name, "rows": self._current_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if seal:  # listed from the next checkpoint on, with the state that accounts for its rows
            entry["sealed"] = True
            self.shards.append(entry)
            self._current, self._current_rows, self._current_bytes = [], 0, 0
        else:
            self.shards.append(entry)
            self._write_manifest(complete=False)
            self.shards.pop()  # still open: it is rewritten (grown) at the next checkpoint

    def checkpoint(self, state: dict[str, Any] | None = None) -> None:
        """Make every record written so far durable, together with the producer's resume state."""
        self._materialise()
        if state is not None:
            self.state = dict(state)
        if self._current_rows:
            self._write_current(seal=False)
        else:
            self._write_manifest(complete=False)

    def close(self, totals: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Flush, mark the directory complete and return the manifest."""
        self._materialise()
        if state is not None:
            self.state = dict(state)
        self._write_current(seal=True)
        return self._write_manifest(complete=True, totals=totals)

    def _write_manifest(self, *, complete: bool, totals: dict[str, Any] | None = None) -> dict[str, Any]:
        old = read_manifest(self.directory) or {}
        manifest = {
            "format": self.fmt,
            "complete": complete,
            "rows": sum(s["rows"] for s in self.shards),
            "shards": self.shards,
            "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in self.schema],
            "schema_ipc": self._schema_hex(),
            **self.meta,
            "totals": totals if totals is not None else old.get("totals", {}),
            "state": self.state,
        }
        atomic_write_json(self.directory / MANIFEST, manifest)
        return manifest

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # keep what was done; a rerun resumes from here
            self.checkpoint()


def join_shards(sources: list[Path], target: Path, hint: str, *, provenance: bool = True,
                state: dict[str, Any] | None = None) -> int:
    """One shard directory from several finished ones (same schema), their shards in the order given:
    hard-linked where the filesystem allows, copied otherwise, each checked against its sha256. The
    manifest is written last, so a killed join is redone whole; shards of an earlier join that are not
    listed are removed. Returns the rows. `hint` says what to do about a missing or unfinished source;
    `state` is the resume state a ShardWriter reopening the directory finds (its producer's)."""
    target.mkdir(parents=True, exist_ok=True)
    manifests = []
    for source in sources:
        manifest = read_manifest(source)
        if manifest is None or not manifest.get("complete"):
            raise TextbookError(f"{source} is missing or unfinished: {hint}")
        manifests.append(manifest)
    if len({m["schema_ipc"] for m in manifests}) > 1:
        raise TextbookError(f"the shards to join into {target} have different schemas: were they made by the same textbook version?")
    shards, totals = [], {}
    for source, manifest in zip(sources, manifests):
        for entry in manifest["shards"]:
            path = source / entry["file"]
            name = f"shard-{len(shards):05d}{path.suffix}"
            _place(path, target / name)
            if sha256_file(target / name) != entry["sha256"]:
                raise TextbookError(f"{path} does not match its manifest's sha256: it is damaged; {hint}")
            shards.append({**entry, "file": name, **({"from": str(path)} if provenance else {})})
        for key, value in (manifest.get("totals") or {}).items():
            # counts and dollars add up across sources; rates and averages do not, so they are left out
            if (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and key.endswith("_usd")):
                totals[key] = totals.get(key, 0) + value
    keep = {k: v for k, v in manifests[0].items() if k not in ("shards", "rows", "totals", "state", "complete")}
    joined = {**keep, "complete": True, "rows": sum(s["rows"] for s in shards), "shards": shards, "totals": totals,
              **({"merged_from": [str(s) for s in sources]} if provenance else {}), "state": state or {}}
    atomic_write_json(target / MANIFEST, joined)
    listed = {s["file"] for s in shards} | {MANIFEST}
    for stale in target.iterdir():  # an earlier join's extra shards: a reader of the directory must not see them
        if stale.is_file() and stale.name not in listed:
            stale.unlink()
    return joined["rows"]


def _place(source: Path, target: Path) -> None:
    """`target` holds `source`'s bytes: a hard link (no copy, no space) where the filesystem allows."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def write_records(directory: str | Path, record_cls: type, records: Iterable[Any], **kwargs) -> dict[str, Any]:
    """Write a whole stream of records in one go (small outputs: reports, rejects, fixtures)."""
    with ShardWriter(directory, schema_for(record_cls), **kwargs) as writer:
        for record in records:
            writer.write(record)
    return read_manifest(directory)
