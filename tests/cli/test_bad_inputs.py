"""Every bad input to every command: one sentence on stderr, exit code 2, nothing written or changed.

Each case of tests/cli/bad_input_cases.py runs in this process through the real entry point
with the long-running work of every command replaced by a tripwire, so a case also proves its
input is refused before any work starts (not after training, calibration or synthesis). The
case's folder, the shared fixtures and the working folder are hashed before and after.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from metahw.cli import run
from tests.cli.bad_input_cases import CASES, scratch

#: The long-running work of each command: reaching any of these means the input was not checked first.
#: Each is replaced where the command looks it up: most commands import their library functions when they
#: run (so that `metahw --help` starts fast), from the modules named here.
WORK = (
    "metahw.models.train.train",
    "metahw.models.evaluate.evaluate",
    "metahw.models.evaluate.predict_episodes",
    "metahw.models.export_check.check_export",
    "metahw.compiler.compile.calibrate",
    "metahw.compiler.compare.compare_episodes",
    "metahw.sim.episodes.simulate_episodes",
    "metahw.cli.rtl.build_rtl",
    "metahw.cli.rtl.check_rtl_episodes",
    "metahw.hw.hls4ml.build_hls_project",
    "metahw.hw.hls4ml.episodes.check_hls_episodes",
    "metahw.cli.report.synthesize",
    "metahw.app.explore.study.run_study",
    "metahw.compiler.compare.compare",
    "metahw.app.demo.warm_up_synthesis",
    "metahw.app.demo.start_synthesis",
)


class WorkStarted(AssertionError):
    """A command began its long-running work although its input was bad."""


def tree(folder: Path) -> dict[str, str]:
    """Every path under `folder` with the SHA-256 of its bytes ('dir' for folders)."""
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }


def _tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    for dotted in WORK:
        module, name = dotted.rsplit(".", 1)

        def tripped(*args, _name=dotted, **kwargs):
            raise WorkStarted(f"{_name} ran although the input was bad")

        monkeypatch.setattr(importlib.import_module(module), name, tripped)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_sentence_and_exit_2(name, shared, tmp_path, monkeypatch, capsys, data_dir):
    case = CASES[name]
    scratch(tmp_path)
    monkeypatch.setenv("METAHW_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    _tripwires(monkeypatch)
    argv = [a.format(tmp=tmp_path, **{k: str(v) for k, v in shared.items()}) for a in case.argv]
    before = tree(tmp_path), tree(shared["root"])
    capsys.readouterr()
    code = run(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}; stderr: {err!r}; stdout: {out[-500:]!r}"
    assert len(lines) == 1 and lines[0].startswith("metahw: error: "), err
    assert case.says.lower() in lines[0].lower(), lines[0]
    assert (tree(tmp_path), tree(shared["root"])) == before, "the command changed files although it refused"
