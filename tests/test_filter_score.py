"""`textbook filter score`: every input row, in order, with its edu_score and the model's name; nothing dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.clirun import run_cli
from textbook.errors import TextbookError
from textbook.filter.config import FilterRun, ScoreConfig, load_preset
from textbook.filter.run import run_filter
from textbook.filter.score import score_files
from textbook.shards import read_table

LABELS = Path(__file__).resolve().parent / "data" / "labels" / "heldout.jsonl"


def docs(n: int) -> list[dict]:
    return [{"id": f"d{i}", "text": json.loads(line)["text"], "url": f"https://example.org/{i}"}
            for i, line in enumerate(LABELS.read_text(encoding="utf-8").splitlines()[:n])]


def test_every_row_is_scored_in_order_and_matches_the_filters_scores(tmp_path):
    rows = docs(60)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "web.parquet")
    report = score_files([str(tmp_path / "web.parquet")], tmp_path / "s", ScoreConfig(checkpoint_rows=7, batch_size=9))
    table = read_table(tmp_path / "s" / "scored")
    assert table.column("id").to_pylist() == [r["id"] for r in rows]  # all of them, in order, nothing dropped
    assert table.column("url").to_pylist() == [r["url"] for r in rows]  # the input's columns as they are
    assert set(table.column("edu_model").to_pylist()) == {"textbook-edu-hashed-v1"} and report["scored"] == 60
    # the filter scores the documents it keeps with the same model: the same numbers
    run_filter([str(tmp_path / "web.parquet")], tmp_path / "f", FilterRun(workers=1), load_preset("default"))
    kept = {r["id"]: r["edu_score"] for r in read_table(tmp_path / "f" / "kept", ["id", "edu_score"]).to_pylist()}
    ours = dict(zip(table.column("id").to_pylist(), table.column("edu_score").to_pylist()))
    assert kept and all(abs(ours[i] - s) < 1e-4 for i, s in kept.items())
    # a rerun resumes from its checkpoint: no row twice
    again = score_files([str(tmp_path / "web.parquet")], tmp_path / "s", ScoreConfig(checkpoint_rows=7, batch_size=9))
    assert again["rows"] == 60 == read_table(tmp_path / "s" / "scored").num_rows


def test_rows_without_text_keep_their_place_with_a_null_score(tmp_path):
    lines = [json.dumps({"id": "a", "text": docs(1)[0]["text"]}), json.dumps({"id": "b", "text": None}),
             "this line is not JSON", json.dumps({"id": "c", "text": "A short page about loops."})]
    (tmp_path / "w.jsonl").write_text("\n".join(lines) + "\n")
    report = score_files([str(tmp_path / "w.jsonl")], tmp_path / "s")
    table = read_table(tmp_path / "s" / "scored")
    scores = table.column("edu_score").to_pylist()
    assert table.num_rows == 4 and scores[1] is None and scores[2] is None and scores[0] is not None and scores[3] is not None
    assert report["unscored"] == 2


def test_bad_input_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pq.write_table(pa.Table.from_pylist([{"id": "a", "body": "x"}]), tmp_path / "w.parquet")
    code, _, err = run_cli(capsys, "filter", "score", "w.parquet", "--out", "s")
    assert code == 1 and "has no column 'text' (it has id, body): pass --text-column" in err and err.count("\n") == 1
    pq.write_table(pa.Table.from_pylist([{"text": "x", "edu_score": 1.0}]), tmp_path / "v.parquet")
    with pytest.raises(TextbookError, match="already has a column 'edu_score'"):
        score_files([str(tmp_path / "v.parquet")], tmp_path / "t")
