"""`textbook filter --engine ray`: the analysis pass as Ray tasks on a local Ray (2 CPUs), the same output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.clirun import run_cli
from textbook.shards import read_table

pytest.importorskip("ray")
LABELS = Path(__file__).resolve().parent / "data" / "labels" / "heldout.jsonl"


def corpus(path: Path) -> None:
    docs = [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines()[:150]]
    rows = [{"id": f"d{i}", "text": d["text"]} for i, d in enumerate(docs)]
    # planted near-duplicates: a word changed at the end, a paragraph repeated
    rows += [{"id": f"near{i}", "text": rows[i]["text"] + " Edited."} for i in range(0, 60, 3)]
    rows += [{"id": f"exact{i}", "text": rows[i]["text"]} for i in range(1, 40, 7)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=50)


def test_ray_engine_keeps_exactly_the_ids_the_local_engine_keeps(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus(tmp_path / "web.parquet")
    code, out, err = run_cli(capsys, "filter", "web.parquet", "--out", "local", "--workers", "2", "--batch-size", "40")
    assert code == 0, err
    code, out, err = run_cli(capsys, "filter", "web.parquet", "--out", "ray", "--workers", "2", "--batch-size", "40",
                             "--engine", "ray")
    assert code == 0, err
    for stream in ("kept", "removed"):
        a = read_table(tmp_path / "local" / stream).sort_by("id").to_pylist()
        b = read_table(tmp_path / "ray" / stream).sort_by("id").to_pylist()
        assert a == b, stream  # ids, reasons, scores, clusters: the same
    removed = read_table(tmp_path / "ray" / "removed", ["id", "reason"]).to_pylist()
    assert any(r["reason"].startswith("near_duplicate_of:") for r in removed)
    assert any(r["reason"].startswith("exact_duplicate_of:") for r in removed)
    # the engine is how, not what: a finished run is not redone when asked with the other engine
    code, out, err = run_cli(capsys, "filter", "web.parquet", "--out", "ray", "--batch-size", "40")
    assert code == 0 and "already complete" in out, err


def test_an_unreachable_cluster_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus(tmp_path / "web.parquet")
    code, out, err = run_cli(capsys, "filter", "web.parquet", "--out", "r", "--engine", "ray", "--ray-address", "127.0.0.1:1")
    assert code == 2 and err.startswith("error: no Ray cluster at --ray-address 127.0.0.1:1") and err.count("\n") == 1, err


PRESETS = {
    "longest": "dedup:\n  keep: longest\n",
    "highest_score": "dedup:\n  keep: highest_score\n",
    # loose bands (28 x 4) so that many pairs of moderate overlap become candidates for the check to refuse
    "verify": "dedup:\n  bands: 28\n  rows: 4\n  verify: 0.5\n  keep: longest\n",
    "near_only": "dedup:\n  exact: false\nclassifier:\n  enabled: false\n",
    "exact_only": "dedup:\n  near: false\n  keep: longest\n",
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_dedup_rule_gives_the_same_answer_on_both_engines(name, capsys, tmp_path, monkeypatch):
    """Keep rules, the signature check, exact or near alone; two files whose ids repeat (renamed ID@FILE#ROW),
    Parquet (row groups that do not align with batches), JSONL and Arrow: decisions that cross files and ranges."""
    monkeypatch.chdir(tmp_path)
    corpus(tmp_path / "web.parquet")
    rows = pq.read_table(tmp_path / "web.parquet").to_pylist()
    # the same ids again, with texts that are both new and copies (a copy a few words longer wins `longest`)
    again = [{"id": r["id"], "text": (r["text"] + " More words at the end here." if i % 4 == 0 else r["text"][::-1])}
             for i, r in enumerate(rows[:60])]
    # documents that share half their text with two others: Jaccard ~1/3 to each
    again += [{"id": f"mix{i}", "text": rows[i]["text"][len(rows[i]["text"]) // 2:] + " " + rows[i + 1]["text"][:len(rows[i + 1]["text"]) // 2]}
              for i in range(60, 120)]
    (tmp_path / "again.jsonl").write_text("".join(json.dumps(r) + "\n" for r in again), encoding="utf-8")
    (tmp_path / "preset.yaml").write_text(PRESETS[name], encoding="utf-8")
    table = pa.Table.from_pylist([{"id": f"arrow{i}", "text": r["text"]} for i, r in enumerate(rows[100:150])])
    with pa.ipc.new_file(tmp_path / "more.arrow", table.schema) as writer:  # two record batches, cut on their own
        for batch in table.to_batches(max_chunksize=35):
            writer.write_batch(batch)
    args = ["web.parquet", "again.jsonl", "more.arrow", "--preset", "preset.yaml", "--workers", "2", "--batch-size", "30"]
    code, out, err = run_cli(capsys, "filter", *args, "--out", "local")
    assert code == 0, err
    code, out, err = run_cli(capsys, "filter", *args, "--out", "ray", "--engine", "ray")
    assert code == 0, err
    for stream in ("kept", "removed"):
        a = read_table(tmp_path / "local" / stream).to_pylist()
        b = read_table(tmp_path / "ray" / stream).to_pylist()
        assert a == b, stream  # the same rows, in the same order
    local = json.loads((tmp_path / "local" / "report.json").read_text())
    ray = json.loads((tmp_path / "ray" / "report.json").read_text())
    for key in ("kept", "removed", "removed_by_stage", "reasons", "ids_renamed", "dedup", "edu_score"):
        assert local[key] == ray[key], key
    assert ray["ids_renamed"]["rows"] == 60 and ray["kept_plus_removed_equals_input"]
