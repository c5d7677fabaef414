"""`textbook gen settings` end to end: the CLI, outputs any reader opens, and resume after a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.dataset as pads
import pytest

from textbook.contract import parse_target, validate_target
from textbook.settings.catalogue import load_catalogue
from textbook.settings.config import SettingsConfig
from textbook.settings.run import generate_settings
from textbook.shards import read_manifest, read_table
from tests.clirun import run_cli

TEACHER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTBOOK_MODEL")


@pytest.fixture(autouse=True)
def no_teacher(monkeypatch, tmp_path):
    for name in TEACHER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    return run_cli(capsys, "gen", "settings", *args)


def test_offline_cli_writes_valid_targets_that_readers_open(capsys, tmp_path):
    code, out, err = cli(capsys, "--offline", "--n", "3000", "--out", "runs/s", "--format", "parquet")
    assert code == 0, err
    assert "wrote 3,000 settings samples" in out and "report:" in out
    table = pads.dataset(tmp_path / "runs/s/settings", format="parquet", exclude_invalid_files=True).to_table()
    assert table.num_rows == 3000
    cat = load_catalogue()
    for row in table.to_pylist():
        t = parse_target(row["target"])
        assert t.to_json() == row["target"] and validate_target(t, cat) == []  # canonical and valid
        assert (row["id"], row["action"], row["value"]) == (t.id, t.action, t.value_json)
        assert row["uri"] == (cat.get(t.id).uri if t.id else None)
        assert row["source"] == "template" and row["split"] in ("train", "validation", "test")
    assert (tmp_path / "runs/s/settings-report.md").read_text().startswith("# textbook gen settings: report")
    assert read_manifest(tmp_path / "runs/s/settings")["totals"]["rows"] == 3000


def test_cli_errors_are_one_line_with_a_fix(capsys, tmp_path):
    code, _, err = cli(capsys, "--n", "10", "--out", "x")
    assert code == 2 and err.startswith("error: no teacher configured: pass --offline")
    (tmp_path / "bad.yaml").write_text("settings:\n  - id: a\n    type: toggle\n")
    code, _, err = cli(capsys, "--offline", "--catalogue", "bad.yaml", "--out", "x")
    assert code == 1 and "bad.yaml:2: settings[0] (a): missing uri" in err
    code, _, err = cli(capsys, "--offline", "--noise-rate", "1.5")
    assert code == 2 and "--noise-rate must be between 0 and 1" in err
    code, out, _ = cli(capsys, "--check-catalogue")
    assert code == 0 and "valid catalogue 'windows' with 503 settings" in out
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "Examples" in out and "--offline" in out


def test_config_file_and_extending_a_finished_run(capsys, tmp_path):
    (tmp_path / "textbook.toml").write_text('[settings]\nnoise_rate = 0.0\nnone_rate = 0.0\nout = "cfg"\n')
    code, out, err = cli(capsys, "--offline", "--n", "1500")
    assert code == 0, err
    rows = read_table(tmp_path / "cfg/settings").to_pylist()
    assert all(not r["noise_ops"] and r["action"] != "none" for r in rows)
    code, out, _ = cli(capsys, "--offline", "--n", "1500")
    assert "already complete" in out
    code, out, _ = cli(capsys, "--offline", "--n", "2500")  # a larger --n extends the finished run
    assert code == 0 and "resumed at 1,500" in out
    assert read_table(tmp_path / "cfg/settings").slice(0, 1500).to_pylist() == rows
    code, _, err = cli(capsys, "--offline", "--n", "2500", "--seed", "7")
    assert code == 1 and "holds a settings dataset with other inputs or settings (config.seed: 0 -> 7)" in err


def test_resume_after_sigkill_gives_the_same_dataset(tmp_path):
    (tmp_path / "textbook.toml").write_text("[settings]\ncheckpoint_chunks = 1\n")
    n = 40_000
    env = {k: v for k, v in os.environ.items() if k not in TEACHER_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "textbook", "gen", "settings", "--offline", "--n", str(n),
                             "--out", "killed"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = tmp_path / "killed/settings"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = read_manifest(manifest) if (manifest / "manifest.json").exists() else None
        if m and m.get("state", {}).get("rows", 0) >= 3 * 4096:
            break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    m = read_manifest(manifest)
    assert not m["complete"] and 0 < m["rows"] < n

    resumed = generate_settings(SettingsConfig(n=n, offline=True, checkpoint_chunks=1, out=str(tmp_path / "killed")),
                                progress=False)
    assert resumed.resumed_from > 0
    fresh = generate_settings(SettingsConfig(n=n, offline=True, out=str(tmp_path / "fresh")), progress=False)
    assert read_table(tmp_path / "killed/settings").equals(read_table(tmp_path / "fresh/settings"))
    assert read_table(tmp_path / "killed/settings-removed").equals(read_table(tmp_path / "fresh/settings-removed"))
    assert resumed.totals == fresh.totals
    report = json.loads((tmp_path / "killed/settings-report.json").read_text())
    assert report["summary"]["rows"] == n and sum(report["setting"].values()) == n


def test_worker_processes_write_the_same_data(tmp_path):
    one = generate_settings(SettingsConfig(n=9_000, offline=True, workers=1, out=str(tmp_path / "one")), progress=False)
    two = generate_settings(SettingsConfig(n=9_000, offline=True, workers=2, out=str(tmp_path / "two")), progress=False)
    assert read_table(tmp_path / "one/settings").equals(read_table(tmp_path / "two/settings"))
    assert one.totals == two.totals
