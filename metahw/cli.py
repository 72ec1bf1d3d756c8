"""The `metahw` command: one typer app; each stage's commands live in their own module.

Every error caused by the user's input is a `UserError`: it is printed as one sentence on
stderr and the process exits with code 2, never with a traceback.
"""

from __future__ import annotations

import sys

import typer

from metahw.errors import UserError

app = typer.Typer(
    name="metahw",
    help="Meta-learners down to verified fixed-point hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    from metahw import cli_compiler, cli_demo, cli_explore, cli_export, cli_hls, cli_models, cli_report, cli_sim  # noqa: F401 - each registers its commands on `app`


def main() -> None:
    """Console entry point: run the app, turning UserError into exit code 2."""
    _register_commands()
    try:
        app()
    except UserError as exc:
        typer.echo(f"metahw: error: {exc}", err=True)
        sys.exit(2)
