"""`metahw compile` calibrating on the user's episodes and `metahw compare` running on them."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import onnx
import pytest

from metahw.compiler.compile import calibration_episodes


def _save_npz(path, episodes, labels: bool = True):
    keys = ("support_x", "support_y", "query_x") + (("query_y",) if labels else ())
    np.savez(path, **{k: np.stack([getattr(e, k) for e in episodes]) for k in keys})
    return path


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, learners):
    path = tmp_path_factory.mktemp("own-onnx") / "protonet.onnx"
    onnx.save_model(learners.export("protonet", width=4).model, path)
    return path


def test_compile_on_an_npz_of_the_meta_val_episodes_is_the_default_build(cli, onnx_file, omniglot, learners, tmp_path):
    episodes = calibration_episodes(omniglot.split("val"), learners.ways, learners.shots, 1, episodes=2)
    npz = _save_npz(tmp_path / "calibration.npz", episodes)
    default, own = tmp_path / "default", tmp_path / "own"
    assert cli("compile", onnx_file, "-o", default, "--calibration-episodes", 2).code == 0
    result = cli("compile", onnx_file, "-o", own, "--episodes-from", npz, "--calibration-episodes", 2)
    assert result.code == 0, result.stderr
    assert (own / "program.json").read_text() == (default / "program.json").read_text()
    assert (own / "quantisation.json").read_text() == (default / "quantisation.json").read_text()


def test_compile_on_an_image_folder(cli, onnx_file, data_dir, tmp_path):
    folder = tmp_path / "images"
    with zipfile.ZipFile(data_dir / "images_background_small1.zip") as z:
        for name in sorted(n for n in z.namelist() if n.endswith(".png") and "/Greek/" in n)[:12]:
            _, _, character, drawing = name.split("/")
            (folder / character).mkdir(parents=True, exist_ok=True)
            (folder / character / drawing).write_bytes(z.read(name))
    result = cli("compile", onnx_file, "-o", tmp_path / "build", "--images", folder, "--calibration-episodes", 2)
    assert result.code == 2 and "need 3 classes of >= 3 images" in result.stderr  # 12 drawings of one character
    for i, png in enumerate(sorted(folder.rglob("*.png"))):
        (folder / f"class{i % 4}").mkdir(exist_ok=True)
        png.rename(folder / f"class{i % 4}" / png.name)
    result = cli("compile", onnx_file, "-o", tmp_path / "build", "--images", folder, "--calibration-episodes", 2)
    assert result.code == 0, result.stderr
    assert (tmp_path / "build" / "program.json").is_file()
    wrong = cli("compile", onnx_file, "-o", tmp_path / "b2", "--images", folder, "--image-shape", "3x28x28")
    assert wrong.code == 2 and "takes support_x [6, 1, 28, 28]" in wrong.stderr and not (tmp_path / "b2").exists()


def test_compare_on_own_episodes_writes_every_rows_predictions(cli, tiny_checkpoint, omniglot, tmp_path):
    from metahw.models.episodes import EpisodeSampler

    sampler = EpisodeSampler(omniglot.split("test"), 5, 1, 2, seed=3)
    episodes = [sampler.sample() for _ in range(3)]
    npz = _save_npz(tmp_path / "test.npz", episodes)
    out, predictions = tmp_path / "cmp", tmp_path / "predictions.json"
    result = cli(
        "compare",
        tiny_checkpoint,
        "--bits",
        8,
        "--episodes-from",
        npz,
        "--out",
        out,
        "--json",
        "--predictions",
        predictions,
        "--no-progress",
    )
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["ways"], report["shots"], report["queries"], report["episodes"]) == (5, 1, 10, 3)
    rows = json.loads(predictions.read_text())["episodes"]
    assert set(rows[0]["predictions"]) == {"torch", "onnxruntime", "8-bit"}
    for producer, summary in (("torch", report["float"]["torch"]), ("8-bit", report["fixed"]["8"]["accuracy"])):
        accuracy = np.mean([np.mean(np.array(r["predictions"][producer]) == r["labels"]) for r in rows])
        assert summary["accuracy"] == pytest.approx(accuracy)
    assert (out / "accuracy_vs_bits.png").is_file()
    unlabelled = _save_npz(tmp_path / "unlabelled.npz", episodes, labels=False)
    text = cli(
        "compare", tiny_checkpoint, "--bits", 8, "--episodes-from", unlabelled, "--out", tmp_path / "u", "--no-progress"
    )
    assert text.code == 0, text.stderr
    assert "n/a" in text.stdout and "no plot: the episodes have no query labels" in text.stdout
    assert json.loads((tmp_path / "u" / "compare.json").read_text())["fixed"]["8"]["accuracy"] is None
