"""textbook filter end to end: outputs, kept + removed = input, dedup, reasons, resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textbook.errors import TextbookError
from textbook.filter.config import FilterRun, load_preset
from textbook.filter.heuristics import Heuristics
from textbook.filter.run import run_filter
from textbook.minhash import WordTable
from textbook.shards import read_manifest, read_table

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "data" / "labels" / "heldout.jsonl"


def real_docs(n: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()]
    return rows[:n] if n else rows


def edited(text: str, rate: float, seed: int) -> str:
    rng = random.Random(seed)
    toks = text.split(" ")
    for i in rng.sample(range(len(toks)), max(1, int(rate * len(toks)))):
        toks[i] = "zebra"
    return " ".join(toks)


def passing(docs: list[dict]) -> list[dict]:
    """The documents that pass the default heuristics."""
    texts = [d["text"] for d in docs]
    reasons = Heuristics(load_preset("default")).reasons(texts, WordTable(texts))
    return [d for d, r in zip(docs, reasons) if r is None]


def corpus(tmp_path: Path) -> tuple[Path, list[dict]]:
    """Real documents plus an exact copy and a 1%-edited copy of two that pass the heuristics."""
    docs = [{"id": r["id"], "text": r["text"], "source": r["source"]} for r in real_docs()]
    english = passing([d for d in docs if d["source"] == "web-educational"])
    docs.append({"id": "copy-exact", "text": english[0]["text"], "source": "copy"})
    docs.append({"id": "copy-near", "text": edited(english[1]["text"], 0.01, 1), "source": "copy"})
    path = tmp_path / "web.parquet"
    pq.write_table(pa.Table.from_pylist(docs), path, row_group_size=50)
    return path, docs


def outputs(out: Path) -> tuple[pa.Table, pa.Table]:
    return read_table(out / "kept"), read_table(out / "removed")


def run(inputs, out, **kw) -> dict:
    preset = kw.pop("preset", "default")
    return run_filter([str(p) for p in inputs], out, FilterRun(workers=kw.pop("workers", 1), batch_size=kw.pop("batch_size", 64), **kw),
                      load_preset(preset))


def test_every_row_lands_in_kept_or_removed_with_a_reason(tmp_path):
    path, docs = corpus(tmp_path)
    report = run([path], tmp_path / "out")
    kept, removed = outputs(tmp_path / "out")
    assert kept.num_rows + removed.num_rows == len(docs) == report["rows"]
    assert sorted(kept.column("id").to_pylist() + removed.column("id").to_pylist()) == sorted(d["id"] for d in docs)
    assert report["kept_plus_removed_equals_input"] is True
    # original columns kept, ours added
    assert {"id", "text", "source", "edu_score", "cluster_id", "duplicates"} <= set(kept.column_names)
    assert set(removed.column_names) == set(kept.column_names) | {"stage", "reason"}
    assert all(removed.column("reason").to_pylist()) and all(removed.column("stage").to_pylist())
    # the exact and the near copy are removed as duplicates of their originals
    reasons = dict(zip(removed.column("id").to_pylist(), removed.column("reason").to_pylist()))
    english = passing([d for d in docs if d["source"] == "web-educational"])
    assert reasons["copy-exact"] == f"exact_duplicate_of:{english[0]['id']}"
    assert reasons["copy-near"] == f"near_duplicate_of:{english[1]['id']}"
    # kept rows are above the threshold; removed-by-classifier rows below it
    assert min(kept.column("edu_score").to_pylist()) >= 3.0
    stages = removed.column("stage").to_pylist()
    scores = removed.column("edu_score").to_pylist()
    assert all(s < 3.0 for st, s in zip(stages, scores) if st == "classifier")
    # German pages fail Gopher's English stop-word rule
    assert report["reasons"]["heuristics"].get("gopher_few_stop_words", 0) > 0
    for name in ("report.json", "report.md", "scores.png"):
        assert (tmp_path / "out" / name).stat().st_size > 100
    assert (tmp_path / "out" / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_outputs_open_with_pyarrow_dataset_and_polars(tmp_path):
    path, docs = corpus(tmp_path)
    run([path], tmp_path / "out")
    import pyarrow.dataset as ds

    n = ds.dataset(sorted(map(str, (tmp_path / "out" / "kept").glob("*.parquet"))), format="parquet").count_rows()
    polars = pytest.importorskip("polars")
    m = polars.scan_parquet(str(tmp_path / "out" / "removed" / "*.parquet")).collect().height
    assert n + m == len(docs)


def test_keep_policy_longest_keeps_the_longer_copy(tmp_path):
    base = real_docs()[0]["text"]
    longer = base + "\n\nOne more closing sentence adds some length to this copy of the document here."
    rows = [{"id": "a", "text": base}, {"id": "b", "text": longer}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    preset = tmp_path / "p.yaml"
    preset.write_text("dedup: {keep: longest}\nclassifier: {enabled: false}\n"
                      "gopher_quality: {enabled: false}\ngopher_repetition: {enabled: false}\nc4: {enabled: false}\nfineweb: {enabled: false}\n")
    run([tmp_path / "in.parquet"], tmp_path / "out", preset=str(preset))
    kept, removed = outputs(tmp_path / "out")
    assert kept.column("id").to_pylist() == ["b"]
    assert kept.column("duplicates").to_pylist() == [1]
    assert removed.column("reason").to_pylist() == ["near_duplicate_of:b"]
    assert removed.column("cluster_id").to_pylist() == kept.column("cluster_id").to_pylist() == [1]


def test_jsonl_arrow_directories_and_globs_mix(tmp_path):
    docs = real_docs(30)
    (tmp_path / "d").mkdir()
    with open(tmp_path / "d" / "a.jsonl", "w", encoding="utf-8") as fh:
        for r in docs[:10]:
            fh.write(json.dumps({"id": r["id"], "text": r["text"], "extra": 1}) + "\n")
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in docs[10:20]]), tmp_path / "b.parquet")
    table = pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in docs[20:]])
    with pa.OSFile(str(tmp_path / "c.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    report = run([tmp_path / "d", str(tmp_path / "*.parquet"), tmp_path / "c.arrow"], tmp_path / "out", preset="dedup-only")
    kept, removed = outputs(tmp_path / "out")
    assert report["rows"] == 30 and kept.num_rows + removed.num_rows == 30
    assert set(kept.column("id").to_pylist()) == {r["id"] for r in docs}
    extra = dict(zip(kept.column("id").to_pylist(), kept.column("extra").to_pylist()))
    assert extra[docs[0]["id"]] == 1 and extra[docs[15]["id"]] is None


def test_bad_rows_become_recorded_drops(tmp_path):
    good = real_docs(3)
    lines = [json.dumps({"id": "ok", "text": good[0]["text"]}).encode(),
             json.dumps({"id": "null", "text": None}).encode(),
             b'{"id": "broken", "text": "unterminated',
             json.dumps({"id": "latin1", "text": "caf\u00e9 " * 80}).encode().replace("\\u00e9".encode(), b"\xe9"),
             json.dumps({"id": "huge", "text": "word " * 2_100_000}).encode(),
             json.dumps({"id": "ok", "text": good[1]["text"]}).encode()]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    run([tmp_path / "in.jsonl"], tmp_path / "out", preset="dedup-only")
    kept, removed = outputs(tmp_path / "out")
    reasons = dict(zip(removed.column("id").to_pylist(), removed.column("reason").to_pylist()))
    assert kept.num_rows + removed.num_rows == 6
    assert reasons["null"] == "null_text"
    assert reasons["latin1"] == "invalid_utf8"
    assert reasons["huge"] == "doc_too_long"
    assert "ok@in.jsonl#5" not in reasons  # the second row with id "ok" is its own document
    broken = [r for r in removed.to_pylist() if r["reason"] == f"invalid_json:{tmp_path / 'in.jsonl'}:3"]  # file:line
    assert len(broken) == 1 and broken[0]["text"] == '{"id": "broken", "text": "unterminated'  # kept whole
    assert kept.column("id").to_pylist() == ["ok", "ok@in.jsonl#5"]


def test_invalid_utf8_in_parquet_is_a_recorded_drop_and_the_output_stays_valid(tmp_path):
    texts = pa.array([real_docs(1)[0]["text"].encode(), b"bad \xff\xfe bytes " * 30], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"id": ["a", "b"], "text": texts}), tmp_path / "in.parquet")
    run([tmp_path / "in.parquet"], tmp_path / "out", preset="dedup-only")
    kept, removed = outputs(tmp_path / "out")
    assert removed.column("reason").to_pylist() == ["invalid_utf8"]
    assert "\ufffd" in removed.column("text")[0].as_py()
    assert kept.column("id").to_pylist() == ["a"]


def test_missing_text_column_names_the_columns_that_exist(tmp_path):
    pq.write_table(pa.table({"id": ["1"], "content": ["x"], "url": ["u"]}), tmp_path / "in.parquet")
    with pytest.raises(TextbookError, match=r"no column 'text'; its columns are: id, content, url"):
        run([tmp_path / "in.parquet"], tmp_path / "out")
    assert not (tmp_path / "out" / "kept").exists()


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"PAR1 this is not parquet PAR1", "not a readable parquet")])
def test_empty_and_corrupt_parquet_are_clear_errors(tmp_path, content, match):
    (tmp_path / "in.parquet").write_bytes(content)
    with pytest.raises(TextbookError, match=match):
        run([tmp_path / "in.parquet"], tmp_path / "out")


def test_missing_inputs_and_unknown_presets_are_clear_errors(tmp_path):
    with pytest.raises(TextbookError, match="does not exist"):
        run([tmp_path / "nope.parquet"], tmp_path / "out")
    with pytest.raises(TextbookError, match="no files match"):
        run([str(tmp_path / "*.jsonl")], tmp_path / "out")
    with pytest.raises(TextbookError, match="no preset named"):
        load_preset("no-such-preset")


def test_unreadable_classifier_is_a_clear_error(tmp_path):
    path, _ = corpus(tmp_path)
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "model.json").write_text("{not json")
    (bad / "weights.npz").write_bytes(b"garbage")
    with pytest.raises(TextbookError, match="unreadable"):
        run([path], tmp_path / "out", classifier=str(bad))


def test_a_rerun_after_a_kill_resumes_and_gives_the_same_result(tmp_path, monkeypatch):
    path, docs = corpus(tmp_path)
    run([path], tmp_path / "ref")
    ref_kept, ref_removed = outputs(tmp_path / "ref")

    import textbook.filter.run as runmod

    # kill pass 1 after a few parts, then kill pass 2 after its first checkpoint
    real_write = runmod.write_part
    calls = {"n": 0}

    def dying_write(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_write(*a, **k)

    monkeypatch.setattr(runmod, "write_part", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run([path], tmp_path / "out")
    monkeypatch.setattr(runmod, "write_part", real_write)
    assert len(list((tmp_path / "out" / ".work" / "pass1").glob("part-*"))) == 2

    real_batch = runmod.OutputLayout.output_batch
    seen = {"n": 0}

    def dying_batch(self, *a, **k):
        seen["n"] += 1
        if seen["n"] == 3:
            raise KeyboardInterrupt
        return real_batch(self, *a, **k)

    monkeypatch.setattr(runmod.OutputLayout, "output_batch", dying_batch)
    with pytest.raises(KeyboardInterrupt):
        run([path], tmp_path / "out", checkpoint_rows=64)
    monkeypatch.setattr(runmod.OutputLayout, "output_batch", real_batch)
    assert read_manifest(tmp_path / "out" / "kept")["complete"] is False

    report = run([path], tmp_path / "out")
    kept, removed = outputs(tmp_path / "out")
    assert kept.num_rows + removed.num_rows == len(docs) == report["rows"]
    assert kept.column("id").to_pylist() == ref_kept.column("id").to_pylist()
    assert removed.column("reason").to_pylist() == ref_removed.column("reason").to_pylist()
    # a finished run is not redone
    assert run([path], tmp_path / "out")["resumed"] == "already complete"


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    path, _ = corpus(tmp_path)
    run([path], tmp_path / "out", preset="dedup-only")
    with pytest.raises(TextbookError, match="other inputs or settings"):
        run([path], tmp_path / "out", preset="fineweb")


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_two_workers_give_the_same_decisions_as_one(tmp_path, monkeypatch, start):
    import multiprocessing

    import textbook.workers

    # spawn: what platforms without fork use; the workers get the analyser from their initializer
    monkeypatch.setattr(textbook.workers, "mp_context", lambda: multiprocessing.get_context(start))
    path, _ = corpus(tmp_path)
    run([path], tmp_path / "one", workers=1)
    run([path], tmp_path / "two", workers=2)
    a, b = read_table(tmp_path / "one" / "removed"), read_table(tmp_path / "two" / "removed")
    assert a.column("reason").to_pylist() == b.column("reason").to_pylist()
    np.testing.assert_allclose(read_table(tmp_path / "one" / "kept").column("edu_score").to_numpy(),
                               read_table(tmp_path / "two" / "kept").column("edu_score").to_numpy())


def test_small_character_groups_give_the_same_result(tmp_path, monkeypatch):
    import textbook.filter.analyse as analyse

    path, _ = corpus(tmp_path)
    run([path], tmp_path / "ref")
    monkeypatch.setattr(analyse, "GROUP_CHARS", 3000)  # most documents get a group of their own
    run([path], tmp_path / "small")
    for sub in ("kept", "removed"):
        a, b = read_table(tmp_path / "ref" / sub), read_table(tmp_path / "small" / sub)
        assert a.column("id").to_pylist() == b.column("id").to_pylist()
        np.testing.assert_allclose(a.column("edu_score").to_numpy(zero_copy_only=False),
                                   b.column("edu_score").to_numpy(zero_copy_only=False), rtol=1e-5)


def test_an_input_without_rows(tmp_path):
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(TextbookError, match="no rows in"):
        run([tmp_path / "blank.jsonl"], tmp_path / "out")
    empty = pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())})
    pq.write_table(empty, tmp_path / "none.parquet")
    report = run([tmp_path / "none.parquet", tmp_path / "blank.jsonl"], tmp_path / "out2")
    assert report["rows"] == 0 and report["kept_plus_removed_equals_input"]


@pytest.mark.parametrize("verify,linked", [(0.5, True), (0.995, False)])
def test_signature_check_vetoes_pairs_below_its_jaccard(tmp_path, verify, linked):
    base = passing(real_docs())[0]["text"]
    rows = [{"id": "a", "text": base}, {"id": "b", "text": edited(base, 0.02, 3)}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    preset = tmp_path / "p.yaml"
    preset.write_text(f"dedup: {{bands: 16, rows: 7, verify: {verify}}}\nclassifier: {{enabled: false}}\n"
                      "gopher_quality: {enabled: false}\ngopher_repetition: {enabled: false}\nc4: {enabled: false}\n"
                      "fineweb: {enabled: false}\n")
    run([tmp_path / "in.parquet"], tmp_path / "out", preset=str(preset))
    kept, removed = outputs(tmp_path / "out")
    assert (removed.column("reason").to_pylist() == ["near_duplicate_of:a"]) is linked
    assert kept.num_rows + removed.num_rows == 2


def test_bundled_presets_load():
    high = load_preset("high-recall")
    assert (high.dedup.bands, high.dedup.rows, high.dedup.verify) == (16, 7, 0.5)
    assert load_preset("fineweb").c4.curly_bracket and not load_preset("default").c4.curly_bracket
    assert not load_preset("dedup-only").gopher_quality.enabled


def test_files_numbered_from_zero_keep_every_document_under_a_distinct_id(tmp_path):
    # Two files that each number their rows 0..n-1: the second file's good documents used to be dropped
    # as `duplicate_id` behind the first file's junk.
    good = passing(real_docs())[:40]
    n = len(good)
    junk = [{"id": i, "text": "buy now " * 3} for i in range(n)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(d) + "\n" for d in junk))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"id": i, "text": d["text"]}) + "\n" for i, d in enumerate(good)))
    report = run([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], tmp_path / "out", preset="dedup-only")
    kept, removed = outputs(tmp_path / "out")
    assert kept.num_rows + removed.num_rows == 2 * n
    kept_ids = dict(zip(kept.column("text").to_pylist(), kept.column("id").to_pylist()))
    assert [kept_ids.get(d["text"]) for d in good] == [f"{i}@b.jsonl#{i}" for i in range(n)]  # no good document lost
    ids = kept.column("id").to_pylist() + removed.column("id").to_pylist()
    assert len(set(ids)) == 2 * n and kept.schema.field("id").type == pa.string()
    assert report["ids_renamed"]["rows"] == n and report["kept_plus_removed_equals_input"]


def test_a_repeated_id_with_the_same_text_is_an_exact_duplicate(tmp_path):
    doc = passing(real_docs())[0]["text"]
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "x", "text": doc}) + "\n" + json.dumps({"id": "x", "text": doc}) + "\n")
    run([tmp_path / "in.jsonl"], tmp_path / "out", preset="dedup-only")
    kept, removed = outputs(tmp_path / "out")
    assert kept.column("id").to_pylist() == ["x"]
    assert removed.column("id").to_pylist() == ["x@in.jsonl#1"] and removed.column("reason").to_pylist() == ["exact_duplicate_of:x"]


def test_out_inside_the_input_directory_resumes_and_reads_no_output(tmp_path):
    path, docs = corpus(tmp_path)
    first = run([tmp_path], tmp_path / "out", preset="dedup-only")
    # The rerun finds out/kept/*.parquet under the input directory: it must not read them as input.
    again = run([tmp_path], tmp_path / "out", preset="dedup-only")
    assert again["resumed"] == "already complete" and again["rows"] == first["rows"] == len(docs)
    shutil.rmtree(tmp_path / "other", ignore_errors=True)
    fresh = run([tmp_path], tmp_path / "other", preset="dedup-only")  # out/ is someone else's output now: it is input
    assert fresh["rows"] > len(docs)


def test_touching_an_input_does_not_block_a_resume_but_new_bytes_do_and_say_what_changed(tmp_path):
    path, docs = corpus(tmp_path)
    run([path], tmp_path / "out", preset="dedup-only")
    os.utime(path, (1, 1))  # same bytes, another mtime (a copy, a checkout, `touch`)
    assert run([path], tmp_path / "out", preset="dedup-only")["resumed"] == "already complete"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)
    with pytest.raises(TextbookError, match=r"inputs\[web.parquet\]\.bytes: \d+ -> \d+.*rows: \d+ -> \d+"):
        run([path], tmp_path / "out", preset="dedup-only")
    with pytest.raises(TextbookError, match=r"config\.run\.threshold: null -> 2\.5"):
        run([path], tmp_path / "out", preset="dedup-only", threshold=2.5)


def test_a_step_is_one_module_named_in_a_preset(tmp_path):
    # filter/language.py is such a step; fineweb.yaml names it (FineWeb keeps English pages only).
    docs = [{"id": r["id"], "text": r["text"]} for r in real_docs()]
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "web.parquet")
    report = run([tmp_path / "web.parquet"], tmp_path / "out", preset="fineweb")
    removed = {r["id"]: r["reason"] for r in read_table(tmp_path / "out" / "removed").to_pylist()}
    german = [d["id"] for d in docs if d["id"].startswith("traf-cache-") and ".de." in d["id"]]
    assert german and all(removed.get(i) == "language_de" for i in german)  # real German pages, by their words
    assert "language_de" in report["reasons"]["heuristics"]
    steps = [name for name in report["timing"]["stages"] if name.startswith("  step ")]
    assert steps == ["  step language", "  step gopher_repetition", "  step gopher_quality", "  step c4", "  step fineweb"]
    assert report["timing"]["stages"]["  step language"]["docs"] == len(docs) - report["removed_by_stage"]["input"]

    (tmp_path / "bad.yaml").write_text("table: {enabled: true}\n")  # a module that is not a step
    with pytest.raises(TextbookError, match="unknown stage 'table'.*defines Config and Step"):
        load_preset(str(tmp_path / "bad.yaml"))
    (tmp_path / "bad.yaml").write_text("language: {keep: [xx]}\n")
    with pytest.raises(TextbookError, match="no function words for xx"):
        run([tmp_path / "web.parquet"], tmp_path / "out2", preset=str(tmp_path / "bad.yaml"))
