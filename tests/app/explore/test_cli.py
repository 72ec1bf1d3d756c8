"""`metahw explore` refuses bad input with one line and exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.app.explore.fakes import fake_trial

BASE = ("explore", "zoo:protonet", "--target", "ecp5-25k", "--no-progress")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bits", "8..4"), "--bits range must be A..B with A <= B"),
        (("--bits", "1..4"), "--bits values must be integers in 2..16"),
        (("--lanes", "3,8"), "--lanes values must be powers of two"),
        (("--objective", "speed"), "--objective takes distinct names"),
        (("--workers", "2", "--ray", "127.0.0.1:6379"), "either --workers"),
        (("--workers", "0"), "--workers must be >= 1"),
        (("--episodes", "1"), "--episodes must be >= 2"),
        (("--budget", "0"), "--budget': Input should be greater than or equal to 1"),
        (("--widths", "32"), "--widths 32: no checkpoint has that backbone width"),
        (("--target", "nope"), "unknown target 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message):
    result = cli(*BASE, "-o", tmp_path / "out", *args)
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out" / "optuna.journal").exists()


def test_unknown_checkpoint(cli, tmp_path):
    result = cli("explore", "zoo:nothing", "--target", "ecp5-25k", "-o", tmp_path)
    assert result.code == 2 and "no shipped checkpoint zoo:nothing" in result.stderr


def test_a_run_writes_the_front_and_a_rerun_resumes(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("metahw.app.explore.trial.evaluate_design", fake_trial)
    args = (*BASE, "--bits", "4,8", "--lanes", "4,16", "--workers", "1", "-o", tmp_path)
    result = cli(*args)
    assert result.code == 0, result.stderr
    assert (
        "Pareto front on ecp5-25k" in result.stdout
        and "4 trials (grid of 4; 0 from an earlier run, 4 now" in result.stdout
    )
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == 4
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["trials"] == 4 and pareto["feasible"] == 3 and pareto["front"]
    assert (tmp_path / "pareto.png").is_file()
    again = cli(*args)
    assert again.code == 0 and "4 from an earlier run, 0 now" in again.stdout
