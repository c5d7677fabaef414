"""Reading the filter's inputs: Parquet, JSONL and Arrow files, directories and globs, in batches.

Every input is opened and checked before any work starts (missing text column, empty or corrupt
file, unsupported type), so a bad input is a one-line error, never a crash halfway. Rows are
numbered across all inputs in order; both passes of a run read them in the same order.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from textbook.errors import TextbookError

KINDS = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
         ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
PROBLEM = "_problem"  # the column JSONL batches carry their per-line problems in (see _jsonl_batches)
_INT64 = (-(2**63), 2**63 - 1)


def expand(args: list[str]) -> list[Path]:
    """Files, directories (every supported file below, sorted) and globs -> an ordered file list."""
    files: list[Path] = []
    for arg in args:
        path = Path(arg)
        if any(ch in arg for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
            if not matched:
                raise TextbookError(f"no files match {arg!r}: check the pattern (quote it so the shell leaves it alone)")
            files.extend(matched)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in KINDS)
            if not found:
                raise TextbookError(f"{path} holds no {', '.join(sorted(KINDS))} files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise TextbookError(f"input {arg} does not exist")
    seen: set[Path] = set()
    unique = []
    for f in files:  # the same file twice would make every row its own duplicate
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    for f in unique:
        if f.suffix.lower() not in KINDS:
            raise TextbookError(f"{f}: unsupported file type {f.suffix or '(none)'}; use {', '.join(sorted(KINDS))}")
    return unique


@dataclass(slots=True)
class Source:
    """One input file: its kind, schema (inferred for JSONL) and row count."""

    path: Path
    kind: str
    schema: pa.Schema
    rows: int
    raw_column: str | None = None  # JSONL: where a line that is not a JSON object goes (the text column)

    def batches(self, batch_size: int, columns: list[str] | None = None,
                row_groups: list[int] | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of at most batch_size rows (JSONL: with a PROBLEM column, see below); of a
        Parquet file, optionally only some of its row groups."""
        if self.kind == "parquet":
            yield from _parquet_batches(self.path, batch_size, columns, row_groups)
        elif self.kind == "arrow":
            for batch in _arrow_reader(self.path):
                batch = batch.select(columns) if columns is not None else batch
                for lo in range(0, batch.num_rows, batch_size):
                    yield batch.slice(lo, batch_size)
        else:
            yield from _jsonl_batches(self.path, self.schema, batch_size, columns, self.raw_column)

    def batch_count(self, batch_size: int) -> int:
        """How many batches `batches(batch_size)` yields (Arrow files cut each record batch on its own)."""
        if self.kind != "arrow":
            return -(-self.rows // batch_size)
        return sum(-(-batch.num_rows // batch_size) for batch in _arrow_reader(self.path))


def open_source(path: Path) -> Source:
    kind = KINDS[path.suffix.lower()]
    size = path.stat().st_size
    if size == 0:
        raise TextbookError(f"{path} is empty (0 bytes): remove it from the inputs or regenerate it")
    try:
        if kind == "parquet":
            meta = pq.ParquetFile(path)
            source = Source(path, kind, meta.schema_arrow, meta.metadata.num_rows)
        elif kind == "arrow":
            rows = 0
            reader = _arrow_reader(path)
            for batch in reader:
                rows += batch.num_rows
            source = Source(path, kind, reader.schema, rows)
        else:
            schema, rows = _jsonl_schema(path)
            source = Source(path, kind, schema, rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TextbookError(f"{path} is not a readable {kind} file ({str(exc).splitlines()[0]}): check or regenerate it") from None
    if PROBLEM in source.schema.names:  # checked here, before any work: the output could not keep it
        raise TextbookError(f"{path} has a column named {PROBLEM!r}, which textbook uses for rows it cannot read: "
                            "rename that column and rerun")
    return source


def _parquet_batches(path: Path, batch_size: int, columns: list[str] | None,
                     row_groups: list[int] | None = None) -> Iterator[pa.RecordBatch]:
    try:
        # pre_buffer=False: with it, pyarrow keeps every column chunk it read, so memory grows with the file
        yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_size, columns=columns,
                                                                       row_groups=row_groups)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TextbookError(f"{path} is corrupt ({str(exc).splitlines()[0]}): check or regenerate it") from None


class _ArrowBatches:
    """Arrow IPC file or stream format, read as batches (both formats are called .arrow)."""

    def __init__(self, path: Path):
        self._source = pa.memory_map(str(path))
        head = self._source.read(6)
        self._source.seek(0)
        if head == b"ARROW1":
            self._file = pa.ipc.open_file(self._source)
            self.schema = self._file.schema
            self._iter = (self._file.get_batch(i) for i in range(self._file.num_record_batches))
        else:
            stream = pa.ipc.open_stream(self._source)
            self.schema = stream.schema
            self._iter = iter(stream)

    def __iter__(self):
        return self._iter


def _arrow_reader(path: Path) -> _ArrowBatches:
    return _ArrowBatches(path)


# -- JSONL -----------------------------------------------------------------------------------------
# Lines are parsed one by one so a bad line is one removed row (reason invalid_json / invalid_utf8)
# instead of a failed file. The schema is inferred from every line first, so each column has one
# type for the whole run: ints and floats mix to float, anything else mixed (or lists, objects, and
# integers beyond 64 bits) becomes a JSON string.


def _lines(path: Path) -> Iterator[tuple[dict, str | None]]:
    """(row, problem) per non-blank line. A line that is not a JSON object says where it is
    (`invalid_json:<file>:<line>`, lines counted from 1 as editors and `grep -n` do): its id is lost."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            problem = None
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line, problem = raw.decode("utf-8", errors="replace"), INVALID_UTF8
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                yield {"__raw__": line.rstrip("\r\n")}, f"{INVALID_JSON}:{path}:{number}"
            else:
                yield row, problem


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        # Python reads any number of digits; beyond int64 (ids often are) the column is text
        return "int" if _INT64[0] <= value <= _INT64[1] else "json"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "json"


_ARROW = {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "string": pa.string(), "json": pa.string(),
          "null": pa.string()}


def _jsonl_schema(path: Path) -> tuple[pa.Schema, int]:
    kinds: dict[str, set[str]] = {}
    rows = 0
    for row, _ in _lines(path):
        rows += 1
        for key, value in row.items():
            if key != "__raw__":
                kinds.setdefault(key, set()).add(_kind(value))
    fields = []
    for key, ks in kinds.items():
        ks = ks - {"null"} or {"null"}
        kind = ks.pop() if len(ks) == 1 else ("float" if ks <= {"int", "float"} else "json")
        fields.append(pa.field(key, _ARROW[kind], metadata={"jsonl_kind": kind}))
    return pa.schema(fields), rows


def _convert(value, kind: str):
    if value is None:
        return None
    if kind == "json":
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if kind == "float":
        return float(value)
    return value


def _jsonl_batches(path: Path, schema: pa.Schema, batch_size: int, columns: list[str] | None,
                   raw_column: str | None) -> Iterator[pa.RecordBatch]:
    """Batches in the inferred schema plus PROBLEM (invalid_json:<file>:<line> / invalid_utf8 / null)."""
    names = columns if columns is not None else schema.names
    kinds = {f.name: (f.metadata or {}).get(b"jsonl_kind", b"string").decode() for f in schema}
    out_schema = pa.schema([schema.field(n) for n in names] + [pa.field(PROBLEM, pa.string())])
    cols: dict[str, list] = {n: [] for n in out_schema.names}

    def flush():
        batch = pa.RecordBatch.from_pydict(cols, schema=out_schema)
        for values in cols.values():
            values.clear()
        return batch

    for row, problem in _lines(path):
        if "__raw__" in row:  # not a JSON object: keep the raw line in the text column
            row = {raw_column: row["__raw__"]} if raw_column in names else {}
        for n in names:
            cols[n].append(_convert(row.get(n), kinds[n]))
        cols[PROBLEM].append(problem)
        if len(cols[PROBLEM]) >= batch_size:
            yield flush()
    if cols[PROBLEM]:
        yield flush()
