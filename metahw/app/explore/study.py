"""The exploration driver: optuna ask-and-tell around a pool of workers, persisted so that a rerun resumes.

The study lives in an optuna journal file in the results folder; every finished trial is also
a line of `trials.jsonl` (and the same record is a user attribute of its optuna trial, so the
two can always be brought back in step). A second run with the same arguments resumes:
completed trials are kept, trials left running by an interrupted run (or failed by an error)
are queued again once, and the budget counts completed trials.

Sampler: a grid (`GridSampler`) when the space has no more designs than the budget, else
NSGA-II, seeded, with "does not fit the target" as its constraint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, Trial, TrialState

from metahw.app.explore.executors import Pool
from metahw.app.explore.objectives import Objective, objective_values, violation
from metahw.app.explore.space import PARAMS, Design, SearchSpace
from metahw.atomic import write_text_atomic
from metahw.errors import UserError
from metahw.progress import StatusTracker

STUDY_NAME = "metahw-explore"
JOURNAL_FILE = "optuna.journal"
TRIALS_FILE = "trials.jsonl"
CONFIG_FILE = "explore.json"
LOCK_FILE = ".explore.lock"
RECORD_ATTR = "record"
#: name of the optuna constraint: <= 0 when the design fits the target
CONSTRAINT = "fits"
#: repeats the sampler may propose in a row before an unseen design is queued instead
MAX_REPEATS = 100

#: the trial function: a design -> a dict with at least `objectives` {accuracy, latency_ms, luts} and `fits`
Evaluator = Callable[[Design], dict]


@dataclass(frozen=True)
class StudyOutcome:
    """Every finished trial's record (trial order), the sampler used, and what this run did."""

    records: list[dict]
    grid: bool
    resumed: int
    requeued: int
    ran: int


def uses_grid(space: SearchSpace, budget: int) -> bool:
    """True when the whole space fits in the budget (then every design is evaluated once)."""
    return space.size <= budget


def nsga_population(budget: int) -> int:
    """NSGA-II generation size for a budget: about four generations, between 4 and 50 designs."""
    return min(50, max(4, budget // 4))


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler for ask-and-tell: the driver stops by its own count (`Study.stop` works only in `optimize`)."""

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        """Nothing: GridSampler's own would call `study.stop()`, which raises outside `optimize`."""


def make_sampler(space: SearchSpace, budget: int, seed: int) -> optuna.samplers.BaseSampler:
    """A grid over the whole space when it fits the budget, else a seeded NSGA-II.

    NSGA-II prefers designs that fit: every trial carries a constraint (`Trial.set_constraint`,
    optuna 5's replacement of `constraints_func`), <= 0 when the design fits.
    """
    if uses_grid(space, budget):
        return AskTellGridSampler(space.choices(), seed=seed)
    return optuna.samplers.NSGAIISampler(population_size=nsga_population(budget), seed=seed)


@contextlib.contextmanager
def _exclusive(results_dir: Path) -> Iterator[None]:
    with open(results_dir / LOCK_FILE, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(
                f"another `metahw explore` is running on {results_dir}; wait for it or use another -o."
            ) from None
        yield


def _check_identity(path: Path, identity: dict) -> None:
    identity = json.loads(json.dumps(identity))
    if not path.is_file():
        write_text_atomic(path, json.dumps(identity, indent=1) + "\n")
        return
    stored = json.loads(path.read_text())
    differs = sorted(k for k in stored.keys() | identity.keys() if stored.get(k) != identity.get(k))
    if differs:
        raise UserError(
            f"{path.parent} holds an exploration with other settings ({', '.join(differs)} differ); "
            "run with the same arguments to resume it, or give another -o folder."
        )


def _key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def _requeue(study: optuna.Study) -> int:
    """Fail the trials an interrupted run left running; queue once each such design not completed since.

    A trial interrupted before all its parameters were drawn has no design to repeat.
    """
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state == TrialState.RUNNING:
            study.tell(trial.number, state=TrialState.FAIL)
    settled = {_key(t.params) for t in trials if t.state == TrialState.COMPLETE}
    settled |= {_key(t.params) for t in trials if t.state == TrialState.WAITING}
    queued = 0
    for trial in trials:
        unfinished = trial.state in (TrialState.RUNNING, TrialState.FAIL) and set(trial.params) == set(PARAMS)
        if unfinished and _key(trial.params) not in settled:
            study.enqueue_trial(trial.params)
            settled.add(_key(trial.params))
            queued += 1
    return queued


def _ask_new(study: optuna.Study, space: SearchSpace, seen: set[tuple]) -> tuple[Trial, Design]:
    """Ask for a design not evaluated (or in flight) yet; adds it to `seen`.

    NSGA-II may propose a design again. Such a trial is told PRUNED: NSGA-II ignores pruned
    trials and the budget counts only completed ones, so the budget buys distinct designs.
    After MAX_REPEATS repeats in a row the first unseen design of the grid is queued.
    """
    choices = space.choices()
    for attempt in range(MAX_REPEATS + 1):
        if attempt == MAX_REPEATS:
            unseen = next(d for d in space.grid() if _key(_params(d)) not in seen)
            study.enqueue_trial(_params(unseen))
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, choices[name]) for name in PARAMS}
        if _key(params) not in seen:
            seen.add(_key(params))
            return trial, space.design(params)
        study.tell(trial, state=TrialState.PRUNED)
    raise AssertionError("an enqueued unseen design came back as a repeat")


def _params(design: Design) -> dict:
    return {"checkpoint": design.checkpoint, "bits": design.bits, "lanes": design.lanes}


def _finished_records(study: optuna.Study) -> list[dict]:
    records = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        record = trial.user_attrs.get(RECORD_ATTR)
        if record is not None and (trial.state == TrialState.COMPLETE or "error" in record):
            records.append(record)
    return records


def read_trials(path: Path) -> list[dict]:
    """The records of a trials.jsonl file (an unparsable line, such as a half-written last one, is skipped)."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    return records


def _sync_trials_file(path: Path, records: list[dict]) -> list[dict]:
    """Bring trials.jsonl in step with the study's records (appended if missing, damaged lines dropped)."""
    text = path.read_text() if path.is_file() else ""
    kept = read_trials(path)
    numbers = {(r.get("trial"), r.get("state")) for r in kept}
    missing = [r for r in records if (r["trial"], r["state"]) not in numbers]
    damaged = len(kept) != len([line for line in text.splitlines() if line.strip()]) or not text.endswith("\n")
    if missing or (text and damaged):
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in [*kept, *missing]))
    return [*kept, *missing]


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _status(record: dict) -> str:
    values = record["objectives"]
    luts = "-" if values.get("luts") is None else f"{values['luts']:,} LUT"
    fits = "" if record["fits"] else ", does not fit"
    design = Design(**record["params"]).label()
    return f"{design}: {100 * values['accuracy']:.2f}%, {values['latency_ms']:.3g} ms, {luts}{fits}"


def run_study(
    space: SearchSpace,
    objectives: tuple[Objective, ...],
    budget: int,
    evaluate: Evaluator,
    results_dir: Path,
    pool: Pool,
    identity: dict,
    seed: int = 0,
    progress: bool = True,
) -> StudyOutcome:
    """Explore `space` with `evaluate` on `pool` until `budget` trials (or the whole grid) are complete.

    `identity` (the arguments that define the study) is stored on the first run; a later run
    with a different one is refused. Each finished trial is told to optuna and appended to
    trials.jsonl. An exception from `evaluate` records the trial as failed and propagates
    (a KeyboardInterrupt leaves its trial running, to be re-run by the next run).
    """
    if budget < 1:
        raise UserError(f"`budget` must be >= 1, got {budget}.", ("budget",))
    results_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(results_dir):
        _check_identity(results_dir / CONFIG_FILE, identity)
        storage = JournalStorage(JournalFileBackend(str(results_dir / JOURNAL_FILE)))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=storage,
            sampler=make_sampler(space, budget, seed),
            directions=[o.direction for o in objectives],
            load_if_exists=True,
        )
        requeued = _requeue(study)
        trials_file = results_dir / TRIALS_FILE
        records = _sync_trials_file(trials_file, _finished_records(study))
        total = space.size if uses_grid(space, budget) else budget
        done = resumed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        seen = {_key(t.params) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        pending: dict[Future, tuple[Trial, Design, str, float]] = {}
        with StatusTracker(total, "explore", enabled=progress) as bar:
            bar.advance(min(done, total), status=f"{resumed} complete before this run" if resumed else "")
            while True:
                while done + len(pending) < total and len(pending) < pool.slots:
                    trial, design = _ask_new(study, space, seen)
                    pending[pool.executor.submit(evaluate, design)] = (trial, design, _now(), time.perf_counter())
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    trial, design, started, t0 = pending.pop(future)
                    record = {"trial": trial.number, "params": asdict(design), "started": started}
                    try:
                        result = future.result()
                    except Exception as exc:
                        record.update(state="failed", error=f"{type(exc).__name__}: {exc}", finished=_now())
                        trial.set_user_attr(RECORD_ATTR, record)
                        study.tell(trial, state=TrialState.FAIL)
                        _append(trials_file, record)
                        raise
                    record.update(state="complete", **result, finished=_now(), wall_s=time.perf_counter() - t0)
                    trial.set_user_attr(RECORD_ATTR, record)
                    trial.set_constraint(CONSTRAINT, violation(record))
                    study.tell(trial, objective_values(record, objectives))
                    _append(trials_file, record)
                    records.append(record)
                    done += 1
                    bar.advance(status=_status(record))
        return StudyOutcome(records, uses_grid(space, budget), resumed, requeued, done - resumed)
