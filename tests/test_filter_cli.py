"""`textbook filter` on the command line: files as arguments next to the annotate/train subcommands."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from textbook.shards import read_table
from tests.clirun import run_cli

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "data" / "labels"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTBOOK_MODEL", "TEXTBOOK_FILTER_CLASSIFIER", "TEXTBOOK_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray textbook.toml


def cli(capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "filter", *args)


def rows(n: int, split: str = "heldout") -> list[dict]:
    lines = (LABELS / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line) for line in lines]


def test_files_as_arguments_run_the_filter(capsys, tmp_path):
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in rows(40)]), tmp_path / "web.parquet")
    code, out, err = cli(capsys, "web.parquet", "--out", "runs/f", "--workers", "1")
    assert code == 0, err
    assert "40 documents:" in out and "kept" in out and "report.md" in out
    kept, removed = read_table(tmp_path / "runs/f/kept"), read_table(tmp_path / "runs/f/removed")
    assert kept.num_rows + removed.num_rows == 40
    # options before the files work too, and the finished run is reported, not redone
    code, out, _ = cli(capsys, "--out", "runs/f", "--workers", "1", "web.parquet")
    assert code == 0 and "already complete" in out


def test_a_config_file_read_from_the_working_directory_is_named_in_the_summary(capsys, tmp_path):
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in rows(10)]), tmp_path / "web.parquet")
    (tmp_path / "textbook.toml").write_text("[filter]\nworkers = 1\n")  # picked up without being asked for
    code, out, err = cli(capsys, "web.parquet", "--out", "f")
    assert code == 0, err
    assert out.rstrip().endswith(f"config file: {tmp_path / 'textbook.toml'}"), out
    code, out, err = cli(capsys, "web.parquet", "--out", "g", "--config", "textbook.toml")
    assert code == 0 and f"config file: {tmp_path / 'textbook.toml'}" in out, err
    (tmp_path / "textbook.toml").unlink()
    code, out, err = cli(capsys, "web.parquet", "--out", "h")
    assert code == 0 and "config file" not in out, out


def test_help_teaches_the_main_use_and_lists_the_subcommands(capsys):
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    assert "textbook filter examples/web.parquet --out runs/filter" in out
    assert "annotate" in out and "train" in out and "--threshold" in out
    assert "[filter]" in out and all(p.stem in out for p in (ROOT / "filters").glob("*.yaml")), out  # every preset
    code, out, _ = cli(capsys, "train", "--help")
    assert code == 0 and "--out" in out and "cross-validated" in out


def test_train_prints_cross_validated_metrics_and_saves_a_model(capsys, tmp_path):
    with open(tmp_path / "labels.jsonl", "w", encoding="utf-8") as fh:
        for r in rows(120, "train"):
            fh.write(json.dumps({"text": r["text"], "label": r["label"]}) + "\n")
    code, out, err = cli(capsys, "train", "labels.jsonl", "--out", "model", "--folds", "3")
    assert code == 0, err
    assert "3-fold cross-validation" in out and "F1 at threshold 3" in out and "ROC AUC" in out
    assert "confusion matrix" in out
    assert (tmp_path / "model" / "model.json").is_file() and (tmp_path / "model" / "weights.npz").is_file()
    # the new model is usable by the filter
    pq.write_table(pa.Table.from_pylist([{"text": r["text"]} for r in rows(10)]), tmp_path / "w.parquet")
    code, out, err = cli(capsys, "w.parquet", "--out", "runs/g", "--classifier", "model", "--workers", "1")
    assert code == 0, err
    assert read_table(tmp_path / "runs/g/kept").num_rows + read_table(tmp_path / "runs/g/removed").num_rows == 10


def test_user_mistakes_are_one_line_errors(capsys, tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "w.parquet")
    code, out, err = cli(capsys, "w.parquet", "--out", "o")
    assert code == 1 and err.startswith("error: ") and "its columns are: body" in err and "Traceback" not in err
    code, _, err = cli(capsys, "w.parquet", "--text-column", "body", "--out", "o2", "--preset", "nope")
    assert code == 2 and "no preset named 'nope'" in err
    code, _, err = cli(capsys, "missing.parquet", "--out", "o3")
    assert code == 1 and "does not exist" in err
    code, _, err = cli(capsys, "annotate", "w.parquet", "--out", "labels", "--text-column", "body")
    assert code == 2 and "no teacher model configured" in err


def test_annotate_scores_a_sample_with_the_teacher_and_train_reads_it(capsys, tmp_path, fake_teacher):
    docs = rows(30)
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "text": r["text"]} for r in docs]), tmp_path / "w.parquet")

    def reply(messages):
        text = messages[-1]["content"]
        return f"The extract teaches a little.\nEducational score: {len(text) % 6}"

    fake_teacher.replies = reply
    env = fake_teacher.env()
    code, out, err = cli(capsys, "annotate", "w.parquet", "--n", "20", "--out", "labels", "--seed", "3",
                         "--base-url", env["OPENAI_BASE_URL"], "--api-key", env["OPENAI_API_KEY"],
                         "--model", env["TEXTBOOK_MODEL"])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "20 documents sampled: 20 scored, 0 rejected", out
    table = read_table(tmp_path / "labels")
    assert table.num_rows == 20 and set(table.column("edu_score").to_pylist()) <= set(range(6))
    scores = table.column("edu_score").to_pylist()
    assert lines[1] == "  scores  " + "   ".join(f"{k}: {scores.count(k)}" for k in range(6)), out
    assert lines[2].startswith("  teacher: 20 requests, 0 cache hits") and "prompt +" in lines[2], out
    assert lines[3].startswith("labels: labels  (next: textbook filter train labels"), out
    assert len(fake_teacher.chat_requests()) == 20
    # a rerun resumes: nothing asked again, and the summary says so
    code, again, err = cli(capsys, "annotate", "w.parquet", "--n", "20", "--out", "labels", "--seed", "3",
                           "--base-url", env["OPENAI_BASE_URL"], "--api-key", env["OPENAI_API_KEY"],
                           "--model", env["TEXTBOOK_MODEL"])
    assert code == 0 and again.splitlines()[:2] == lines[:2] and "nothing asked" in again, again
    assert len(fake_teacher.chat_requests()) == 20
    code, out, err = cli(capsys, "train", "labels", "--out", "model", "--folds", "2")
    assert code == 0, err
    assert "edu5 labels" in out and "MAE" in out and "Spearman" in out


def test_textbook_toml_filter_section_applies_and_flags_win(capsys, tmp_path):
    pq.write_table(pa.Table.from_pylist([{"body": r["text"]} for r in rows(30)]), tmp_path / "w.parquet")
    (tmp_path / "textbook.toml").write_text('[filter]\ntext_column = "body"\nthreshold = 5.0\nworkers = 1\n')
    code, out, err = cli(capsys, "w.parquet", "--out", "a")
    assert code == 0, err
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["edu_score"]["threshold"] == 5.0 and report["removed_by_stage"]["classifier"] > 0
    code, out, err = cli(capsys, "w.parquet", "--out", "b", "--threshold", "0")
    assert code == 0, err
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["edu_score"]["threshold"] == 0.0 and report["removed_by_stage"]["classifier"] == 0
    (tmp_path / "textbook.toml").write_text('[filter]\nthresold = 2\n')
    code, _, err = cli(capsys, "w.parquet", "--out", "c")
    assert code == 2 and "unknown key(s) thresold" in err


def test_textbook_toml_annotate_section_applies_and_flags_win(capsys, tmp_path, fake_teacher):
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "body": r["text"]} for r in rows(12)]), tmp_path / "w.parquet")
    fake_teacher.replies = "Some teaching.\nEducational score: 3"
    env = fake_teacher.env()
    (tmp_path / "textbook.toml").write_text(
        f'[annotate]\nn = 4\ntext_column = "body"\n\n[teacher]\nbase_url = "{env["OPENAI_BASE_URL"]}"\n'
        f'api_key = "{env["OPENAI_API_KEY"]}"\nmodel = "{env["TEXTBOOK_MODEL"]}"\n')
    code, out, err = cli(capsys, "annotate", "w.parquet", "--out", "a")
    assert code == 0, err
    assert out.startswith("4 documents sampled: 4 scored") and read_table(tmp_path / "a").num_rows == 4, out
    code, out, err = cli(capsys, "annotate", "w.parquet", "--out", "b", "--n", "6")
    assert code == 0 and out.startswith("6 documents sampled"), err
    (tmp_path / "textbook.toml").write_text("[annotate]\nsamples = 4\n")
    code, _, err = cli(capsys, "annotate", "w.parquet", "--out", "c")
    assert code == 2 and "unknown key(s) samples in [annotate]" in err and err.count("\n") == 1, err


def test_annotate_help_shows_the_defaults_of_annotate_config(capsys):
    import dataclasses

    from textbook.filter.annotate import AnnotateConfig

    code, out, _ = cli(capsys, "annotate", "--help")
    help_text = " ".join(out.replace("│", " ").split())  # Rich wraps the help into a box
    for field in dataclasses.fields(AnnotateConfig):
        if field.name != "cache":  # --no-cache: a switch, not a value
            assert f"(default: {field.default})" in help_text, (field.name, help_text)


def test_textbook_toml_filter_train_section_applies_and_flags_win(capsys, tmp_path):
    with open(tmp_path / "labels.jsonl", "w", encoding="utf-8") as fh:
        for r in rows(120, "train"):
            fh.write(json.dumps({"body": r["text"], "label": r["label"]}) + "\n")
    (tmp_path / "textbook.toml").write_text('[filter_train]\ntext_column = "body"\nfolds = 2\nthreshold = 2.5\n')
    code, out, err = cli(capsys, "train", "labels.jsonl", "--out", "m1")
    assert code == 0, err
    assert "2-fold cross-validation" in out and "F1 at threshold 2.5" in out, out
    code, out, err = cli(capsys, "train", "labels.jsonl", "--out", "m2", "--folds", "3")
    assert code == 0 and "3-fold cross-validation" in out, err
    (tmp_path / "textbook.toml").write_text("[filter_train]\nfold = 2\n")
    code, _, err = cli(capsys, "train", "labels.jsonl", "--out", "m3")
    assert code == 2 and "unknown key(s) fold in [filter_train]" in err and err.count("\n") == 1, err
    code, _, err = cli(capsys, "train", "labels.jsonl", "--out", "m3", "--config", "none.toml")
    assert code == 2 and "config file none.toml does not exist" in err
