"""What a training run starts from: its lexicon, tokenizer, model config and model (fresh, fine-tuned from
--init-from, or resumed) and its distillation teacher, built once before the first step (train.py)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from textbook.config import public_dict
from textbook.contract import QUERY, TARGET, TRAIN
from textbook.errors import TextbookError
from textbook.mu.calls import save_calls
from textbook.mu.checkpoint import (
    LEXICON, TOKENIZER, WEIGHTS, load_lexicon, load_weights, read_run_config, tokenizer_path, write_run_config,
)
from textbook.mu.config import MuConfig, preset
from textbook.mu.distill import load_teacher
from textbook.mu.distributed import Distributed
from textbook.mu.embeddings import distil, target_pieces, word_rows
from textbook.mu.lexicon import Lexicon
from textbook.mu.lora import apply_lora
from textbook.mu.model import Mu, count_parameters
from textbook.mu.tokenizer import load_tokenizer, special_ids, texts_from_shards, train_tokenizer
from textbook.mu.trainconfig import TrainConfig, lowercase_source, spell_correct


@dataclass
class BuiltRun:
    model: Mu
    model_cfg: MuConfig
    tokenizer: object
    teacher: Mu | None
    trainable: int
    lexicon: Lexicon | None


def _prepare_lexicon(cfg: TrainConfig, run: Path, dist: Distributed) -> Lexicon | None:
    """RUN/lexicon.json from the train split's words, before the tokenizer learns the corrected queries."""
    if not spell_correct(cfg):
        return None
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        lexicon = Lexicon.from_shards(cfg.data)
        lexicon.save(run / LEXICON)
    dist.barrier()
    return lexicon if dist.main else Lexicon.load(run / LEXICON)  # every rank reads the one main wrote


def _prepare_tokenizer(cfg: TrainConfig, run: Path, dist: Distributed, lexicon: Lexicon | None) -> None:
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
            columns = [QUERY, TARGET] if cfg.task == "settings" else [cfg.text_column]
            texts = texts_from_shards(cfg.data, columns, split=TRAIN if cfg.task == "settings" else None,
                                      lowercase=[columns[0]] if lowercase_source(cfg) else [], lexicon=lexicon)
            pretokenize = "whitespace" if cfg.task == "settings" else "words"  # see tokenizer.py
            train_tokenizer(texts, cfg.vocab_size or preset(cfg.preset).vocab_size, run / TOKENIZER, pretokenize=pretokenize)
    dist.barrier()


def _model_config(cfg: TrainConfig, tokenizer) -> MuConfig:
    lengths = {k: v for k, v in (("max_source_len", cfg.max_source_len), ("max_target_len", cfg.max_target_len)) if v}
    lengths["lowercase_source"] = lowercase_source(cfg)
    lengths["spell_correct"] = spell_correct(cfg)
    if cfg.init_from:
        base = MuConfig.from_dict(read_run_config(cfg.init_from)["model"])
        return base.replace(**lengths)
    vocab = -(-tokenizer.get_vocab_size() // 64) * 64  # a multiple of 64 keeps the head matmul tensor-core friendly
    return preset(cfg.preset).replace(vocab_size=vocab, **special_ids(tokenizer), **lengths)


def _distil_words(cfg: TrainConfig, model: Mu, tokenizer) -> None:
    """--embeddings-from: the word rows the decoder never writes start as the teacher's vectors (embeddings.py)."""
    used = target_pieces(tokenizer, texts_from_shards(cfg.data, [TARGET], split=TRAIN)) if cfg.task == "settings" else set()
    ids = word_rows(tokenizer, used)
    rows = distil(tokenizer, ids, cfg.embeddings_from, model.cfg.d_model, model.cfg.init_std)
    with torch.no_grad():
        model.embed.weight[ids] = rows.to(model.embed.weight.dtype)


def build_run(cfg: TrainConfig, run: Path, dist: Distributed, calls: list[str] | None = None) -> BuiltRun:
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
        elif cfg.embeddings_from:
            _distil_words(cfg, model, tokenizer)
    trainable = apply_lora(model, cfg.lora_rank, cfg.lora_alpha) if cfg.lora_rank else sum(p.numel() for p in model.parameters())
    if not cfg.resume and dist.main:
        write_run_config(run, {
            "model": model_cfg.to_dict(), "train": public_dict(cfg),
            "parameters": count_parameters(model_cfg), "trainable_parameters": trainable,
        })
        if calls:
            save_calls(run, calls)
    teacher = load_teacher(cfg.distill_from, run / TOKENIZER, dist.device) if cfg.distill_from else None
    return BuiltRun(model.to(dist.device), model_cfg, tokenizer, teacher, trainable, lexicon)
