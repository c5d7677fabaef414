"""`textbook gen`'s recipe: a frozen dataclass whose defaults are what a run does unless told otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from textbook.config import resolve, shard_slice
from textbook.errors import ConfigError
from textbook.contract import FORMATS

KINDS = ("textbook", "exercises")


@dataclass(frozen=True, slots=True)
class GenConfig:
    topic: str = "python"
    kind: str = "textbook"  # textbook | exercises
    n: int = 100
    depth: int = 2  # levels of subtopics below the topic the teacher expands
    breadth: int = 8  # subtopics per node
    seed: int = 0
    # phi-1's diversity constraints: audience and style, plus random words (the TinyStories trick).
    audiences: tuple[str, ...] = (
        "young children", "high school students", "college students",
        "professional software engineers", "researchers", "self-taught hobbyists",
    )
    textbook_styles: tuple[str, ...] = (
        "textbook chapter", "step-by-step tutorial", "set of worked examples",
        "questions and answers session", "set of lecture notes",
    )
    exercise_styles: tuple[str, ...] = (
        "a short utility function", "a data-processing task", "an algorithmic puzzle",
        "a function with tricky edge cases", "a simulation of a small real-world process",
    )
    difficulties: tuple[str, ...] = ("beginner", "intermediate", "advanced")
    words_per_prompt: int = 3
    prompts: str | None = None  # a directory whose templates override the bundled ones by name
    format: str = "arrow"  # arrow | arrow-stream | parquet
    shard_bytes: int = 64 << 20  # rotate shards at this size: the open shard is rewritten at each checkpoint
    checkpoint_s: float = 10.0  # make progress durable this often...
    checkpoint_rows: int = 1000  # ...or after this many rows, whichever comes first
    dedup: bool = True
    dedup_bands: int = 14  # FineWeb's MinHash LSH: 14 bands x 8 rows, Jaccard ~0.72
    dedup_rows: int = 8
    exec_timeout_s: float = 10.0  # sandbox limits for exercises (wall clock, CPU, address space)
    exec_cpu_s: int = 5
    exec_memory_mb: int = 512
    exec_workers: int = 0  # parallel sandbox runs; 0 = one per CPU
    shard: str = ""  # "I/N": only the plan items whose plan_id % N == I (one of N machines); "" = the whole plan

    @property
    def slice(self) -> tuple[int, int]:
        """(I, N) of --shard I/N; (0, 1) for the whole plan."""
        return shard_slice(self.shard)

    @property
    def styles(self) -> tuple[str, ...]:
        return self.textbook_styles if self.kind == "textbook" else self.exercise_styles


def resolve_gen(cli: Mapping[str, Any], file: Mapping[str, Any]) -> GenConfig:
    """Flags > [gen] in textbook.toml > defaults (sub-tables such as [gen.settings] belong to subcommands)."""
    section = {k: v for k, v in (file.get("gen") or {}).items() if not isinstance(v, dict)}
    config = resolve(GenConfig, cli=cli, file=section, section="gen")
    if config.kind not in KINDS:
        raise ConfigError(f"unknown kind {config.kind!r}: use --kind textbook or --kind exercises")
    if config.n < 1:
        raise ConfigError(f"--n must be at least 1 (got {config.n})")
    if config.format not in FORMATS:
        raise ConfigError(f"unknown format {config.format!r}: use --format {', '.join(FORMATS)}")
    if config.depth < 0 or config.breadth < 1:
        raise ConfigError("--depth must be >= 0 and --breadth >= 1")
    shard_slice(config.shard)  # a bad --shard fails here, before any work
    return config
