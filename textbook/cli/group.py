"""A command group whose first word may be an argument of its main command, not a subcommand.

Click cannot give a group both a variadic argument (`filter FILES...`, `shards DIR`) and subcommands (the
argument would swallow the subcommand's name), so such a group checks its first word: a subcommand name
runs that subcommand, anything else runs the hidden `run` command with all the words.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup


class DefaultGroup(TyperGroup):
    """Routes `GROUP X ...` to `GROUP run X ...` unless X is a subcommand (or --help)."""

    default = "run"

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: typer.Context, formatter) -> None:
        # `textbook GROUP --help` teaches the main use first: the run command's help, then the rest
        command = self.commands[self.default]
        with type(ctx)(command, info_name=ctx.info_name, parent=ctx.parent) as sub:  # typer's own click
            command.format_help(sub, formatter)
        rows = [(name, cmd.get_short_help_str(120)) for name, cmd in self.commands.items() if not cmd.hidden]
        with formatter.section("Other commands"):
            formatter.write_dl(rows)

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [name for name in self.commands if name != self.default]
