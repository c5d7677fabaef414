"""The dedup decisions of `--engine ray`, spread over the cluster: no process holds every document's keys.

The local engine (dedup.decide) loads every pass-1 part into one process. Here the parts are read in row
ranges by Ray tasks and everything global goes through shuffles (shuffle.py), so a task holds one range
or one hash partition:

  1. scan (per row range): each candidate's band keys, and its text hash as one more "band", keyed by
     (band, key) into n partitions; each id's hash into n partitions.
  2. group (per partition): a text-hash bucket is an exact-duplicate group: its smallest label (the keep
     rule's choice, shuffle.labels) keeps it, the others are linked to it. A band bucket's survivors (one
     per text hash: identical texts have identical signatures, so a whole exact group shares its buckets)
     are chained in row order, as dedup.decide chains them. With `dedup.verify`, chain edges first visit
     the row ranges of both ends to compare signatures.
  3. components.py: connected components of those edges; each component's smallest label is the document
     it keeps (exact duplicates follow their keeper, since they hang off it).
  4. repeated ids (per id partition): the rows to rename ID@FILE#ROW.
  5. assemble (per row range): stage, dup_of, cluster, duplicates and the renamed id of each row, written
     next to its pass-1 part; then the kept documents' ids are looked up in their own ranges so each
     duplicate's reason names its keeper.

The answer is dedup.decide's, row for row (tests/test_filter_cluster.py runs both). Memory: a range task
holds its range's pass-1 columns; a partition task holds ~(bands + 1) x candidates / n key records (26
bytes each) or its share of the edges. n grows with the corpus (one partition per 500k rows at least).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from textbook.errors import TextbookError
from textbook.filter.components import both_ways, components
from textbook.filter.dedup import CLASSIFIER, EXACT, HEURISTICS, INPUT, KEPT, NEAR, Decisions
from textbook.filter.report import Tally
from textbook.filter.shuffle import Cols, concat, group_starts, hashed, labels, out, ranged, refs, remote, row_of, split
from textbook.minhash import fmix64
from textbook.shards import atomic_write_bytes

ROWS_PER_PARTITION = 500_000
KEYS: Cols = {"band": np.zeros(0, np.int16), "key": np.zeros(0, np.uint64), "label": np.zeros(0, np.uint64),
              "exact": np.zeros(0, np.uint64)}
EDGES: Cols = {"u": np.zeros(0, np.uint64), "v": np.zeros(0, np.uint64)}
PAIRS: Cols = {"row": np.zeros(0, np.int64), "keeper": np.zeros(0, np.int64)}
ROWS: Cols = {"row": np.zeros(0, np.int64)}
ROOTS: Cols = {"row": np.zeros(0, np.int64), "root": np.zeros(0, np.int64), "absorbed": np.zeros(0, np.int32)}
NAMES: Cols = {"row": np.zeros(0, np.int64), "name": np.zeros(0, object)}


@dataclass(frozen=True)
class Part:
    """A pass-1 part: its file, the global row of its first document, its rows."""

    path: str
    start: int
    rows: int


@dataclass(frozen=True)
class Context:
    """What every task needs: the preset's dedup rules, the partitioning, where the input files begin."""

    keep: str
    bands: int
    exact: bool
    near: bool
    verify: float
    classify: bool  # the preset's classifier is on: below `threshold` is removed
    threshold: float
    n: int  # hash partitions
    starts: np.ndarray  # first global row of each row range
    files: tuple[tuple[int, str], ...]  # (first global row, display name) of each input file

    @property
    def ranges(self) -> int:
        return len(self.starts)


def decision_path(part: Part) -> Path:
    path = Path(part.path)
    return path.parent.parent / "decisions" / path.name


def decide_on_ray(ray, parts: list[Part], preset, threshold: float, files: list[tuple[int, str]],
                  cpus: int) -> Tally:
    """Write each part's decisions next to it (work/decisions/); returns the run's tally."""
    total = sum(p.rows for p in parts)
    n = max(2 * cpus, -(-total // ROWS_PER_PARTITION))
    ranges = _ranges(parts, min(len(parts), n))
    d = preset.dedup
    ctx = Context(d.keep, d.bands, d.exact, d.near, d.verify, preset.classifier.enabled, threshold, n,
                  np.array([r[0].start for r in ranges], dtype=np.int64), tuple(files))
    r = ctx.ranges
    scans = [refs(remote(ray, _scan).options(num_returns=2 * n).remote(ctx, rng), 2 * n) for rng in ranges]
    groups = [refs(remote(ray, _group).options(num_returns=n + 2 * r).remote(ctx, *[s[p] for s in scans]), n + 2 * r)
              for p in range(n)]
    edges = [g[:n] for g in groups]
    if d.near and d.verify > 0:
        first = [refs(remote(ray, _veto_first).options(num_returns=r).remote(ctx, rng, *[g[n + r + i] for g in groups]), r)
                 for i, rng in enumerate(ranges)]
        edges += [refs(remote(ray, _veto_second).options(num_returns=n).remote(ctx, rng, *[f[i] for f in first]), n)
                  for i, rng in enumerate(ranges)]
    roots = components(ray, edges, n, ctx.starts)
    repeats = [refs(remote(ray, _repeats).options(num_returns=r).remote(ctx, *[s[n + p] for s in scans]), r)
               for p in range(n)]
    assembled = []
    for i, rng in enumerate(ranges):
        exact = [g[n + i] for g in groups]
        found = [x[i] for x in roots]
        again = [x[i] for x in repeats]
        assembled.append(refs(remote(ray, _assemble).options(num_returns=r + 1).remote(
            ctx, i, rng, len(exact), len(found), *exact, *found, *again), r + 1))
    tallies = ray.get([a[r] for a in assembled])
    answers = [refs(remote(ray, _answer).options(num_returns=r).remote(ctx, rng, *[a[i] for a in assembled]), r)
               for i, rng in enumerate(ranges)]
    ray.get([remote(ray, _finalise).remote(ctx, rng, *[a[i] for a in answers]) for i, rng in enumerate(ranges)])
    tally = Tally.total(tallies)
    if tally.renamed:
        hashes = [refs(remote(ray, _id_hashes).options(num_returns=n).remote(ctx, rng), n) for rng in ranges]
        if any(ray.get([remote(ray, _any_repeat).remote(*[h[p] for h in hashes]) for p in range(n)])):
            raise TextbookError("ids still repeat after renaming repeats to ID@FILE#ROW: pass --id-column with a unique "
                                "column, or leave --id-column out of files without one so rows are numbered")
    return tally


def _ranges(parts: list[Part], count: int) -> list[list[Part]]:
    """`count` runs of consecutive parts with about the same number of rows each."""
    total = sum(p.rows for p in parts)
    out_: list[list[Part]] = [[] for _ in range(count)]
    for p in parts:
        out_[min(count - 1, p.start * count // max(total, 1))].append(p)
    return [r for r in out_ if r]


def _read(parts: list[Part], columns: list[str], where: str = "pass1") -> dict[str, pa.Array]:
    tables = []
    for part in parts:
        path = Path(part.path) if where == "pass1" else decision_path(part)
        with pa.memory_map(str(path)) as source:
            tables.append(pa.ipc.open_file(source).read_all().select(columns))
    table = pa.concat_tables(tables)
    return {c: table.column(c).combine_chunks() for c in columns}


def _fixed(column: pa.Array, width: int) -> np.ndarray:
    return column.flatten().to_numpy().reshape(len(column), width)


# -- 1. scan ------------------------------------------------------------------------------------------
def _scan(ctx: Context, parts: list[Part]):
    cols = _read(parts, ["id", "stage", "exact", "keys", "score", "chars"])
    rows = np.arange(parts[0].start, parts[-1].start + parts[-1].rows, dtype=np.int64)
    candidate = cols["stage"].is_null().to_numpy(zero_copy_only=False)
    label = labels(rows[candidate], cols["chars"].to_numpy()[candidate], cols["score"].to_numpy(zero_copy_only=False)[candidate], ctx.keep)
    exact = cols["exact"].to_numpy()[candidate]
    bands, keys = [], []
    if ctx.exact:
        bands.append(np.full(len(label), ctx.bands, np.int16))
        keys.append(exact)
    if ctx.near:
        band_keys = _fixed(cols["keys"], ctx.bands)[candidate]
        bands += [np.full(len(label), b, np.int16) for b in range(ctx.bands)]
        keys += [band_keys[:, b] for b in range(ctx.bands)]
    m = len(bands)
    records = {"band": np.concatenate(bands) if m else KEYS["band"], "key": np.concatenate(keys) if m else KEYS["key"],
               "label": np.tile(label, m), "exact": np.tile(exact, m)}
    salted = records["key"] ^ fmix64(records["band"].astype(np.uint64) + np.uint64(1))
    ids = {"hash": _id_hashes_of(cols["id"]), "row": rows}
    return out(split(records, hashed(salted, ctx.n), ctx.n) + split(ids, hashed(ids["hash"], ctx.n), ctx.n))


def _id_hashes_of(ids: pa.Array) -> np.ndarray:
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest(s.encode("utf-8", "surrogatepass")) for s in ids.to_pylist()),
                       dtype=np.uint64, count=len(ids))


# -- 2. group -----------------------------------------------------------------------------------------
def _group(ctx: Context, *pieces: Cols):
    c = concat(pieces, KEYS)
    order = np.lexsort((c["label"], c["exact"], c["key"], c["band"]))
    band, key, label, exact = (c[k][order] for k in ("band", "key", "label", "exact"))
    is_exact = band == ctx.bands
    # exact groups: the first (smallest) label of a text-hash bucket keeps it
    e_key, e_label = key[is_exact], label[is_exact]
    starts = group_starts(e_key)
    first = e_label[np.repeat(starts, np.diff(np.append(starts, len(e_key))))]
    dup = e_label != first
    eu, ev = first[dup], e_label[dup]
    pairs = {"row": row_of(ev), "keeper": row_of(eu)}
    # band buckets: one survivor per text hash (its smallest label), chained in row order
    b_band, b_key, b_label, b_exact = band[~is_exact], key[~is_exact], label[~is_exact], exact[~is_exact]
    if ctx.exact:
        lead = group_starts(b_band, b_key, b_exact)
        b_band, b_key, b_label = b_band[lead], b_key[lead], b_label[lead]
    rows = row_of(b_label)
    order = np.lexsort((rows, b_key, b_band))
    b_band, b_key, b_label = b_band[order], b_key[order], b_label[order]
    same = (b_band[1:] == b_band[:-1]) & (b_key[1:] == b_key[:-1])
    cu, cv = b_label[:-1][same], b_label[1:][same]
    if len(cu):
        chain = np.unique(np.stack([cu, cv], axis=1), axis=0)
        cu, cv = chain[:, 0], chain[:, 1]
    veto = ctx.near and ctx.verify > 0
    u = eu if veto else np.concatenate([eu, cu])
    v = ev if veto else np.concatenate([ev, cv])
    to_check = {"u": cu, "v": cv} if veto else EDGES
    return out(both_ways(u, v, ctx.n) + split(pairs, ranged(pairs["row"], ctx.starts), ctx.ranges)
               + split(to_check, ranged(row_of(to_check["u"]), ctx.starts), ctx.ranges))


# -- 2b. dedup.verify: compare the signatures of a chain edge's two ends, each read in its own range ----
def _veto_first(ctx: Context, parts: list[Part], *pieces: Cols):
    e = concat(pieces, EDGES)
    sigs = _read(parts, ["sig"])["sig"]
    width = sigs.type.list_size
    sig_u = _fixed(sigs, width)[row_of(e["u"]) - parts[0].start]
    cols = {"u": e["u"], "v": e["v"], "sig": sig_u}
    return out(split(cols, ranged(row_of(e["v"]), ctx.starts), ctx.ranges))


def _veto_second(ctx: Context, parts: list[Part], *pieces: Cols):
    sigs = _read(parts, ["sig"])["sig"]
    width = sigs.type.list_size
    e = concat(pieces, {**EDGES, "sig": np.zeros((0, width), np.uint32)})
    sig_v = _fixed(sigs, width)[row_of(e["v"]) - parts[0].start]
    keep = np.mean(e["sig"] == sig_v, axis=1) >= ctx.verify if len(sig_v) else np.zeros(0, bool)
    return out(both_ways(e["u"][keep], e["v"][keep], ctx.n))


# -- 4. repeated ids ----------------------------------------------------------------------------------
def _repeats(ctx: Context, *pieces: Cols):
    c = concat(pieces, {"hash": np.zeros(0, np.uint64), "row": np.zeros(0, np.int64)})
    order = np.lexsort((c["row"], c["hash"]))
    h, row = c["hash"][order], c["row"][order]
    again = row[1:][h[1:] == h[:-1]]
    return out(split({"row": again}, ranged(again, ctx.starts), ctx.ranges))


def _id_hashes(ctx: Context, parts: list[Part]):
    h = _id_hashes_of(_read(parts, ["id"], "decisions")["id"])
    return out(split({"hash": h}, hashed(h, ctx.n), ctx.n))


def _any_repeat(*pieces: Cols) -> bool:
    h = np.sort(concat(pieces, {"hash": np.zeros(0, np.uint64)})["hash"])
    return bool(np.any(h[1:] == h[:-1]))


# -- 5. assemble --------------------------------------------------------------------------------------
def _assemble(ctx: Context, index: int, parts: list[Part], n_exact: int, n_roots: int, *pieces: Cols):
    lo = parts[0].start
    cols = _read(parts, ["id", "reason", "stage", "score"])
    m = len(cols["id"])
    exact = concat(pieces[:n_exact], PAIRS)
    roots = concat(pieces[n_exact:n_exact + n_roots], ROOTS)
    again = np.sort(concat(pieces[n_exact + n_roots:], ROWS)["row"])

    base = cols["stage"].to_pylist()
    stage = np.array([KEPT if s is None else INPUT if s == "input" else HEURISTICS for s in base], dtype=np.uint8)
    candidate = stage == KEPT
    dup_of = np.full(m, -1, dtype=np.int64)
    cluster = np.where(candidate, np.arange(lo, lo + m), -1).astype(np.int64)
    duplicates = np.zeros(m, dtype=np.int32)
    at = exact["row"] - lo
    stage[at], dup_of[at] = EXACT, exact["keeper"]
    at = roots["row"] - lo
    cluster[at], duplicates[at] = roots["root"], roots["absorbed"]
    near = candidate & (stage == KEPT) & (cluster != np.arange(lo, lo + m))
    stage[near], dup_of[near] = NEAR, cluster[near]
    score = cols["score"].to_numpy(zero_copy_only=False).astype(np.float32)
    if ctx.classify:
        stage[(stage == KEPT) & ~(score >= ctx.threshold)] = CLASSIFIER
    ids = cols["id"]
    if len(again):
        values = ids.to_pylist()
        starts = np.array([s for s, _ in ctx.files])
        which = np.searchsorted(starts, again, side="right") - 1
        for r, w in zip(again.tolist(), which.tolist()):
            values[r - lo] = f"{values[r - lo]}@{ctx.files[w][1]}#{r - ctx.files[w][0]}"
        ids = pa.array(values, pa.string())
    decisions = Decisions(stage, dup_of, cluster, duplicates, score, cols["reason"], ids, again - lo)
    for part in parts:
        a, b = part.start - lo, part.start - lo + part.rows
        table = pa.table({"id": ids[a:b], "stage": stage[a:b], "dup_of": dup_of[a:b], "cluster": cluster[a:b],
                          "duplicates": duplicates[a:b], "score": pa.array(score[a:b], pa.float32()),
                          "reason": cols["reason"][a:b]})
        _write(decision_path(part), table)
    wanted = dup_of >= 0
    asks = {"row": np.arange(lo, lo + m)[wanted], "keeper": dup_of[wanted]}
    tally = Tally.of(decisions, ctx.threshold)
    return (*split(asks, ranged(asks["keeper"], ctx.starts), ctx.ranges), tally)


def _answer(ctx: Context, parts: list[Part], *pieces: Cols):
    """The id of each asked-for keeper (a row of this range), sent back to the asking row's range."""
    asks = concat(pieces, PAIRS)
    ids = _read(parts, ["id"], "decisions")["id"]
    names = np.array(ids.take(pa.array(asks["keeper"] - parts[0].start)).to_pylist(), dtype=object)
    answer = {"row": asks["row"], "name": names}
    return out(split(answer, ranged(answer["row"], ctx.starts), ctx.ranges))


def _finalise(ctx: Context, parts: list[Part], *pieces: Cols) -> None:
    """Each row's final reason (a duplicate names its keeper's id), as `Decisions.reasons` words it."""
    answer = concat(pieces, NAMES)
    keeper = dict(zip(answer["row"].tolist(), answer["name"].tolist()))
    for part in parts:
        path = decision_path(part)
        table = pa.ipc.open_file(pa.py_buffer(path.read_bytes())).read_all()
        stage = table.column("stage").to_numpy()
        reason = table.column("reason").to_pylist()
        for i, s in enumerate(stage.tolist()):
            if s == KEPT:
                reason[i] = None
            elif s == EXACT:
                reason[i] = f"exact_duplicate_of:{keeper[part.start + i]}"
            elif s == NEAR:
                reason[i] = f"near_duplicate_of:{keeper[part.start + i]}"
            elif s == CLASSIFIER:
                reason[i] = "edu_below_threshold"
        table = table.set_column(table.schema.get_field_index("reason"), "reason", pa.array(reason, pa.string()))
        _write(path, table)


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
