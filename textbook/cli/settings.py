"""`textbook gen settings`: settings-agent samples (request -> settings function call) as Arrow shards."""

from __future__ import annotations

from pathlib import Path

import typer

from textbook.cli import options
from textbook.cli.options import default
from textbook.settings.config import SettingsConfig
from textbook.teacher.config import TeacherConfig


def register(app: typer.Typer) -> None:
    from textbook.cli.gen import gen_app

    @gen_app.command("settings")
    def settings(
        offline: bool = typer.Option(False, "--offline", help="Templates, catalogue vocabulary, noise and sampling only: no teacher needed."),
        n: int = typer.Option(None, "--n", "-n", help=f"Samples to write (teacher + template). (default: {default(SettingsConfig, 'n')})"),
        out: Path = typer.Option(None, "--out", "-o", help=f"Output directory: OUT/settings/ shards, OUT/settings-removed/, OUT/settings-report.md. (default: {default(SettingsConfig, 'out')})"),
        catalogue: Path = typer.Option(None, "--catalogue", help="Your own settings catalogue (YAML; see textbook/settings/FORMAT.md). (default: the bundled Windows catalogue)"),
        check_catalogue: bool = typer.Option(False, "--check-catalogue", help="Only validate the catalogue and print what it holds."),
        seed: int = typer.Option(None, "--seed", help=f"Random seed: the same seed and config give the same dataset. (default: {default(SettingsConfig, 'seed')})"),
        noise_rate: float = typer.Option(None, "--noise-rate", help=f"Share of samples with 1-3 noise operations (typos, partial words, ...). (default: {default(SettingsConfig, 'noise_rate')})"),
        none_rate: float = typer.Option(None, "--none-rate", help=f"Share of out-of-scope requests labelled {{\"action\":\"none\"}}. (default: {default(SettingsConfig, 'none_rate')})"),
        teacher_share: float = typer.Option(None, "--teacher-share", help=f"Share of --n made of teacher paraphrases. (default: {default(SettingsConfig, 'teacher_share')})"),
        paraphrases: int = typer.Option(None, "--paraphrases", help=f"Rewrites asked of the teacher per seed. (default: {default(SettingsConfig, 'paraphrases')})"),
        no_judge: bool = typer.Option(False, "--no-judge", help="Skip the second teacher pass that drops mislabelled paraphrases."),
        shard: str = typer.Option(None, "--shard", help="I/N: make slice I of N (its share of --n, from chunks no other slice uses), for N machines; merge with `textbook shards merge`."),
        batch: bool = typer.Option(False, "--batch", help="Paraphrases, then judges, through the OpenAI Batch API (half price, within 24 h each round); re-asks go online."),
        preview: int = typer.Option(0, "--preview", help="Paraphrase and judge N seeds and print what would be kept or dropped, and why; write nothing."),
        workers: int = typer.Option(None, "--workers", "-w", help=f"Processes rendering template samples; the data is the same for any number; 0 = auto: cores - 1, up to 4, from 100k samples on 4+ cores. (default: {default(SettingsConfig, 'workers')})"),
        fmt: str = options.format_option(SettingsConfig),
        model: str = options.MODEL,
        base_url: str = options.BASE_URL,
        api_key: str = options.API_KEY,
        concurrency: int = typer.Option(None, "--concurrency", "-c", help=f"Teacher requests in flight at most. (default: {default(TeacherConfig, 'concurrency')})"),
        max_tokens: int = options.max_tokens_option(),
        timeout: float = options.timeout_option(),
        config: Path = options.config_option("settings", "teacher"),
        prompts: Path = typer.Option(None, "--prompts", help="Directory overriding prompts/settings_paraphrase.j2 and settings_judge.j2 by name."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the teacher response cache."),
    ) -> None:
        """Settings-agent training data: a request typed into the Settings search box -> one JSON function call.

        Seeds come from phrasing templates and the catalogue's own words (names, everyday words, problem statements); with a teacher they are paraphrased with the setting's metadata and checked by a judge. Noise (typos, partial words, dropped words, misspellings, ASR confusions) never changes a label. Sampling weighs settings by popularity with a floor, oversamples confusable settings, caps near-duplicates, adds out-of-scope requests and splits train/validation/test by seed. Kill it at any time and rerun the same command: it resumes and writes the same data.

        Examples:

          textbook gen settings --offline --n 100000 --out runs/settings

          textbook gen settings --model gpt-4o-mini --n 50000 --out runs/settings-teacher

          textbook gen settings --catalogue gnome.yaml --check-catalogue
        """
        from textbook.config import load_config_file
        from textbook.settings.catalogue import describe_catalogue
        from textbook.settings.config import resolve_settings
        from textbook.settings.run import generate_settings
        from textbook.teacher.config import resolve_teacher

        if check_catalogue:
            typer.echo(describe_catalogue(catalogue))
            return
        file = load_config_file(config)
        cfg = resolve_settings(
            {"n": n, "out": str(out) if out else None, "catalogue": str(catalogue) if catalogue else None,
             "seed": seed, "noise_rate": noise_rate, "none_rate": none_rate, "format": fmt,
             "offline": True if offline else None, "teacher_share": teacher_share, "paraphrases": paraphrases,
             "judge": False if no_judge else None, "shard": shard, "workers": workers, "prompts": str(prompts) if prompts else None},
            file,
        )
        teacher = None
        if not cfg.offline:
            teacher = resolve_teacher(
                {"model": model, "base_url": base_url, "api_key": api_key, "concurrency": concurrency,
                 "max_tokens": max_tokens, "timeout_s": timeout,
                 "cache": False if no_cache else None},
                file,
            )
        options.show(generate_settings(cfg, teacher, preview=preview, batch=batch), config)
