"""Float vs fixed point (compiler/compare.py, compare_plot.py) and `metahw compare`."""

import json
import math
import struct
import zlib

import matplotlib.image
import numpy as np
import pytest

from metahw.compiler.compare import compare, sqnr_db
from metahw.models.checkpoint import load_checkpoint

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == PNG_SIGNATURE
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    return chunks


def _check_summary(summary: dict, episodes: int) -> None:
    assert set(summary) == {"accuracy", "ci95", "episodes", "interval"} and summary["episodes"] == episodes
    assert 0.0 <= summary["accuracy"] <= 1.0 and 0.0 <= summary["ci95"] < 1.0


def test_compare_cli(cli, tiny_checkpoint, tmp_path):
    out = tmp_path / "cmp"
    args = [tiny_checkpoint, "--bits", "16,4", "--episodes", 3, "--queries", 3, "--out", out]
    result = cli("compare", *args, "--json", "--no-progress")
    assert result.code == 0, result.stderr
    data = json.loads((out / "compare.json").read_text())
    assert json.loads(result.stdout) == data
    assert (data["algorithm"], data["ways"], data["shots"], data["episodes"], data["queries_per_class"]) == (
        "protonet",
        5,
        1,
        3,
        3,
    )
    assert data["checkpoint"] == str(tiny_checkpoint)
    flt = data["float"]
    _check_summary(flt["torch"], 3)
    assert flt["onnxruntime"] == flt["torch"] and flt["onnxruntime_agreement"] == 1.0
    assert list(data["fixed"]) == ["4", "16"]
    learner = load_checkpoint(tiny_checkpoint).learner
    n_weights = sum(b[0].weight.numel() for b in learner.backbone.blocks)
    n_biases = sum(b[0].out_channels for b in learner.backbone.blocks)
    for bits, row in data["fixed"].items():
        assert set(row) == {"engine", "accuracy", "agreement_with_float", "saturation", "sqnr_db", "weight_bytes"}
        assert row["engine"] == "golden"
        _check_summary(row["accuracy"], 3)
        agreement = row["agreement_with_float"]
        assert 0.0 <= agreement <= 1.0
        # a query can only change the accuracy by disagreeing with the float prediction
        assert abs(row["accuracy"]["accuracy"] - flt["torch"]["accuracy"]) <= 1 - agreement + 1e-12
        assert set(row["sqnr_db"]) == {"block0.pool", "block1.pool", "block2.pool", "block3.pool", "logits"}
        assert {f"query.block{i}.pool" for i in range(4)} | {"scores", "prototypes"} <= set(row["saturation"])
        assert all(type(v) is int and v >= 0 for v in row["saturation"].values())
        # the weights at `bits`, the biases in the narrow formats their 32-bit values need (2 bits at least)
        bias_bytes = row["weight_bytes"] - n_weights * int(bits) // 8
        assert n_biases * 2 // 8 <= bias_bytes < n_biases * 32 // 8
    hi, lo = data["fixed"]["16"], data["fixed"]["4"]
    assert hi["agreement_with_float"] >= 0.95
    assert sum(hi["saturation"].values()) == 0
    for layer, value in hi["sqnr_db"].items():
        assert value > 60 and value > lo["sqnr_db"][layer] + 30, layer
    assert sorted(p.name for p in out.iterdir()) == ["accuracy_vs_bits.png", "compare.json"]
    _check_png(out / "accuracy_vs_bits.png")


def _check_png(png):
    """A PNG written by matplotlib (its Software tag), 720x480, with axes, text and a curve on it."""
    data = png.read_bytes()
    chunks = _png_chunks(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert (width, height) == (720, 480)  # 6 x 4 inches at 120 dpi
    text = b"".join(body for kind, body in chunks if kind in (b"tEXt", b"iTXt"))
    assert b"Software" in text and b"Matplotlib" in text
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (480, 720)
    ink = (image[..., :3] < 0.9).any(axis=-1).mean()
    assert 0.01 < ink < 0.5  # axes, text and the curve, not a blank or filled canvas
    assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 20


@pytest.mark.parametrize(
    "bits",
    ["4,x", "", ",", "1,8", "4,17", "eight"],
)
def test_compare_rejects_bad_bit_lists(bits, cli, one_line_error, tiny_checkpoint, tmp_path):
    out = tmp_path / "cmp"
    result = cli("compare", tiny_checkpoint, "--bits", bits, "--episodes", 2, "--out", out, "--no-progress")
    one_line_error(result, "--bits")
    assert not out.exists()


def test_compare_needs_two_episodes(cli, one_line_error, tiny_checkpoint, tmp_path):
    result = cli("compare", tiny_checkpoint, "--episodes", 1, "--out", tmp_path / "cmp", "--no-progress")
    one_line_error(result, "--episodes must be >= 2")
    assert not (tmp_path / "cmp").exists()


@pytest.mark.parametrize(("algorithm", "steps"), [("matchingnet", None), ("protomaml", 1)])
def test_compare_other_heads(algorithm, steps, learners, omniglot):
    exported = learners.export(algorithm, inner_steps=steps, width=4)
    result = compare(
        exported.learner,
        exported.spec,
        exported.model,
        [16],
        omniglot.split("test"),
        omniglot.split("val"),
        episodes=2,
        queries=3,
        progress=False,
    )
    row = result["fixed"]["16"]
    assert result["float"]["onnxruntime_agreement"] == 1.0
    assert row["agreement_with_float"] >= 0.9
    assert ("logits" in row["sqnr_db"]) == (algorithm != "matchingnet")  # Matching Networks score probabilities
    if algorithm == "protomaml":
        assert {"sgd0/probs", "sgd0/grad", "head.weight"} <= set(row["saturation"])


def test_sqnr_db():
    x = np.array([3.0, -4.0])
    assert sqnr_db(x, x) == math.inf
    assert sqnr_db(x, x + np.array([0.0, 0.5])) == pytest.approx(10 * math.log10(25 / 0.25))
