"""`textbook export` and `textbook infer`: NPU-ready ONNX from a Mu run, and ONNX Runtime inference.

torch, onnx and onnxruntime are imported inside the commands only (`textbook --help` stays fast).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from textbook.cli import options
from textbook.cli.options import default
from textbook.config import load_config_file, resolve
from textbook.errors import TextbookError
from textbook.export.config import ExportConfig
from textbook.export.config import VARIANTS, InferConfig


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        run: Optional[Path] = typer.Argument(None, help="A trained run directory (the --out of `textbook train`)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory for the ONNX graphs, tokenizer, config and manifest."),
        quantize: Optional[list[str]] = typer.Option(
            None, "--quantize", "-q",
            help="none (fp32 only), int8, a16w8 (QNN: 16-bit activations, 8-bit weights), dynamic (CPU int8). "
            f"Repeat or comma-separate for several; fp32 is always written. (default: {default(ExportConfig, 'quantize')})",
        ),
        calibration: Optional[Path] = typer.Option(None, "--calibration", help="Settings shards (query, target, split): calibration and held-out parity."),
        max_source_len: Optional[int] = typer.Option(None, "--max-source-len", help="Static encoder length in tokens (default: the model's)."),
        max_target_len: Optional[int] = typer.Option(None, "--max-target-len", help="Static KV cache length = most tokens decoded (default: a settings run's longest valid call, else the model's limit; shorter than that call is refused)."),
        calibration_samples: Optional[int] = typer.Option(None, help=f"Queries decoded for calibration. (default: {default(ExportConfig, 'calibration_samples')})"),
        parity_samples: Optional[int] = typer.Option(None, help=f"Held-out queries for agreement and exact match. (default: {default(ExportConfig, 'parity_samples')})"),
        parity_split: Optional[str] = typer.Option(None, help=f"Split scored for parity. (default: {default(ExportConfig, 'parity_split')})"),
        calibration_split: Optional[str] = typer.Option(None, help=f"Split calibrated on. (default: {default(ExportConfig, 'calibration_split')})"),
        check: Optional[Path] = typer.Option(None, "--check", help="Only check DIR (or one .onnx file) for what NPU execution providers reject."),
        config: Optional[Path] = options.config_option("export"),
    ) -> None:
        """Export a trained Mu run to static-shape ONNX (encoder + KV-cache decoder step), quantize, check parity.

        Example: textbook export runs/settings --out export/settings --quantize a16w8,int8 --calibration out/settings --max-source-len 32 --max-target-len 32

        Check any ONNX graphs for NPU problems: textbook export --check export/settings
        """
        if check is not None:
            from textbook.export.check import check_dir, format_report

            reports = check_dir(check)
            typer.echo(format_report(reports), nl=False)
            if not all(r.ok for r in reports):
                raise typer.Exit(1)
            return
        if run is None or out is None:
            raise TextbookError("give a run and --out: textbook export RUN --out DIR (or --check DIR to lint graphs)")
        from textbook.export.exporter import export_run

        variants = tuple(v.strip() for item in quantize or [] for v in item.split(",") if v.strip()) or None
        cli = {
            "quantize": variants, "calibration": str(calibration) if calibration else None,
            "max_source_len": max_source_len, "max_target_len": max_target_len,
            "calibration_samples": calibration_samples, "parity_samples": parity_samples,
            "parity_split": parity_split, "calibration_split": calibration_split,
        }
        cfg = resolve(ExportConfig, cli=cli, file=load_config_file(config).get("export", {}), section="export")
        report = export_run(run, out, cfg)
        options.show(report, config)
        parity = report["parity"]
        if not parity["fp32_logits"]["ok"]:
            raise TextbookError("the fp32 graphs do not match PyTorch within 1e-4: this is a bug in textbook export, please report it")

    @app.command("infer")
    def infer(
        directory: Path = typer.Argument(..., help="An export directory (the --out of `textbook export`)."),
        query: Optional[str] = typer.Argument(None, help="A settings request, as typed in the Settings search box."),
        variant: Optional[str] = typer.Option(None, "--variant", "-v", help=f"{', '.join(VARIANTS)}. (default: the last one exported; --bench: every one)"),
        bench: bool = typer.Option(False, "--bench", help="Benchmark every variant side by side instead of answering one query."),
        data: Optional[Path] = typer.Option(None, "--data", help="--bench: settings shards to take queries from. (default: built-in examples)"),
        split: Optional[str] = typer.Option(None, help=f"--bench: split of --data to use. (default: {default(InferConfig, 'split')})"),
        requests: Optional[int] = typer.Option(None, help=f"--bench: queries per variant. (default: {default(InferConfig, 'requests')})"),
        threads: Optional[int] = typer.Option(None, help=f"ONNX Runtime intra-op threads (0 = one per core). (default: {default(InferConfig, 'threads')})"),
        input_file: Optional[Path] = typer.Option(None, "--input", "-i", help="Answer every request of a file (one per line, or a JSONL file's `query` field) with the model loaded once: one call per line on stdout, in order."),
        constrained: Optional[bool] = typer.Option(None, "--constrained/--free", help="Answer only with calls valid for the model's catalogue (the export's calls.json), or let the decoder run free. (default: --constrained)"),
        retrieval: Optional[bool] = typer.Option(None, "--retrieval/--no-retrieval", help="Let the nearest training requests (the export's neighbours.npz) choose each answer's setting, the decoder writing the call within it; or the decoder alone. (default: --retrieval, when the export has an index)"),
        confidence: Optional[bool] = typer.Option(None, "--confidence", help="--input: add each answer's probability to its line (`confidence`, 0-1: of this call among the valid ones)."),
        min_confidence: Optional[float] = typer.Option(None, "--min-confidence", help="--input: withhold calls less probable than this ({\"abstain\": true, ...}): show search results for those instead. (default: 0, always answer)"),
        config: Optional[Path] = options.config_option("infer"),
    ) -> None:
        """Run an exported Mu with ONNX Runtime: greedy decoding with a fixed-size KV cache; prints the function call.

        Example: textbook infer export/settings "make the mouse pointer bigger"

        Many requests, one model load: textbook infer export/settings --input requests.txt > calls.jsonl

        Withhold unsure answers (fall back to search): textbook infer export/settings --input requests.txt --min-confidence 0.5

        Latency of every variant (first token, decode tokens/s, p50/p95, size): textbook infer export/settings --bench --data out/settings
        """
        cli = {"variant": variant, "data": str(data) if data else None, "split": split, "requests": requests, "threads": threads,
               "constrained": constrained, "retrieval": retrieval, "confidence": confidence, "min_confidence": min_confidence}
        cfg = resolve(InferConfig, cli=cli, file=load_config_file(config).get("infer", {}), section="infer")
        if bench:
            from textbook.export.bench import bench as run_bench, format_bench

            typer.echo(format_bench(run_bench(directory, cfg)), nl=False)
            return
        if not query and not input_file:
            raise TextbookError('give a query: textbook infer DIR "turn on bluetooth" (or --input FILE, or --bench)')
        if query and input_file:
            raise TextbookError("give a query or --input FILE, not both")
        from textbook.export.runner import Runner

        if input_file:
            from textbook.export.answers import answer_all, read_queries

            queries = read_queries(input_file)  # checked before the model loads
            first = next(queries, None)
            runner = Runner(directory, cfg.variant, threads=cfg.threads, constrained=cfg.constrained, retrieval=cfg.retrieval)
            stats: dict = {}
            import itertools

            lines = answer_all(runner, itertools.chain([] if first is None else [first], queries), stats,
                               confidence=cfg.confidence, min_confidence=cfg.min_confidence)
            for line in lines:
                typer.echo(line)
            ms = sorted(stats["ms"])
            p50 = f", p50 {ms[len(ms) // 2]:.0f} ms" if ms else ""
            abstained = f", {stats['abstained']:,} below --min-confidence" if cfg.min_confidence else ""
            typer.echo(f"({runner.variant}: {stats['requests']:,} requests, {stats['errors']:,} without a call{abstained}{p50})", err=True)
            return
        runner = Runner(directory, cfg.variant, threads=cfg.threads, constrained=cfg.constrained, retrieval=cfg.retrieval)
        text, gen = runner(query)
        typer.echo(text)
        typer.echo(f"({runner.variant}, {len(gen.tokens)} tokens, confidence {gen.confidence:.2f}, {gen.total_s * 1000:.0f} ms)", err=True)
