"""Options several commands share, defined once so their flags and help read the same everywhere.

Every option defaults to None ("not given") so `textbook.config.resolve` can tell a flag from the
layers below it (config file, environment); the default itself lives only in the stage's frozen
dataclass, and `default` reads it from there for the help text.
"""

import dataclasses

import typer


def default(cls: type, name: str) -> str:
    """The default of `cls.name` as a help text shows it: the dataclass holds it, the help only reads it."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def section(name: str) -> str:
    """`[name]` for a help text: the bracket escaped, or Rich's markup would swallow the section name."""
    return f"\\[{name}]"


def config_option(*sections: str) -> typer.models.OptionInfo:
    """--config FILE, naming the tables the command reads from it."""
    tables = " and ".join(section(s) for s in sections)
    return typer.Option(None, "--config", help=f"Config file with {tables} (default: ./textbook.toml when present).")


MODEL = typer.Option(None, "--model", "-m", help="Teacher model (or TEXTBOOK_MODEL).")
BASE_URL = typer.Option(
    None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (or OPENAI_BASE_URL)."
)
API_KEY = typer.Option(None, "--api-key", help="API key (better: OPENAI_API_KEY). Never written anywhere.", show_default=False)


def show(report, config: "str | None" = None, *, err: bool = False) -> None:
    """Print a run's summary: every command ends with this one call (a `textbook.report.Report`), and
    names the config file it read (a ./textbook.toml picked up from the working directory included)."""
    from textbook.config import config_file_used

    used = config_file_used(config)
    typer.echo(str(report) + (f"\n  config file: {used}" if used else ""), err=err)


def max_tokens_option() -> typer.models.OptionInfo:
    from textbook.teacher.config import TeacherConfig

    return typer.Option(None, "--max-tokens", help="Longest reply in tokens; a reply cut there is re-asked with more room. "
                        f"(default: {default(TeacherConfig, 'max_tokens')})")


def timeout_option() -> typer.models.OptionInfo:
    from textbook.teacher.config import TeacherConfig

    return typer.Option(None, "--timeout", help="Seconds to wait for one reply (raised for a server measured too slow to "
                        f"finish --max-tokens in it). (default: {default(TeacherConfig, 'timeout_s')})")


def format_option(cls: type) -> typer.models.OptionInfo:
    """--format for a stage writing shards; its default is `cls.format`."""
    return typer.Option(
        None, "--format",
        help=f"arrow (IPC file), arrow-stream (for datasets.Dataset.from_file) or parquet. (default: {default(cls, 'format')})",
    )
