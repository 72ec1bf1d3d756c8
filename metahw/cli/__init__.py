"""The command line: `metahw.cli.command` holds the typer app and the entry point; each other module adds
one stage's commands.

The CLI is the top layer. It maps options onto library calls (models, compiler, sim, hw and the
application code in `metahw.app`) and prints their results; the library raises `UserError`
in its own terms (the parameters it names), and the CLI shows those parameters as its flags
(`command.flag`).

The command modules import the heavy libraries (torch, onnx, scipy, matplotlib, hls4ml, optuna) inside
the commands that use them, so that `metahw --help` starts in a fraction of a second;
tests/cli/test_startup.py keeps it so.
"""

from metahw.cli.command import INTERRUPTED, app, main, run

__all__ = ["INTERRUPTED", "app", "main", "run"]
