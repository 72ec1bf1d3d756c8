"""`metahw export` and `metahw compile`: outputs, options, and one-line errors that leave nothing behind."""

import json

import onnx
import pytest

from metahw.compiler.program import Program
from metahw.models.checkpoint import Checkpoint, save_checkpoint
from metahw.qformat import QFormat

BUILD_FILES = ["program.json", "quantisation.json", "weights.npz"]


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, learners):
    path = tmp_path_factory.mktemp("onnx") / "protonet.onnx"
    onnx.save_model(learners.export("protonet", width=4).model, path)
    return path


def _edited(onnx_file, tmp_path, edit):
    model = onnx.load(onnx_file)
    edit(model)
    path = tmp_path / "edited.onnx"
    onnx.save_model(model, path)
    return path


def _to_sigmoid(model):
    next(n for n in model.graph.node if n.name == "block1.relu").op_type = "Sigmoid"


def _to_32x32(model):
    for dim in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[dim].dim_value = 32


def test_compile_writes_a_build(cli, onnx_file, tmp_path):
    out = tmp_path / "build"
    result = cli("compile", onnx_file, "--out", out, "--calibration-episodes", 2)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: 13 ops (Conv2d, Flatten, PrototypeAccumulate, Distance, ArgMin)")
    assert "support.block0.pool" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == BUILD_FILES
    program = Program.load(out)
    assert (program.meta.algorithm, program.meta.ways, program.meta.shots, program.meta.queries) == (
        "protonet",
        3,
        2,
        3,
    )
    report = json.loads((out / "quantisation.json").read_text())
    assert report["config"]["bits"] == 8 and report["ops"] == [op.op for op in program.ops]
    assert program.buffer_map["block0.conv.weight"].qformat.bits == 8


def test_compile_options_reach_the_program(cli, onnx_file, tmp_path):
    overrides = tmp_path / "formats.yaml"
    overrides.write_text("tensors:\n  block2.pool: {bits: 9, frac: 4}\n")
    out = tmp_path / "build"
    result = cli(
        "compile",
        onnx_file,
        "-o",
        out,
        "--bits",
        6,
        "--head-bits",
        12,
        "--per-channel",
        "--rounding",
        "half_even",
        "--overflow",
        "wrap",
        "--queries",
        5,
        "--overrides",
        overrides,
        "--calibration-episodes",
        2,
    )
    assert result.code == 0, result.stderr
    program = Program.load(out)
    assert (program.meta.rounding, program.meta.overflow, program.meta.queries) == ("half_even", "wrap", 5)
    buffers = program.buffer_map
    assert buffers["query_x"].shape == (5, 1, 28, 28)
    assert buffers["block1.conv.weight"].qformat.bits == 6 and buffers["block1.conv.weight"].channel_fracs
    assert buffers["support.block2.pool"].qformat == QFormat(9, 4, signed=False)
    config = json.loads((out / "quantisation.json").read_text())["config"]
    assert config["head_bits"] == 12 and config["overrides"] == {"block2.pool": {"bits": 9, "frac": 4}}


def test_recompiling_replaces_the_build(cli, onnx_file, tmp_path):
    out = tmp_path / "build"
    assert cli("compile", onnx_file, "--out", out, "--bits", 8, "--calibration-episodes", 2).code == 0
    assert cli("compile", onnx_file, "--out", out, "--bits", 4, "--calibration-episodes", 2).code == 0
    assert sorted(p.name for p in out.iterdir()) == BUILD_FILES
    assert Program.load(out).buffer_map["block0.conv.weight"].qformat.bits == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]
    (out / "notes.txt").write_text("mine")  # a file the compiler did not write: the build is no longer replaced
    assert cli("compile", onnx_file, "--out", out, "--bits", 8, "--calibration-episodes", 2).code == 2
    assert (out / "notes.txt").read_text() == "mine" and Program.load(out).buffer_map[
        "block0.conv.weight"
    ].qformat.bits == 4


@pytest.mark.parametrize(
    ("make_input", "options", "fragments"),
    [
        (lambda f, d: d / "missing.onnx", [], ["missing.onnx does not exist"]),
        (lambda f, d: _write(d / "cut.onnx", f.read_bytes()[: f.stat().st_size // 2]), [], ["not a valid ONNX model"]),
        (
            lambda f, d: _write(d / "notes.onnx", b"these are not the weights you are looking for\n"),
            [],
            ["not a valid ONNX model"],
        ),
        (lambda f, d: _edited(f, d, _to_sigmoid), [], ["unsupported op Sigmoid", "block1.relu", "Relu"]),
        (lambda f, d: _edited(f, d, _to_32x32), [], ["[n, C, H, W]", "32, 32"]),
        (lambda f, d: f, ["--bits", 1], ["--bits must be an integer in 2..16, got 1"]),
        (lambda f, d: f, ["--bits", 17], ["--bits must be an integer in 2..16, got 17"]),
        (lambda f, d: f, ["--head-bits", 0], ["--head-bits must be"]),
        (lambda f, d: f, ["--rounding", "nearest"], ["--rounding mode 'nearest'", "half_up"]),
        (lambda f, d: f, ["--overflow", "clip"], ["--overflow mode 'clip'", "saturate"]),
        (lambda f, d: f, ["--overrides", "@bad.json"], ["bad.json is not valid JSON/YAML"]),
        (lambda f, d: f, ["--overrides", "@flat.yaml"], ["must hold a mapping 'tensors"]),
        (lambda f, d: f, ["--overrides", "@nobody.yaml"], ["does not exist"]),
        (lambda f, d: f, ["--overrides", "@typo.yaml"], ["block7.pool name no tensor"]),
        (lambda f, d: f, ["--queries", 0], ["--queries", "greater than or equal to 1"]),
        (lambda f, d: f, ["--calibration-episodes", 0], ["--calibration-episodes", "greater than or equal to 1"]),
    ],
)
def test_compile_errors_leave_nothing_behind(make_input, options, fragments, cli, one_line_error, onnx_file, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "bad.json").write_text('{"tensors": {"images": ')
    (inputs / "flat.yaml").write_text("images: {bits: 8}\n")
    (inputs / "typo.yaml").write_text("tensors: {block7.pool: {bits: 8}}\n")
    options = [str(inputs / o[1:]) if str(o).startswith("@") else o for o in options]
    out = tmp_path / "build"
    result = cli("compile", make_input(onnx_file, inputs), "--out", out, "--calibration-episodes", 2, *options)
    one_line_error(result, *fragments)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_export_cli_checks_and_writes(cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "episode.onnx"
    result = cli("export", tiny_checkpoint, "--out", out, "--check-episodes", 2, "--json", "--no-progress")
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["algorithm"] == "protonet" and report["head"] == "proto" and report["ways"] == 5
    check = report["check"]
    assert check["episodes"] == 2 and check["predictions_equal"] and check["max_relative_error"] <= 1e-4
    model = onnx.load(out)
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node if n.domain == "metahw"] == ["ProtoHead"]
    steps = cli("export", tiny_checkpoint, "--out", tmp_path / "sgd.onnx", "--inner-steps", 2, "--check-episodes", 1)
    assert steps.code == 0 and "head sgd, 2 SGD steps" in steps.stdout and "predictions identical: True" in steps.stdout
    build = tmp_path / "build"
    assert cli("compile", out, "--out", build, "--calibration-episodes", 2).code == 0
    assert Program.load(build).meta.ways == 5


def test_export_cli_refuses_bad_inner_steps(cli, one_line_error, tiny_checkpoint, learners, tmp_path):
    out = tmp_path / "episode.onnx"
    one_line_error(
        cli("export", tiny_checkpoint, "--out", out, "--inner-steps", -1), "--inner-steps", "greater than or equal to 0"
    )
    matching = tmp_path / "matching.pt"
    save_checkpoint(Checkpoint(learners.make("matchingnet", width=4)), matching)
    one_line_error(cli("export", matching, "--out", out, "--inner-steps", 1), "Matching Networks", "must be 0")
    one_line_error(cli("export", tiny_checkpoint, "--out", out, "--ways", 1), "--ways", "greater than or equal to 2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matching.pt"]


def test_compile_never_deletes_files_it_did_not_write(cli, onnx_file, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    result = cli("compile", onnx_file, "-o", folder)
    assert result.code == 2 and "holds files that are not an earlier build (mine.txt);" in result.stderr
    assert [p.name for p in folder.iterdir()] == ["mine.txt"] and (folder / "mine.txt").read_text() == "keep me"
    afile = tmp_path / "a_file"
    afile.write_text("x")
    result = cli("compile", onnx_file, "-o", afile)
    assert result.code == 2 and "is a file" in result.stderr and afile.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "mine"]  # no .old, no temporary folder
    build = tmp_path / "build"
    assert cli("compile", onnx_file, "-o", build).code == 0
    assert cli("compile", onnx_file, "-o", build).code == 0  # an earlier build is replaced
    (build / "rtl_p8").mkdir()  # the RTL `simulate --rtl` checked it with: part of the build
    (build / "rtl_p8" / "manifest.json").write_text("{}")
    assert cli("compile", onnx_file, "-o", build).code == 0 and not (build / "rtl_p8").exists()
    (build / "rtl_p8").write_text("a file, not the RTL folder")
    assert cli("compile", onnx_file, "-o", build).code == 2 and (build / "rtl_p8").is_file()
