"""`textbook train` settings: one frozen dataclass whose defaults are the recipe ([train] in textbook.toml),
checked when it is built, and the defaults that depend on other fields (lowercase_source, spell_correct)."""

from __future__ import annotations

from dataclasses import dataclass

from textbook.contract import TEXT
from textbook.errors import ConfigError, TextbookError
from textbook.mu.config import SPECIAL_TOKENS

DECAY_SHAPES = ("linear", "sqrt")  # of the WSD decay (textbook/mu/optim.py `wsd`); here, so the CLI reads it without torch
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # a byte-level BPE holds every byte and the special tokens


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...] = ()
    out: str = "runs/mu"
    task: str = "settings"  # settings (query -> function call) | pretrain (prefix -> continuation) | embed (sentence.py)
    preset: str = "mu-small"
    text_column: str = TEXT
    tokenizer: str | None = None  # a tokenizer.json; default: --init-from's, --distill-from's, else trained on --data
    vocab_size: int | None = None  # for a tokenizer trained here; default: the preset's
    max_source_len: int | None = None  # default: the preset's
    max_target_len: int | None = None
    batch_size: int = 32
    grad_accum: int = 1
    max_steps: int = 1000
    epochs: float | None = None  # settings only: sets max_steps from the number of train rows
    max_minutes: float | None = None  # time box: the step count follows the measured pace (train.py _TimeBox)
    lr: float = 3e-3
    encoder_lr_scale: float = 1.0  # the embedding's and encoder's rate is lr times this (below 1: keep a distilled encoder)
    weight_decay: float = 0.01
    warmup_steps: int = 50
    decay_fraction: float = 0.2
    decay_shape: str = "linear"  # linear | sqrt (1 - sqrt(progress), Hägele et al. 2024)
    clip: float = 1.0
    # Newton-Schulz iterations per Muon step (each ~5% of a mu-small step at batch 256 on CPU). 3 on an AVX2 CPU gave
    # the demo 287 steps instead of 251 in its box, and less: own split 72.1% against 74.3% (session 14).
    muon_ns_steps: int = 5
    seed: int = 0
    init_from: str | None = None  # a trained run to start from (fine-tuning; required for LoRA)
    # A sentence-transformers model directory, or "minilm" (the packaged all-MiniLM-L6-v2): the word rows of
    # the token embedding start as its vectors (textbook/mu/embeddings.py).
    embeddings_from: str | None = None
    # Beside another task: every step also distils a sentence-transformer's embeddings of these text + embedding
    # shards into the encoder (textbook/mu/sentence.py), so a fine-tune keeps what --task embed taught it.
    embed_data: tuple[str, ...] = ()
    embed_weight: float = 0.2  # of the sentence loss, added to the task's loss
    embed_batch_size: int = 64
    lora_rank: int = 0
    lora_alpha: float | None = None  # default: the rank (scale 1)
    distill_from: str | None = None  # a larger Mu run with the same tokenizer (logit KD)
    kd_weight: float = 0.5
    kd_temperature: float = 1.0
    skip_long: bool = False
    lowercase_source: bool | None = None  # lowercase queries before tokenization; default: on for settings
    spell_correct: bool | None = None  # correct query typos against the train split's words; default: as lowercase_source
    dedup: bool | None = None  # skip repeated rows within an epoch (textbook/mu/data.py); default: on for settings
    bpe_dropout: float = 0.0  # settings: skip BPE merges with this probability in training queries (robustness to typos)
    precision: str = "auto"  # auto (bf16 autocast where the device has native bf16: GPUs, AVX-512 CPUs; else fp32) | bf16 | fp32
    compile: bool | None = None  # default: on GPU only
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int = 200
    eval_batches: int = 20  # validation batches scored at each checkpoint (settings with a validation split)
    # Settings: training requests indexed at the end for retrieval (RUN/neighbours.npz, textbook/mu/neighbours.py;
    # 0 = none). On the demo's data the right setting was among the retrieved more often with more of them (dev set,
    # session 16: 52% at 5,000, 63% at 40,000, 66% at 80,000, 67% at all 149,092). Session 20, one run, all 155,211
    # distinct requests against 80,000: call +1.1 on the dev set, +1.0 on 994 own validation requests; ~6 minutes to
    # index on a 2-core CPU instead of ~3, 135 MB instead of 70, exported p50 +8 ms (74 against 67).
    index_size: int = 200_000
    resume: bool = False

    def __post_init__(self) -> None:
        # Every number is checked here, before any data is read: a bad flag is a one-line ConfigError.
        if self.decay_shape not in DECAY_SHAPES:
            raise ConfigError(f"unknown --decay-shape {self.decay_shape!r}: use {' or '.join(DECAY_SHAPES)}")
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "max_steps": self.max_steps,
                    "lr": self.lr, "encoder_lr_scale": self.encoder_lr_scale, "epochs": self.epochs, "max_minutes": self.max_minutes,
                    "lora_alpha": self.lora_alpha, "kd_temperature": self.kd_temperature,
                    "log_every": self.log_every, "checkpoint_every": self.checkpoint_every}
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, not {value}")
        if self.embeddings_from and self.init_from:
            raise ConfigError("--embeddings-from starts a model from scratch, --init-from starts from a trained one: "
                              "pass one (the trained run already holds its embedding)")
        if self.embed_data and self.task == "embed":
            raise ConfigError("--embed-data adds sentence distillation to another task; --task embed trains on --data alone")
        if self.embed_weight < 0 or self.embed_batch_size < 1:
            raise ConfigError("--embed-weight must be at least 0 and --embed-batch-size at least 1")
        if self.spell_correct and self.task != "settings":
            raise ConfigError("--spell-correct learns its words from settings shards: use it with --task settings")
        if self.lora_rank < 0:
            raise ConfigError(f"--lora-rank is the rank of the LoRA adapters, at least 1 (0 = full fine-tuning), "
                              f"not {self.lora_rank}")
        if not 0 <= self.kd_weight <= 1:
            raise ConfigError(f"--kd-weight is the share of the distillation loss, from 0 to 1, not {self.kd_weight}")
        if self.vocab_size is not None and self.vocab_size < MIN_VOCAB:
            raise ConfigError(f"--vocab-size must be at least {MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} special tokens), "
                              f"not {self.vocab_size}")
        for name in ("max_source_len", "max_target_len"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 2 tokens (one and EOS), not {value}")
        if self.index_size < 0:
            raise ConfigError(f"--index-size is a number of training requests (0 = no retrieval index), not {self.index_size}")
        if self.eval_batches < 1:
            raise ConfigError(f"eval_batches in [train] must be at least 1, not {self.eval_batches}")
        if not 0 <= self.decay_fraction <= 1:
            raise ConfigError(f"--decay-fraction is a share of the steps, from 0 to 1, not {self.decay_fraction}")
        if self.max_minutes and self.decay_fraction == 1:
            raise ConfigError("--max-minutes fits the step count during the stable phase: use --decay-fraction below 1")
        if not 0 <= self.bpe_dropout < 1:
            raise ConfigError(f"--bpe-dropout is a probability below 1, not {self.bpe_dropout}")
        if not 1 <= self.muon_ns_steps <= 10:
            raise ConfigError(f"--muon-ns-steps is a number of Newton-Schulz iterations from 1 to 10, not {self.muon_ns_steps}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.clip <= 0:
            raise ConfigError("--warmup-steps and --weight-decay must be at least 0, --clip above 0")


def lowercase_source(cfg: TrainConfig) -> bool:
    """--lowercase-source/--keep-case as given; by default on for settings (see MuConfig.lowercase_source) and for
    embed, whose encoder is made for settings queries (and all-MiniLM-L6-v2, its usual teacher, is uncased)."""
    return cfg.lowercase_source if cfg.lowercase_source is not None else cfg.task in ("settings", "embed")


def spell_correct(cfg: TrainConfig) -> bool:
    """--spell-correct/--no-spell-correct as given; by default on for settings queries when they are lowercased
    (the lexicon is the settings train split's words)."""
    if cfg.spell_correct and not lowercase_source(cfg):
        raise TextbookError("--spell-correct works on lowercased queries: drop --keep-case or add --no-spell-correct")
    return cfg.spell_correct if cfg.spell_correct is not None else lowercase_source(cfg) and cfg.task == "settings"
