"""Filter settings: one frozen dataclass per stage, whose defaults are the recipe (datatrove's values).

A preset (filters/<name>.yaml or any YAML file) overrides stage settings; run settings (columns,
classifier, threshold, workers) follow the project's precedence: CLI > textbook.toml [filter] >
environment > defaults. The resolved config is saved next to every output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textbook.bundled import data_dir, preset_names
from textbook.config import public_dict, resolve
from textbook.errors import ConfigError
from textbook.filter.steps import step_module


@dataclass(frozen=True)
class GopherQuality:
    """Gopher quality rules (Rae et al. 2021, MassiveText; thresholds as datatrove's GopherQualityFilter)."""

    enabled: bool = True
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3.0
    max_avg_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")


@dataclass(frozen=True)
class GopherRepetition:
    """Gopher repetition rules: duplicate lines/paragraphs, top n-gram share, duplicated n-gram share."""

    enabled: bool = True
    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.20), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))


@dataclass(frozen=True)
class C4:
    """C4 document rules (Raffel et al. 2020) as datatrove's C4QualityFilter applies them in FineWeb.

    The line rules only decide which lines count towards `min_sentences`: documents are kept or
    dropped whole, never edited. `curly_bracket` is off by default because it drops every page
    with code in it, and code tutorials are what this toolkit wants to keep (fineweb.yaml turns it on).
    """

    enabled: bool = True
    lorem_ipsum: bool = True
    curly_bracket: bool = False
    javascript: bool = True
    policy: bool = True
    terminal_punct: bool = False  # FineWeb ran C4 with filter_no_terminal_punct=False
    min_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000


@dataclass(frozen=True)
class FineWeb:
    """FineWeb's own line rules (datatrove FineWebQualityFilter)."""

    enabled: bool = True
    line_punct_thr: float = 0.12
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_dup_ratio: float = 0.01
    new_line_ratio: float = 0.3


@dataclass(frozen=True)
class Dedup:
    """Exact dedup on normalised text, then MinHash near-duplicates (FineWeb: 5-grams, 14 x 8)."""

    exact: bool = True
    near: bool = True
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1
    keep: str = "first"  # which document of a cluster stays: first | longest | highest_score
    # > 0: a candidate pair (shares a band) is linked only if its signatures agree on at least this
    # share of permutations (estimated Jaccard). FineWeb has no such check (0); with it, looser
    # banding such as 16 x 7 finds more near-duplicates without chance collisions (high-recall.yaml).
    verify: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.verify <= 1.0:
            raise ConfigError(f"dedup.verify is an estimated Jaccard between 0 and 1, not {self.verify}")
        if self.keep not in KEEP_POLICIES:
            raise ConfigError(f"dedup.keep must be one of {', '.join(KEEP_POLICIES)}, not {self.keep!r}")
        if min(self.ngram, self.bands, self.rows) < 1:
            raise ConfigError("dedup.ngram, dedup.bands and dedup.rows must be at least 1")


@dataclass(frozen=True)
class Classifier:
    """The educational-value classifier on every document that survives dedup."""

    enabled: bool = True
    threshold: float = 3.0  # edu_score on the 0-5 scale; below it a document is removed


@dataclass(frozen=True)
class Preset:
    gopher_quality: GopherQuality = field(default_factory=GopherQuality)
    gopher_repetition: GopherRepetition = field(default_factory=GopherRepetition)
    c4: C4 = field(default_factory=C4)
    fineweb: FineWeb = field(default_factory=FineWeb)
    dedup: Dedup = field(default_factory=Dedup)
    classifier: Classifier = field(default_factory=Classifier)
    name: str = "default"
    # steps a preset adds by naming their module (filter/steps.py): ((name, its Config), ...), run first
    added: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class FilterRun:
    """Run settings (CLI > textbook.toml [filter] > environment > defaults)."""

    preset: str = "default"
    text_column: str = "text"
    id_column: str = "id"
    classifier: str | None = None  # a model directory or a bundled name (binary, edu5); None = binary
    threshold: float | None = None  # overrides the preset's classifier.threshold
    workers: int = 2
    batch_size: int = 1000
    max_doc_chars: int = 2_000_000  # longer documents are dropped before tokenising (bounded memory)
    format: str = "parquet"
    shard_bytes: int = 32 << 20  # output shards rotate at this size (the one being filled is held in memory)
    checkpoint_rows: int = 50_000  # pass 2 makes its output durable every this many input rows
    engine: str = "local"  # local (worker processes here) or ray (every step as Ray tasks: textbook.filter.cluster)
    ray_address: str | None = None  # a running Ray cluster (`ray start --head`); None = start a local one

    def __post_init__(self):
        if min(self.workers, self.batch_size, self.shard_bytes, self.checkpoint_rows, self.max_doc_chars) < 1:
            raise ConfigError("--workers, batch_size, shard_bytes, checkpoint_rows and max_doc_chars must be at least 1")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"--engine must be local or ray, not {self.engine!r}")
        if self.format not in ("parquet", "arrow"):
            raise ConfigError(f"--format must be parquet or arrow, not {self.format!r}")
        if self.threshold is not None and not 0 <= self.threshold <= 5:
            raise ConfigError(f"--threshold is an edu_score from 0 to 5, not {self.threshold}")


@dataclass(frozen=True)
class ScoreConfig:
    """`filter score` (CLI > textbook.toml [filter_score] > defaults): every row with its edu_score (filter/score.py)."""

    text_column: str = "text"
    classifier: str | None = None  # a model directory or a bundled name (binary, edu5); None = binary
    batch_size: int = 1000
    format: str = "parquet"
    checkpoint_rows: int = 50_000

    def __post_init__(self):
        if self.format not in ("parquet", "arrow"):
            raise ConfigError(f"--format must be parquet or arrow, not {self.format!r}")
        if min(self.batch_size, self.checkpoint_rows) < 1:
            raise ConfigError("batch_size and checkpoint_rows must be at least 1")



FEATURE_KINDS = ("hashed", "static", "hashed+static", "embeddings")  # the classifier's features (filter/features.py)


@dataclass(frozen=True)
class AnnotateConfig:
    """`filter annotate` (CLI > textbook.toml [annotate] > defaults): a teacher scores a seeded sample."""

    n: int = 2000
    prompt: str = "edu_score"
    text_column: str = "text"
    id_column: str = "id"
    chars: int = 1000  # the teacher sees the first ~CHARS characters (FineWeb-Edu: ~1,000)
    seed: int = 0
    cache: bool = True

    def __post_init__(self):
        if self.n < 1 or self.chars < 1:
            raise ConfigError(f"--n and --chars must be at least 1, not {self.n} and {self.chars}")
        if not self.prompt.strip():
            raise ConfigError("--prompt names a template (edu_score, edu_score_code or your own): it is empty")


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """`textbook filter train` ([filter_train] in textbook.toml): the defaults are the recipe."""

    text_column: str = "text"
    label_column: str | None = None  # default: the first of edu_score, score, label that exists
    threshold: float = 3.0  # score at which a document counts as educational (F1, confusion matrix)
    folds: int = 5  # cross-validation folds
    C: float = 16.0  # inverse regularisation of the linear head (chosen by CV on the bundled data)
    seed: int = 0
    # hashed (word 1-2 + char 3-5 grams) | static (word vectors distilled from embeddings_model) | hashed+static |
    # embeddings (the sentence-transformer itself, slow)
    features: str = "hashed"
    embeddings_model: str | None = None  # a local sentence-transformers directory (nothing is downloaded)

    def __post_init__(self) -> None:
        if self.features not in FEATURE_KINDS:
            raise ConfigError(f"unknown --features {self.features!r}: use {' or '.join(FEATURE_KINDS)}")
        if self.features in ("embeddings", "static", "hashed+static") and not self.embeddings_model:
            raise ConfigError(f"--features {self.features} needs --embeddings-model DIR (a local sentence-transformers model)")
        if self.folds < 2:
            raise ConfigError(f"--folds must be at least 2 for cross-validation, not {self.folds}")
        if self.C <= 0:
            raise ConfigError(f"--C is an inverse regularisation strength above 0, not {self.C}")
        if not 0 <= self.threshold <= 5:
            raise ConfigError(f"--threshold is an edu_score from 0 to 5, not {self.threshold}")

    def feature_config(self):
        """The features this config asks for (every other FeatureConfig field at its default)."""
        from textbook.filter.features import FeatureConfig

        return FeatureConfig(kind=self.features, embeddings_model=self.embeddings_model)


KEEP_POLICIES = ("first", "longest", "highest_score")
_STAGE_TYPES = {"gopher_quality": GopherQuality, "gopher_repetition": GopherRepetition, "c4": C4,
                "fineweb": FineWeb, "dedup": Dedup, "classifier": Classifier}


def preset_path(name_or_path: str) -> Path:
    """A preset by name (filters/<name>.yaml) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"preset file {path} does not exist: pass --preset NAME or an existing YAML file")
        return path
    bundled = data_dir("filters") / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ConfigError(f"no preset named {name_or_path!r}: use one of {', '.join(preset_names())} or a YAML file path")
    return bundled


def _stage(cls: type, values: Any, where: str):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of settings, not {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in {where}; known: {', '.join(known)}")
    out = {}
    for key, value in values.items():
        default = getattr(cls(), key)
        if isinstance(default, tuple):  # YAML lists -> tuples (pairs stay pairs)
            value = tuple(tuple(v) if isinstance(v, list) else v for v in (value or ()))
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key} must be true or false, not {value!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"{where}.{key} must be a number, not {value!r}")
        out[key] = value
    try:
        return cls(**out)
    except ConfigError as exc:  # the stage's own check: say which file
        raise ConfigError(f"{where.split(':')[0]}: {exc}") from None


def load_preset(name_or_path: str) -> Preset:
    """Read a preset YAML: top-level keys are stages, each a mapping of that stage's settings."""
    import yaml

    path = preset_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping of stages ({', '.join(_STAGE_TYPES)})")
    data.pop("description", None)
    stages = {name: _stage(cls, data.get(name), f"{path.name}: {name}") for name, cls in _STAGE_TYPES.items()}
    added = tuple((name, _stage(step_module(name, f"preset {path}").Config, values, f"{path.name}: {name}"))
                  for name, values in data.items() if name not in _STAGE_TYPES)
    return Preset(**stages, name=path.stem, added=added)


def resolve_run(cli: dict[str, Any], file: dict[str, Any] | None = None) -> FilterRun:
    env = {"classifier": "TEXTBOOK_FILTER_CLASSIFIER", "workers": "TEXTBOOK_WORKERS"}
    return resolve(FilterRun, cli=cli, file=file, env=env, section="filter")


def describe(run: FilterRun, preset: Preset) -> dict[str, Any]:
    """The resolved config as saved in manifests and the report."""
    return {"run": public_dict(run), "preset": public_dict(preset)}
