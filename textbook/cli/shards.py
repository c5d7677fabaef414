"""`textbook shards DIR`: what a shard directory holds; `textbook shards merge SLICE... --out DIR`: slices as one."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from textbook.cli import options
from textbook.cli.group import DefaultGroup

shards_app = typer.Typer(
    name="shards", cls=DefaultGroup, add_completion=False, no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Look inside shard directories, or merge the slices of one plan.",
)


@shards_app.command("run", hidden=True, context_settings={"help_option_names": ["-h", "--help"]})
def show(
    directory: Path = typer.Argument(..., help="A shard directory (holds manifest.json), or an output directory holding several."),
    head: int = typer.Option(0, "--head", "-n", help="Also print the first N rows of each shard directory."),
) -> None:
    """Summarise Arrow shards: rows, schema, sizes, token counts, completeness; --head N shows samples.

    Example: textbook shards runs/python --head 3
    """
    from textbook.summary import describe_shards

    typer.echo(describe_shards(directory, head=head))


@shards_app.command("merge")
def merge(
    slices: List[Path] = typer.Argument(..., help="The --out directories of `textbook gen --shard I/N` runs, all N of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Directory for the merged output (one manifest per stream)."),
) -> None:
    """Merge the slices of one plan (`textbook gen --shard I/N` on N machines) into one output: checks that
    they are finished slices of the same plan, none missing or twice; shards are hard-linked, not copied.

    Example: textbook shards merge runs/part-0 runs/part-1 runs/part-2 --out runs/python
    """
    from textbook.merge import merge_slices

    options.show(merge_slices(slices, out))


def register(app: typer.Typer) -> None:
    app.add_typer(shards_app, name="shards")
