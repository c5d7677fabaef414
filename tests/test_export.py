"""textbook export / infer: a mu-tiny trained here in seconds, exported once, checked every way.

`textbook train` memorises the eight settings rows of tests/mu_fixtures.py, so the model's greedy
outputs are confident: quantization agreement is then a property of the exporter, not of near-tied
logits. Test and train splits hold the same rows (a memorisation fixture), so exact match is 100%.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tests.mu_fixtures import SETTINGS, one_torch_thread, write_settings  # noqa: E402,F401 (one_torch_thread: autouse)
from textbook.cli import main  # noqa: E402
from textbook.contract import parse_target, valid_calls, validate_target  # noqa: E402
from textbook.errors import TextbookError  # noqa: E402
from textbook.export.check import check_dir  # noqa: E402
from textbook.export.config import ExportConfig  # noqa: E402
from textbook.export.exporter import export_run  # noqa: E402
from textbook.export.runner import Runner, read_export_manifest  # noqa: E402
from textbook.mu.calls import load_calls  # noqa: E402
from textbook.settings.config import catalogue_for  # noqa: E402
from textbook.shards import write_records  # noqa: E402

SOURCE_LEN, CACHE_LEN = 24, 48  # the fixture's longest query is 19 tokens with EOS; the longest valid call 47 with it


def _train_run(root: Path, data: Path) -> Path:
    """`textbook train` memorises the tiny settings set (the recipe of tests/test_mu_train.py)."""
    from textbook.mu.train import train
    from textbook.mu.trainconfig import TrainConfig

    cfg = TrainConfig(data=(str(data),), out=str(root / "run"), preset="mu-tiny", vocab_size=300, batch_size=8,
                      lr=1e-2, warmup_steps=10, max_steps=120, checkpoint_every=120, log_every=60, eval_batches=1)
    train(cfg, progress=False, calls=valid_calls(catalogue_for([]).settings))  # as `textbook train` passes them
    return root / "run"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = write_settings(root / "data", repeat=4, splits=("train", "test"))
    _train_run(root, data)
    cfg = ExportConfig(quantize=("int8", "a16w8", "dynamic"), calibration=str(data), max_source_len=SOURCE_LEN,
                       calibration_samples=8, parity_samples=16)  # the cache: CACHE_LEN, fitted to the longest valid call
    manifest = export_run(root / "run", root / "out", cfg, progress=False)
    return root, manifest


def _cli(args: list[str]) -> int:
    """Run the textbook command in-process; its exit code (typer exits 0 on success)."""
    try:
        main(args)
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _model(root: Path):
    from textbook.mu.checkpoint import load_model

    return load_model(root / "run")[0]


def test_export_writes_graphs_tokenizer_config_and_manifest(exported):
    root, manifest = exported
    out = root / "out"
    for name in ("encoder.onnx", "decoder.onnx", "encoder.int8.onnx", "decoder.a16w8.onnx", "decoder.dynamic.onnx",
                 "tokenizer.json", "lexicon.json", "config.json", "export.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "export.json").read_text()) == json.loads(json.dumps(dict(manifest)))
    assert manifest["opset"] >= 17
    assert manifest["shapes"] == {"source_len": SOURCE_LEN, "cache_len": CACHE_LEN, "layers": 1, "kv_heads": 2,
                                  "head_dim": 16, "vocab_size": manifest["shapes"]["vocab_size"]}
    # The decoder reads its fixed-size cache and the encoder's cross K/V, and returns the cache updated.
    io = manifest["variants"]["fp32"]["io"]["decoder"]
    inputs = {name: (dtype, dims) for name, dtype, dims in io["inputs"]}
    assert inputs["past_key_0"] == ("float32", [1, 2, CACHE_LEN, 16])
    assert inputs["cross_value_0"] == ("float32", [1, 2, SOURCE_LEN, 16])
    assert inputs["input_ids"] == ("int32", [1, 1]) and inputs["position"] == ("int32", [1])
    assert [o[0] for o in io["outputs"]] == ["logits", "present_key_0", "present_value_0"]


def test_every_shape_static_and_npu_check_clean(exported):
    root, _ = exported
    reports = {r.path.name: r for r in check_dir(root / "out")}
    for name in ("encoder.onnx", "decoder.onnx", "encoder.int8.onnx", "decoder.int8.onnx", "encoder.a16w8.onnx", "decoder.a16w8.onnx"):
        r = reports[name]
        assert r.ok, (name, r.findings[:3])
        assert r.opset >= 17
        assert all(isinstance(d, int) and d > 0 for _, _, dims in [*r.inputs, *r.outputs] for d in dims)
        assert not {"If", "Loop", "Scan"} & set(r.op_counts)
    # Dynamic quantization is the CPU fallback: the checker must say NPUs cannot run it.
    assert {f.kind for f in reports["decoder.dynamic.onnx"].findings} == {"unsupported-op"}
    assert "MatMulInteger" in reports["decoder.dynamic.onnx"].op_counts


def test_fp32_parity_with_pytorch_on_real_inputs(exported):
    root, manifest = exported
    parity = manifest["parity"]["fp32_logits"]
    assert parity["ok"] and parity["max_abs_diff"] <= 1e-4 and parity["samples"] == 16
    assert manifest["parity"]["fp32"]["token_agreement"] == 1.0
    assert manifest["parity"]["fp32"]["exact_match"] == manifest["parity"]["fp32"]["torch_exact_match"] == 1.0


def test_kv_cache_decoding_equals_full_recomputation(exported):
    """Fill every cache slot with arbitrary tokens: each step's logits = the cache-free forward pass."""
    root, _ = exported
    model, runner = _model(root), Runner(root / "out", "fp32")
    rng = np.random.default_rng(0)
    for query in ("turn on bluetooth", "whats the wether"):
        ids = runner.source_ids(query)
        forced = rng.integers(3, model.cfg.vocab_size, CACHE_LEN).tolist()
        _, logits = runner.run(ids, forced=forced)
        with torch.no_grad():
            full = model(torch.tensor([ids]), None, torch.tensor([[model.cfg.bos_id, *forced[:-1]]]))[0].numpy()
        assert len(logits) == CACHE_LEN
        assert np.abs(np.concatenate(logits) - full).max() <= 1e-4


def test_quantized_variants_run_and_agree(exported):
    root, manifest = exported
    for variant, limit in (("int8", 2.0), ("a16w8", 1.0), ("dynamic", 2.0)):
        p = manifest["parity"][variant]
        assert p["samples"] == 16 and p["token_agreement"] >= 0.95, (variant, p)
        assert p["drop_points"] <= limit, (variant, p)
        entry = manifest["variants"][variant]
        assert entry["bytes"] < 0.6 * manifest["variants"]["fp32"]["bytes"]
    query, target, *_ = SETTINGS[2]
    text, gen = Runner(root / "out", "a16w8")(query)
    assert text == target and gen.steps == len(gen.tokens) + 1


def test_cli_infer_and_check(exported, capsys):
    root, _ = exported
    query, target, *_ = SETTINGS[0]
    assert _cli(["infer", str(root / "out"), query, "--variant", "int8"]) == 0
    assert capsys.readouterr().out.strip() == target
    # A settings model reads lowercased queries: the export says so, and the runner does it too.
    assert read_export_manifest(root / "out")["lowercase_source"] is True
    assert _cli(["infer", str(root / "out"), query.upper(), "--variant", "int8"]) == 0
    assert capsys.readouterr().out.strip() == target
    # ... and spell-corrected against the lexicon exported beside the graphs.
    assert read_export_manifest(root / "out")["spell_correct"] is True and (root / "out" / "lexicon.json").is_file()
    runner = Runner(root / "out", "int8")
    assert runner.source_tokens("Turn on BLUETOTH") == runner.source_tokens(query)
    assert runner.source_tokens("turn on blueto") == runner.source_tokens(query)  # the last word, as typed so far
    assert _cli(["infer", str(root / "out"), query.replace("bluetooth", "bluetoth"), "--variant", "int8"]) == 0
    assert capsys.readouterr().out.strip() == target
    assert _cli(["export", "--check", str(root / "out" / "decoder.onnx")]) == 0
    assert "NPU check: ok" in capsys.readouterr().out


def test_export_carries_the_valid_calls_and_infer_keeps_to_them(exported, capsys):
    root, _ = exported
    calls = load_calls(root / "out")
    assert calls == load_calls(root / "run") and len(calls) > 1000
    constrained, free = Runner(root / "out", "int8"), Runner(root / "out", "int8", constrained=False)
    assert constrained.allowed is not None and free.allowed is None
    catalogue = catalogue_for([])
    for query in [q for q, *_ in SETTINGS] + ["qq zz bluetooth brightness dark", "xkcd"]:
        text, _ = constrained(query)
        assert text in calls and not validate_target(parse_target(text), catalogue)
    query, target, *_ = SETTINGS[2]
    for flag in ("--constrained", "--free"):
        assert _cli(["infer", str(root / "out"), query, "--variant", "int8", flag]) == 0
        assert capsys.readouterr().out.strip() == target
    from textbook.mu.eval import eval_settings
    from textbook.mu.evalconfig import EvalSettingsConfig

    data = root / "data"
    on = eval_settings(root / "run", [data], EvalSettingsConfig(latency_samples=2), progress=False)
    off = eval_settings(root / "run", [data], EvalSettingsConfig(latency_samples=2, constrained=False), progress=False)
    assert on["constrained"] and not off["constrained"] and on["exact_match"] == off["exact_match"] == 1.0


def test_retrieval_chooses_the_setting_in_eval_export_and_infer(exported, tmp_path, capsys):
    from textbook.mu.calls import head_of
    from textbook.mu.eval import eval_settings
    from textbook.mu.evalconfig import EvalSettingsConfig
    from textbook.mu.neighbours import FLOOR, INDEX_FILE, Neighbours, load_neighbours

    root, manifest = exported
    index = load_neighbours(root / "run")  # built when training ended: the distinct train queries
    assert len(index) == len(SETTINGS) and (root / "out" / INDEX_FILE).read_bytes() == (root / "run" / INDEX_FILE).read_bytes()
    assert manifest["retrieval"]["indexed"] == len(SETTINGS)
    agreement = manifest["parity"]["retrieval_agreement"]
    assert agreement["fp32"] == 1.0 and min(agreement.values()) >= 0.75, agreement  # quantized encoders choose alike
    assert Runner(root / "out", "fp32").index is not None
    assert Runner(root / "out", "fp32", retrieval=False).index is None and Runner(root / "out", "fp32", constrained=False).index is None
    data = root / "data"
    report = eval_settings(root / "run", [data], EvalSettingsConfig(latency_samples=1), progress=False)
    assert report["retrieval"]["indexed"] == len(SETTINGS) and report["exact_match"] == 1.0  # the memorised rows

    # An index whose every neighbour asks to set the brightness to 70: every answer is a brightness setting, and its
    # value is the neighbours' unless the decoder is far surer of another.
    brightness = head_of(SETTINGS[2][1])
    none = np.zeros(len(index), dtype=np.int32)
    forced = Neighbours(index.vectors, none, (brightness,), none, (SETTINGS[2][1],), index.negations, index.words,
                        index.weights_sha256)
    run, out = tmp_path / "run", tmp_path / "out"
    shutil.copytree(root / "run", run)
    shutil.copytree(root / "out", out)
    forced.save(run / INDEX_FILE)
    forced.save(out / INDEX_FILE)
    steered = eval_settings(run, [data], EvalSettingsConfig(latency_samples=0), progress=False)
    assert steered["exact_match"] == pytest.approx(1 / len(SETTINGS))  # only "set brightness to 70" is still right
    plain = eval_settings(run, [data], EvalSettingsConfig(latency_samples=0, retrieval=False), progress=False)
    assert plain["exact_match"] == 1.0 and plain["retrieval"] is None
    for query, target, *_ in SETTINGS[:3]:
        assert _cli(["infer", str(out), query, "--variant", "fp32"]) == 0
        answer = capsys.readouterr().out.strip()
        assert head_of(answer) == brightness and (answer == target) == (query == SETTINGS[2][0])
        assert _cli(["infer", str(out), query, "--variant", "fp32", "--no-retrieval"]) == 0
        assert capsys.readouterr().out.strip() == target
    # the steered answers are ones the model itself finds unlikely: their confidence says so
    lines = []
    (tmp_path / "q.txt").write_text(SETTINGS[0][0] + "\n")
    for flag in ("--retrieval", "--no-retrieval"):
        assert _cli(["infer", str(out), "-i", str(tmp_path / "q.txt"), "--variant", "fp32", "--confidence", flag]) == 0
        lines.append(json.loads(capsys.readouterr().out))
    assert lines[0]["confidence"] < 0.1 < 0.5 < lines[1]["confidence"]
    # the exported runner's steered answer and its probability are PyTorch's
    from textbook.mu.calls import CallTries
    from textbook.mu.checkpoint import tokenizer_path
    from textbook.mu.eval import encode_queries, pad_rows
    from textbook.mu.tokenizer import load_tokenizer

    model = _model(root).eval()
    tokenizer = load_tokenizer(tokenizer_path(root / "run"))
    tries = CallTries(load_calls(root / "run"), tokenizer, model.cfg.eos_id)
    src, mask = pad_rows(encode_queries(tokenizer, [SETTINGS[0][0]], model.cfg, Runner(out, "fp32").lexicon), model.cfg.pad_id, "cpu")
    with torch.no_grad():
        steer = tries.steer(brightness, {SETTINGS[2][1]: 1.0}, FLOOR)
        (emitted,), (logprob,) = model.generate_scored(src, mask, allowed=[steer], scored_by=tries.full.allowed)
    _, generation = Runner(out, "fp32")(SETTINGS[0][0])
    assert generation.tokens == emitted and generation.logprob == pytest.approx(logprob, abs=1e-3)

    # Neighbours that all turn bluetooth off: "turn on bluetooth" is still answered within on/off bluetooth, the prior
    # pulls it to off, and the exported runner weighs the two as PyTorch does, token for token.
    on, off = SETTINGS[0][1], SETTINGS[1][1]
    forced = Neighbours(index.vectors, none, (head_of(off),), none, (off,), index.negations, index.words, index.weights_sha256)
    forced.save(out / INDEX_FILE)
    steer = tries.steer(head_of(off), {off: 1.0}, FLOOR)
    for query in (SETTINGS[0][0], SETTINGS[1][0], SETTINGS[4][0]):
        src, mask = pad_rows(encode_queries(tokenizer, [query], model.cfg, Runner(out, "fp32").lexicon), model.cfg.pad_id, "cpu")
        with torch.no_grad():
            (emitted,), (logprob,) = model.generate_scored(src, mask, allowed=[steer], scored_by=tries.full.allowed)
            (alone,), _ = model.generate_scored(src, mask, allowed=[tries.allowed_for(head_of(off))], scored_by=tries.full.allowed)
        text, generation = Runner(out, "fp32")(query)
        assert text in (on, off) and generation.tokens == emitted and generation.logprob == pytest.approx(logprob, abs=1e-3)
        if query == SETTINGS[0][0]:
            assert tokenizer.decode(alone) == on  # the decoder alone reads "turn on"
    assert Runner(out, "fp32")(SETTINGS[1][0])[0] == off


def test_infer_answers_a_whole_file_in_order_with_one_model_load(exported, tmp_path, capsys, monkeypatch):
    import textbook.export.runner as runner_module

    root, _ = exported
    loads = []
    real_init = runner_module.Runner.__init__

    def counting_init(self, *a, **k):
        loads.append(1)
        real_init(self, *a, **k)

    monkeypatch.setattr(runner_module.Runner, "__init__", counting_init)
    queries = [q for q, *_ in SETTINGS[:4]]
    expected = [t for _, t, *_ in SETTINGS[:4]]
    too_long = " ".join(["please"] * 60)
    (tmp_path / "requests.txt").write_text("\n".join(queries[:2] + ["", too_long] + queries[2:]) + "\n", encoding="utf-8")
    assert _cli(["infer", str(root / "out"), "--input", str(tmp_path / "requests.txt"), "--variant", "int8"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[:3] == expected[:2] + ['{"error": "empty request"}'] and lines[4:] == expected[2:]  # line N answers line N
    assert "this export takes at most" in json.loads(lines[3])["error"]  # one request too long: the rest go on
    assert "6 requests, 2 without a call" in out.err and len(loads) == 1
    # JSONL: the `query` field of each line
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps({"query": q, "n": i}) + "\n" for i, q in enumerate(queries)))
    assert _cli(["infer", str(root / "out"), "-i", str(tmp_path / "requests.jsonl"), "--variant", "int8"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    # a line without `query` stops the run with one line that names it
    (tmp_path / "bad.jsonl").write_text('{"query": "dark mode"}\n{"text": "no query"}\n')
    assert _cli(["infer", str(root / "out"), "-i", str(tmp_path / "bad.jsonl")]) != 0
    assert "bad.jsonl:2 has no text field `query`" in capsys.readouterr().err


def _teacher_forced_logprob(model, src, mask, emitted: list[int], allowed=None) -> float:
    """log P(emitted + EOS | source) from one teacher-forced forward pass, masked to `allowed` when given."""
    cfg = model.cfg
    full = emitted + [cfg.eos_id]
    logits = model(src, mask, torch.tensor([[cfg.bos_id] + full[:-1]]))[0]  # (T, V)
    total = 0.0
    for t, token in enumerate(full):
        row = logits[t]
        if allowed is not None:
            keep = torch.tensor(allowed(full[:t]))
            row = torch.full_like(row, float("-inf")).index_copy(0, keep, row[keep])
        total += float(torch.log_softmax(row, -1)[token])
    return total


def test_confidence_is_the_models_own_probability_of_its_answer(exported, tmp_path, capsys):
    from textbook.mu.calls import CallTrie
    from textbook.mu.checkpoint import tokenizer_path
    from textbook.mu.tokenizer import load_tokenizer
    from textbook.mu.eval import encode_queries, pad_rows

    root, _ = exported
    model = _model(root).eval()
    tokenizer = load_tokenizer(tokenizer_path(root / "run"))
    trie = CallTrie.from_calls(load_calls(root / "run"), tokenizer, model.cfg.eos_id)
    queries = [q for q, *_ in SETTINGS[:3]] + ["qq zz bluetooth brightness dark"]
    fp32 = Runner(root / "out", "fp32", retrieval=False)  # the decoder's own answers (retrieval: the test above)
    confidences = []
    with torch.no_grad():
        for query in queries:
            src, mask = pad_rows(encode_queries(tokenizer, [query], model.cfg, fp32.lexicon), model.cfg.pad_id, "cpu")
            for allowed in (None, trie.allowed):
                (emitted,), (logprob,) = model.generate_scored(src, mask, allowed=allowed)
                assert logprob == pytest.approx(_teacher_forced_logprob(model, src, mask, emitted, allowed), abs=1e-4)
            _, generation = fp32(query)  # the exported graphs give the same number
            assert generation.logprob == pytest.approx(logprob, abs=1e-3) and generation.tokens == emitted
            confidences.append(generation.confidence)
    assert min(confidences[:3]) > 0.5 and max(confidences[:3]) <= 1.0  # memorised rows
    assert confidences[3] < min(confidences[:3])  # gibberish is less sure

    requests = tmp_path / "requests.txt"
    requests.write_text("\n".join(queries) + "\n", encoding="utf-8")
    assert _cli(["infer", str(root / "out"), "--input", str(requests), "--variant", "fp32", "--confidence", "--no-retrieval"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["confidence"] for line in lines] == pytest.approx(confidences, abs=1e-4)
    assert [{k: v for k, v in line.items() if k != "confidence"} for line in lines[:3]] == [json.loads(t) for _, t, *_ in SETTINGS[:3]]
    # below --min-confidence the call is withheld (and named), the others answered as usual
    gate = (confidences[3] + min(confidences[:3])) / 2
    assert _cli(["infer", str(root / "out"), "-i", str(requests), "--variant", "fp32", "--min-confidence", str(gate), "--no-retrieval"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines[:3] == [t for _, t, *_ in SETTINGS[:3]]
    last = json.loads(lines[3])
    assert last["abstain"] is True and last["confidence"] < gate and "action" in last["call"]
    assert "1 below --min-confidence" in out.err
    assert _cli(["infer", str(root / "out"), "-i", str(requests), "--min-confidence", "1.5"]) != 0
    assert "--min-confidence is a probability between 0 and 1" in capsys.readouterr().err
    # eval reports exact match among the most confident answers; all of them is the plain exact match
    from textbook.mu.eval import eval_settings
    from textbook.mu.evalconfig import EvalSettingsConfig

    report = eval_settings(root / "run", [root / "data"], EvalSettingsConfig(latency_samples=0, retrieval=False), progress=False)
    table = report["by_confidence"]
    assert [row["coverage"] for row in table] == [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]
    assert table[0]["exact_match"] == report["exact_match"]
    assert all(a["min_confidence"] <= b["min_confidence"] for a, b in zip(table, table[1:]))


def test_bench_times_every_variant_side_by_side(exported, capsys):
    root, manifest = exported
    assert _cli(["infer", str(root / "out"), "--bench", "--data", str(root / "data"), "--requests", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["variant", "size", "MB"]
    rows = {line.split()[0]: line.split() for line in lines[1:5]}
    assert set(rows) == {"fp32", "int8", "a16w8", "dynamic"}
    assert rows["fp32"][2] == "100%" and rows["fp32"][-2] == "1.00x"
    for name, cells in rows.items():
        assert float(cells[1]) == round(manifest["variants"][name]["bytes"] / 1e6, 1)
        assert float(cells[6]) >= float(cells[5]) > 0  # p95 >= p50
    assert "6 requests per variant" in lines[5]


def test_textbook_toml_infer_section_applies_and_flags_win(exported, tmp_path, capsys, monkeypatch):
    root, _ = exported
    monkeypatch.chdir(tmp_path)
    query, target = SETTINGS[0][0], SETTINGS[0][1]
    (tmp_path / "textbook.toml").write_text('[infer]\nvariant = "int8"\nthreads = 2\n')
    assert _cli(["infer", str(root / "out"), query]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == target and err.startswith("(int8, "), err
    assert _cli(["infer", str(root / "out"), query, "--variant", "fp32"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == target and err.startswith("(fp32, "), err
    (tmp_path / "textbook.toml").write_text('[infer]\nvariants = "int8"\n')
    assert _cli(["infer", str(root / "out"), query]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) variants in [infer]" in err and err.count("\n") == 1, err
    (tmp_path / "textbook.toml").write_text('[infer]\nvariant = "int4"\n')
    assert _cli(["infer", str(root / "out"), query]) == 2
    assert capsys.readouterr().err == "error: unknown --variant 'int4': use fp32, int8, a16w8, dynamic\n"


def test_checker_catches_planted_bad_ops(exported, tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    root, _ = exported
    model = onnx.load(str(root / "out" / "decoder.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"  # a dynamic dimension
    model.graph.node.extend([
        helper.make_node("NonZero", ["source_mask"], ["nz"], name="planted_nonzero"),  # unsupported, data-dependent shape
        helper.make_node("Add", ["nz", "nz"], ["nz2"], name="planted_int64_add"),  # 64-bit integer arithmetic
    ])
    model.graph.output.append(helper.make_tensor_value_info("nz2", TensorProto.INT64, None))
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    findings = check_dir(bad)[0].findings
    kinds = {(f.kind, f.where.split()[-1]) for f in findings}
    assert ("unsupported-op", "planted_nonzero") in kinds
    assert ("int64-arithmetic", "planted_int64_add") in kinds
    assert ("dynamic-shape", "input_ids") in kinds and ("dynamic-shape", "planted_nonzero") in kinds
    assert _cli(["export", "--check", str(bad)]) == 1
    assert "[int64-arithmetic] Add planted_int64_add" in capsys.readouterr().out


def test_missing_checkpoint_is_a_clear_error(exported, tmp_path, capsys):
    root, _ = exported
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "model.safetensors").unlink()
    assert _cli(["export", str(run), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.safetensors" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_checkpoint_without_tokenizer_is_a_clear_error(exported, tmp_path):
    root, _ = exported
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "tokenizer.json").unlink()
    with pytest.raises(TextbookError, match="tokenizer.json"):
        export_run(run, tmp_path / "out", progress=False)


def test_calibration_data_of_the_wrong_schema_is_a_clear_error(exported, tmp_path):
    from dataclasses import dataclass

    @dataclass(slots=True)
    class Doc:
        id: str
        text: str

    root, _ = exported
    web = tmp_path / "web"
    write_records(web, Doc, [Doc("1", "A page about lists.")])
    cfg = ExportConfig(quantize=("int8",), calibration=str(web))
    with pytest.raises(TextbookError, match=r"settings schema: it needs string column\(s\) query"):
        export_run(root / "run", tmp_path / "out", cfg, progress=False)
    with pytest.raises(TextbookError, match="--calibration"):
        export_run(root / "run", tmp_path / "out", ExportConfig(quantize=("a16w8",)), progress=False)


def test_infer_errors(exported, tmp_path):
    root, _ = exported
    with pytest.raises(TextbookError, match="export.json"):
        Runner(tmp_path)
    with pytest.raises(TextbookError, match="no 'int4' variant"):
        Runner(root / "out", "int4")
    with pytest.raises(TextbookError, match="--max-source-len"):
        Runner(root / "out", "fp32").source_ids("turn on bluetooth " * 20)


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _restamp(path: Path, sha: str) -> None:
    """Rewrite an index as if made with the weights of SHA-256 `sha`."""
    from textbook.mu.neighbours import Neighbours

    dataclasses.replace(Neighbours.load(path), weights_sha256=sha).save(path)


def _drop_key(key: str):
    def damage(out: Path) -> None:
        manifest = json.loads((out / "export.json").read_text())
        del manifest[key]
        (out / "export.json").write_text(json.dumps(manifest))
    return damage


DAMAGED = [
    # (id, damage(export dir), words the one-line error must hold)
    ("truncated_manifest", lambda out: _cut(out / "export.json"), ["export.json is not valid JSON"]),
    ("manifest_without_shapes", _drop_key("shapes"), ["export.json is damaged", "lacks shapes"]),
    ("manifest_without_variants", _drop_key("variants"), ["export.json is damaged", "lacks variants"]),
    ("manifest_not_an_object", lambda out: (out / "export.json").write_text("[]"), ["not a JSON object"]),
    ("truncated_tokenizer", lambda out: _cut(out / "tokenizer.json"), ["tokenizer.json cannot be read"]),
    ("missing_tokenizer", lambda out: (out / "tokenizer.json").unlink(), ["tokenizer.json cannot be read"]),
    ("truncated_lexicon", lambda out: _cut(out / "lexicon.json"), ["lexicon.json is not a lexicon", "re-export"]),
    ("missing_graph", lambda out: (out / "decoder.onnx").unlink(), ["ONNX Runtime cannot load fp32"]),
    ("truncated_index", lambda out: _cut(out / "neighbours.npz"), ["neighbours.npz is damaged", "or delete it"]),
    ("index_of_other_weights", lambda out: _restamp(out / "neighbours.npz", "0" * 64), ["built for other weights", "or delete it"]),
]


@pytest.mark.parametrize("damage, words", [d[1:] for d in DAMAGED], ids=[d[0] for d in DAMAGED])
def test_infer_on_a_damaged_export_is_a_one_line_error(exported, tmp_path, capsys, damage, words):
    root, _ = exported
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    damage(out)
    code = _cli(["infer", str(out), SETTINGS[0][0], "--variant", "fp32"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words + ([] if "re-export" in words else ["re-run `textbook export RUN --out"]):  # what is wrong, what to do
        assert word in err, err


def test_a_damaged_export_is_mended_by_exporting_again_and_infer_ignores_config_json(exported, tmp_path, capsys):
    root, _ = exported
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    _cut(out / "config.json")  # written for other runtimes; infer does not need it
    assert _cli(["infer", str(out), SETTINGS[0][0], "--variant", "fp32"]) == 0
    assert capsys.readouterr().out.strip() == SETTINGS[0][1]
    _cut(out / "export.json")
    cfg = ExportConfig(max_source_len=SOURCE_LEN, max_target_len=CACHE_LEN, parity_samples=2)
    export_run(root / "run", out, cfg, progress=False)  # the damaged manifest does not stop the export that mends it
    assert _cli(["infer", str(out), SETTINGS[0][0]]) == 0
    assert capsys.readouterr().out.strip() == SETTINGS[0][1]


def test_the_cache_fits_the_longest_valid_call_and_a_shorter_one_is_refused(exported, tmp_path):
    """A cache shorter than the longest valid call stops decoding mid-call: the answer is no call at all (a 16-step
    cache did that to the tiny demo's longer calls). Without --max-target-len the export fits that call."""
    root, manifest = exported
    assert manifest["shapes"]["cache_len"] == CACHE_LEN  # the fixture leaves --max-target-len out
    with pytest.raises(TextbookError, match="--max-target-len 40 is too short for this run's longest valid call "
                                            r"\(48 decoder steps with its end\): pass at least that, or leave it out"):
        export_run(root / "run", tmp_path / "short", ExportConfig(max_source_len=SOURCE_LEN, max_target_len=40), progress=False)
    assert not any((tmp_path / "short").iterdir())  # refused before any work


def test_help_imports_no_heavy_dependency():
    """`textbook --help` and the exporter's light modules load neither torch, onnx nor onnxruntime (nor openai)."""
    import subprocess

    code = ("import sys; import textbook.cli.export, textbook.export.check, textbook.export.runner, "
            "textbook.export.exporter, textbook.export.bench, textbook.export.quantize, textbook.export.parity; "
            "mine = [m for m in ('torch', 'onnx', 'onnxruntime', 'openai') if m in sys.modules]; "
            "from textbook.cli import _register; _register(); "
            "cli = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]; print(mine, cli)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] []"
