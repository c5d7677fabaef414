"""What a training run starts from: processes (DDP or one), tokenizer, model config, model, teacher."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from textbook.config import public_dict
from textbook.errors import TextbookError
from textbook.mu.checkpoint import (
    LEXICON, TOKENIZER, WEIGHTS, load_lexicon, load_weights, read_run_config, tokenizer_path, write_run_config,
)
from textbook.mu.config import MuConfig, preset
from textbook.mu.distill import load_teacher
from textbook.mu.lexicon import Lexicon
from textbook.mu.lora import apply_lora
from textbook.mu.model import Mu, count_parameters
from textbook.mu.tokenizer import load_tokenizer, special_ids, texts_from_shards, train_tokenizer

if TYPE_CHECKING:
    from textbook.mu.train import TrainConfig


@dataclass
class Distributed:
    """One process, or one rank of a `torchrun` launch (WORLD_SIZE/RANK/LOCAL_RANK set by torchrun)."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, device: str = "auto") -> "Distributed":
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(0, 1, torch.device(device))
        import torch.distributed as dist

        local = int(os.environ["LOCAL_RANK"])
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if device.startswith("cuda") else "cpu"))

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def mean(self, value: float) -> float:
        """The mean of a per-rank number over all ranks (the logged loss)."""
        if self.world == 1:
            return value
        t = torch.tensor([value], device=self.device)
        torch.distributed.all_reduce(t)
        return float(t) / self.world

    def stop(self) -> None:
        if self.world > 1:
            torch.distributed.destroy_process_group()


@dataclass
class BuiltRun:
    model: Mu
    model_cfg: MuConfig
    tokenizer: object
    teacher: Mu | None
    trainable: int
    lexicon: Lexicon | None


def lowercase_source(cfg: "TrainConfig") -> bool:
    """--lowercase-source/--keep-case as given; by default on for settings (see MuConfig.lowercase_source)."""
    return cfg.lowercase_source if cfg.lowercase_source is not None else cfg.task == "settings"


def spell_correct(cfg: "TrainConfig") -> bool:
    """--spell-correct/--no-spell-correct as given; by default on wherever queries are lowercased."""
    if cfg.spell_correct and not lowercase_source(cfg):
        raise TextbookError("--spell-correct works on lowercased queries: drop --keep-case or add --no-spell-correct")
    return cfg.spell_correct if cfg.spell_correct is not None else lowercase_source(cfg)


def _prepare_lexicon(cfg: "TrainConfig", run: Path, dist: Distributed) -> Lexicon | None:
    """RUN/lexicon.json from the train split's words, before the tokenizer learns the corrected queries."""
    if not spell_correct(cfg):
        return None
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        lexicon = Lexicon.from_shards(cfg.data)
        lexicon.save(run / LEXICON)
    dist.barrier()
    return lexicon if dist.main else Lexicon.load(run / LEXICON)  # every rank reads the one main wrote


def _prepare_tokenizer(cfg: "TrainConfig", run: Path, dist: Distributed, lexicon: Lexicon | None) -> None:
    """Put the run's tokenizer at RUN/tokenizer.json: given, inherited, or trained on the train split."""
    if cfg.init_from and cfg.tokenizer:
        raise TextbookError("--init-from brings its run's tokenizer: drop --tokenizer")
    source = cfg.tokenizer or (tokenizer_path(cfg.init_from) if cfg.init_from else None)
    source = source or (tokenizer_path(cfg.distill_from) if cfg.distill_from else None)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        if source:
            load_tokenizer(source)  # validate before copying
            shutil.copyfile(Path(source) / TOKENIZER if Path(source).is_dir() else source, run / TOKENIZER)
        else:
            columns = ["query", "target"] if cfg.task == "settings" else [cfg.text_column]
            texts = texts_from_shards(cfg.data, columns, split="train" if cfg.task == "settings" else None,
                                      lowercase=["query"] if lowercase_source(cfg) else [], lexicon=lexicon)
            pretokenize = "whitespace" if cfg.task == "settings" else "words"  # see tokenizer.py
            train_tokenizer(texts, cfg.vocab_size or preset(cfg.preset).vocab_size, run / TOKENIZER, pretokenize=pretokenize)
    dist.barrier()


def _model_config(cfg: "TrainConfig", tokenizer) -> MuConfig:
    lengths = {k: v for k, v in (("max_source_len", cfg.max_source_len), ("max_target_len", cfg.max_target_len)) if v}
    lengths["lowercase_source"] = lowercase_source(cfg)
    lengths["spell_correct"] = spell_correct(cfg)
    if cfg.init_from:
        base = MuConfig.from_dict(read_run_config(cfg.init_from)["model"])
        return base.replace(**lengths)
    vocab = -(-tokenizer.get_vocab_size() // 64) * 64  # a multiple of 64 keeps the head matmul tensor-core friendly
    return preset(cfg.preset).replace(vocab_size=vocab, **special_ids(tokenizer), **lengths)


def build_run(cfg: "TrainConfig", run: Path, dist: Distributed) -> BuiltRun:
    if cfg.lora_rank and not cfg.init_from:
        raise TextbookError("--lora-rank fine-tunes a trained model: pass --init-from RUN")
    if cfg.resume:
        model_cfg = MuConfig.from_dict(read_run_config(run)["model"])
        tokenizer = load_tokenizer(run / TOKENIZER)
        model = Mu(model_cfg)  # weights come from the checkpoint
        lexicon = load_lexicon(run, model_cfg)
    else:
        lexicon = _prepare_lexicon(cfg, run, dist)
        _prepare_tokenizer(cfg, run, dist, lexicon)
        tokenizer = load_tokenizer(run / TOKENIZER)
        model_cfg = _model_config(cfg, tokenizer)
        model = Mu(model_cfg)
        if cfg.init_from:  # rebuilt with this run's lengths (RoPE tables and cache size are not weights)
            model.load_state_dict(load_weights(Path(cfg.init_from) / WEIGHTS))
    trainable = apply_lora(model, cfg.lora_rank, cfg.lora_alpha) if cfg.lora_rank else sum(p.numel() for p in model.parameters())
    if not cfg.resume and dist.main:
        write_run_config(run, {
            "model": model_cfg.to_dict(), "train": public_dict(cfg),
            "parameters": count_parameters(model_cfg), "trainable_parameters": trainable,
        })
    teacher = load_teacher(cfg.distill_from, run / TOKENIZER, dist.device) if cfg.distill_from else None
    return BuiltRun(model.to(dist.device), model_cfg, tokenizer, teacher, trainable, lexicon)
