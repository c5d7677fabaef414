"""`textbook export RUN --out DIR`: graphs, quantized variants, tokenizer, config, manifest, parity.

    DIR/encoder.onnx, DIR/decoder.onnx             fp32 (always: the reference and calibration source)
    DIR/encoder.<q>.onnx, DIR/decoder.<q>.onnx     each quantized variant (int8, a16w8, dynamic)
    DIR/tokenizer.json, DIR/config.json            the run's tokenizer and model config
    DIR/lexicon.json                               the run's spelling lexicon, when its model has one
    DIR/calls.json                                 the run's valid calls (constrained decoding), when it has them
    DIR/neighbours.npz                             the run's retrieval index (textbook/mu/neighbours.py), when it has one
    DIR/export.json                                the manifest: shapes, I/O, files with sha256, NPU check, parity

Every file is written to a temp name and renamed; the manifest is written last, so a directory
without one is an interrupted export (run the command again).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textbook.config import public_dict
from textbook.errors import TextbookError
from textbook.export.check import check_model
from textbook.export.config import ExportConfig
from textbook.export.deps import need
from textbook.export.runner import MANIFEST, Runner, earlier_manifest
from textbook.report import Report
from textbook.rundir import RunDir
from textbook.shards import atomic_write_bytes, atomic_write_json, sha256_file
from textbook.progress import progress_bar

# Settings requests in the style users type (Mu's own example among them): parity inputs when no
# shards are given, so the fp32 check still runs on real text rather than random ids.
EXAMPLE_QUERIES = (
    "make the mouse pointer bigger",
    "turn on bluetooth",
    "set brightness to 70",
    "switch to dark mode",
    "increase the volume",
    "check for windows updates",
    "i cant see the cursor its too small",
    "turn off night light",
)


def _files_entry(out: Path, files: dict[str, Path]) -> dict[str, Any]:
    checks = {name: check_model(path) for name, path in files.items()}
    return {
        "files": {name: path.name for name, path in files.items()},
        "bytes": sum(p.stat().st_size for p in files.values()),
        "sha256": {name: sha256_file(p) for name, p in files.items()},
        "npu_check": {name: [f"[{f.kind}] {f.where}: {f.detail}" for f in r.findings] for name, r in checks.items()},
        "io": {name: {"inputs": [[n, d, list(s)] for n, d, s in r.inputs], "outputs": [[n, d, list(s)] for n, d, s in r.outputs]}
               for name, r in checks.items()},
    }


class _Stages:
    """One progress bar over the export's stages (each is seconds to a few minutes)."""

    def __init__(self, total: int, show: bool):
        self.bar = progress_bar(total, unit="stage", show=show, leave=False)
        self.seconds: dict[str, float] = {}  # per stage, for the manifest
        self._current: tuple[str, float] | None = None

    def start(self, name: str | None) -> None:
        if self._current:
            self.seconds[self._current[0]] = round(time.time() - self._current[1], 1)
            self.bar.update()
        self._current = (name, time.time()) if name else None
        if name:
            self.bar.set_description(name)

    def close(self) -> None:
        self.start(None)
        self.bar.close()


def _longest_call(calls: list[str], tokenizer) -> int:
    """Decoder steps the longest valid call takes: its tokens and the end of sequence (the start token's position
    emits the first)."""
    return max(len(e.ids) for e in tokenizer.encode_batch(list(calls), add_special_tokens=False)) + 1


def export_run(run: str | Path, out: str | Path, cfg: ExportConfig = ExportConfig(), *, progress: bool = True) -> Report:
    """Export a trained Mu run; returns the manifest (also written to OUT/export.json)."""
    need("torch"), need("onnx"), need("onnxruntime")
    from textbook.mu.checkpoint import WEIGHTS

    run = Path(run)
    if not run.is_dir():
        raise TextbookError(f"{run} does not exist: pass the --out directory of a `textbook train` run")
    if not (run / WEIGHTS).is_file():
        raise TextbookError(f"{run} holds no trained model ({WEIGHTS} is missing): pass the --out directory of a finished `textbook train` run")
    with RunDir(out):
        manifest = _export(run, Path(out), cfg, progress)
    return Report(manifest, format_summary(manifest, out).rstrip("\n").split("\n"))


def _export(run: Path, out: Path, cfg: ExportConfig, progress: bool) -> dict[str, Any]:
    from textbook.export.emit import OPSET, write_graphs
    from textbook.export.parity import logit_parity, retrieval_agreement, task_parity, torch_greedy, torch_heads
    from textbook.export.quantize import STATIC, calibration_feeds, quantize_graph
    from textbook.export.samples import Sample, read_samples
    from textbook.mu.calls import CALLS_FILE, load_calls, save_calls
    from textbook.mu.checkpoint import LEXICON, WEIGHTS, load_lexicon, load_model, read_run_config, tokenizer_path
    from textbook.mu.neighbours import FLOOR, INDEX_FILE, K, LEXICAL, REBUILD, TEMPERATURE, load_neighbours
    from textbook.mu.tokenizer import load_tokenizer, source_text

    tokenizer_file = tokenizer_path(run)
    run_config = read_run_config(run)
    model, mcfg = load_model(run)
    weights_sha256 = sha256_file(run / WEIGHTS)
    calls = load_calls(run)
    index = load_neighbours(run, weights_sha256, REBUILD) if calls else None  # fails early on a stale one
    lexicon = load_lexicon(run, mcfg)  # fails early when a spell-correcting run lost its lexicon
    source_len = cfg.max_source_len or mcfg.max_source_len
    # A settings model's cache fits its longest valid call (the smallest static shape that writes them all); else the model's
    fits = min(_longest_call(calls, load_tokenizer(tokenizer_file)), mcfg.max_target_len) if calls else mcfg.max_target_len
    cache_len = cfg.max_target_len or fits
    if source_len > mcfg.max_source_len or cache_len > mcfg.max_target_len:
        raise TextbookError(
            f"--max-source-len/--max-target-len ({source_len}/{cache_len}) exceed what the model was built for "
            f"({mcfg.max_source_len}/{mcfg.max_target_len}): RoPE tables stop there"
        )
    if cache_len < fits:  # decoding would stop mid-call: not a call at all
        raise TextbookError(f"--max-target-len {cache_len} is too short for this run's longest valid call "
                            f"({fits} decoder steps with its end): pass at least that, or leave it out")
    static = [v for v in cfg.variants if v in STATIC]
    if static and not cfg.calibration:
        raise TextbookError(f"--quantize {','.join(static)} calibrates on real inputs: pass --calibration SHARDS (settings shards)")
    # Read (and schema-check) the data before the minutes of work that need it.
    held_out = read_samples(cfg.calibration, split=cfg.parity_split, limit=cfg.parity_samples, seed=cfg.seed) if cfg.calibration else None
    calib = (read_samples(cfg.calibration, split=cfg.calibration_split, limit=cfg.calibration_samples, seed=cfg.seed + 1)
             if cfg.calibration and static else None)

    started = time.time()
    stages = _Stages(3 + (1 if static else 0) + 2 * len(cfg.variants), progress)
    stages.start("export graphs")
    out.mkdir(parents=True, exist_ok=True)
    old = earlier_manifest(out)
    (out / MANIFEST).unlink(missing_ok=True)  # until the new one lands, the directory reads as incomplete
    fp32 = write_graphs(model, out, source_len=source_len, cache_len=cache_len)
    atomic_write_bytes(out / "tokenizer.json", tokenizer_file.read_bytes())
    atomic_write_json(out / "config.json", {"model": mcfg.to_dict()})
    if lexicon is not None:
        lexicon.save(out / LEXICON)
    else:
        (out / LEXICON).unlink(missing_ok=True)  # an earlier export's, for another model
    if calls:
        save_calls(out, calls)
    else:
        (out / CALLS_FILE).unlink(missing_ok=True)
    if index is not None:
        atomic_write_bytes(out / INDEX_FILE, (run / INDEX_FILE).read_bytes())
    else:
        (out / INDEX_FILE).unlink(missing_ok=True)  # an earlier export's, for another model
    manifest: dict[str, Any] = {
        "format": "textbook-mu-onnx/1",
        "run": str(run),
        "weights_sha256": weights_sha256,
        "retrieval": {"indexed": len(index), "k": K, "temperature": TEMPERATURE, "lexical": LEXICAL, "floor": FLOOR}
        if index is not None else None,
        "opset": OPSET,
        "shapes": {"source_len": source_len, "cache_len": cache_len, "layers": mcfg.n_decoder_layers,
                   "kv_heads": mcfg.n_kv_heads, "head_dim": mcfg.head_dim, "vocab_size": mcfg.vocab_size},
        "special_ids": {"pad_id": mcfg.pad_id, "bos_id": mcfg.bos_id, "eos_id": mcfg.eos_id},
        "lowercase_source": mcfg.lowercase_source,  # the runner normalises queries as the trainer did
        "spell_correct": mcfg.spell_correct,
        "config": public_dict(cfg),
        "train_config": run_config.get("train", {}),
        "variants": {"fp32": _files_entry(out, fp32)},
        "default_variant": "fp32",
        "parity": {},
    }
    runner = Runner(out, "fp32", manifest=manifest, constrained=False)  # parity compares free decoding with PyTorch's

    def sources_of(samples) -> tuple[list[list[int]], list]:
        kept = [(ids, s) for s in samples if len(ids := runner.source_tokens(s.query)) <= source_len]
        return [ids for ids, _ in kept], [s for _, s in kept]

    asked = held_out if held_out is not None else [Sample(q, None) for q in EXAMPLE_QUERIES]
    parity_sources, kept = sources_of(asked)
    held_out = kept if held_out is not None else None
    if not parity_sources:
        raise TextbookError(f"every parity query is longer than --max-source-len {source_len}: raise it")
    stages.start("pytorch greedy decoding")
    greedy = torch_greedy(model, parity_sources, cache_len)
    stages.start("fp32 parity")
    manifest["parity"]["fp32_logits"] = logit_parity(model, runner, parity_sources, greedy).to_dict()
    manifest["parity"]["held_out"] = {"split": cfg.parity_split if held_out is not None else None, "samples": len(parity_sources),
                                      "skipped_longer_than_source_len": len(asked) - len(parity_sources)}
    targets = [s.target for s in held_out] if held_out is not None else [None] * len(parity_sources)
    manifest["parity"]["fp32"] = task_parity("fp32", runner, parity_sources, greedy, targets).to_dict()
    parity_texts = [source_text(s.query, mcfg.lowercase_source, lexicon) for s in kept]
    reference = torch_heads(model, index, parity_sources, parity_texts) if index is not None else None
    if reference is not None:  # does each variant's encoder choose the setting PyTorch's does?
        manifest["parity"]["retrieval_agreement"] = {"fp32": retrieval_agreement(index, runner, parity_sources, parity_texts, reference)}

    if cfg.variants:
        if static:
            stages.start("calibration")
        calib_sources = sources_of(calib)[0] if calib else []
        feeds = calibration_feeds(runner, calib_sources, cfg.max_decoder_feeds) if calib_sources else None
        if calib and not calib_sources:
            raise TextbookError(f"every calibration query is longer than --max-source-len {source_len}: raise it")
        for variant in cfg.variants:
            stages.start(f"quantize {variant}")
            files = {name: out / f"{name}.{variant}.onnx" for name in ("encoder", "decoder")}
            for name, path in files.items():
                quantize_graph(variant, fp32[name], path, feeds[name] if feeds else None)
            entry = _files_entry(out, files)
            entry["calibration"] = {"queries": len(calib_sources), "decoder_feeds": len(feeds["decoder"])} if feeds else None
            manifest["variants"][variant] = entry
            manifest["default_variant"] = cfg.variants[0]  # `textbook infer` runs the first one asked for
            stages.start(f"{variant} parity")
            quantized = Runner(out, variant, manifest=manifest, constrained=False)
            manifest["parity"][variant] = task_parity(variant, quantized, parity_sources, greedy, targets).to_dict()
            if reference is not None:
                manifest["parity"]["retrieval_agreement"][variant] = retrieval_agreement(index, quantized, parity_sources, parity_texts, reference)
    # Files an earlier export listed that this one did not write are stale: remove them.
    written = {f for v in manifest["variants"].values() for f in v["files"].values()}
    for variant in (old or {}).get("variants", {}).values():
        for name in variant.get("files", {}).values():
            if name not in written:
                (out / name).unlink(missing_ok=True)
    stages.close()
    manifest["seconds"] = round(time.time() - started, 1)
    manifest["stage_seconds"] = stages.seconds
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def format_summary(manifest: dict[str, Any], out: str | Path) -> str:
    """The end-of-export report: files and sizes, NPU check, parity against PyTorch."""
    shapes = manifest["shapes"]
    lines = [f"exported {manifest['run']} -> {out}  (opset {manifest['opset']}, source {shapes['source_len']} tokens, "
             f"KV cache {shapes['cache_len']} positions, {manifest.get('seconds', 0):.0f} s)"]
    fp32_bytes = manifest["variants"]["fp32"]["bytes"]
    for name, v in manifest["variants"].items():
        problems = sum(len(f) for f in v["npu_check"].values())
        npu = "NPU check ok" if not problems else f"NPU check: {problems} finding(s), see `textbook export --check {out}`"
        lines.append(f"  {name:<8} {v['files']['encoder']} + {v['files']['decoder']}  {v['bytes'] / 1e6:7.1f} MB "
                     f"({v['bytes'] / fp32_bytes:4.0%} of fp32)  {npu}")
    p = manifest["parity"]
    lp = p["fp32_logits"]
    lines.append(f"parity fp32 vs PyTorch: max |logit diff| {lp['max_abs_diff']:.2e} over {lp['positions']} positions of "
                 f"{lp['samples']} queries (limit {lp['atol']:.0e}): {'ok' if lp['ok'] else 'FAILED'}")
    held = p["held_out"]
    where = f"held-out split {held['split']!r}" if held["split"] else "built-in example queries (pass --calibration for a held-out split)"
    skipped = f" ({held['skipped_longer_than_source_len']} longer than the source length skipped)" if held["skipped_longer_than_source_len"] else ""
    lines.append(f"greedy decoding vs PyTorch on {held['samples']} queries of the {where}{skipped}:")
    for name in manifest["variants"]:
        t = p.get(name)
        if not t:
            continue
        em = ""
        if t["exact_match"] is not None:
            em = f"  exact match {t['exact_match']:.1%} (PyTorch {t['torch_exact_match']:.1%}, drop {t['drop_points']:+.1f} pts"
            em += f", limit {t['max_drop_points']:.0f}: {'ok' if t['ok'] else 'MISSED'})" if t["max_drop_points"] is not None else ")"
        lines.append(f"  {name:<8} token agreement {t['token_agreement']:.1%}, identical outputs {t['sequence_agreement']:.1%}{em}")
    return "\n".join(lines) + "\n"

