"""`textbook train`, `textbook tokenizer train`, `textbook eval settings|lm`: the Mu trainer's commands.

torch is imported inside the commands only, so `textbook --help` stays fast and works without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

tokenizer_app = typer.Typer(help="Train a byte-level BPE tokenizer for Mu.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a trained Mu run: settings exact match, or LM perplexity.", no_args_is_help=True)


def _summary(title: str, items: dict) -> None:
    typer.echo(title, err=True)
    for key, value in items.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        typer.echo(f"  {key}: {value}", err=True)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Optional[list[Path]] = typer.Option(None, "--data", "-d", help="Shard directory to train on (repeat for several)."),
        out: Optional[str] = typer.Option(None, "--out", "-o", help="Run directory (default runs/mu)."),
        task: Optional[str] = typer.Option(None, help="settings (query -> function call) or pretrain (prefix -> continuation)."),
        preset: Optional[str] = typer.Option(None, help="Model shape: mu-tiny, mu-small (default), mu-330m."),
        text_column: Optional[str] = typer.Option(None, help="Text column for --task pretrain (default text)."),
        tokenizer: Optional[str] = typer.Option(None, help="A tokenizer.json (default: trained on --data's train split)."),
        vocab_size: Optional[int] = typer.Option(None, help="Vocabulary of the tokenizer trained here (default: the preset's)."),
        max_source_len: Optional[int] = typer.Option(None, help="Longest encoder input in tokens (default: the preset's)."),
        max_target_len: Optional[int] = typer.Option(None, help="Longest decoder output in tokens, EOS included."),
        batch_size: Optional[int] = typer.Option(None, help="Sequences per micro-batch (per GPU) (default 32)."),
        grad_accum: Optional[int] = typer.Option(None, help="Micro-batches per optimizer step (default 1)."),
        max_steps: Optional[int] = typer.Option(None, help="Optimizer steps (default 1000)."),
        epochs: Optional[float] = typer.Option(None, help="Settings only: train this many epochs (sets --max-steps)."),
        max_minutes: Optional[float] = typer.Option(None, help="Time box: after 10 timed steps the run is cut to end within this many minutes (the WSD decay included)."),
        lr: Optional[float] = typer.Option(None, help="Peak learning rate for Muon and AdamW (default 3e-3)."),
        weight_decay: Optional[float] = typer.Option(None, help="Decoupled weight decay (default 0.01)."),
        warmup_steps: Optional[int] = typer.Option(None, help="Linear warmup steps (default 50)."),
        decay_fraction: Optional[float] = typer.Option(None, help="Share of steps in the final decay (WSD; default 0.2; short time-boxed runs do better with about 0.6)."),
        decay_shape: Optional[str] = typer.Option(None, help="Shape of the decay: linear (default) or sqrt (1 - sqrt(progress))."),
        clip: Optional[float] = typer.Option(None, help="Gradient norm clipping (default 1.0)."),
        muon_ns_steps: Optional[int] = typer.Option(None, help="Newton-Schulz iterations per Muon step (default 5; fewer buy more steps in a time box)."),
        seed: Optional[int] = typer.Option(None, help="Seed for initialisation and data order (default 0)."),
        init_from: Optional[str] = typer.Option(None, help="Start from a trained run (fine-tuning; needed for LoRA)."),
        lora_rank: Optional[int] = typer.Option(None, help="Train LoRA adapters of this rank on --init-from (0 = full fine-tuning)."),
        lora_alpha: Optional[float] = typer.Option(None, help="LoRA alpha (default: the rank)."),
        distill_from: Optional[str] = typer.Option(None, help="Logit distillation from this larger Mu run (same tokenizer)."),
        kd_weight: Optional[float] = typer.Option(None, help="Weight of the distillation loss against cross-entropy (default 0.5)."),
        kd_temperature: Optional[float] = typer.Option(None, help="Softmax temperature for distillation (default 1.0)."),
        skip_long: Optional[bool] = typer.Option(None, "--skip-long", help="Drop settings rows longer than the model allows instead of failing."),
        bpe_dropout: Optional[float] = typer.Option(None, help="Settings: skip BPE merges with this probability when tokenizing training queries, so typos' odd pieces are familiar (BPE-dropout; e.g. 0.1; default 0)."),
        lowercase_source: Optional[bool] = typer.Option(None, "--lowercase-source/--keep-case", help="Lowercase queries before tokenization, here and wherever the model runs (default: on for --task settings, whose search box ignores case)."),
        dedup: Optional[bool] = typer.Option(None, "--dedup/--no-dedup", help="Skip rows that repeat an earlier one in the epoch, so a short run sees more distinct pairs (default: on for settings, off for pretrain)."),
        spell_correct: Optional[bool] = typer.Option(None, "--spell-correct/--no-spell-correct", help="Correct typos in queries against the words of the train split (RUN/lexicon.json), here and wherever the model runs (default: on wherever queries are lowercased)."),
        precision: Optional[str] = typer.Option(None, help="auto (bf16 autocast on GPU), bf16 or fp32."),
        compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on GPU)."),
        device: Optional[str] = typer.Option(None, help="auto, cpu, cuda."),
        log_every: Optional[int] = typer.Option(None, help="Steps between log lines (default 10)."),
        checkpoint_every: Optional[int] = typer.Option(None, help="Steps between checkpoints (default 200)."),
        resume: Optional[bool] = typer.Option(None, "--resume", help="Continue the run in --out exactly where it stopped (one killed before its first checkpoint starts over)."),
        config: Optional[Path] = typer.Option(None, "--config", help="Config file (default ./textbook.toml); section \\[train]."),
    ) -> None:
        """Train a Mu encoder-decoder (Muon + AdamW, warmup-stable-decay) on Arrow shards.

        Example: textbook train --preset mu-small --data out/settings --task settings --epochs 3 --out runs/settings

        Time-boxed: textbook train --data out/settings --max-steps 100000 --max-minutes 15 --out runs/settings15

        Pretraining: textbook train --task pretrain --data out/textbooks --data out/web-kept --out runs/pre.
        LoRA: textbook train --init-from runs/pre --lora-rank 16 --data out/settings --out runs/lora.
        Several GPUs: torchrun --nproc-per-node 8 -m textbook train ...
        """
        cli = dict(locals())  # every option above, None where not given
        del cli["config"]
        cli["data"] = tuple(str(d) for d in data) if data else None
        from textbook.config import load_config_file, resolve
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.train import train as run_training
        from textbook.mu.trainconfig import TrainConfig

        cfg = resolve(TrainConfig, cli=cli, file=load_config_file(config).get("train", {}), section="train")
        summary = run_training(cfg)
        if summary.pop("rank") == 0:  # one summary, not one per torchrun process
            _summary("trained", summary)

    @tokenizer_app.command("train")
    def tokenizer_train(
        shards: list[Path] = typer.Argument(..., help="Shard directories to learn the vocabulary from."),
        vocab_size: int = typer.Option(8192, help="Vocabulary size, special tokens included."),
        out: Path = typer.Option(Path("tokenizer.json"), "--out", "-o", help="Where to write tokenizer.json."),
        column: Optional[list[str]] = typer.Option(None, help="Text column(s) (default: text, or query+target for settings shards)."),
        split: Optional[str] = typer.Option("train", help="Only rows of this split when shards have a split column ('' for all)."),
        limit: Optional[int] = typer.Option(None, help="At most this many strings."),
        pretokenize: Optional[str] = typer.Option(
            None, help="words (split letters/digits/punctuation; prose and code) or whitespace (split at spaces only, "
            "tokens up to 16 chars: compact JSON calls become ~4 tokens). Default: whitespace for settings shards."),
    ) -> None:
        """Train a byte-level BPE tokenizer (Hugging Face tokenizers) on shards and save tokenizer.json.

        Example: textbook tokenizer train out/settings --vocab-size 8192 --out runs/tokenizer.json
        """
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.tokenizer import default_pretokenize, texts_from_shards, train_tokenizer

        texts = texts_from_shards(shards, column, split=split or None, limit=limit)
        tok = train_tokenizer(texts, vocab_size, out, pretokenize=pretokenize or default_pretokenize(shards, column))
        _summary("tokenizer", {"path": str(out), "vocab_size": tok.get_vocab_size()})

    @eval_app.command("settings")
    def eval_settings(
        run: Path = typer.Argument(..., help="A run directory written by textbook train."),
        data: list[Path] = typer.Option(..., "--data", "-d", help="Settings shard directory (repeat for several)."),
        split: str = typer.Option("test", help="Split to score."),
        catalogue: Optional[Path] = typer.Option(None, help="Settings catalogue (default: the one the shards were generated from, else the bundled one)."),
        batch_size: int = typer.Option(64, help="Queries decoded together for the accuracy pass."),
        latency_samples: int = typer.Option(200, help="Requests timed one by one for p50/p95 latency."),
        limit: Optional[int] = typer.Option(None, help="Score only the first N rows."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
        as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
    ) -> None:
        """Exact match of emitted function calls (validated against the catalogue), per action and noise style.

        Example: textbook eval settings runs/settings --data out/settings
        """
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.eval import eval_settings as run_eval
        from textbook.settings.config import catalogue_for

        # The catalogue is the data side's: loaded here, so the trainer's evaluator never imports textbook.settings.
        report = run_eval(run, data, split=split, catalogue=catalogue_for(data, catalogue), batch_size=batch_size,
                          latency_samples=latency_samples, limit=limit, device=device)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
            return
        typer.echo(f"{report['rows']} {split} rows: exact match {report['exact_match']:.2%}, invalid {report['invalid_rate']:.2%}")
        if report["latency_ms"]:
            lat = report["latency_ms"]
            typer.echo(f"latency per request ({lat['requests']} on {lat['device']}): p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
        for group in ("by_style", "by_noise", "by_action"):
            typer.echo(group.replace("_", " ") + ":")
            for name, stats in report[group].items():
                typer.echo(f"  {name:<24} {stats['exact_match']:7.2%}  ({stats['rows']} rows)")
        typer.echo(f"report: {run / f'eval-settings-{split}.json'}, every mistake: {run / f'eval-settings-{split}-errors.jsonl'}")

    @eval_app.command("lm")
    def eval_lm(
        run: Path = typer.Argument(..., help="A run directory written by textbook train."),
        data: list[Path] = typer.Option(..., "--data", "-d", help="Held-out text shard directory (repeat for several)."),
        text_column: str = typer.Option("text", help="Text column."),
        batch_size: int = typer.Option(16, help="Sequences per batch."),
        limit_batches: Optional[int] = typer.Option(None, help="Score only the first N batches."),
        device: str = typer.Option("cpu", help="cpu or cuda."),
    ) -> None:
        """Perplexity of the decoder on held-out text (prefix -> continuation, as in pretraining).

        Example: textbook eval lm runs/pre --data out/heldout-textbooks
        """
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.eval import eval_lm as run_eval

        report = run_eval(run, data, text_column=text_column, batch_size=batch_size, limit_batches=limit_batches, device=device)
        typer.echo(f"perplexity {report['perplexity']:.3f} over {report['tokens']:,} target tokens")

    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(eval_app, name="eval")
