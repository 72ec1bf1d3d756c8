"""The cycle simulator as compare's engine (sim/engine.py) and `metahw compare --engine simulator`."""

import json

import numpy as np
import pytest

from metahw.compiler.compare import compare_episodes, omniglot_comparison
from metahw.compiler.compile import compile_calibrated
from metahw.compiler.episode_io import program_inputs
from metahw.compiler.quant_config import QuantConfig
from metahw.hardware import HardwareConfig, derive_hardware
from metahw.sim.engine import simulator_engine
from metahw.sim.simulator import Simulator
from tests.compiler.conftest import export_learner


@pytest.mark.parametrize(("algorithm", "steps"), [("protonet", None), ("protomaml", 2)])
def test_simulator_rows_equal_golden_rows(algorithm, steps, omniglot):
    """Same predictions, saturation counts and statistics as the golden engine; the whole first episode agrees."""
    exported = export_learner(algorithm, inner_steps=steps, width=4)
    chosen, calibration = omniglot_comparison(
        exported.spec, omniglot.split("test"), omniglot.split("val"), episodes=3, queries=2, seed=1
    )
    args = (exported.learner, exported.spec, exported.model, [8, 4], chosen, calibration, False)
    golden = compare_episodes(*args, onnxruntime=False)
    simulated = compare_episodes(*args, engine=simulator_engine(4), onnxruntime=False)
    assert golden["float"] == simulated["float"] and golden["float"]["onnxruntime"] is None
    for bits in ("8", "4"):
        assert np.array_equal(golden["predictions"][f"{bits}-bit"], simulated["predictions"][f"{bits}-bit"])
        row, reference = dict(simulated["fixed"][bits]), golden["fixed"][bits]
        assert (reference["engine"], row.pop("engine")) == ("golden", "simulator, P = 4")
        whole = row.pop("whole_episode")
        assert row == {k: v for k, v in reference.items() if k != "engine"}
        # the whole-program run of episode 0 on the design `build` builds, run here directly
        program = compile_calibrated(
            exported.model, QuantConfig(bits=int(bits)), calibration, queries=chosen.queries
        ).program
        run = Simulator(program, derive_hardware(program, 4)).run(program_inputs(program, chosen[0]))
        assert whole == {"equal": True, "cycles": run.total_cycles}


@pytest.mark.parametrize("design", ["lanes", "config"])
def test_compare_cli_with_the_simulator(design, cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "cmp"
    if design == "lanes":
        chosen = ["--lanes", 4]
    else:
        chosen = ["--config", HardwareConfig(lanes=4, support_bytes=1 << 20).save(tmp_path / "hw.json")]
    args = ["--bits", "8", "--episodes", 2, "--queries", 2, "--engine", "simulator", *chosen, "--out", out]
    result = cli("compare", tiny_checkpoint, *args, "--no-progress")
    assert result.code == 0, result.stderr
    row = json.loads((out / "compare.json").read_text())["fixed"]["8"]
    assert row["engine"] == "simulator, P = 4" and row["whole_episode"]["equal"] is True
    assert f"8-bit on the simulator, P = 4: {row['whole_episode']['cycles']:,} cycles per episode" in result.stdout
