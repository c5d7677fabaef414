"""`textbook filter FILES... --out DIR`, `textbook filter annotate ...`, `textbook filter train ...`.

`filter` is a DefaultGroup (textbook.cli.group): `filter FILES...` runs the hidden `run` command.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Optional

import typer

from textbook.bundled import preset_names
from textbook.cli import options
from textbook.cli.group import DefaultGroup
from textbook.cli.options import default
from textbook.config import load_config_file, resolve
from textbook.filter.config import AnnotateConfig, Classifier, ClassifierTrainConfig, FilterRun, ScoreConfig
from textbook.teacher.config import TeacherConfig


_ct = functools.partial(default, ClassifierTrainConfig)

filter_app = typer.Typer(
    name="filter",
    cls=DefaultGroup,
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Filter web text: heuristics, exact + MinHash dedup, educational-value classifier.",
)


@filter_app.command("run", hidden=True, context_settings={"help_option_names": ["-h", "--help"]})
def run(
    files: List[str] = typer.Argument(..., help="Parquet, JSONL or Arrow files, directories or globs.", show_default=False),
    out: Path = typer.Option(Path("runs/filter"), "--out", "-o", help="Output directory (kept/, removed/, report.*). Rerun the same command to resume."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=f"Preset name in filters/ ({', '.join(preset_names())}) or a YAML file. (default: {default(FilterRun, 'preset')})"),
    text_column: Optional[str] = typer.Option(None, "--text-column", help=f"Column holding the text. (default: {default(FilterRun, 'text_column')})"),
    id_column: Optional[str] = typer.Option(None, "--id-column", help=f"Column holding document ids; without one, ids are FILE#ROW. An id that repeats an earlier row's (two files numbered from 0) is kept, renamed ID@FILE#ROW, and counted in the report. (default: {default(FilterRun, 'id_column')})"),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="A model directory from `textbook filter train` (or TEXTBOOK_FILTER_CLASSIFIER), or a bundled one by name: binary (the default: quality-leaning, human and source labels) or edu5 (graded 0-5 educational value, FineWeb-Edu's rubric). (default: binary)"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help=f"Keep documents with edu_score >= this (0-5). (default: the preset's classifier.threshold, {default(Classifier, 'threshold')} unless it sets one)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help=f"Processes for the analysis pass (or TEXTBOOK_WORKERS); with --engine ray and no --ray-address, the local Ray's CPUs. (default: {default(FilterRun, 'workers')})"),
    engine: Optional[str] = typer.Option(None, "--engine", help=f"local (worker processes here) or ray (every step as Ray tasks: analysis, dedup decisions by shuffles, writers per input piece; on a cluster with --ray-address, OUT and the inputs on a shared filesystem; same output). (default: {default(FilterRun, 'engine')})"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="A running Ray cluster, e.g. 10.0.0.1:6379 (`ray start --head`); default: a local Ray."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=f"Rows per batch. (default: {default(FilterRun, 'batch_size')})"),
    fmt: Optional[str] = typer.Option(None, "--format", help=f"Output shards: parquet or arrow. (default: {default(FilterRun, 'format')})"),
    config: Optional[Path] = options.config_option("filter"),
) -> None:
    """Filter web documents: Gopher/C4/FineWeb heuristics, exact + MinHash near-duplicate removal, then an
    educational-value classifier. Writes OUT/kept/ (original columns + edu_score, cluster_id, duplicates),
    OUT/removed/ (every dropped row with its stage and reason) and OUT/report.json, report.md, scores.png.
    kept + removed = input. Memory stays flat as the input grows; a killed run resumes when rerun.

    Examples:

      textbook filter examples/web.parquet --out runs/filter

      textbook filter 'crawl/*.parquet' more.jsonl --out runs/web --threshold 2.5 --text-column content

      textbook filter web.parquet --preset dedup-only --out runs/dedup
    """
    from textbook.filter.config import load_preset, resolve_run
    from textbook.filter.run import run_filter

    file = load_config_file(config).get("filter", {})
    cfg = resolve_run({"preset": preset, "text_column": text_column, "id_column": id_column,
                       "classifier": str(classifier) if classifier else None, "threshold": threshold,
                       "workers": workers, "batch_size": batch_size, "format": fmt, "engine": engine,
                       "ray_address": ray_address}, file)
    options.show(run_filter(files, out, cfg, load_preset(cfg.preset)), config)


@filter_app.command("train")
def train(
    labels: List[str] = typer.Argument(..., help="Labelled data: `textbook filter annotate` output, or files with text + edu_score (0-5) or label (0/1)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write (model.json + weights.npz)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help=f"Column holding the text. (default: {_ct('text_column')})"),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column. (default: edu_score, score or label, the first that exists)"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help=f"Score at which a document counts as educational (for F1 and the confusion matrix). (default: {_ct('threshold')})"),
    features: Optional[str] = typer.Option(None, "--features", help=f"hashed (word 1-2 + char 3-5 grams), static (word vectors distilled from --embeddings-model, scored with no model), hashed+static (both), or embeddings (the sentence-transformer itself, slow). (default: {_ct('features')})"),
    embeddings_model: Optional[Path] = typer.Option(None, "--embeddings-model", help="A local sentence-transformers model directory (nothing is downloaded)."),
    folds: Optional[int] = typer.Option(None, "--folds", help=f"Cross-validation folds. (default: {_ct('folds')})"),
    c: Optional[float] = typer.Option(None, "--C", help=f"Inverse regularisation strength of the linear head. (default: {_ct('C')})"),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Seed of the folds and the fit. (default: {_ct('seed')})"),
    config: Optional[Path] = options.config_option("filter_train"),
) -> None:
    """Fit the educational-value classifier (a linear head, scikit-learn) and print cross-validated metrics.

    Example: textbook filter train labels/ --out models/edu
    """
    from textbook.filter.train import train as fit_model

    cli = {"text_column": text_column, "label_column": label_column, "threshold": threshold, "features": features,
           "embeddings_model": str(embeddings_model) if embeddings_model else None, "folds": folds, "C": c, "seed": seed}
    cfg = resolve(ClassifierTrainConfig, cli=cli, file=load_config_file(config).get("filter_train", {}), section="filter_train")
    options.show(fit_model(labels, out, config=cfg), config)


@filter_app.command("score")
def score(
    files: List[str] = typer.Argument(..., help="Documents to score (Parquet, JSONL, Arrow, directories, globs)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory: OUT/scored/ shards (every input row) and a dataset card."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help=f"Column holding the text. (default: {default(ScoreConfig, 'text_column')})"),
    classifier: Optional[Path] = typer.Option(None, "--classifier", help="A model directory from `filter train`, or a bundled one: binary (default) or edu5 (graded 0-5 educational value)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=f"Rows per batch. (default: {default(ScoreConfig, 'batch_size')})"),
    fmt: Optional[str] = typer.Option(None, "--format", help=f"parquet or arrow. (default: {default(ScoreConfig, 'format')})"),
    config: Optional[Path] = options.config_option("filter_score"),
) -> None:
    """Add edu_score (0-5) and the model's name to every row of the input and drop nothing: choose your own
    threshold later, or mix data by score.

    Example: textbook filter score web.parquet --out runs/scored
    """
    from textbook.filter.score import score_files

    cli = {"text_column": text_column, "classifier": str(classifier) if classifier else None, "batch_size": batch_size,
           "format": fmt}
    cfg = resolve(ScoreConfig, cli=cli, file=load_config_file(config).get("filter_score", {}), section="filter_score")
    options.show(score_files(files, out, cfg), config)


@filter_app.command("annotate")
def annotate(
    files: List[str] = typer.Argument(..., help="Documents to sample from (Parquet, JSONL, Arrow, directories, globs)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for the labels (Arrow shards; resumable)."),
    n: Optional[int] = typer.Option(None, "--n", "-n", help=f"Documents to sample and score. (default: {default(AnnotateConfig, 'n')})"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help=f"edu_score (FineWeb-Edu rubric) or edu_score_code (phi-1: basic coding concepts), or your own template name. (default: {default(AnnotateConfig, 'prompt')})"),
    text_column: Optional[str] = typer.Option(None, "--text-column", help=f"Column holding the text. (default: {default(AnnotateConfig, 'text_column')})"),
    id_column: Optional[str] = typer.Option(None, "--id-column", help=f"Column holding document ids, FILE#ROW when missing. (default: {default(AnnotateConfig, 'id_column')})"),
    chars: Optional[int] = typer.Option(None, "--chars", help=f"The teacher sees the first CHARS characters (FineWeb-Edu: ~1,000). (default: {default(AnnotateConfig, 'chars')})"),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Sampling seed. (default: {default(AnnotateConfig, 'seed')})"),
    model: Optional[str] = options.MODEL,
    base_url: Optional[str] = options.BASE_URL,
    api_key: Optional[str] = options.API_KEY,
    concurrency: Optional[int] = typer.Option(None, "--concurrency", "-c", help=f"Requests in flight at most. (default: {default(TeacherConfig, 'concurrency')})"),
    timeout: Optional[float] = options.timeout_option(),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Directory of your own templates overriding the bundled ones by name."),
    config: Optional[Path] = options.config_option("annotate", "teacher"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the response cache."),
    preview: int = typer.Option(0, "--preview", help="Score N sampled documents and print each (text, reply, score); write nothing."),
    batch: bool = typer.Option(False, "--batch", help="Score through the OpenAI Batch API (half price, within 24 h; a killed run resumes polling, never submits twice)."),
) -> None:
    """Have a teacher LLM score a sample of documents 0-5 for educational value (labels for `filter train`).

    Example: textbook filter annotate web.parquet --n 2000 --out labels/ --model gpt-4o-mini
    """
    from textbook.filter.annotate import annotate as run_annotate
    from textbook.teacher.config import resolve_teacher

    file = load_config_file(config)
    cfg = resolve(AnnotateConfig, cli={"n": n, "prompt": prompt, "text_column": text_column, "id_column": id_column,
                                       "chars": chars, "seed": seed, "cache": False if no_cache else None},
                  file=file.get("annotate", {}), section="annotate")
    teacher = resolve_teacher({"model": model, "base_url": base_url, "api_key": api_key, "concurrency": concurrency,
                               "timeout_s": timeout}, file)
    options.show(run_annotate(files, out, cfg, teacher, prompts_dir=prompts, batch=batch, preview=preview), config)


def register(app: typer.Typer) -> None:
    app.add_typer(filter_app, name="filter")
