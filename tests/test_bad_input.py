"""Bad input, as users typed it: a one-line `error:` that names the fix (never a traceback), or, where the
input can be handled, a run that keeps everything and says where each bad row came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textbook.shards import read_table
from tests.clirun import run_cli

TEXT = "A list holds items in order; a loop visits every item in turn and sorting puts them in order. "


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTBOOK_MODEL", "TEXTBOOK_FILTER_CLASSIFIER", "TEXTBOOK_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # relative paths below; no stray textbook.toml


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows as JSONL: dicts are dumped, strings are written as the raw line."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def filter_cli(capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "filter", *args, "--workers", "1", "--preset", "dedup-only")


# -- cases that end in a one-line error -------------------------------------------------------------------
def _problem_column(tmp: Path) -> list[str]:
    write_jsonl(tmp / "in.jsonl", [{"id": "a", "text": TEXT, "_problem": "my own column"}])
    return ["filter", "in.jsonl", "--out", "o", "--workers", "1", "--preset", "dedup-only"]


def _max_duplicates(value: int):
    def case(tmp: Path) -> list[str]:
        (tmp / "textbook.toml").write_text(f"[settings]\nmax_duplicates = {value}\n")
        return ["gen", "settings", "--offline", "--n", "50", "--out", "o"]
    return case


def _train(*flags: str, toml: str = ""):
    def case(tmp: Path) -> list[str]:
        (tmp / "textbook.toml").write_text(f"[train]\n{toml}\n")
        return ["train", "--data", "shards", "--out", "run", "--init-from", "pre", *flags]
    return case


def _out_is_a_file(*argv: str):
    def case(tmp: Path) -> list[str]:
        write_jsonl(tmp / "in.jsonl", [{"id": "a", "text": TEXT}])
        (tmp / "o").write_text("my notes\n")
        return [*argv, "--out", "o"]
    return case


def _filter_input(name: str, content: bytes, *flags: str):
    def case(tmp: Path) -> list[str]:
        (tmp / name).write_bytes(content)
        return ["filter", name, "--out", "o", "--workers", "1", *flags]
    return case


def _unreadable_classifier(tmp: Path) -> list[str]:
    write_jsonl(tmp / "in.jsonl", [{"id": "a", "text": TEXT}])
    (tmp / "model").mkdir()
    (tmp / "model" / "model.json").write_text("{not json")
    return ["filter", "in.jsonl", "--out", "o", "--classifier", "model"]


def _foreign_classifier(tmp: Path) -> list[str]:
    write_jsonl(tmp / "in.jsonl", [{"id": "a", "text": TEXT}])
    (tmp / "model").mkdir()
    (tmp / "model" / "weights.pkl").write_bytes(b"\x80\x04K\x01.")  # a pickle: never loaded
    return ["filter", "in.jsonl", "--out", "o", "--classifier", "model"]


CASES = [
    # (id, setup(tmp) -> argv, exit code, words the message must hold)
    ("filter_out_is_a_file", _out_is_a_file("filter", "in.jsonl", "--workers", "1"), 1, ["--out o is a file"]),
    ("gen_out_is_a_file", _out_is_a_file("gen", "--dry-run"), 1, ["--out o is a file"]),
    ("settings_out_is_a_file", _out_is_a_file("gen", "settings", "--offline", "--n", "50"), 1, ["--out o is a file"]),
    ("filter_missing_column", _filter_input("in.jsonl", b'{"id": 1, "body": "words"}\n'), 1,
     ["no column 'text'", "its columns are: id, body", "--text-column"]),
    ("filter_empty_file", _filter_input("in.jsonl", b""), 1, ["in.jsonl is empty", "remove it from the inputs"]),
    ("filter_empty_parquet", _filter_input("in.parquet", b""), 1, ["in.parquet is empty"]),
    ("filter_corrupt_parquet", _filter_input("in.parquet", b"PAR1" + b"\x00garbage" * 50), 1,
     ["not a readable parquet file", "regenerate"]),
    ("filter_unreadable_classifier", _unreadable_classifier, 1, ["model.json"]),
    ("filter_pickled_classifier", _foreign_classifier, 1, ["model"]),
    ("jsonl_reserved_problem_column", _problem_column, 1, ["'_problem'", "rename"]),
    ("settings_max_duplicates_above_255", _max_duplicates(256), 2, ["max_duplicates", "1 to 255", "256"]),
    ("settings_max_duplicates_zero", _max_duplicates(0), 2, ["max_duplicates", "1 to 255"]),
    ("train_negative_lora_rank", _train("--lora-rank", "-1"), 2, ["--lora-rank", "-1"]),
    ("train_zero_lora_alpha", _train("--lora-rank", "4", "--lora-alpha", "0"), 2, ["--lora-alpha"]),
    ("train_kd_weight_above_one", _train("--kd-weight", "1.5"), 2, ["--kd-weight", "0 to 1"]),
    ("train_zero_kd_temperature", _train("--kd-temperature", "0"), 2, ["--kd-temperature"]),
    ("train_zero_log_every", _train("--log-every", "0"), 2, ["--log-every"]),
    ("train_zero_checkpoint_every", _train("--checkpoint-every", "0"), 2, ["--checkpoint-every"]),
    ("train_tiny_vocab_size", _train("--vocab-size", "3"), 2, ["--vocab-size"]),
    ("train_negative_eval_batches", _train(toml="eval_batches = -1"), 2, ["eval_batches"]),
    ("train_tiny_max_source_len", _train("--max-source-len", "1"), 2, ["--max-source-len"]),
]


@pytest.mark.parametrize("setup, code, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_a_one_line_error(capsys, tmp_path, setup, code, words):
    argv = setup(tmp_path)
    got, out, err = run_cli(capsys, *argv)
    assert got == code, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


# -- cases the run handles --------------------------------------------------------------------------------
def test_integer_ids_beyond_64_bits_are_read_as_text(capsys, tmp_path):
    big = 123456789012345678901234567890
    write_jsonl(tmp_path / "in.jsonl", [{"id": big, "text": TEXT}, {"id": 5, "text": "Sets hold each item once. " * 12}])
    code, out, err = filter_cli(capsys, "in.jsonl", "--out", "o")
    assert code == 0 and "Traceback" not in err, err
    kept = read_table(tmp_path / "o/kept")
    assert sorted(kept.column("id").to_pylist()) == [str(big), "5"]  # every digit kept, one id type


def test_unparseable_jsonl_lines_say_which_file_and_line(capsys, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": TEXT}, "", "{broken", "[1, 2]", {"id": "b", "text": TEXT + "!"}])
    code, out, err = filter_cli(capsys, "in.jsonl", "--out", "o")
    assert code == 0, err
    removed = [r for r in read_table(tmp_path / "o/removed").to_pylist() if r["stage"] == "input"]
    # line numbers count every line of the file, blank ones too, from 1 (as editors and grep -n do)
    assert [r["reason"] for r in removed] == ["invalid_json:in.jsonl:3", "invalid_json:in.jsonl:4"]
    assert [r["text"] for r in removed] == ["{broken", "[1, 2]"]  # the raw line, kept whole
    report = json.loads((tmp_path / "o/report.json").read_text())
    assert report["reasons"]["input"] == {"invalid_json": 2}  # the report counts the reason, not each line
    assert "(invalid_json 2)" in out


def test_invalid_utf8_and_a_10_mb_document_are_recorded_drops(capsys, tmp_path):
    lines = [json.dumps({"id": "ok", "text": TEXT}).encode(),
             json.dumps({"id": "latin1", "text": "caf\u00e9 " * 80}).encode().replace("\\u00e9".encode(), b"\xe9"),
             json.dumps({"id": "huge", "text": "word " * 2_100_000}).encode()]  # 10.5 MB
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = filter_cli(capsys, "in.jsonl", "--out", "o")
    assert code == 0, err
    removed = {r["id"]: r["reason"] for r in read_table(tmp_path / "o/removed").to_pylist()}
    assert removed == {"latin1": "invalid_utf8", "huge": "doc_too_long"}
    assert read_table(tmp_path / "o/kept").column("id").to_pylist() == ["ok"]


def test_a_refused_rerun_loses_nothing(capsys, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": TEXT + str(i)} for i in range(5)])
    assert filter_cli(capsys, "in.jsonl", "--out", "o")[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()}
    code, _, err = run_cli(capsys, "filter", "in.jsonl", "--out", "o", "--workers", "1", "--preset", "fineweb")
    assert code == 1 and "holds a run with other inputs or settings (config.run.preset" in err, err
    assert {p: p.read_bytes() for p in (tmp_path / "o").rglob("*") if p.is_file()} == before


def test_a_stalled_settings_run_names_the_duplicate_cap_limit(capsys, tmp_path, monkeypatch):
    import textbook.settings.run as settings_run

    monkeypatch.setattr(settings_run, "STALL_CHUNKS", 2)  # a one-page catalogue stalls at once; no need to wait 64 chunks
    (tmp_path / "one.yaml").write_text('settings:\n  - {id: page.display, type: page, uri: "ms-settings:display", '
                                       'category: System, name: Display, description: Brightness and scale.}\n')
    (tmp_path / "textbook.toml").write_text("[settings]\nmax_duplicates = 1\n")
    code, _, err = run_cli(capsys, "gen", "settings", "--offline", "--catalogue", "one.yaml", "--n", "5000",
                           "--noise-rate", "0", "--none-rate", "0", "--out", "o")
    assert code == 1 and err.startswith("error: only ") and err.count("\n") == 1, err
    assert "raise max_duplicates in [settings] of textbook.toml (at most 255)" in err
