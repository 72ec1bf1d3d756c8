"""The driver with a cheap injected trial function: grid vs NSGA-II, the jsonl, resume, errors, infeasibility."""

from __future__ import annotations

import functools
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest

from metahw.app.explore.executors import Pool, open_pool
from metahw.app.explore.objectives import OBJECTIVES, parse_objectives
from metahw.app.explore.pareto import pareto_front
from metahw.app.explore.study import (
    CONSTRAINT,
    JOURNAL_FILE,
    STUDY_NAME,
    TRIALS_FILE,
    AskTellGridSampler,
    make_sampler,
    read_trials,
    run_study,
    uses_grid,
)
from metahw.errors import UserError
from tests.app.explore.fakes import fake_evaluate, space

ALL = tuple(OBJECTIVES.values())
IDENTITY = {"study": "fake"}


def _run(folder: Path, sp=None, budget: int = 24, evaluate=fake_evaluate, slots: int = 2, identity=IDENTITY):
    with ThreadPoolExecutor(slots) as executor:
        return run_study(sp or space(), ALL, budget, evaluate, folder, Pool(executor, slots), identity, progress=False)


def _study(folder: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / JOURNAL_FILE)))
    return optuna.load_study(study_name=STUDY_NAME, storage=storage)


def _params(record: dict) -> tuple:
    return tuple(sorted(record["params"].items()))


def test_grid_when_the_space_fits_the_budget(tmp_path: Path):
    sp = space(bits=(4, 6, 8), lanes=(4, 16))
    assert uses_grid(sp, 6) and not uses_grid(sp, 5)
    assert isinstance(make_sampler(sp, 6, 0), AskTellGridSampler)
    assert isinstance(make_sampler(sp, 5, 0), optuna.samplers.NSGAIISampler)
    outcome = _run(tmp_path, sp, budget=100)
    assert outcome.grid and outcome.ran == 6
    assert {_params(r) for r in outcome.records} == {_params({"params": d.__dict__}) for d in sp.grid()}


def test_nsga_ii_spends_the_budget_on_a_larger_space(tmp_path: Path):
    sp = space(bits=(3, 4, 5, 6, 7, 8), lanes=(1, 2, 4, 8, 16, 32, 64))
    outcome = _run(tmp_path, sp, budget=9)
    assert not outcome.grid and outcome.ran == 9
    study = _study(tmp_path)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 9
    for trial in complete:
        assert (trial.constraints[CONSTRAINT] <= 0) == trial.user_attrs["record"]["fits"]


def test_nsga_ii_repeats_are_pruned_and_the_budget_buys_distinct_designs(tmp_path: Path):
    sp = space(bits=(4, 6, 8), lanes=(4, 16))  # 6 designs, a budget of 5: NSGA-II proposes repeats
    outcome = _run(tmp_path, sp, budget=5)
    assert not outcome.grid and outcome.ran == 5
    assert len({_params(r) for r in outcome.records}) == 5
    study = _study(tmp_path)
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)


def test_trials_jsonl_holds_every_finished_trial(tmp_path: Path):
    outcome = _run(tmp_path, budget=10)
    lines = (tmp_path / TRIALS_FILE).read_text().splitlines()
    assert len(lines) == 4
    records = [json.loads(line) for line in lines]
    assert records == outcome.records
    assert sorted(r["trial"] for r in records) == [0, 1, 2, 3]
    for record in records:
        assert record["state"] == "complete"
        assert set(record["params"]) == {"checkpoint", "width", "bits", "lanes"}
        assert {"accuracy", "latency_ms", "luts"} <= set(record["objectives"])
        assert {"started", "finished", "wall_s", "timings", "fits", "cycles", "resources"} <= set(record)


def test_resume_after_an_interruption_repeats_no_trial(tmp_path: Path):
    sp = space(bits=(4, 5, 6), lanes=(4, 8, 16, 32))
    log = tmp_path / "calls.log"
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        _run(out, sp, evaluate=functools.partial(fake_evaluate, log=log, interrupt_at=5))
    first = read_trials(out / TRIALS_FILE)
    assert 3 <= len(first) <= 4
    started_first = Counter(log.read_text().splitlines())

    outcome = _run(out, sp, evaluate=functools.partial(fake_evaluate, log=log))
    assert outcome.resumed == len(first) and outcome.requeued == len(started_first) - len(first)
    assert outcome.ran == sp.size - len(first)
    records = read_trials(out / TRIALS_FILE)
    assert len(records) == sp.size and len({_params(r) for r in records}) == sp.size
    calls = Counter(log.read_text().splitlines())
    done_first = {f"w{r['params']['width']} b{r['params']['bits']} P{r['params']['lanes']}" for r in first}
    for label, count in calls.items():
        expected = 2 if label in started_first and label not in done_first else 1
        assert count == expected, label

    again = _run(out, sp, evaluate=functools.partial(fake_evaluate, log=log))
    assert again.ran == 0 and again.requeued == 0 and len(again.records) == sp.size
    assert Counter(log.read_text().splitlines()) == calls


def test_a_failing_trial_is_recorded_and_queued_again(tmp_path: Path):
    log = tmp_path / "calls.log"
    with pytest.raises(RuntimeError, match="synthetic failure"):
        _run(tmp_path, evaluate=functools.partial(fake_evaluate, log=log, fail_at=2), slots=1)
    failed = [r for r in read_trials(tmp_path / TRIALS_FILE) if r["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"].startswith("RuntimeError: synthetic failure")
    outcome = _run(tmp_path, evaluate=functools.partial(fake_evaluate, log=log), slots=1)
    assert outcome.requeued == 1
    complete = [r for r in outcome.records if r["state"] == "complete"]
    assert len(complete) == 4 and failed[0]["params"] in [r["params"] for r in complete]


def test_infeasible_designs_are_kept_but_not_on_the_front(tmp_path: Path):
    sp = space(bits=(4, 8), lanes=(4, 16))
    outcome = _run(tmp_path, sp)
    infeasible = [r for r in outcome.records if not r["fits"]]
    assert [(r["params"]["bits"], r["params"]["lanes"]) for r in infeasible] == [(8, 16)]
    front = pareto_front(outcome.records, ALL)
    assert infeasible[0] not in front and front


def test_another_study_in_the_same_folder_is_refused(tmp_path: Path):
    _run(tmp_path, budget=4)
    with pytest.raises(UserError, match="other settings"):
        _run(tmp_path, budget=4, identity={"study": "other"})


def test_the_process_pool_runs_trials(tmp_path: Path):
    with open_pool(workers=2) as pool:
        outcome = run_study(
            space(), parse_objectives("latency,luts"), 4, fake_evaluate, tmp_path, pool, IDENTITY, progress=False
        )
    assert outcome.ran == 4 and {r["state"] for r in outcome.records} == {"complete"}


def test_a_damaged_trials_file_is_repaired_from_the_study(tmp_path: Path):
    log = tmp_path / "calls.log"
    evaluate = functools.partial(fake_evaluate, log=log)
    _run(tmp_path / "r", evaluate=evaluate)
    path = tmp_path / "r" / TRIALS_FILE
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])  # the third half-written, the fourth lost
    outcome = _run(tmp_path / "r", evaluate=evaluate)
    assert outcome.ran == 0 and len(log.read_text().splitlines()) == 4
    assert sorted(r["trial"] for r in read_trials(path)) == [0, 1, 2, 3] and path.read_text().endswith("\n")
