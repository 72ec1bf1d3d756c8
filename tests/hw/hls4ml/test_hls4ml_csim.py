"""The compiled hls4ml C simulation of every kernel equals the golden executor, and differences are caught.

The g++ build checks that use the all-kernels design are here too (the rest of them are in
test_hls4ml_gxx.py): with `--dist loadfile` one worker then builds that design once.
"""

from __future__ import annotations

import numpy as np
import pytest

from metahw.compiler.golden import execute
from metahw.hw.hls4ml import HlsMismatch, HlsSimulation, ProjectOptions, build_design, simulation
from metahw.hw.hls4ml.golden_steps import golden_steps
from metahw.hw.hls4ml.gxx import cache_root, prelude_text
from metahw.hw.hls4ml.taps import Source
from metahw.hw.hls4ml.testbench import run_testbench
from tests.hw.hls4ml.hls_programs import all_kernels_program, random_inputs


def test_every_kernel_equals_golden_on_every_integer(all_kernels):
    program, sim = all_kernels.program, all_kernels.simulation
    wrapped: dict[str, int] = {}
    for episode in range(6):
        inputs = random_inputs(program, episode)
        result = sim.run_episode(inputs, episode)  # raises HlsMismatch at the first difference
        golden = execute(program, inputs)
        for buf in program.buffers_of("output"):
            assert np.array_equal(result.outputs[buf.name], golden.values[buf.name]), buf.name
        assert result.compared > 1000
        for tensor, count in golden.saturation.items():
            wrapped[tensor] = wrapped.get(tensor, 0) + count
    # the modes are exercised: values wrapped around in the embedding and in the head
    assert wrapped["query.b3"] > 0 and wrapped["scores"] > 0


def _corrupt(monkeypatch: pytest.MonkeyPatch, source: Source, index: tuple[int, ...]) -> None:
    def corrupted(program, inputs):  # noqa: ANN001, ANN202
        steps = golden_steps(program, inputs)
        value = steps[source].copy()
        value[index] += 1
        return steps | {source: value}

    monkeypatch.setattr(simulation, "golden_steps", corrupted)


@pytest.mark.parametrize(
    ("source", "index", "message"),
    [
        (
            Source("query.c2", "query.b2"),
            (1, 2, 0, 1),
            r"layer 'block1_relu' \(buffer 'query.b2' after op 'query.c2'\), episode 7, query image 1, "
            r"element \(2, 0, 1\)",
        ),
        (
            Source("step1", "head.weight"),
            (1, 2),
            r"layer 'step1_weight' \(buffer 'head.weight' after op 'step1'\), episode 7, query image 0, "
            r"element \(1, 2\)",
        ),
        (
            Source("l2", "scores"),
            (3, 1),
            r"output 'scores' \(layer 'scores_out'\), episode 7, query image 3, element \(1,\)",
        ),
    ],
)
def test_the_first_difference_names_layer_buffer_sample_and_element(all_kernels, monkeypatch, source, index, message):
    _corrupt(monkeypatch, source, index)
    with pytest.raises(HlsMismatch, match=message):
        all_kernels.simulation.run_episode(random_inputs(all_kernels.program, 7), 7)


def test_the_testbench_runs_like_vitis_csim_on_its_data_files(all_kernels):
    build = all_kernels.build
    results, expected = run_testbench(build.folder, "metahw_episode", len(build.design.outputs))
    assert results.shape == expected.shape == (build.testbench_samples, 35)
    np.testing.assert_allclose(results, expected, rtol=1e-5, atol=0)  # the log prints 6 significant digits
    assert np.count_nonzero(expected) > 100


def test_the_prelude_compiles_hls4ml_im2col_code_at_O0_after_its_own_includes(all_kernels):
    prelude = prelude_text(all_kernels.build.folder, "metahw_episode").splitlines()
    code_gen = prelude.index('#include "nnet_utils/nnet_code_gen.h"')
    assert prelude[code_gen - 2 : code_gen + 2] == [
        "#pragma GCC push_options",
        '#pragma GCC optimize("O0")',
        '#include "nnet_utils/nnet_code_gen.h"',
        "#pragma GCC pop_options",
    ]
    assert prelude[1] == '#include "metahw_episode.h"' and '#include "nnet_utils/nnet_mult.h"' in prelude[:code_gen]


def test_a_rebuilt_design_links_from_the_cache_and_a_changed_one_is_compiled(all_kernels, tmp_path):
    options = ProjectOptions()
    again = HlsSimulation.build(all_kernels.simulation.design, tmp_path / "again", options)  # fixture built it
    assert again.compile_seconds < 5
    again.run_episode(random_inputs(all_kernels.program, 3), 3)  # raises HlsMismatch at a difference

    # other rounding and overflow modes: the same top-level .cpp, other types in the headers
    program = all_kernels_program("truncate", "saturate")
    objects = set(cache_root().glob("*.o"))
    changed = HlsSimulation.build(build_design(program), tmp_path / "changed", options)
    top = "firmware/metahw_episode.cpp"
    assert (tmp_path / "changed" / top).read_text() == (tmp_path / "again" / top).read_text()
    assert len(set(cache_root().glob("*.o")) - objects) == 2  # both translation units compiled anew
    for episode in range(2):
        changed.run_episode(random_inputs(program, episode), episode)
