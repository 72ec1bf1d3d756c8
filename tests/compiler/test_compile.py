"""compile_episode / save_build (compile.py), calibration, the embedding/head split (stages.py), episode IO."""

import json

import numpy as np
import pytest
import torch

from metahw.compiler.calibrate import calibrate
from metahw.compiler.compile import REPORT_FILE, episode_feeds, episode_shape, save_build
from metahw.compiler.episode_io import program_inputs, program_logits
from metahw.compiler.golden import execute
from metahw.compiler.kernels import ArgMax, ArgMin
from metahw.compiler.program import Program
from metahw.compiler.stages import embedding_program, head_program
from metahw.errors import UserError
from metahw.models.episodes import EpisodeSampler
from metahw.models.export import exported_backbone, reference_logits

STAGE_CASES = [("protonet", None), ("matchingnet", None), ("protomaml", 2), ("anil", 2)]


def _episodes(split, n, queries=2, seed=3):
    sampler = EpisodeSampler(split, 3, 2, queries, seed=seed)
    return [sampler.sample() for _ in range(n)]


def test_report_describes_every_buffer(compiled):
    _, result = compiled("protomaml", bits=8, inner_steps=2)
    program, report = result.program, result.report()
    assert report["config"] == result.config.to_dict() and report["config"]["bits"] == 8
    assert report["meta"] == program.meta.to_json()
    assert report["ops"] == [op.op for op in program.ops]
    weight_bits = sum(int(np.prod(b.shape)) * b.qformat.bits for b in program.buffers if b.kind == "weight")
    assert report["weight_bytes"] == weight_bits // 8
    conv_macs = 2 * 6 * 9 * 8 * (28 * 28 * 1 + 14 * 14 * 8 + 7 * 7 * 8 + 3 * 3 * 8)  # support + query, 6 images each
    assert sum(op.macs(program.buffer_map) for op in program.ops if op.op == "Conv2d") == conv_macs
    assert report["macs"] == sum(op.macs(program.buffer_map) for op in program.ops) > conv_macs
    rows = {row["name"]: row for row in report["buffers"]}
    assert list(rows) == [b.name for b in program.buffers]
    for buf in program.buffers:
        row, fmt = rows[buf.name], buf.qformat
        assert (row["bits"], row["frac"], row["signed"], row["format"]) == (fmt.bits, fmt.frac, fmt.signed, str(fmt))
        assert row["kind"] == buf.kind and row["shape"] == list(buf.shape)
        assert row["representable"] == [fmt.min_int * 2.0**-fmt.frac, fmt.max_int * 2.0**-fmt.frac]
    assert rows["support.block1.pool"]["calibrated"] == list(result.ranges["block1.pool"])
    assert rows["query.block1.pool"]["calibrated"] == list(result.ranges["block1.pool"])
    assert rows["support_x"]["calibrated"] == list(result.ranges["support_x"])
    assert rows["head.weight"]["calibrated"] is None and rows["block0.conv.weight"]["channel_fracs"] is None
    json.dumps(report)  # JSON-ready


def test_calibration_ranges_are_the_float_extremes(learners, val_split):
    exported = learners.export("protomaml", inner_steps=2)
    feeds = episode_feeds(val_split, 3, 2, 2, 3, seed=4)
    assert len(feeds) == 3 and all(f["support_y"].shape == (6, 3) for f in feeds)
    np.testing.assert_array_equal(feeds[0]["support_y"].sum(axis=1), np.ones(6))
    ranges = calibrate(exported.model, feeds)
    images = np.concatenate([np.concatenate([f["support_x"], f["query_x"]]) for f in feeds])
    assert ranges["support_x"] == (
        float(min(f["support_x"].min() for f in feeds)),
        float(max(f["support_x"].max() for f in feeds)),
    )
    backbone = exported_backbone(exported.learner)
    with torch.no_grad():
        x = torch.from_numpy(images)
        for i, block in enumerate(backbone.blocks):
            x = block(x)
            np.testing.assert_allclose(ranges[f"block{i}.pool"], (float(x.min()), float(x.max())), rtol=1e-5, atol=1e-5)
    logits = []
    for f in feeds:
        args = (torch.from_numpy(f["support_x"]), torch.from_numpy(f["support_y"]), torch.from_numpy(f["query_x"]))
        logits.append(reference_logits(exported.learner, exported.spec, *args).numpy())
    np.testing.assert_allclose(ranges["logits"], (np.min(logits), np.max(logits)), rtol=1e-4)
    assert "head_w_2" in ranges and "prediction" not in ranges
    assert episode_shape(exported.model) == (3, 2)


def test_save_build_writes_and_replaces(compiled, tmp_path):
    _, r16 = compiled("protonet", bits=16)
    _, r8 = compiled("protonet", bits=8)
    out = save_build(r16, tmp_path / "build")
    assert sorted(p.name for p in out.iterdir()) == ["program.json", REPORT_FILE, "weights.npz"]
    assert Program.load(out) == r16.program
    assert json.loads((out / REPORT_FILE).read_text()) == json.loads(json.dumps(r16.report()))
    save_build(r8, out)
    assert sorted(p.name for p in out.iterdir()) == ["program.json", REPORT_FILE, "weights.npz"]
    assert Program.load(out) == r8.program != r16.program
    assert [p.name for p in tmp_path.iterdir()] == ["build"]  # no temporary or old folders left
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(UserError, match=r"holds files that are not an earlier build \(notes.txt\);"):
        save_build(r16, out)
    assert Program.load(out) == r8.program and (out / "notes.txt").read_text() == "the user's"


@pytest.mark.parametrize(("algorithm", "steps"), STAGE_CASES)
def test_embedding_and_head_programs_equal_the_whole_program(algorithm, steps, compiled, test_split):
    program = compiled(algorithm, inner_steps=steps)[1].program
    embed, head_prog = embedding_program(program, 6), head_program(program)
    assert all(op.name.startswith("query.") for op in embed.ops)
    assert [b.name for b in embed.buffers_of("input")] == ["query_x"]
    assert [b.name for b in embed.buffers_of("output")] == ["query.features"]
    assert {b.name for b in head_prog.buffers_of("input")} == {"support.features", "query.features", "support_labels"}
    assert embed.ops == tuple(op for op in program.ops if op.name.startswith("query."))
    assert head_prog.ops == tuple(op for op in program.ops if not op.name.startswith(("support.", "query.")))
    small = embedding_program(program, 4)
    assert small.buffer_map["query_x"].shape == (4, 1, 28, 28) and small.meta.queries == 4
    for ep in _episodes(test_split, 3):
        inputs = program_inputs(program, ep)
        whole = execute(program, inputs)
        support = execute(embed, {"query_x": inputs["support_x"]})
        query = execute(embed, {"query_x": inputs["query_x"]})
        for name in (b.name for b in embed.buffers if b.kind in ("activation", "output")):
            np.testing.assert_array_equal(query.values[name], whole.values[name], err_msg=name)
            twin = name.replace("query.", "support.", 1)
            np.testing.assert_array_equal(support.values[name], whole.values[twin], err_msg=twin)
        part = execute(small, {"query_x": inputs["query_x"][:4]})  # per image: batch size is free
        np.testing.assert_array_equal(part.values["query.features"], whole.values["query.features"][:4])
        run = execute(
            head_prog,
            {
                "support.features": support.values["query.features"],
                "query.features": query.values["query.features"],
                "support_labels": inputs["support_labels"],
            },
        )
        assert set(run.values) == set(head_prog.buffer_map)
        for name, value in run.values.items():
            np.testing.assert_array_equal(value, whole.values[name], err_msg=name)
        for name, count in run.saturation.items():
            assert count == whole.saturation[name], name
        if steps:  # the adapted head state itself, not only its predictions
            assert np.any(run.values["head.weight"] != program.weights.get("head.weight", 0))


def test_program_inputs_quantise_pixels_with_the_program_format(compiled, test_split):
    ep = _episodes(test_split, 1)[0]
    for rounding, override in (("truncate", None), ("half_up", {"images": {"bits": 8, "frac": 3}})):
        config = {"rounding": rounding} if override is None else {"overrides": override}
        program = compiled("protonet", bits=4, **config)[1].program
        fmt = program.buffer_map["support_x"].qformat
        if override is None:
            assert (fmt.bits, fmt.signed) == (4, False)
        else:
            assert (fmt.bits, fmt.frac, fmt.signed) == (8, 3, False)
        inputs = program_inputs(program, ep)
        assert set(inputs) == {"support_x", "query_x", "support_labels"}
        for name, images in (("support_x", ep.support_x), ("query_x", ep.query_x)):
            scaled = images.astype(np.float64) * 2.0**fmt.frac
            want = np.floor(scaled) if rounding == "truncate" else np.floor(scaled + 0.5)
            want = np.clip(want, 0, fmt.max_int).astype(np.int64)
            assert inputs[name].dtype == np.int64
            np.testing.assert_array_equal(inputs[name], want)
        assert len(np.unique(inputs["query_x"])) > 2  # grey levels survive, so the test has teeth
        np.testing.assert_array_equal(inputs["support_labels"], ep.support_y)
        assert inputs["support_labels"].dtype == np.int64


@pytest.mark.parametrize(
    ("algorithm", "steps", "reduce", "sign"),
    [
        ("protonet", None, ArgMin, -1.0),
        ("protomaml", 1, ArgMax, 1.0),
        ("matchingnet", None, ArgMax, 1.0),
    ],
)
def test_program_logits(algorithm, steps, reduce, sign, compiled, test_split):
    program = compiled(algorithm, inner_steps=steps)[1].program
    assert isinstance(program.ops[-1], reduce)
    fmt = program.buffer_map["scores"].qformat
    for ep in _episodes(test_split, 2):
        run = execute(program, program_inputs(program, ep))
        scores = run.values["scores"]
        logits = program_logits(program, scores)
        np.testing.assert_array_equal(logits, sign * scores.astype(np.float64) * 2.0**-fmt.frac)
        if algorithm == "protonet":
            assert np.all(logits <= 0)  # minus squared distances
        np.testing.assert_array_equal(logits.argmax(-1), run.values["prediction"])
