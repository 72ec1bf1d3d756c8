"""`metahw --help` starts fast: the commands import torch, onnx, scipy, hls4ml and the like when they run.

The CLI spells out the few library facts its help shows (algorithm names, embedding heads, hls4ml
project defaults) instead of importing the libraries that define them; these tests keep the two in step.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from metahw.cli.export import EMBEDDING_HEADS
from metahw.cli.hls import PROJECT_DEFAULTS
from metahw.cli.models import ALGORITHM_NAMES

#: Libraries that take seconds to import; `metahw --help` imports none of them.
HEAVY = ("torch", "onnx", "onnxruntime", "scipy", "matplotlib", "hls4ml", "amaranth", "optuna", "ray", "jinja2")

_PROBE = """
import sys
from metahw.cli import run
code = run(["--help"])
print(code, sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[1:])), file=sys.stderr)
"""


def test_help_imports_no_heavy_library():
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *HEAVY], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stderr.strip().splitlines()[-1] == "0 []", result.stderr
    for command in ("train", "eval", "export", "compile", "compare", "simulate", "build", "hls-sim", "demo"):
        assert command in result.stdout


def test_the_help_texts_library_facts_are_the_librarys():
    from metahw.hw.hls4ml import ProjectOptions
    from metahw.models.embedding_export import HEADS
    from metahw.models.learners import ALGORITHMS

    assert ALGORITHM_NAMES == tuple(sorted(ALGORITHMS))
    assert EMBEDDING_HEADS == HEADS
    options = {field.name: field.default for field in dataclasses.fields(ProjectOptions)}
    assert PROJECT_DEFAULTS == {name: options[name] for name in PROJECT_DEFAULTS}
    assert set(options) - set(PROJECT_DEFAULTS) == {"project_name"}  # the one the command line does not set
