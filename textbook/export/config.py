"""`textbook export` settings: one frozen dataclass whose defaults are the recipe ([export] in textbook.toml)."""

from __future__ import annotations

from dataclasses import dataclass

from textbook.contract import TEST, TRAIN
from textbook.errors import ConfigError

QUANTIZE = ("none", "int8", "a16w8", "dynamic")


@dataclass(frozen=True, slots=True)
class ExportConfig:
    # Quantized variants written beside the fp32 graphs ("none": fp32 only).
    quantize: tuple[str, ...] = ("none",)
    # Settings shards (query, target[, split]): calibration rows and the held-out parity split.
    calibration: str | None = None
    calibration_split: str = TRAIN
    parity_split: str = TEST
    # Static shapes. None = the model's own limits; settings queries are short, and every encoder
    # run pays for all max_source_len positions, so a smaller value is faster.
    max_source_len: int | None = None
    max_target_len: int | None = None
    calibration_samples: int = 32  # queries decoded for calibration (every decoder step is a sample)
    max_decoder_feeds: int = 512
    parity_samples: int = 200  # held-out queries for token agreement and exact match
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [q for q in self.quantize if q not in QUANTIZE]
        if bad:
            raise ConfigError(f"unknown --quantize {', '.join(bad)}: use {', '.join(QUANTIZE)}")
        for name in ("max_source_len", "max_target_len"):
            value = getattr(self, name)
            if value is not None and value < 2:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 2, not {value}")
        if self.calibration_samples < 1 or self.parity_samples < 1:
            raise ConfigError("--calibration-samples and --parity-samples must be at least 1")

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(q for q in self.quantize if q != "none"))

VARIANTS = ("fp32", *(q for q in QUANTIZE if q != "none"))
# One thread by default: a batch-of-one decode is a chain of small ops, and a second spinning
# thread made requests 2x slower on this 2-core CPU as soon as other jobs ran (0 = one per core).
THREADS = 1


@dataclass(frozen=True, slots=True)
class InferConfig:
    """`textbook infer` ([infer] in textbook.toml): the defaults are the recipe."""

    variant: str | None = None  # fp32, int8, a16w8 or dynamic; None = the last one exported (--bench: every one)
    threads: int = THREADS  # ONNX Runtime intra-op threads (0 = one per core)
    data: str | None = None  # --bench: settings shards to take queries from; None = built-in example queries
    split: str = TEST  # --bench: the split of `data` to use
    requests: int = 200  # --bench: queries per variant
    constrained: bool = True  # decode only the catalogue's valid calls (DIR/calls.json, when the export has it)
    # the nearest training requests choose the setting (DIR/neighbours.npz, when the export has it; constrained only)
    retrieval: bool = True
    confidence: bool = False  # --input: add each answer's probability (`confidence`) to its line
    # --input: below this confidence the call is withheld ({"abstain": true, ...}): the caller shows search
    # results instead, as Windows does when its settings agent is unsure. 0 = always answer.
    min_confidence: float = 0.0

    def __post_init__(self) -> None:
        if self.variant is not None and self.variant not in VARIANTS:
            raise ConfigError(f"unknown --variant {self.variant!r}: use {', '.join(VARIANTS)}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be at least 0 (0 = one per core), not {self.threads}")
        if self.requests < 1:
            raise ConfigError(f"--requests must be at least 1, not {self.requests}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"--min-confidence is a probability between 0 and 1, not {self.min_confidence}")
