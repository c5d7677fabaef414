"""Settings generation config: the defaults are the recipe (CLI > [settings] in textbook.toml > defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from textbook.config import resolve, shard_slice
from textbook.errors import ConfigError

if TYPE_CHECKING:
    from textbook.settings.catalogue import Catalogue

MAX_CAP = 255  # max_duplicates: sampling's table counts copies in one byte per bucket


@dataclass(frozen=True, slots=True)
class SettingsConfig:
    n: int = 200_000  # samples to write (teacher + template)
    out: str = "out"
    catalogue: str | None = None  # None = the bundled Windows catalogue
    seed: int = 0
    noise_rate: float = 0.3  # share of samples that get 1-3 noise operations
    none_rate: float = 0.06  # share of out-of-scope requests (target {"action":"none"})
    format: str = "arrow"
    offline: bool = False  # templates only, even when a teacher is configured
    teacher_share: float = 0.3  # share of n made of teacher paraphrases (when a teacher is used)
    paraphrases: int = 6  # rewrites asked per seed
    teacher_batch: int = 32  # seeds per teacher batch (one checkpoint each)
    judge: bool = True  # second teacher pass that drops paraphrases whose label it disagrees with
    max_duplicates: int = 20  # copies allowed of one normalised query
    popularity_floor: float = 0.3  # every setting gets at least this share of a uniform draw
    confusable_boost: float = 0.5  # extra weight for settings whose names overlap another's
    validation_share: float = 0.05
    test_share: float = 0.05
    workers: int = 0  # processes rendering template chunks; 0 = auto (from 100k samples on 4+ cores: cores - 1, up to 4)
    checkpoint_chunks: int = 16  # template chunks (4,096 candidates each) between checkpoints
    prompts: str | None = None  # directory overriding prompts/*.j2
    shard: str = ""  # "I/N": slice I of N (chunks I, I+N, ...; its share of n), for N machines; "" = the whole run

    def __post_init__(self) -> None:
        # Here, not in the CLI: a config built in code or from textbook.toml is checked the same way.
        checks = [
            (self.n > 0, "--n must be > 0"),
            (0.0 <= self.noise_rate <= 1.0, "--noise-rate must be between 0 and 1"),
            (0.0 <= self.none_rate < 1.0, "--none-rate must be between 0 and 1 (exclusive)"),
            (0.0 <= self.teacher_share <= 1.0, "--teacher-share must be between 0 and 1"),
            (self.paraphrases >= 1, "--paraphrases must be >= 1"),
            (self.teacher_batch >= 1, "teacher_batch must be >= 1"),
            (1 <= self.max_duplicates <= MAX_CAP,
             f"max_duplicates in [settings] must be from 1 to {MAX_CAP} copies of one query, not {self.max_duplicates}"),
            (self.validation_share >= 0 and self.test_share >= 0 and self.validation_share + self.test_share < 1,
             "validation_share + test_share must be below 1"),
            (self.workers >= 0, "--workers must be >= 0 (0 = auto)"),
            (self.checkpoint_chunks >= 1, "checkpoint_chunks must be >= 1"),
            (0.0 <= self.popularity_floor <= 1.0, "popularity_floor must be between 0 and 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        shard_slice(self.shard)  # a bad --shard fails here, before any work

    @property
    def slice(self) -> tuple[int, int]:
        """(I, N) of --shard I/N; (0, 1) for the whole run."""
        return shard_slice(self.shard)

    @property
    def target(self) -> int:
        """Samples this run writes: n, or with --shard I/N its share of n (the first n % N slices one more)."""
        i, k = self.slice
        return self.n // k + (i < self.n % k)

    def chunk(self, local: int) -> int:
        """The run-wide index of this slice's `local`-th chunk: I + N * local. Chunks are seeded by it, so
        slices draw disjoint seeds and one machine (I=0, N=1) draws exactly what it always did."""
        i, k = self.slice
        return i + k * local


def resolve_settings(cli: Mapping[str, Any], file: Mapping[str, Any]) -> SettingsConfig:
    """CLI > [settings] in textbook.toml > defaults (checked by SettingsConfig itself)."""
    return resolve(SettingsConfig, cli=cli, file=file.get("settings", {}), section="settings")


def catalogue_for(shards: Iterable[str | Path], path: str | Path | None = None) -> Catalogue:
    """The catalogue settings shards are checked against: `path`, else the one their manifests say they
    were generated from (the `catalogue` of the SettingsConfig saved there), else the bundled one."""
    from textbook.settings.catalogue import load_catalogue  # YAML and Arrow load when a catalogue is needed
    from textbook.shards import read_manifest

    if path is None:
        for directory in shards:
            config = (read_manifest(directory) or {}).get("config") or {}
            if config.get("catalogue"):
                path = config["catalogue"]
                break
    return load_catalogue(path)
