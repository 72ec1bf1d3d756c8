"""`metahw build --backend hls4ml` and `metahw hls-sim` through the real entry point."""

from __future__ import annotations

import json

import pytest

from tests.hw.hls4ml.hls_programs import tiny_protonet_program


@pytest.fixture
def program_dir(tmp_path):
    """A saved 28x28 3-way 1-shot ProtoNet program (Omniglot episodes fit it)."""
    return tiny_protonet_program().save(tmp_path / "build")


def test_build_writes_a_complete_hls4ml_project(cli, program_dir, tmp_path):
    out = tmp_path / "project"
    result = cli("build", program_dir, "--backend", "hls4ml", "-o", out, "--tb-episodes", "2", "--json")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["testbench_samples"] == 2 * (3 + 3)
    assert report["layers"]["protos"] == "MetahwPrototypeAccumulate" and report["layers"]["block0_conv"] == "Conv2D"
    for name in ("nnet_utils/nnet_metahw.h", "nnet_utils/nnet_metahw_sfu.h", "metahw_episode.cpp", "parameters.h"):
        assert (out / "firmware" / name).is_file(), name
    assert "nnet::metahw::prototypes<config" in (out / "firmware" / "metahw_episode.cpp").read_text()
    assert "Backend: Vitis" in (out / "hls4ml_config.yml").read_text()
    assert (out / "build_prj.tcl").is_file() and (out / "metahw_episode_test.cpp").is_file()
    lines = (out / "tb_data" / "tb_input_features.dat").read_text().splitlines()
    assert len(lines) == 12 and len(lines[0].split()) == 28 * 28 + 1 and lines[3].split()[-1] == "-1.0"
    assert len((out / "tb_data" / "tb_output_predictions.dat").read_text().splitlines()) == 12
    again = cli("build", program_dir, "-o", out, "--hls-backend", "vivado", "--tb-episodes", "0")
    assert again.code == 0 and "hls4ml vivado project" in again.stdout
    assert "Backend: Vivado" in (out / "hls4ml_config.yml").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--backend", "verilog"), "unknown --backend 'verilog'; accepted are hls4ml, amaranth."),
        (("--hls-backend", "quartus"), "unknown --hls-backend 'quartus'; accepted are vitis, vivado"),
        (("--strategy", "fast"), "unknown --strategy 'fast'; accepted are latency, resource"),
    ],
)
def test_build_refuses_bad_options_in_one_sentence(cli, program_dir, tmp_path, args, message):
    result = cli("build", program_dir, "-o", tmp_path / "out", *args)
    assert result.code == 2 and result.stderr.strip() == f"metahw: error: {message}"


def test_build_does_not_overwrite_a_foreign_folder(cli, program_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = cli("build", program_dir, "-o", tmp_path / "mine")
    assert result.code == 2 and "holds files that are not an earlier hls4ml project" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_hls_sim_runs_omniglot_episodes_bit_exact(cli, program_dir, tmp_path):
    result = cli("hls-sim", program_dir, "--episodes", "2", "--project", tmp_path / "csim", "--json", "--no-progress")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["episodes"] == 2 and report["samples"] == 12 and report["mismatches"] == 0
    assert report["integers_compared"] > 2 * 6 * 3 * 14 * 14
    assert "protos" in report["traced_layers"] and report["unchecked_buffers"] == []
    assert report["compile_seconds"] > 0 and report["csim_episodes_per_second"] > 0
    assert (tmp_path / "csim" / "firmware" / "metahw_episode.cpp").is_file()


def test_hls_sim_refuses_zero_episodes(cli, program_dir):
    result = cli("hls-sim", program_dir, "--episodes", "0")
    assert result.code == 2 and result.stderr.strip().startswith("metahw: error: Invalid value for '--episodes'")


def test_simulate_hls_runs_the_hls4ml_c_simulation(cli, program_dir):
    """`metahw simulate --hls` is `metahw hls-sim`: same checks, same refusals (no --lanes needed)."""
    result = cli("simulate", program_dir, "--hls", "--episodes", "0")
    assert result.code == 2 and result.stderr.strip().startswith("metahw: error: Invalid value for '--episodes'")
    missing = cli("simulate", program_dir)
    assert missing.code == 2 and "--lanes (or a --config file) is required" in missing.stderr
