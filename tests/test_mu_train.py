"""Mu training end to end on mu-tiny: memorising a tiny settings set, exact resume, LoRA, distillation, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.mu_fixtures import SETTINGS, one_torch_thread, write_settings, write_text  # noqa: E402,F401 (one_torch_thread: autouse)
from textbook.errors import ConfigError, TextbookError  # noqa: E402
from textbook.mu.checkpoint import load_model, load_weights, tokenizer_path  # noqa: E402
from textbook.mu.config import preset  # noqa: E402
from textbook.mu.distill import kd_loss  # noqa: E402
from textbook.mu.lora import LoRALinear, apply_lora, merge_lora  # noqa: E402
from textbook.mu.model import Mu  # noqa: E402
from textbook.mu.tokenizer import load_tokenizer  # noqa: E402
from textbook.mu.train import train  # noqa: E402
from textbook.rundir import RunDir  # noqa: E402
from textbook.mu.trainconfig import TrainConfig  # noqa: E402
import textbook.mu.train as train_module  # noqa: E402

FAST = dict(preset="mu-tiny", vocab_size=300, batch_size=8, lr=1e-2, warmup_steps=10, log_every=5, eval_batches=2)


def _config(tmp_path, name, data, **changes) -> TrainConfig:
    return TrainConfig(**{**FAST, "data": (str(data),), "out": str(tmp_path / name), **changes})


def _exact_match(run) -> float:
    model, cfg = load_model(run)
    tok = load_tokenizer(tokenizer_path(run))
    correct = 0
    for query, target, *_ in SETTINGS:
        src = torch.tensor([tok.encode(query, add_special_tokens=False).ids + [cfg.eos_id]])
        correct += tok.decode(model.generate(src)[0]) == target
    return correct / len(SETTINGS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """mu-tiny memorises the tiny settings set (the trainer can fit data at all)."""
    tmp = tmp_path_factory.mktemp("mu")
    data = write_settings(tmp / "settings", repeat=4, splits=("train", "validation"))
    summary = train(_config(tmp, "run", data, max_steps=120, checkpoint_every=120), progress=False)
    return tmp, data, summary


def test_overfits_a_tiny_settings_set_to_100_percent(trained):
    tmp, _, summary = trained
    assert summary["loss"] < 0.05 and summary["val_loss"] < 0.05
    assert summary["duplicates_skipped"] == 24  # 4 copies of 8 pairs: settings runs dedup by default
    assert _exact_match(tmp / "run") == 1.0
    log = [json.loads(line) for line in (tmp / "run" / "log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "tokens_per_s", "mfu"} <= set(log[0]) and log[-1]["val_loss"] < 0.05


def test_eval_settings_reports_exact_match_by_action_and_noise(trained):
    from textbook.mu.eval import _judge, eval_settings
    from textbook.mu.evalconfig import EvalSettingsConfig
    from textbook.settings.catalogue import load_catalogue

    tmp, data, _ = trained
    report = eval_settings(tmp / "run", [data], EvalSettingsConfig(split="validation", latency_samples=5), progress=False)
    assert report["rows"] == 4 * len(SETTINGS) and report["exact_match"] == 1.0 and report["invalid_rate"] == 0.0
    assert set(report["by_noise"]) == {"clean", "typo", "abbrev"} and report["by_action"]["set"]["rows"] == 8
    assert report["latency_ms"]["requests"] == 5 and report["latency_ms"]["p95"] >= report["latency_ms"]["p50"] > 0
    assert json.loads((tmp / "run" / "eval-settings-validation.json").read_text())["exact_match"] == 1.0
    catalogue = load_catalogue()
    gold = '{"action":"set","id":"display.brightness","value":70}'
    assert _judge('{"value":70,"id":"display.brightness","action":"set"}', gold, catalogue) == (True, True)
    assert _judge('{"action":"set","id":"display.brightness","value":700}', gold, catalogue) == (False, False)
    assert _judge('{"action":"set","id":"display.brightnes', gold, catalogue) == (False, False)
    assert _judge('{"action":"increase","id":"display.brightness"}', gold, catalogue) == (True, False)
    with pytest.raises(TextbookError, match="no 'test' rows"):
        eval_settings(tmp / "run", [data], EvalSettingsConfig(split="test"), progress=False)


def test_eval_settings_lists_every_mistake(tmp_path, trained):
    from textbook.mu.eval import eval_settings
    from textbook.mu.evalconfig import EvalSettingsConfig
    from textbook.shards import ShardWriter

    from tests.mu_fixtures import SETTINGS_SCHEMA

    tmp, _, _ = trained
    swapped = '{"action":"off","id":"bluetooth.enabled"}'  # a label the run never learned for this query
    with ShardWriter(tmp_path / "test", SETTINGS_SCHEMA) as writer:
        for n, (query, target, action, style, noise) in enumerate(SETTINGS):
            writer.write({"id": f"t{n}", "query": query, "target": swapped if n == 0 else target, "split": "test",
                          "style": style, "noise_ops": noise, "action": action})
    report = eval_settings(tmp / "run", [tmp_path / "test"], EvalSettingsConfig(latency_samples=0), progress=False)
    lines = (tmp / "run" / "eval-settings-test-errors.jsonl").read_text().splitlines()
    assert report["exact_match"] == pytest.approx(7 / 8) and len(lines) == 1
    mistake = json.loads(lines[0])
    assert 0 < mistake.pop("confidence") <= 1  # how sure the model was of its wrong answer
    assert mistake == {"query": SETTINGS[0][0], "target": swapped, "output": SETTINGS[0][1], "valid": True,
                       "style": "command", "noise": ["clean"]}


def test_eval_settings_scores_a_jsonl_set_by_style_on_the_call_and_the_page(tmp_path, trained):
    """A hand-written set (query, target, style; no split), as tests/data/settings/realstyle.jsonl is."""
    from textbook.mu.eval import eval_settings
    from textbook.mu.evalconfig import EvalSettingsConfig
    from textbook.settings.catalogue import load_catalogue

    tmp, _, _ = trained
    catalogue = load_catalogue()
    rows = [{"query": q, "target": t, "style": "short" if n % 2 else "indirect"} for n, (q, t, *_) in enumerate(SETTINGS)]
    brightness = next(r for r in rows if '"display.brightness"' in r["target"])
    # the same page as what the model says, another call on it: wrong call, right page
    brightness["target"] = '{"action":"open","id":"display.brightness"}'
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = eval_settings(tmp / "run", [tmp_path / "mine.jsonl"], EvalSettingsConfig(latency_samples=0),
                           catalogue=catalogue, progress=False)
    assert report["rows"] == len(SETTINGS) and report["split"] == "mine"
    assert report["exact_match"] == pytest.approx(7 / 8) and report["page_match"] == 1.0
    assert set(report["by_style"]) == {"short", "indirect"} and set(report["page_by_style"]) == {"short", "indirect"}
    assert (tmp / "run" / "eval-settings-mine.json").is_file()
    # request by request for `textbook eval compare`: the brightness row alone is wrong, on the right page
    record = report["outcomes"]
    assert record["call"] == "".join("0" if r is brightness else "1" for r in rows) and record["page"] == "1" * len(rows)
    assert record["style"] == [r["style"] for r in rows]
    lo, hi = report["ci95"]["exact_match"]
    assert lo < 7 / 8 < hi
    from textbook.mu.compare import compare

    same = compare(tmp / "run", tmp / "run", "mine")
    assert same["call"]["only_a"] == same["call"]["only_b"] == 0 and same["call"]["p"] == 1.0
    (tmp_path / "bad.jsonl").write_text('{"query": "dark mode"}\n')
    with pytest.raises(TextbookError, match="bad.jsonl:1 needs text fields"):
        eval_settings(tmp / "run", [tmp_path / "bad.jsonl"], EvalSettingsConfig(latency_samples=0), progress=False)


def test_settings_runs_read_queries_lowercased_everywhere(trained):
    from textbook.mu.data import BatchStream
    from textbook.mu.eval import encode_queries
    from textbook.mu.tokenizer import texts_from_shards

    tmp, data, _ = trained
    model, cfg = load_model(tmp / "run")
    assert cfg.lowercase_source  # the default for --task settings
    tok = load_tokenizer(tokenizer_path(tmp / "run"))
    query, target, *_ = SETTINGS[0]
    shouted = query.upper()
    assert encode_queries(tok, [shouted], cfg) == encode_queries(tok, [query], cfg)  # eval
    stream = BatchStream([data], tok, cfg, batch_size=8)
    examples = stream._examples([(shouted, target), (query, target)], None)
    assert examples[0].src == examples[1].src  # training
    assert tok.decode(model.generate(torch.tensor(encode_queries(tok, [shouted], cfg)))[0]) == target
    texts = list(texts_from_shards([data], ["query", "target"], lowercase=["query"]))  # tokenizer training
    assert set(texts) == {q.lower() for q, *_ in SETTINGS} | {t for _, t, *_ in SETTINGS}
    from textbook.mu.trainconfig import lowercase_source

    assert not lowercase_source(TrainConfig(task="pretrain"))  # text keeps its case unless asked
    assert not lowercase_source(TrainConfig(task="settings", lowercase_source=False))  # --keep-case


def test_settings_runs_spell_correct_queries_everywhere(trained):
    from textbook.mu.checkpoint import load_lexicon
    from textbook.mu.data import BatchStream
    from textbook.mu.eval import encode_queries
    from textbook.mu.trainconfig import spell_correct

    tmp, data, _ = trained
    _, cfg = load_model(tmp / "run")
    lexicon = load_lexicon(tmp / "run", cfg)
    assert cfg.spell_correct and "bluetooth" in lexicon.counts  # the fixture has no clean_query: words seen 3+ times
    tok = load_tokenizer(tokenizer_path(tmp / "run"))
    query, target, *_ = SETTINGS[0]
    typo = query.replace("bluetooth", "blutooth")
    assert encode_queries(tok, [typo], cfg, lexicon) == encode_queries(tok, [query], cfg, lexicon) != encode_queries(tok, [typo], cfg)  # eval
    stream = BatchStream([data], tok, cfg, batch_size=8, lexicon=lexicon)
    examples = stream._examples([(typo, target), (query, target)], None)
    assert examples[0].src == examples[1].src  # training
    assert not spell_correct(TrainConfig(task="pretrain")) and not spell_correct(TrainConfig(spell_correct=False))
    with pytest.raises(TextbookError, match="lowercased queries"):
        spell_correct(TrainConfig(spell_correct=True, lowercase_source=False))


def test_eval_lm_reports_perplexity(tmp_path, trained):
    from textbook.mu.eval import eval_lm

    tmp, _, _ = trained
    report = eval_lm(tmp / "run", [write_text(tmp_path / "text")], progress=False)
    assert report["tokens"] > 0 and report["perplexity"] == pytest.approx(math.exp(report["nll_per_token"]))


def _cli(capsys, tmp_path, monkeypatch, toml: str, *argv: str) -> tuple[int, str, str]:
    """The CLI run in tmp_path, where `toml` is textbook.toml."""
    from tests.clirun import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "textbook.toml").write_text(toml)
    return run_cli(capsys, *argv)


def test_textbook_toml_eval_sections_apply_and_flags_win(tmp_path, trained, capsys, monkeypatch):
    tmp, data, _ = trained
    run = str(tmp / "run")
    toml = '[eval_settings]\nsplit = "validation"\nlimit = 5\nlatency_samples = 0\n'
    code, out, err = _cli(capsys, tmp_path, monkeypatch, toml, "eval", "settings", run, "--data", str(data))
    assert code == 0 and out.startswith("5 validation rows: exact match 100.00%"), err
    code, out, err = _cli(capsys, tmp_path, monkeypatch, toml, "eval", "settings", run, "--data", str(data), "--limit", "3")
    assert code == 0 and out.startswith("3 validation rows"), err
    text = str(write_text(tmp_path / "text"))
    toml = "[eval_lm]\nbatch_size = 2\nlimit_batches = 1\n"
    code, out, err = _cli(capsys, tmp_path, monkeypatch, toml, "eval", "lm", run, "--data", text)
    assert code == 0, err
    one = int(out.split(" over ")[1].split()[0].replace(",", ""))
    code, out, err = _cli(capsys, tmp_path, monkeypatch, toml, "eval", "lm", run, "--data", text, "--limit-batches", "2")
    assert code == 0 and int(out.split(" over ")[1].split()[0].replace(",", "")) > one, (out, err)
    for section, command in (("eval_settings", ["settings", run, "--data", str(data)]), ("eval_lm", ["lm", run, "--data", text])):
        code, _, err = _cli(capsys, tmp_path, monkeypatch, f"[{section}]\nbatch = 4\n", "eval", *command)
        assert code == 2 and f"unknown key(s) batch in [{section}]" in err and err.count("\n") == 1, err
    code, _, err = _cli(capsys, tmp_path, monkeypatch, "[eval_settings]\nbatch_size = 0\n", "eval", "settings", run,
                        "--data", str(data))
    assert code == 2 and err == "error: --batch-size must be at least 1, not 0\n"


def test_textbook_toml_tokenizer_section_applies_and_flags_win(tmp_path, capsys, monkeypatch):
    from textbook.mu.tokenizer import load_tokenizer

    data = str(write_settings(tmp_path / "settings", repeat=4))
    toml = '[tokenizer]\nvocab_size = 300\nout = "tok/file.json"\npretokenize = "words"\n'
    code, _, err = _cli(capsys, tmp_path, monkeypatch, toml, "tokenizer", "train", data)
    assert code == 0 and "tok/file.json" in err and load_tokenizer(tmp_path / "tok/file.json").get_vocab_size() == 300, err
    code, _, err = _cli(capsys, tmp_path, monkeypatch, toml, "tokenizer", "train", data, "--out", "other.json", "--vocab-size", "280")
    assert code == 0 and "other.json" in err and load_tokenizer(tmp_path / "other.json").get_vocab_size() == 280, err
    code, _, err = _cli(capsys, tmp_path, monkeypatch, "[tokenizer]\nvocab = 300\n", "tokenizer", "train", data)
    assert code == 2 and "unknown key(s) vocab in [tokenizer]" in err and err.count("\n") == 1, err
    code, _, err = _cli(capsys, tmp_path, monkeypatch, "", "tokenizer", "train", data, "--pretokenize", "chars")
    assert code == 2 and err == "error: unknown --pretokenize 'chars': use one of words, whitespace\n"


def test_run_rebuilds_from_its_own_config_without_pickle(trained):
    tmp, _, _ = trained
    run = tmp / "run"
    files = {p.name for p in run.rglob("*") if p.is_file() and not p.name.startswith("eval-")}  # reports other tests left
    assert files == {
        "config.json", "tokenizer.json", "lexicon.json", "model.safetensors", "log.jsonl", "optimizer.safetensors",
        "state.json", "run.json", "neighbours.npz"}
    config = json.loads((run / "config.json").read_text())
    model, cfg = load_model(run)
    assert cfg.to_dict() == config["model"] and isinstance(model, Mu)


def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch):
    data = write_settings(tmp_path / "settings", repeat=2)
    train(_config(tmp_path, "straight", data, max_steps=8, checkpoint_every=4), progress=False)

    real_save = train_module.save_checkpoint

    def killed_after_first_checkpoint(run, model, optimizers, state):
        real_save(run, model, optimizers, state)
        raise KeyboardInterrupt  # as if the process were killed right after step 4's checkpoint

    monkeypatch.setattr(train_module, "save_checkpoint", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(_config(tmp_path, "resumed", data, max_steps=8, checkpoint_every=4), progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    train(_config(tmp_path, "resumed", data, max_steps=8, checkpoint_every=4, resume=True), progress=False)

    for name in ("model.safetensors", "checkpoint/model.safetensors", "checkpoint/optimizer.safetensors"):
        a, b = load_weights(tmp_path / "straight" / name), load_weights(tmp_path / "resumed" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), (name, key)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()]
    assert steps == [5, 8]


def test_resume_refuses_other_flags_and_missing_runs(tmp_path, trained):
    tmp, data, _ = trained
    with pytest.raises(TextbookError, match="batch_size: 8 -> 4"):
        train(_config(tmp, "run", data, max_steps=120, checkpoint_every=120, batch_size=4, resume=True), progress=False)
    with pytest.raises(TextbookError, match="already holds a run"):
        train(_config(tmp, "run", data, max_steps=120), progress=False)
    with pytest.raises(TextbookError, match="not a Mu run directory"):
        train(_config(tmp_path, "nothing", data, resume=True), progress=False)


def test_bf16_is_refused_on_a_cpu_without_native_bf16_and_auto_falls_back(tmp_path, trained, monkeypatch):
    tmp, data, _ = trained
    monkeypatch.setattr(train_module, "bf16_is_native", lambda device: False)
    with pytest.raises(TextbookError, match="--precision auto"):
        train(_config(tmp_path, "bf16", data, max_steps=2, precision="bf16", device="cpu"), progress=False)
    assert not (tmp_path / "bf16").exists()  # refused before the run directory was claimed
    train(_config(tmp_path, "auto", data, max_steps=2, precision="auto", device="cpu"), progress=False)
    # a run may move to a machine of the other kind: --resume accepts another precision
    train(_config(tmp_path, "auto", data, max_steps=2, precision="fp32", device="cpu", resume=True), progress=False)


def test_resume_accepts_a_run_from_before_a_field_existed(tmp_path, trained):
    tmp, data, _ = trained
    old = tmp_path / "old"
    shutil.copytree(tmp / "run", old)
    stored = json.loads((old / "config.json").read_text())
    for new_field in ("dedup", "muon_ns_steps"):  # fields this version added
        del stored["train"][new_field]
    stored["train"]["out"] = str(old)
    (old / "config.json").write_text(json.dumps(stored))
    (old / "run.json").unlink()  # runs from before run.json: their config.json is the record
    cfg = _config(tmp_path, "old", data, max_steps=120, checkpoint_every=120, resume=True)
    with RunDir(old) as rundir:
        train_module._claim(cfg, old, rundir)  # their defaults are what the old run did
        (old / "run.json").unlink()
        with pytest.raises(TextbookError, match="muon_ns_steps: 5 -> 3"):
            train_module._claim(dataclasses.replace(cfg, muon_ns_steps=3), old, rundir)


def test_lora_merge_equals_adapted_model():
    torch.manual_seed(0)
    model = Mu(preset("mu-tiny")).eval()
    trainable = apply_lora(model, rank=4, alpha=8)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            torch.nn.init.normal_(module.lora_b, std=0.05)  # as if trained (B starts at zero)
    src, tgt = torch.randint(3, 500, (2, 6)), torch.randint(3, 500, (2, 5))
    adapted = model(src, None, tgt)
    merged = merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert torch.allclose(merged(src, None, tgt), adapted, atol=1e-5)
    assert set(merged.state_dict()) == set(Mu(preset("mu-tiny")).state_dict())  # loads as a plain Mu


def test_lora_fine_tuning_writes_merged_weights(tmp_path, trained):
    tmp, data, _ = trained
    summary = train(_config(tmp_path, "lora", data, init_from=str(tmp / "run"), lora_rank=2, max_steps=6), progress=False)
    assert summary["trainable"] < summary["parameters"] / 5
    model, _ = load_model(tmp_path / "lora")  # plain Mu: the adapters are merged in
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    with pytest.raises(TextbookError, match="--init-from"):
        train(_config(tmp_path, "lora2", data, lora_rank=2), progress=False)


def test_kd_loss_is_zero_for_the_teacher_itself_and_positive_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 50)
    labels = torch.randint(0, 50, (2, 5))
    labels[1, 3:] = -100
    assert float(kd_loss(logits, logits, labels)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(torch.randn(2, 5, 50), logits, labels, temperature=2.0)) > 0.1


def test_logit_distillation_trains_and_refuses_another_tokenizer(tmp_path, trained):
    tmp, data, _ = trained
    summary = train(_config(tmp_path, "student", data, distill_from=str(tmp / "run"), kd_weight=0.7, max_steps=4), progress=False)
    assert summary["steps"] == 4
    assert (tmp_path / "student" / "tokenizer.json").read_bytes() == (tmp / "run" / "tokenizer.json").read_bytes()
    other = tmp_path / "other.json"
    from textbook.mu.tokenizer import train_tokenizer

    train_tokenizer(["completely different words"] * 5, 280, other)
    with pytest.raises(TextbookError, match="another tokenizer"):
        train(_config(tmp_path, "student2", data, distill_from=str(tmp / "run"), tokenizer=str(other), max_steps=2), progress=False)


def test_time_box_fits_the_step_count_and_keeps_a_decay(tmp_path):
    data = write_settings(tmp_path / "settings", repeat=1)
    summary = train(_config(tmp_path, "boxed", data, max_steps=10_000, max_minutes=1e-4, checkpoint_every=5), progress=False)
    # 10 timed steps, then no time left: the run ends as soon as a full decay (20%) fits after them
    assert summary["steps"] == 14
    state = json.loads((tmp_path / "boxed" / "checkpoint" / "state.json").read_text())
    assert state["total"] == 14 and state["step"] == 14
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "boxed" / "log.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs[-1] < 0.5 * FAST["lr"]  # it decayed


def test_pretraining_task_runs_on_text_shards(tmp_path):
    data = write_text(tmp_path / "text")
    summary = train(_config(tmp_path, "pre", data, task="pretrain", max_steps=3, batch_size=2), progress=False)
    assert summary["tokens"] > 0 and summary["val_loss"] is None


def test_cli_does_not_import_torch_and_reports_errors_cleanly(tmp_path):
    code = "import sys; from textbook.cli import _register; _register(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    result = subprocess.run([sys.executable, "-m", "textbook", "train", "--preset", "mu-tiny"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.strip() == "error: no training data: pass --data DIR (a shard directory; repeat for several)"


def test_missing_torch_gives_the_install_hint(monkeypatch):
    from textbook.mu import require_train_deps

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(TextbookError, match=r"pip install 'textbook\[train\]'"):
        require_train_deps()


def test_torchrun_ddp_on_two_cpu_processes(tmp_path, trained):
    _, data, _ = trained
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "textbook", "train",
           "--preset", "mu-tiny", "--data", str(data), "--out", str(tmp_path / "ddp"), "--max-steps", "4",
           "--batch-size", "4", "--grad-accum", "2", "--vocab-size", "300", "--device", "cpu", "--log-every", "2"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("trained") == 1 and "world: 2" in result.stderr  # one summary, from rank 0
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [2, 4]
    load_model(tmp_path / "ddp")


def test_torchrun_time_box_ends_every_rank_on_the_same_step(tmp_path, trained):
    # Both ranks re-fit the end during the decay; they agree on the pace and the time left, so neither waits
    # forever in a collective the other never reaches.
    _, data, _ = trained
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "textbook", "train",
           "--preset", "mu-tiny", "--data", str(data), "--out", str(tmp_path / "box"), "--max-steps", "100000",
           "--max-minutes", "0.1", "--decay-fraction", "0.6", "--warmup-steps", "2", "--batch-size", "4",
           "--vocab-size", "300", "--device", "cpu", "--log-every", "2", "--checkpoint-every", "100000"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "box" / "log.jsonl").read_text().splitlines()]
    log = [r for r in log if "loss" in r]
    assert log[-1]["step"] > 20 and 3 < log[-1]["elapsed_s"] <= 6.5, log[-1]  # it used the 6-second box, inside it
    assert all(b["lr"] <= a["lr"] for a, b in zip(log[1:], log[2:]))  # after the warmup the rate only falls


def test_a_settings_run_ends_with_its_retrieval_index_and_resume_rebuilds_a_lost_one(tmp_path):
    from textbook.mu.eval import eval_settings
    from textbook.mu.evalconfig import EvalSettingsConfig
    from textbook.mu.neighbours import INDEX_FILE, load_neighbours
    from textbook.shards import sha256_file

    data = write_settings(tmp_path / "settings", repeat=2, splits=("train", "test"))
    summary = train(_config(tmp_path, "run", data, max_steps=6, checkpoint_every=6, index_size=5), progress=False)
    run = tmp_path / "run"
    index = load_neighbours(run, sha256_file(run / "model.safetensors"))  # made with the final weights
    assert summary["indexed"] == len(index) == 5 and len(index.heads) <= 5  # --index-size caps it
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-2)
    (run / INDEX_FILE).unlink()  # as if killed while indexing, after the last checkpoint
    np.savez(run / INDEX_FILE, format=np.array("textbook-neighbours/2"))  # or one of an older version: eval says what to do
    with pytest.raises(TextbookError, match="another version of textbook: rebuild it: .*--resume"):
        eval_settings(run, [data], EvalSettingsConfig(latency_samples=0), calls=[t for _, t, *_ in SETTINGS], progress=False)
    again = train(_config(tmp_path, "run", data, max_steps=6, checkpoint_every=6, index_size=5, resume=True), progress=False)
    assert again["indexed"] == 5 and load_neighbours(run, sha256_file(run / "model.safetensors")) is not None
    none = train(_config(tmp_path, "none", data, max_steps=2, checkpoint_every=2, index_size=0), progress=False)
    assert none["indexed"] is None and not (tmp_path / "none" / INDEX_FILE).exists()
    with pytest.raises(ConfigError, match="--index-size"):
        TrainConfig(index_size=-1)
