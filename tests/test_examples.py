"""The example scripts run as the README says (small settings, so they fit a test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_settings_demo_runs_gen_train_eval_export_and_answers_a_file(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    requests = tmp_path / "requests.txt"
    requests.write_text("turn on bluetooth\nmake the screen brighter\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEXTBOOK_"))}
    env |= {"N": "2000", "PRESET": "mu-tiny", "MINUTES": "0.1", "EVAL": str(requests), "OMP_NUM_THREADS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    done = subprocess.run(["bash", str(ROOT / "examples" / "settings-demo.sh"), str(tmp_path / "demo")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "demo"
    assert (out / "export" / "encoder.int8.onnx").is_file() and (out / "export" / "decoder.a16w8.onnx").is_file()
    assert json.loads((out / "run" / "eval-settings-test.json").read_text())["rows"] > 0
    answers = (out / "answers.jsonl").read_text().splitlines()
    assert len(answers) == 2 and all(json.loads(a) for a in answers)  # one JSON line per request
    assert "exported model:" in done.stdout
    # no OUT: one line of usage, exit 2
    bad = subprocess.run(["bash", str(ROOT / "examples" / "settings-demo.sh")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("usage: bash examples/settings-demo.sh OUT")
