"""The `textbook` command: a thin typer shell over the library.

Commands live in one module each and only parse options and call one library function. This is
the one place that turns `TextbookError` into `error: <message>` and a non-zero exit code.
"""

from __future__ import annotations

import functools
import importlib
import sys

import typer
from typer.core import TyperGroup

from textbook.errors import TextbookError

# The order `textbook --help` lists commands in: the two main jobs first, then the pipeline's order.
# Typer lists plain commands before groups (`gen`, `filter`, `tokenizer`, `eval` are groups), which
# put the main jobs last. A name missing here is listed after these, in registration order.
HELP_ORDER = ("gen", "filter", "shards", "tokenizer", "train", "eval", "export", "infer")


class _Listed(TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(HELP_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: rank.get(name, len(rank)))


app = typer.Typer(
    name="textbook",
    cls=_Listed,
    help="Make small language models good through data: synthetic textbooks and exercises from a teacher LLM, "
    "settings-agent samples, filtered web text, all as Arrow shards; then train a Mu model and export it for NPUs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from textbook import __version__

        typer.echo(f"textbook {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Config precedence everywhere: flags > textbook.toml (or --config FILE) > environment > defaults."""


# Command modules, each with `register(app)` (HELP_ORDER, not this, orders `textbook --help`).
# `settings` adds `gen settings` onto the `gen` group, so it comes after `gen`.
COMMANDS = ("gen", "settings", "filter", "shards", "train", "export")


@functools.cache
def _register() -> None:
    # Imported here so `import textbook.cli` stays cheap: torch, onnx and openai load only in the
    # command that needs them. Once per process: `main()` called again (tests, a notebook) must not
    # add every command a second time, which made each later call slower than the one before.
    for name in COMMANDS:
        importlib.import_module(f"textbook.cli.{name}").register(app)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, prog_name="textbook")
    except TextbookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except SystemExit as exc:
        if exc.code == 130:  # typer's silent exit on Ctrl-C: say how to go on
            print("interrupted: rerun the same command to resume where it stopped", file=sys.stderr)
        raise
