"""`textbook eval settings|lm` settings: frozen dataclasses whose defaults are the recipe ([eval_settings] and
[eval_lm] in textbook.toml), checked when built. Apart from eval.py so the CLI reads them without torch."""

from __future__ import annotations

from dataclasses import dataclass

from textbook.contract import TEST, TEXT
from textbook.errors import ConfigError


def _check_device(device: str) -> None:
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"--device must be cpu or cuda (cuda:N for one GPU of several), not {device!r}")


@dataclass(frozen=True, slots=True)
class EvalSettingsConfig:
    split: str = TEST  # the split scored
    # The settings catalogue outputs are validated against; None = the one the shards were generated from,
    # else the bundled one. A path: the CLI loads it, so the evaluator never imports the data side.
    catalogue: str | None = None
    batch_size: int = 64  # queries decoded together for the accuracy pass
    latency_samples: int = 200  # requests timed one by one for p50/p95 latency (0 = none)
    limit: int | None = None  # score only the first N rows
    device: str = "cpu"
    # Decode only calls valid for the catalogue (textbook/mu/calls.py), as `textbook infer` does; False scores
    # the free model (the invalid rate is then its own).
    constrained: bool = True
    # Let the nearest training requests choose the setting (RUN/neighbours.npz, textbook/mu/neighbours.py) when
    # the run has an index and decoding is constrained; False scores the decoder alone.
    retrieval: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.latency_samples < 0:
            raise ConfigError(f"--latency-samples must be at least 0 (0 = no latency pass), not {self.latency_samples}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, not {self.limit}")
        if not self.split:
            raise ConfigError("--split must name a split (train, validation or test)")
        _check_device(self.device)


@dataclass(frozen=True, slots=True)
class EvalLMConfig:
    text_column: str = TEXT
    batch_size: int = 16  # sequences per batch
    limit_batches: int | None = None  # score only the first N batches
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.limit_batches is not None and self.limit_batches < 1:
            raise ConfigError(f"--limit-batches must be at least 1, not {self.limit_batches}")
        _check_device(self.device)
