"""Column handling for a filter run: which columns are read, the output schemas, the rows written.

Output rows are the input rows unchanged (every original column, one unified schema across the
input files), plus `edu_score`, `cluster_id` (input row number of the document kept for its
duplicate group) and `duplicates` (how many were removed as its duplicates); removed rows also carry
`stage` and `reason`. Inputs without an id column get `id` = `<file name>#<row>`, as do rows whose id
is missing; an id that repeats an earlier row's becomes `<id>@<file name>#<row>` (dedup.unique_ids),
which turns a numeric id column into text for that run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from textbook.errors import TextbookError
from textbook.filter.config import FilterRun
from textbook.filter.dedup import STAGES, Decisions
from textbook.filter.inputs import INVALID_UTF8, Source

ADDED = [pa.field("edu_score", pa.float32()), pa.field("cluster_id", pa.int64()), pa.field("duplicates", pa.int32())]
REMOVED = [pa.field("stage", pa.string()), pa.field("reason", pa.string())]
RESERVED = {f.name for f in ADDED + REMOVED} | {"_problem"}
_TEXT_TYPES = (pa.string(), pa.large_string(), pa.binary(), pa.large_binary(), pa.null())


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _decode(col: pa.Array) -> tuple[list[str | None], list[str | None]]:
    """Texts as Python strings, with invalid UTF-8 decoded with replacement and flagged."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            col.validate(full=True)
            return col.to_pylist(), [None] * len(col)
        except pa.ArrowInvalid:
            col = col.cast(pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary())
    if pa.types.is_null(col.type):
        return [None] * len(col), [None] * len(col)
    texts, problems = [], []
    for raw in col.to_pylist():
        if raw is None:
            texts.append(None)
            problems.append(None)
            continue
        try:
            texts.append(raw.decode("utf-8"))
            problems.append(None)
        except UnicodeDecodeError:
            texts.append(raw.decode("utf-8", errors="replace"))
            problems.append(INVALID_UTF8)
    return texts, problems


@dataclass
class OutputLayout:
    text: str
    id: str
    has_id: dict[str, bool]  # source path -> whether it has the id column
    names: dict[str, str]  # source path -> display name for synthesised ids
    input_schema: pa.Schema
    kept_schema: pa.Schema
    removed_schema: pa.Schema

    @classmethod
    def from_sources(cls, sources: list[Source], run: FilterRun) -> "OutputLayout":
        text, id_col = run.text_column, run.id_column
        has_id: dict[str, bool] = {}
        for s in sources:
            s.raw_column = text
            cols = [c for c in s.schema.names if c != "_problem"]
            if text not in cols:
                raise TextbookError(
                    f"{s.path} has no column {text!r}; its columns are: {', '.join(cols) or '(none)'}. "
                    "Pass --text-column NAME"
                )
            if s.schema.field(text).type not in _TEXT_TYPES:
                raise TextbookError(f"{s.path}: column {text!r} holds {s.schema.field(text).type}, not text: pass --text-column NAME")
            has_id[str(s.path)] = id_col in cols
            if id_col not in cols and id_col != "id":
                raise TextbookError(
                    f"{s.path} has no id column {id_col!r}; its columns are: {', '.join(cols)}. "
                    "Pass --id-column NAME (or leave it out to number rows)"
                )
        counts: dict[str, int] = {}
        for s in sources:
            counts[s.path.name] = counts.get(s.path.name, 0) + 1
        names = {str(s.path): s.path.name if counts[s.path.name] == 1 else str(s.path) for s in sources}
        fields: dict[str, pa.Field] = {}
        for s in sources:
            for f in s.schema:
                if f.name in RESERVED:
                    continue
                if f.name == text:
                    f = pa.field(text, pa.large_string() if pa.types.is_large_string(f.type) else pa.string())
                f = f.remove_metadata()
                old = fields.get(f.name)
                if old is None:
                    fields[f.name] = f
                elif old.type != f.type:
                    try:
                        fields[f.name] = pa.unify_schemas([pa.schema([old]), pa.schema([f])],
                                                          promote_options="permissive").field(0)
                    except (pa.ArrowInvalid, pa.ArrowTypeError):
                        raise TextbookError(
                            f"column {f.name!r} is {old.type} in one input and {f.type} in {s.path}: "
                            "filter those files separately"
                        ) from None
        if not all(has_id.values()):
            # some rows get synthesised string ids, so the whole id column is text
            fields[id_col] = pa.field(id_col, pa.string())
        schema = pa.schema(list(fields.values()))
        kept = pa.schema(list(schema) + ADDED)
        return cls(text, id_col, has_id, names, schema, kept, pa.schema(list(kept) + REMOVED))

    def with_text_ids(self) -> "OutputLayout":
        """The same layout with the id column as text (renamed repeats do not fit a numeric column)."""
        field = pa.field(self.id, pa.string())
        schema = self.input_schema.set(self.input_schema.get_field_index(self.id), field)
        kept = pa.schema(list(schema) + ADDED)
        return dataclasses.replace(self, input_schema=schema, kept_schema=kept, removed_schema=pa.schema(list(kept) + REMOVED))

    def read_columns(self, source: Source) -> list[str]:
        cols = [self.text]
        if self.has_id[str(source.path)] and self.id != self.text:
            cols.append(self.id)
        return cols

    def _ids(self, source: Source, batch: pa.RecordBatch, offset: int) -> list[str]:
        name = self.names[str(source.path)]
        if not self.has_id[str(source.path)]:
            return [f"{name}#{offset + i}" for i in range(batch.num_rows)]
        values = batch.column(self.id)
        values = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
        return [v if v is not None else f"{name}#{offset + i}" for i, v in enumerate(values.to_pylist())]

    def job(self, source: Source, batch: pa.RecordBatch, offset: int) -> tuple[list, list, list]:
        """(ids, texts, problems) for pass 1."""
        texts, problems = _decode(batch.column(self.text))
        if "_problem" in batch.schema.names:  # JSONL lines that did not parse, or were not UTF-8
            problems = [p or q for p, q in zip(batch.column("_problem").to_pylist(), problems)]
        return self._ids(source, batch, offset), texts, problems

    def output_batch(self, source: Source, batch: pa.RecordBatch, local_start: int, rows: np.ndarray,
                     decisions: Decisions) -> pa.Table:
        """The input rows (`rows` = their global row numbers; `local_start` = the first one's row in
        its file) with every output column, in the removed schema (kept is a subset)."""
        n = batch.num_rows
        cols: dict[str, pa.Array] = {}
        for f in self.input_schema:
            if f.name == self.text:
                texts, problems = _decode(batch.column(f.name))
                cols[f.name] = pa.array(texts, f.type) if any(problems) else batch.column(f.name).cast(f.type)
            elif f.name == self.id and (_is_text(f.type) or not self.has_id[str(source.path)]):
                # as read in pass 1: given, `file#row` where missing, `id@file#row` where repeated
                cols[f.name] = decisions.ids.take(pa.array(rows)).cast(f.type)
            elif f.name in batch.schema.names:
                cols[f.name] = batch.column(f.name).cast(f.type)
            else:
                cols[f.name] = pa.nulls(n, f.type)
        score = decisions.score[rows]
        cols["edu_score"] = pa.array(score, pa.float32(), mask=np.isnan(score))
        cluster = decisions.cluster[rows]
        cols["cluster_id"] = pa.array(cluster, pa.int64(), mask=cluster < 0)
        cols["duplicates"] = pa.array(decisions.duplicates[rows], pa.int32())
        stage = decisions.stage[rows]
        cols["stage"] = pa.array([STAGES[s] if s else None for s in stage], pa.string())
        cols["reason"] = pa.array(decisions.reasons(rows), pa.string())
        return pa.Table.from_pydict(cols, schema=self.removed_schema)
