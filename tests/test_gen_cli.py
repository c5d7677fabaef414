"""`textbook gen` on the command line: the dry run (no teacher, no network) and every misconfiguration's message and exit code."""

from __future__ import annotations

import json
import re

import pytest

from textbook.shards import read_manifest, read_table
from tests.clirun import run_cli

TEACHER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTBOOK_MODEL")


@pytest.fixture(autouse=True)
def no_teacher(monkeypatch, tmp_path):
    for name in TEACHER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray textbook.toml


def cli(capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "gen", *args)


def test_dry_run_needs_no_teacher_and_writes_prompts_batch_and_estimates(capsys, tmp_path):
    code, out, err = cli(capsys, "--topic", "python", "--dry-run", "--out", "runs/demo", "--n", "40")
    assert code == 0, err
    assert "40 textbook requests rendered, none sent" in out
    assert "estimated prompt tokens" in out and "(characters / 4)" in out and "gpt-4o-mini" in out and "$" in out
    demo = tmp_path / "runs/demo"
    prompts = read_table(demo / "textbook-prompts").to_pylist()
    assert [p["plan_id"] for p in prompts] == list(range(40))
    assert read_manifest(demo / "textbook-prompts")["totals"]["requests"] == 40
    lines = [json.loads(line) for line in (demo / "textbook-batch.jsonl").read_text().splitlines()]
    assert len(lines) == 40 and lines[0]["custom_id"] == "textbook-0" and lines[0]["url"] == "/v1/chat/completions"
    assert lines[0]["body"]["messages"] == json.loads(prompts[0]["messages"])
    assert json.loads((demo / "topics.json").read_text())["topic"] == "Python"  # the bundled tree, saved to edit

    # Rerunning replaces the dry run instead of appending to it.
    code, out, _ = cli(capsys, "--topic", "python", "--dry-run", "--out", "runs/demo", "--n", "10")
    assert code == 0 and read_table(demo / "textbook-prompts").num_rows == 10


def test_dry_run_of_exercises_asks_for_json_and_prices_the_given_model(capsys, tmp_path):
    code, out, _ = cli(capsys, "--kind", "exercises", "--dry-run", "--out", "ex", "--n", "5", "--model", "gpt-4o")
    assert code == 0 and "with gpt-4o:" in out
    first = json.loads((tmp_path / "ex/exercises-batch.jsonl").read_text().splitlines()[0])
    assert first["body"]["model"] == "gpt-4o" and first["body"]["response_format"]["type"] == "json_schema"
    assert read_table(tmp_path / "ex/exercises-prompts")["function_name"].null_count == 0


def test_dry_run_with_a_topics_file_for_any_topic(capsys, tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"topic": "Rust", "subtopics": [{"topic": "Ownership"}, {"topic": "Traits"}]}))
    code, out, _ = cli(capsys, "--topic", "rust", "--topics", "t.json", "--dry-run", "--out", "rust", "--n", "4")
    assert code == 0 and "t.json (2 leaves)" in out


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--n", "5", "--out", "o"], 2, "no teacher model configured: pass --model"),
        (["--model", "gpt-4o", "--out", "o"], 2, "no API key for api.openai.com: set OPENAI_API_KEY"),
        (["--kind", "poems", "--dry-run"], 2, "unknown kind 'poems': use --kind textbook or --kind exercises"),
        (["--n", "0", "--dry-run"], 2, "--n must be at least 1"),
        (["--config", "missing.toml", "--dry-run"], 2, "config file missing.toml does not exist"),
        (["--topic", "cobol", "--dry-run", "--out", "o"], 1, "no topic tree for 'cobol' without a teacher: pass --topics FILE"),
        (["--topics", "nope.json", "--dry-run", "--out", "o"], 1, "topics file nope.json does not exist"),
        (["--format", "csv", "--dry-run", "--out", "o"], 2, "unknown format 'csv': use --format arrow, arrow-stream, parquet"),
        (["--prompts", "no-such-dir", "--dry-run"], 2, "prompts directory no-such-dir does not exist"),
        (["--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", "o", "--n", "1"], 2, "127.0.0.1:9"),
    ],
)
def test_misconfiguration_is_one_line_and_an_exit_code(capsys, args, code, message):
    got, out, err = cli(capsys, *args)
    assert got == code, err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_config_file_sets_the_recipe(capsys, tmp_path):
    (tmp_path / "textbook.toml").write_text('[gen]\nn = 7\nkind = "exercises"\n[gen.settings]\nn = 99\n')
    code, out, _ = cli(capsys, "--dry-run", "--out", "cfg")
    assert code == 0 and "7 exercises requests" in out
    (tmp_path / "textbook.toml").write_text('[gen]\ncolour = "blue"\n')
    code, _, err = cli(capsys, "--dry-run", "--out", "cfg")
    assert code == 2 and "unknown key(s) colour in [gen]" in err


def test_commands_register_once_however_often_main_runs(capsys):
    from textbook.cli import app

    cli(capsys, "--kind", "poems", "--dry-run")
    groups = len(app.registered_groups)
    for _ in range(3):
        cli(capsys, "--kind", "poems", "--dry-run")
    assert len(app.registered_groups) == groups  # each call used to add every command again (and ran slower)


def test_help_lists_the_main_commands_first_and_shows_config_sections(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    listed = re.findall(r"^(?:│ |  )([a-z]+) ", out.split("Commands", 1)[1], re.M)  # rich box or plain click
    assert listed[:2] == ["gen", "filter"] and len(listed) == len(set(listed)) >= 8, out
    # Rich markup used to swallow "[settings]": section names are escaped in help strings
    for argv, sections in ((("gen", "settings", "--help"), ("[settings]", "[teacher]")), (("train", "--help"), ("[train]",)),
                           (("export", "--help"), ("[export]",))):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and all(s in out for s in sections), out


def test_preview_sends_checks_and_shows_n_items_and_writes_nothing(capsys, tmp_path, monkeypatch, fake_teacher):
    from tests.gen_fixtures import GenReplies

    fake_teacher.replies = GenReplies(nocode_every=2)
    for name, value in fake_teacher.env().items():
        monkeypatch.setenv(name, value)
    code, out, err = cli(capsys, "--topic", "python", "--preview", "4", "--out", "runs/p")
    assert code == 0, err
    assert out.count("── ") == 4 and "── 1/4 · textbook · python > " in out.lower(), out
    verdicts = re.findall(r"^   verdict: (\w+)", out, re.M)
    assert len(verdicts) == 4 and set(verdicts) <= {"kept", "rejected"}
    kept = verdicts.count("kept")
    assert f"preview: 4 items from the bundled tree for 'python': {kept} would be kept, {4 - kept} rejected" in out
    assert "nothing written" in out and not (tmp_path / "runs").exists()  # no lock, no cache, no shards
    assert len(fake_teacher.chat_requests()) == 4
    code, _, err = cli(capsys, "--preview", "-1")
    assert code == 2 and "--preview must be" in err
