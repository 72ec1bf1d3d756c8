"""`metahw explore`: design-space exploration over (checkpoint/width, bits, lanes), resumable, with a Pareto front."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metahw.app.explore.executors import open_pool
from metahw.app.explore.objectives import parse_objectives
from metahw.app.explore.pareto import front_table, meets_target, pareto_document, pareto_front, write_pareto_json
from metahw.app.explore.space import Candidate, SearchSpace, parse_range, parse_widths, select_widths
from metahw.cli.command import app
from metahw.errors import UserError
from metahw.hardware import MAX_LANES
from metahw.hw.synth.devices import get_device
from metahw.hw.synth.nextpnr import check_pnr_effort
from metahw.outputs import writable_folder

#: bit widths the compiler accepts
BITS_RANGE = (2, 16)


def _candidates(checkpoints: list[str], ways: int, shots: int) -> list[Candidate]:
    from metahw.models.checkpoint import load_checkpoint
    from metahw.models.export import episode_head

    candidates = []
    for label in checkpoints:
        learner = load_checkpoint(label).learner
        episode_head(learner, ways, shots, None)  # an episode shape the learner cannot run fails here, not in a worker
        candidates.append(Candidate(label, learner.backbone_config.width))
    return candidates


@app.command("explore")
def explore_command(
    checkpoints: Annotated[list[str], typer.Argument(help="Checkpoints or zoo:NAME (e.g. one per backbone width).")],
    target: Annotated[str, typer.Option(help="FPGA target of synthesis and place-and-route (e.g. ecp5-25k).")],
    bits: Annotated[str, typer.Option(help="Bit widths: A..B (every integer) or a comma list.")] = "4..8",
    lanes: Annotated[str, typer.Option(help="MAC lanes P: A..B (every power of two) or a comma list.")] = "4..64",
    widths: Annotated[str | None, typer.Option(help="Backbone widths to use (comma list; default: all).")] = None,
    budget: Annotated[int, typer.Option(min=1, help="Completed trials (a smaller space is searched as a grid).")] = 24,
    objective: Annotated[str, typer.Option(help="Objectives among accuracy,latency,luts, in order.")] = (
        "accuracy,latency,luts"
    ),
    episodes: Annotated[int, typer.Option(help="Fixed meta-test episodes for every accuracy.")] = 200,
    ways: int = 5,
    shots: int = 1,
    queries: Annotated[int, typer.Option(help="Query examples per class.")] = 15,
    seed: Annotated[int, typer.Option(help="Seed of the episodes, the calibration and NSGA-II.")] = 0,
    pnr: Annotated[str, typer.Option(help="Placement of every design: timing (timing-driven) or fast.")] = "timing",
    pnr_timeout: Annotated[
        float | None,
        typer.Option(
            help="Stop a design's place-and-route after this many seconds and count it as not fitting "
            "(default: no limit)."
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: the CPU count).")] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray", help="Run trials as Ray tasks on the cluster at this address.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder (rerun to resume).")] = Path("out/explore"),
    data: Annotated[Path | None, typer.Option(help="Omniglot data.")] = None,
    progress: bool = True,
) -> None:
    """Search (checkpoint, bits, lanes) for accuracy, latency and LUTs; print and plot the Pareto front."""
    from metahw.app.explore.plot import plot_pareto
    from metahw.app.explore.study import CONFIG_FILE, run_study
    from metahw.app.explore.trial import TrialSettings, checkpoint_key, evaluate_design

    bit_values = parse_range(bits, "bits", *BITS_RANGE)
    lane_values = parse_range(lanes, "lanes", 1, MAX_LANES, powers_of_two=True)
    width_values = None if widths is None else parse_widths(widths)
    objectives = parse_objectives(objective)
    if workers is not None and ray_address is not None:
        raise UserError("give either --workers (local processes) or --ray ADDRESS (a Ray cluster), not both.")
    if episodes < 2:
        raise UserError(f"--episodes must be >= 2 for a confidence interval (got {episodes}).")
    get_device(target)
    check_pnr_effort(pnr)
    if pnr_timeout is not None and not pnr_timeout > 0:
        raise UserError(f"--pnr-timeout must be a positive number of seconds (got {pnr_timeout:g}).")
    writable_folder(out, "exploration folder", lambda folder: (folder / CONFIG_FILE).is_file())
    candidates = select_widths(_candidates(checkpoints, ways, shots), width_values)
    space = SearchSpace(candidates, bit_values, lane_values)
    out = out.resolve()
    settings = TrialSettings(
        out, target, episodes, ways, shots, queries, seed, data.resolve() if data else None, pnr, pnr_timeout
    )
    identity = {
        "checkpoints": [
            {"checkpoint": c.checkpoint, "width": c.width, "key": checkpoint_key(c.checkpoint)} for c in candidates
        ],
        "bits": bit_values,
        "lanes": lane_values,
        "objectives": [o.name for o in objectives],
        "target": target,
        "episodes": episodes,
        "ways": ways,
        "shots": shots,
        "queries": queries,
        "seed": seed,
        "pnr": pnr,
        "pnr_timeout": pnr_timeout,
    }
    with open_pool(workers, ray_address) as pool:
        outcome = run_study(
            space,
            objectives,
            budget,
            functools.partial(evaluate_design, settings=settings),
            out,
            pool,
            identity,
            seed,
            progress,
        )
    front = pareto_front(outcome.records, objectives)
    document = pareto_document(outcome.records, front, objectives, target)
    write_pareto_json(document, out / "pareto.json")
    plot_pareto(outcome.records, front, out / "pareto.png", target)
    Console(width=max(Console().width, 100)).print(front_table(front, target))  # no wrapped rows when piped
    sampler = f"grid of {space.size}" if outcome.grid else f"NSGA-II over {space.size} designs"
    typer.echo(
        f"{document['trials']} trials ({sampler}; {outcome.resumed} from an earlier run, {outcome.ran} now, "
        f"{outcome.requeued} queued again after an interruption or error); "
        f"{document['feasible']} fit {target}; {sum(map(meets_target, front))} front designs fit and stay "
        f"within 0.5 points of float"
    )
    for row in document["largest_fitting_lanes"]:
        soft = "" if row["dsp_lanes"] is None else f", {row['lanes'] - row['dsp_lanes']} lanes multiplying in LUTs"
        soft += ", single-port activation banks (act_ports 1)" if row["act_ports"] == 1 else ""
        typer.echo(
            f"largest P that fits {target}: {row['checkpoint']} {row['bits']}-bit: P = {row['lanes']}{soft} "
            f"(trial {row['trial']}, {row['latency_ms']:.4g} ms per episode)"
        )
    typer.echo(f"wrote {out / 'trials.jsonl'}, {out / 'pareto.json'}, {out / 'pareto.png'}")
