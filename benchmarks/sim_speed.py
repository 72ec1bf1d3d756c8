"""Cycle-simulator speed and MAC-array utilisation on Conv-4 episodes.

    .venv/bin/python benchmarks/sim_speed.py [--episodes 10] [--queries 15] [--zoo-episodes 100] [--data PATH]

Conv-4 ProtoNets compiled at 8 bits: the shipped `zoo:protonet`, and a random-weight Conv-4 of
width 32 or 64, whichever the zoo model is not (simulation speed and utilisation depend on the
shapes, not on the weights). For 5-way 1-shot and 20-way 1-shot episodes with `--queries`
queries per class:

- speed at P = 8, 32, 64 (G from `default_groups`): simulated cycles per wall-second and
  episodes per second of the simulator alone, over `--episodes` episodes after one warm-up
  episode; the first episode of each row is also checked against the golden executor;
- utilisation at P = 8, 16, 32, 64: lane-MACs / (P x cycles) of every conv layer of the
  support and the query chain.

Then every checkpoint of models/zoo runs `--zoo-episodes` 5-way 1-shot episodes (5 queries per
class) with every buffer of every episode checked against the golden executor.

Prints the tables and writes benchmarks/results/sim_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from metahw.atomic import write_text_atomic
from metahw.compiler.compile import compile_episode
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.golden import execute
from metahw.compiler.kernels import Conv2d
from metahw.compiler.program import Program
from metahw.compiler.quant_config import QuantConfig
from metahw.models.backbone import BackboneConfig
from metahw.models.checkpoint import load_checkpoint
from metahw.models.data import OmniglotSplit, load_omniglot
from metahw.models.episode_sources import omniglot_episodes, omniglot_sampler
from metahw.models.export import episode_head, export_episode
from metahw.models.learners import MetaLearner, build_learner
from metahw.sim import HardwareConfig, Simulator, default_groups, episode_cycles
from metahw.sim.episodes import differences, program_shape, simulate_episodes

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(5, 1), (20, 1)]
SPEED_LANES = (8, 32, 64)
UTIL_LANES = (8, 16, 32, 64)


def learners() -> dict[str, MetaLearner]:
    """The shipped ProtoNet and a random Conv-4 ProtoNet of the other standard width (32 or 64)."""
    zoo = load_checkpoint("zoo:protonet").learner
    width = 32 if zoo.backbone_config.width != 32 else 64
    torch.manual_seed(0)
    return {
        f"zoo:protonet (width {zoo.backbone_config.width})": zoo,
        f"Conv-4 width {width} (random)": build_learner("protonet", BackboneConfig(width=width)).eval(),
    }


def compile_setting(learner: MetaLearner, ways: int, shots: int, queries: int, val: OmniglotSplit) -> Program:
    """The 8-bit program of one episode shape (calibrated on 8 meta-val episodes)."""
    model = export_episode(learner, episode_head(learner, ways, shots, None))
    return compile_episode(model, QuantConfig(bits=8), val, ways * queries, calibration_episodes=8).program


def speed_row(program: Program, lanes: int, test: OmniglotSplit, episodes: int) -> dict:
    """Simulator-only timing over `episodes` episodes (after a warm-up), and a golden check of the first."""
    hw = HardwareConfig(lanes=lanes, groups=default_groups(program, lanes))
    simulator = Simulator(program, hw)
    sampler = omniglot_sampler(test, program_shape(program), seed=0)
    inputs = [program_inputs(program, sampler.sample()) for _ in range(episodes + 1)]
    first = simulator.run(inputs[0])
    matched = not differences(first, execute(program, inputs[0]))
    assert first.total_cycles == episode_cycles(program, hw).total
    started = time.perf_counter()
    for episode in inputs[1:]:
        simulator.run(episode)
    seconds = time.perf_counter() - started
    return {
        "lanes": lanes,
        "groups": hw.groups,
        "cycles_per_episode": first.total_cycles,
        "seconds_per_episode": seconds / episodes,
        "cycles_per_second": first.total_cycles * episodes / seconds,
        "episodes_per_second": episodes / seconds,
        "mac_utilisation": first.utilisation(),
        "golden_match": matched,
    }


def utilisation_row(program: Program, lanes: int, test: OmniglotSplit) -> dict:
    """Utilisation of every conv layer of one simulated episode at P = `lanes`."""
    hw = HardwareConfig(lanes=lanes, groups=default_groups(program, lanes))
    run = Simulator(program, hw).run(
        program_inputs(program, omniglot_sampler(test, program_shape(program), seed=0).sample())
    )
    convs = [op.name for op in program.ops if isinstance(op, Conv2d)]
    return {"lanes": lanes, "groups": hw.groups, "layers": {name: run.utilisation(name) for name in convs}}


def zoo_row(path: Path, episodes: int, test: OmniglotSplit, val: OmniglotSplit) -> dict:
    """`episodes` 5-way 1-shot episodes of one zoo checkpoint, every one checked against the golden executor."""
    learner = load_checkpoint(path).learner
    program = compile_setting(learner, 5, 1, 5, val)
    hw = HardwareConfig(lanes=32, groups=default_groups(program, 32))
    runs = simulate_episodes(program, hw, omniglot_episodes(test, program_shape(program), episodes, seed=0))
    return {
        "checkpoint": path.name,
        "algorithm": learner.algorithm,
        "width": learner.backbone_config.width,
        "lanes": hw.lanes,
        "episodes": episodes,
        "golden_matched": runs.matched,
        "accuracy": runs.accuracy.to_dict(),
        "cycles_per_episode": runs.first.total_cycles,
    }


def main() -> None:
    """Build the programs, measure, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--queries", type=int, default=15, help="queries per class")
    parser.add_argument("--zoo-episodes", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sim_speed.json")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()

    omniglot = load_omniglot(args.data)
    test, val = omniglot.split("test"), omniglot.split("val")
    speed, utilisation = [], []
    for model, learner in learners().items():
        for ways, shots in SETTINGS:
            program = compile_setting(learner, ways, shots, args.queries, val)
            setting = {"model": model, "ways": ways, "shots": shots, "queries": program.meta.queries}
            speed += [setting | speed_row(program, p, test, args.episodes) for p in SPEED_LANES]
            utilisation += [setting | utilisation_row(program, p, test) for p in UTIL_LANES]
    zoo = [zoo_row(path, args.zoo_episodes, test, val) for path in sorted((ROOT / "models" / "zoo").glob("*.pt"))]
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "episodes": args.episodes,
        "speed": speed,
        "utilisation": utilisation,
        "zoo": zoo,
    }
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")

    print(f"{'model':<26} {'episode':<16} {'P':>3} {'G':>2} {'cycles/ep':>11} {'Mcycles/s':>10} {'ep/s':>7} golden")
    for r in speed:
        episode = f"{r['ways']}w{r['shots']}s {r['queries']}q"
        print(
            f"{r['model']:<26} {episode:<16} {r['lanes']:>3} {r['groups']:>2} {r['cycles_per_episode']:>11,} "
            f"{r['cycles_per_second'] / 1e6:>10.1f} {r['episodes_per_second']:>7.2f} "
            f"{'match' if r['golden_match'] else 'MISMATCH'}"
        )
    print()
    layers = [f"{chain}.block{i}" for chain in ("support", "query") for i in range(4)]
    print(f"{'model':<26} {'episode':<16} {'P':>3} {'G':>2} " + " ".join(f"{n:>15}" for n in layers))
    for r in utilisation:
        episode = f"{r['ways']}w{r['shots']}s {r['queries']}q"
        cells = " ".join(f"{100 * r['layers'][n + '.conv']:>14.1f}%" for n in layers)
        print(f"{r['model']:<26} {episode:<16} {r['lanes']:>3} {r['groups']:>2} {cells}")
    print()
    print(f"{'zoo checkpoint':<20} {'algorithm':<12} {'width':>5} {'episodes':>8} {'golden':>12} {'5w1s accuracy':>16}")
    for r in zoo:
        acc = r["accuracy"]
        matched = f"{r['golden_matched']}/{r['episodes']}"
        interval = "" if acc["ci95"] is None else f" +- {100 * acc['ci95']:.2f}"  # None: one episode
        print(
            f"{r['checkpoint']:<20} {r['algorithm']:<12} {r['width']:>5} {r['episodes']:>8} {matched:>12} "
            f"{100 * acc['accuracy']:>9.2f}{interval}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
