import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from metahw.compiler import kernels as K
from metahw.compiler.program import Buffer, Program, ProgramMeta
from metahw.errors import UserError
from metahw.qformat import QFormat
from tests.compiler.program_fixtures import matchingnet_program, protomaml_program, protonet_program

BUILDERS = [protonet_program, protomaml_program, matchingnet_program]


@pytest.mark.parametrize("build", BUILDERS)
def test_save_load_round_trip_is_identical(build, tmp_path):
    program = build()
    program.save(tmp_path / "p")
    loaded = Program.load(tmp_path / "p")
    assert loaded == program
    assert loaded.to_json() == program.to_json()
    assert all(loaded.weights[k].dtype == np.int64 for k in loaded.weights)
    # saving the loaded program reproduces the same document
    loaded.save(tmp_path / "q")
    assert (tmp_path / "p" / "program.json").read_text() == (tmp_path / "q" / "program.json").read_text()


def test_every_op_kind_round_trips_through_json():
    ops = [op for build in BUILDERS for op in build().ops]
    extra = [
        K.Requant(name="r", input="a", output="b", relu=True),
        K.MaxPool2d(name="m", input="a", output="b"),
        K.AvgPool2d(name="v", input="a", output="b"),
        K.GlobalAvgPool(name="g", input="a", output="b", scale=5243, shift=20),
        K.Add(name="s", input="a", residual="c", output="b", leaky_slope=205, leaky_frac=11),
        K.Conv2d(
            name="c",
            input="a",
            weight="w",
            output="b",
            padding=0,
            stride=2,
            leaky_slope=164,
            leaky_frac=14,
            pool=True,
            pool_mode="avg",
        ),
        K.Flatten(name="f", input="a", output="b", channels_last=True),
    ]
    assert {op.op for op in ops} | {op.op for op in extra} >= set(K.KERNELS)
    ops += extra
    for op in ops:
        assert K.kernel_from_json(json.loads(json.dumps(op.to_json()))) == op


def test_equality_sees_weights_meta_and_ops():
    a, b = protonet_program(), protonet_program()
    assert a == b
    w = dict(b.weights)
    w["conv1.b"] = w["conv1.b"] + 1
    assert dataclasses.replace(b, weights=w) != a
    assert dataclasses.replace(b, meta=dataclasses.replace(b.meta, rounding="truncate")) != a
    assert dataclasses.replace(b, ops=b.ops[:-1], buffers=[x for x in b.buffers if x.name != "pred"]) != a


def test_program_json_schema(tmp_path):
    protomaml_program().save(tmp_path)
    doc = json.loads((tmp_path / "program.json").read_text())
    assert doc["format"] == "metahw.program" and doc["version"] == 2
    assert doc["roles"] == {
        "support_images": "support_x",
        "support_labels": None,
        "query_images": "query_x",
        "support_features": None,
        "query_features": None,
        "scores": None,
        "prediction": None,
    }
    assert doc["meta"] == {
        "algorithm": "protomaml",
        "ways": 3,
        "shots": 2,
        "queries": 4,
        "rounding": "half_up",
        "overflow": "saturate",
    }
    conv = doc["buffers"][3]
    assert conv == {
        "name": "conv1.w",
        "shape": [2, 1, 3, 3],
        "qformat": {"bits": 8, "frac": 6, "signed": True},
        "kind": "weight",
        "channel_fracs": [6, 7],
    }
    sgd = next(op for op in doc["ops"] if op["op"] == "SGDHeadStep")
    assert sgd["softmax"] == {"index_frac": 4, "table_size": 256, "exp_frac": 16, "recip_bits": 16}
    assert sgd["grad_format"] == {"bits": 16, "frac": 14, "signed": True}


# ---- bad folders -------------------------------------------------------------------------
def _corrupt(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "p"
    protomaml_program().save(folder)
    doc = json.loads((folder / "program.json").read_text())
    edit(doc)
    (folder / "program.json").write_text(json.dumps(doc))
    return folder


def _drop_key(key):
    return lambda d: d["meta"].pop(key)


def _op(name):
    def find(doc):
        return next(op for op in doc["ops"] if op["name"] == name)

    return find


CORRUPTIONS = {
    "version": (lambda d: d.update(version=99), "format version 99"),
    "format": (lambda d: d.update(format="onnx"), "not a metahw program"),
    "role": (lambda d: d["roles"].update(query_images="nowhere"), "episode role 'query_images' names buffer"),
    "unknown role": (lambda d: d["roles"].update(weights="conv1.w"), "malformed"),
    "missing meta key": (_drop_key("ways"), "malformed"),
    "bad rounding": (lambda d: d["meta"].update(rounding="nearest"), "unknown rounding mode"),
    "unknown op": (lambda d: _op("head")(d).update(op="Gemm"), "unknown op 'Gemm'"),
    "unknown field": (lambda d: _op("head")(d).update(stride=2), "unknown field"),
    "missing field": (lambda d: _op("head")(d).pop("weight"), "missing field"),
    "field type": (lambda d: _op("head")(d).update(relu="yes"), "field 'relu': expected bool"),
    "bad qformat": (lambda d: _op("sgd0")(d).update(grad_format={"bits": 99, "frac": 1, "signed": True}), "bits"),
    "undeclared buffer": (lambda d: _op("head")(d).update(input="nowhere"), "undeclared buffer 'nowhere'"),
    "read before write": (lambda d: d["ops"].insert(0, d["ops"].pop(-1)), "before anything writes it"),
    "write a weight": (lambda d: _op("head")(d).update(output="lr_w"), "read-only"),
    "shape": (lambda d: d["buffers"][-2].update(shape=[4, 5]), "produces shape"),
    "duplicate buffer": (lambda d: d["buffers"].append(d["buffers"][0]), "declared twice"),
    "buffer kind": (lambda d: d["buffers"][0].update(kind="rom"), "kind must be one of"),
    "channel fracs": (lambda d: d["buffers"][3].update(channel_fracs=[6]), "channel_fracs"),
    "output never written": (lambda d: d["ops"].pop(-1), "never written"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_program_json_raises_one_sentence_user_error(case, tmp_path):
    edit, message = CORRUPTIONS[case]
    folder = _corrupt(tmp_path, edit)
    with pytest.raises(UserError, match=message) as info:
        Program.load(folder)
    assert "\n" not in str(info.value)


def test_missing_or_broken_files(tmp_path):
    with pytest.raises(UserError, match="no program.json"):
        Program.load(tmp_path / "absent")
    folder = tmp_path / "p"
    protonet_program().save(folder)
    (folder / "program.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Program.load(folder)
    protonet_program().save(folder)
    (folder / "weights.npz").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable .npz"):
        Program.load(folder)
    (folder / "weights.npz").unlink()
    with pytest.raises(UserError, match="no weights.npz"):
        Program.load(folder)


def test_weights_must_match_their_buffers(tmp_path):
    folder = tmp_path / "p"
    program = protonet_program()
    program.save(folder)
    bad = {**program.weights, "conv1.w": program.weights["conv1.w"].astype(np.float32)}
    np.savez(folder / "weights.npz", **bad)
    with pytest.raises(UserError, match="int64 array"):
        Program.load(folder)
    np.savez(folder / "weights.npz", **{**program.weights, "conv1.b": np.array([2**20, 0])})
    with pytest.raises(UserError, match="outside its format"):
        Program.load(folder)
    np.savez(folder / "weights.npz", **{k: v for k, v in program.weights.items() if k != "conv1.b"})
    with pytest.raises(UserError, match="have no values"):
        Program.load(folder)


def test_state_must_be_initialised_and_activations_written_once():
    meta = ProgramMeta("t", 1, 1, 1)
    fmt = QFormat(8, 0)
    buffers = [Buffer("x", (1, 2), fmt, "input"), Buffer("w", (1, 2), fmt, "state"), Buffer("y", (1, 1), fmt, "output")]
    dense = K.Dense(name="fc", input="x", weight="w", output="y")
    with pytest.raises(UserError, match="reads buffer 'w' before"):
        Program(meta, buffers, [dense])
    Program(meta, buffers, [dense], {"w": np.zeros((1, 2), np.int64)})  # an initial value makes it valid
    with pytest.raises(UserError, match="a second time"):
        Program(meta, buffers, [dense, dataclasses.replace(dense, name="fc2")], {"w": np.zeros((1, 2), np.int64)})
    with pytest.raises(UserError, match="used twice"):
        Program(
            meta,
            buffers[:2] + [Buffer("z", (1, 1), fmt, "activation")] + buffers[2:],
            [dense, dataclasses.replace(dense, output="z")],
            {"w": np.zeros((1, 2), np.int64)},
        )
