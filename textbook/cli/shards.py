"""`textbook shards DIR`: what a shard directory holds."""

from __future__ import annotations

from pathlib import Path

import typer

from textbook.summary import describe_shards


def register(app: typer.Typer) -> None:
    @app.command("shards")
    def shards(
        directory: Path = typer.Argument(..., help="A shard directory (holds manifest.json), or an output directory holding several."),
        head: int = typer.Option(0, "--head", "-n", help="Also print the first N rows of each shard directory."),
    ) -> None:
        """Summarise Arrow shards: rows, schema, sizes, token counts, completeness; --head N shows samples.

        Example: textbook shards runs/python --head 3
        """
        typer.echo(describe_shards(directory, head=head))
