"""The `metahw` command: one typer app; each stage's commands live in their own module.

Every error caused by the user's input is one sentence on stderr and exit code 2, never a
traceback: a `UserError` raised by the library or the CLI, and click's own usage errors
(unknown option, a value that is not a number), which are flattened to one line too. A
library error names library parameters (`inner_steps`); the message shows each as its flag
(--inner-steps, see `flag`).
Ctrl-C prints one line and exits with 130, the shell's code for SIGINT.
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

INTERRUPTED = 130

#: Library parameters (see `UserError.parameters`) whose flag is not `--` + the name with '-' for '_'.
FLAGS = {
    "hparams": "--hparam",
    "objectives": "--objective",
    "ray_address": "--ray",
    "ImageTransform.shape": "--image-shape",
    "read_npz_episodes.path": "--episodes-from",
    "image_folder_episodes.root": "--images",
    "read_runs.root": "--runs",
    "load_omniglot.path": "--data PATH",
    "HardwareConfig.stream_elements": "the --config file's stream_elements",
    "compile_calibrated": "--episodes-from FILE.npz or --images DIR",
}


def _register_commands() -> None:
    from metahw.cli import compiler, demo, explore, export, hls, models, report, sim  # noqa: F401 - each registers its commands on `app`


def flag(parameter: str) -> str:
    """How the command line names a library parameter: its `FLAGS` entry, else `--` + the name with '-' for '_'."""
    return FLAGS.get(parameter) or "--" + parameter.rsplit(".", 1)[-1].replace("_", "-")


def _usage_sentence(exc: typer.TyperException) -> str:
    """click's usage error as one line naming the command and where its help is."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "metahw"
    text = " ".join(exc.format_message().split())
    return f"{text} (see '{command} --help')"


def run(argv: list[str] | None = None) -> int:
    """Run the app on `argv` (default: sys.argv) and return the exit code instead of exiting."""
    _register_commands()
    try:
        code = app(args=argv, prog_name="metahw", standalone_mode=False)
    except UserError as exc:
        typer.echo(f"metahw: error: {exc.render(flag)}", err=True)
        return 2
    except typer.TyperException as exc:  # click's usage errors (exit code 2) and its other ClickExceptions
        if exc.format_message():  # empty where click has printed the help (metahw with no command)
            typer.echo(f"metahw: error: {_usage_sentence(exc)}", err=True)
        return getattr(exc, "exit_code", 2)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = INTERRUPTED
    if code == INTERRUPTED:  # typer turns Ctrl-C inside a command into exit code 130, silently
        typer.echo("metahw: interrupted; outputs written before are untouched, none is half-written", err=True)
    return code if isinstance(code, int) else 0


def main() -> None:
    """Console entry point: `run` with the process's arguments, its code as the exit status."""
    sys.exit(run())
