"""`textbook gen`: synthetic textbooks and verified exercises from a teacher LLM (subcommands add other generators)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from textbook.cli import options
from textbook.cli.options import default
from textbook.errors import ConfigError
from textbook.gen.config import GenConfig
from textbook.teacher.config import TeacherConfig

gen_app = typer.Typer(
    name="gen",
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@gen_app.callback(invoke_without_command=True)
def gen(
    ctx: typer.Context,
    topic: str = typer.Option(None, "--topic", "-t", help=f"What the data is about; the teacher expands it into a tree of subtopics. (default: {default(GenConfig, 'topic')})"),
    kind: str = typer.Option(None, "--kind", "-k", help=f"textbook (Markdown sections with code) or exercises (function + docstring, solution, tests; executed in a sandbox). (default: {default(GenConfig, 'kind')})"),
    n: int = typer.Option(None, "--n", "-n", help=f"Planned rows: kept + rejected = n. A larger --n on the same --out extends it. (default: {default(GenConfig, 'n')})"),
    out: Path = typer.Option(None, "--out", "-o", help="Output directory (resumable). (default: runs/<topic>)"),
    topics: Path = typer.Option(None, "--topics", help="A topics.json to use instead of asking the teacher (edit the one a run saves in --out)."),
    depth: int = typer.Option(None, "--depth", help=f"Levels of subtopics below the topic. (default: {default(GenConfig, 'depth')})"),
    breadth: int = typer.Option(None, "--breadth", help=f"Subtopics per node. (default: {default(GenConfig, 'breadth')})"),
    shard: str = typer.Option(None, "--shard", help="I/N: make slice I of N of the plan (items whose plan_id % N == I), for N machines; merge with `textbook shards merge`. Needs --topics (one tree for all slices)."),
    seed: int = typer.Option(None, "--seed", help=f"Seed of the plan (which topic gets which constraints). (default: {default(GenConfig, 'seed')})"),
    concurrency: int = typer.Option(None, "--concurrency", "-c", help=f"Requests in flight at most. (default: {default(TeacherConfig, 'concurrency')})"),
    rpm: float = typer.Option(None, "--rpm", help=f"Client-side requests/minute limit (0 = none). (default: {default(TeacherConfig, 'requests_per_minute')})"),
    tpm: float = typer.Option(None, "--tpm", help=f"Client-side tokens/minute limit (0 = none). (default: {default(TeacherConfig, 'tokens_per_minute')})"),
    max_tokens: int = options.max_tokens_option(),
    timeout: float = options.timeout_option(),
    model: str = options.MODEL,
    base_url: str = options.BASE_URL,
    api_key: str = options.API_KEY,
    config: Path = options.config_option("gen", "teacher"),
    prompts: Path = typer.Option(None, "--prompts", help="Directory of your own templates (textbook.j2, exercise.j2, topics.j2, vocabulary.json, topics/<topic>.json) overriding the bundled ones by name."),
    fmt: str = options.format_option(GenConfig),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the response cache (a rerun pays again)."),
    preview: int = typer.Option(0, "--preview", help="Send the first N planned items, check them and print each (prompt, reply, verdict); write nothing. Try a template and a teacher before a long run."),
    batch: bool = typer.Option(False, "--batch", help="Send the first attempt of every item through the OpenAI Batch API (half price, replies within 24 h; a killed run resumes polling and never submits twice); re-asks and errors go online."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Render every prompt without a teacher: a prompts shard, an OpenAI Batch API file, token and cost estimates."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation before a paid run (only asked on a terminal)."),
) -> None:
    """Generate synthetic textbook sections or verified coding exercises (the phi-1 recipe) into Arrow shards.

    The teacher expands --topic into a tree of subtopics (saved as OUT/topics.json, editable, reusable with --topics). A seeded plan crosses its leaves with audiences, styles, difficulties and random words; each plan item becomes one row in OUT/<kind>/ or one reject, with its reason and the raw reply, in OUT/<kind>-rejects/. Exercises are executed in a sandbox and only passing ones are kept. Kill it at any time and rerun the same command: it resumes without paying twice.

    Examples:

      textbook gen --topic python --dry-run --out runs/demo   (no teacher needed: prompts, batch file, estimates)

      OPENAI_API_KEY=sk-... textbook gen --topic python --model gpt-4o-mini --n 1000 --out runs/python

      textbook gen --kind exercises --base-url http://localhost:11434/v1 --model qwen2.5-coder --n 500
    """
    if ctx.invoked_subcommand is not None:
        return
    from textbook.config import load_config_file
    from textbook.gen.config import resolve_gen
    from textbook.gen.run import generate
    from textbook.teacher.config import resolve_teacher

    file = load_config_file(config)
    gen_cfg = resolve_gen(
        {"topic": topic, "kind": kind, "n": n, "depth": depth, "breadth": breadth, "seed": seed, "shard": shard,
         "prompts": str(prompts) if prompts else None, "format": fmt},
        file,
    )
    teacher_cfg = resolve_teacher(
        {"model": model, "base_url": base_url, "api_key": api_key, "concurrency": concurrency,
         "requests_per_minute": rpm, "tokens_per_minute": tpm, "max_tokens": max_tokens, "timeout_s": timeout,
         "cache": False if no_cache else None},
        file,
    )
    out = out or Path("runs") / gen_cfg.topic.strip().lower().replace(" ", "-")
    confirm = None if yes or not sys.stdin.isatty() else (lambda what: typer.confirm(f"Send {what}?", default=True))
    if preview < 0:
        raise ConfigError("--preview must be a number of items (1 or more)")
    summary = generate(gen_cfg, teacher_cfg, out=out, topics_file=topics, dry=dry_run, confirm=None if preview else confirm,
                       preview=preview, batch=batch)
    options.show(summary, config)


def register(app: typer.Typer) -> None:
    app.add_typer(gen_app, name="gen")
