"""Mu model shapes: one frozen dataclass, and the presets whose numbers are the recipe.

Mu's hidden size, heads, vocabulary and context length were never published (only 330M parameters,
32 encoder + 12 decoder layers, ~2/3 of the parameters in the encoder), so `mu-330m` picks them:
d_model 768 with 64-wide heads (the width GPT-2 small and BERT-base use, tensor-core friendly), GQA
with 4 KV heads (3 query heads per KV head), a 4x GELU MLP and a 48k byte-level BPE vocabulary land
it on 330M with 61% of the parameters in the encoder layers (72% counting the shared embedding,
which the encoder reads). `tests/test_mu_model.py` counts it on the meta device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from textbook.contract import TRAIN
from textbook.errors import ConfigError

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>")  # ids 0, 1, 2 in every tokenizer textbook trains


@dataclass(frozen=True, slots=True)
class MuConfig:
    vocab_size: int = 8192
    d_model: int = 384
    n_heads: int = 6
    n_kv_heads: int = 2  # grouped-query attention: n_heads // n_kv_heads query heads share one K/V head
    d_ff: int = 1536
    n_encoder_layers: int = 8
    n_decoder_layers: int = 4
    max_source_len: int = 128
    max_target_len: int = 64
    # Queries are lowercased before tokenization (train, eval, export alike): settings search is
    # case-insensitive, and a byte-level BPE would learn "BLUETOOTH" as its own rarely seen token.
    lowercase_source: bool = False
    # Lowercased queries are spell-corrected against RUN/lexicon.json (textbook/mu/lexicon.py) first.
    spell_correct: bool = False
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    # Special token ids come from the tokenizer (see tokenizer.special_ids); these are textbook's own.
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError("the head size must be even for rotary embeddings")
        if max(self.pad_id, self.bos_id, self.eos_id) >= self.vocab_size:
            raise ConfigError(f"vocab_size {self.vocab_size} is smaller than the special token ids")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def replace(self, **changes: Any) -> "MuConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MuConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown model config key(s) {', '.join(unknown)}: the checkpoint is from another version")
        return cls(**data)


PRESETS: dict[str, MuConfig] = {
    # Seconds on CPU: unit tests and smoke runs.
    "mu-tiny": MuConfig(
        vocab_size=512, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128,
        n_encoder_layers=2, n_decoder_layers=1, max_source_len=64, max_target_len=48,
    ),
    # ~24M parameters: learns the settings task on a 2-core CPU in minutes.
    "mu-small": MuConfig(),
    # Mu's shape: 32 + 12 layers, ~330M parameters.
    "mu-330m": MuConfig(
        vocab_size=49152, d_model=768, n_heads=12, n_kv_heads=4, d_ff=3072,
        n_encoder_layers=32, n_decoder_layers=12, max_source_len=512, max_target_len=512,
    ),
}


def preset(name: str) -> MuConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}") from None


PRETOKENIZE = ("words", "whitespace")


@dataclass(frozen=True, slots=True)
class TokenizerConfig:
    """`textbook tokenizer train` ([tokenizer] in textbook.toml): the defaults are the recipe. Here, not in
    mu/tokenizer.py, so `textbook --help` reads it without loading Arrow."""

    vocab_size: int = 8192  # special tokens included
    out: str = "tokenizer.json"
    column: tuple[str, ...] = ()  # () = text, or query + target for settings shards
    split: str = TRAIN  # only rows of this split when shards have a split column; "" = every row
    limit: int | None = None  # at most this many strings
    pretokenize: str | None = None  # words | whitespace; None = whitespace for settings shards, else words

    def __post_init__(self) -> None:
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ConfigError(f"--vocab-size {self.vocab_size} is too small: a byte-level BPE needs at least "
                              f"{256 + len(SPECIAL_TOKENS)} (256 bytes + {len(SPECIAL_TOKENS)} specials)")
        if self.pretokenize is not None and self.pretokenize not in PRETOKENIZE:
            raise ConfigError(f"unknown --pretokenize {self.pretokenize!r}: use one of {', '.join(PRETOKENIZE)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, not {self.limit}")
