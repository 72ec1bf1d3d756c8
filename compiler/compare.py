"""Float vs fixed point on the same episodes: accuracy, agreement, saturation, per-layer SQNR.

For each bit width the episode is compiled (calibrated on meta-val episodes, or on the given
calibration episodes) and run by the golden executor on the episodes (an `EpisodeSet`: seeded
meta-test episodes, or the user's own): the embedding program once over every image of the
set's pool (`stages.embedding_program`), then the head program per episode, which gives
exactly the integers of running the whole program per episode (see compiler/stages.py).
PyTorch float and onnxruntime run the same episodes. Without query labels, accuracies are
None and only the agreement between the rows is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import onnx
import torch

from metahw.compiler.compile import calibration_episodes, compile_calibrated
from metahw.compiler.episode_io import program_inputs, program_logits
from metahw.compiler.golden import execute
from metahw.compiler.program import Program
from metahw.compiler.quant_config import QuantConfig
from metahw.compiler.stages import embedding_program, head_program
from metahw.models import head
from metahw.models.data import OmniglotSplit
from metahw.models.episodes import Episode, EpisodeIndex, EpisodeSampler, EpisodeSet
from metahw.models.export import EpisodeHead, exported_backbone, reference_head
from metahw.models.export_check import ort_session
from metahw.models.learners import MetaLearner
from metahw.models.stats import AccuracySummary
from metahw.progress import track

EMBED_BATCH = 128


class ProgramRun(Protocol):
    """What an engine's run of one program on one input set gives: every buffer's integers, overflow counts."""

    values: dict[str, np.ndarray]
    saturation: dict[str, int]


Runner = Callable[[Mapping[str, np.ndarray]], ProgramRun]


@dataclass(frozen=True)
class Engine:
    """What runs the fixed-point rows: `runner(part, program)` runs `part` (the embedding or the head
    program split from the compiled `program`) on one input set; `name` goes into each row."""

    name: str
    runner: Callable[[Program, Program], Runner]
    #: also run the first episode through the whole program: the row records whether its
    #: prediction equals the staged run's, and the engine's cycles per episode where it counts them
    whole_check: bool = False


#: the golden executor (the default engine)
GOLDEN = Engine("golden", lambda part, program: partial(execute, part))


@dataclass(frozen=True)
class FloatRun:
    """PyTorch and onnxruntime results on the comparison episodes, and float activations per image."""

    torch_predictions: np.ndarray  # [E, Q]
    torch_logits: np.ndarray  # [E, Q, N]
    ort_predictions: np.ndarray | None  # None: onnxruntime was not run
    activations: list[np.ndarray]  # per conv block: [images, C, H, W] float


def run_float(
    learner: MetaLearner,
    spec: EpisodeHead,
    model: onnx.ModelProto,
    episodes: EpisodeSet,
    progress: bool,
    onnxruntime: bool = True,
) -> FloatRun:
    """Float predictions (PyTorch, onnxruntime) on the episodes and every block's float output per pool image.

    onnxruntime runs the whole exported episode (every image through the backbone) per episode;
    `onnxruntime=False` leaves it out where only PyTorch's float row is wanted (long tables).
    """
    images = torch.from_numpy(episodes.images)
    backbone = exported_backbone(learner)
    activations: list[list[np.ndarray]] = [[] for _ in backbone.blocks]
    with torch.no_grad():
        for start in range(0, len(images), EMBED_BATCH):
            x = images[start : start + EMBED_BATCH]
            for i, block in enumerate(backbone.blocks):
                x = block(x)
                activations[i].append(x.numpy())
    features = torch.from_numpy(np.concatenate(activations[-1])).flatten(1)
    session = ort_session(model) if onnxruntime else None
    t_pred, t_logits, o_pred = [], [], []
    label = "float (torch, onnxruntime)" if onnxruntime else "float (torch)"
    for index in track(episodes.indices, len(episodes), label, progress):
        sx, qx = images[index.support], images[index.query]
        y = head.one_hot(torch.from_numpy(index.support_y), spec.ways)
        logits = reference_head(learner, spec, features[index.support], y, features[index.query]).numpy()
        t_logits.append(logits)
        t_pred.append(logits.argmax(-1))
        if session is not None:
            feed = {"support_x": sx.numpy(), "support_y": y.numpy(), "query_x": qx.numpy()}
            o_pred.append(session.run(["prediction"], feed)[0])
    ort = np.array(o_pred) if session is not None else None
    return FloatRun(np.array(t_pred), np.array(t_logits), ort, [np.concatenate(a) for a in activations])


def embed_all(
    program: Program, images: np.ndarray, engine: Engine = GOLDEN
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The engine's integers of every embedding buffer for all images, and the saturation counts."""
    embed = embedding_program(program, EMBED_BATCH)
    run_batch = engine.runner(embed, program)
    image_input = embed.roles.query_images
    pixel = embed.buffer_map[image_input].qformat
    outputs: dict[str, list[np.ndarray]] = {}
    saturation: dict[str, int] = {}
    for start in range(0, len(images), EMBED_BATCH):
        x = pixel.quantize(images[start : start + EMBED_BATCH], program.meta.rounding)
        real = len(x)
        x = np.concatenate([x, np.zeros((EMBED_BATCH - real, *x.shape[1:]), np.int64)])
        run = run_batch({image_input: x})
        for buf in embed.buffers:
            if buf.kind in ("activation", "output"):
                outputs.setdefault(buf.name, []).append(run.values[buf.name][:real])
        for name, count in run.saturation.items():  # padding images are zeros: they never saturate
            saturation[name] = saturation.get(name, 0) + count
    return {k: np.concatenate(v) for k, v in outputs.items()}, saturation


def head_inputs(head: Program, embedded: dict[str, np.ndarray], index: EpisodeIndex) -> dict[str, np.ndarray]:
    """The inputs of `head` (a `head_program`) for one episode of a pool embedded by `embed_all`."""
    roles = head.roles
    features = embedded[roles.query_features]
    return {
        roles.support_features: features[index.support],
        roles.query_features: features[index.query],
        roles.support_labels: index.support_y,
    }


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Signal-to-quantisation-noise ratio 10 log10(sum x^2 / sum (x - x_q)^2) in dB (inf if exact)."""
    noise = float(np.sum((reference - approximation) ** 2))
    signal = float(np.sum(reference**2))
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def _accuracy(predictions: np.ndarray, episodes: EpisodeSet) -> dict | None:
    if not episodes.labelled:
        return None
    labels = np.array([index.query_y for index in episodes.indices])
    return AccuracySummary.of((predictions == labels).mean(axis=1)).to_dict()


def run_fixed(
    program: Program,
    episodes: EpisodeSet,
    floats: FloatRun,
    progress: bool,
    label: str,
    engine: Engine = GOLDEN,
) -> dict:
    """The engine's predictions on the episodes and their statistics against the labels and the float run."""
    embedded, saturation = embed_all(program, episodes.images, engine)
    head_prog = head_program(program)
    run_head = engine.runner(head_prog, program)
    roles = head_prog.roles
    predictions, logits = [], []
    for index in track(episodes.indices, len(episodes), label, progress):
        run = run_head(head_inputs(head_prog, embedded, index))
        predictions.append(run.values[roles.prediction])
        logits.append(program_logits(program, run.values[roles.scores]))
        for name, count in run.saturation.items():
            saturation[name] = saturation.get(name, 0) + count
    predictions = np.array(predictions)
    whole = _whole_episode(program, episodes, predictions[0], engine) if engine.whole_check and len(episodes) else None
    buffers = program.buffer_map
    sqnr = {}
    for i, reference in enumerate(floats.activations):
        name = next(n for n in embedded if n.startswith(f"query.block{i}.") and n != roles.query_features)
        sqnr[name.removeprefix("query.")] = sqnr_db(reference, buffers[name].qformat.dequantize(embedded[name]))
    if program.meta.algorithm != "matchingnet":  # Matching Networks' scores are probabilities
        sqnr["logits"] = sqnr_db(floats.torch_logits, np.array(logits))
    return {
        "engine": engine.name,
        "accuracy": _accuracy(predictions, episodes),
        "predictions": predictions,
        "agreement_with_float": float((predictions == floats.torch_predictions).mean()),
        "saturation": {k: v for k, v in sorted(saturation.items())},
        "sqnr_db": sqnr,
        "weight_bytes": sum(int(np.prod(b.shape)) * b.qformat.bits for b in program.buffers_of("weight")) // 8,
        **({} if whole is None else {"whole_episode": whole}),
    }


def _whole_episode(program: Program, episodes: EpisodeSet, staged: np.ndarray, engine: Engine) -> dict:
    """The first episode run through the whole program: equal to the staged prediction, and its cycles."""
    run = engine.runner(program, program)(program_inputs(program, episodes[0]))
    prediction = run.values[program.roles.prediction]
    return {"equal": bool(np.array_equal(prediction, staged)), "cycles": getattr(run, "total_cycles", None)}


def compare(
    learner: MetaLearner,
    spec: EpisodeHead,
    model: onnx.ModelProto,
    bits: list[int],
    test: OmniglotSplit,
    calibration: OmniglotSplit,
    episodes: int,
    queries: int = 15,
    seed: int = 0,
    progress: bool = True,
    base_config: QuantConfig | None = None,
) -> dict:
    """The comparison table (without predictions) on seeded episodes of `test`, calibrated on `calibration`'s."""
    chosen, calibrating = omniglot_comparison(spec, test, calibration, episodes, queries, seed)
    result = compare_episodes(learner, spec, model, bits, chosen, calibrating, progress, base_config)
    del result["predictions"]
    return {**result, "queries_per_class": queries, "seed": seed}


def omniglot_comparison(
    spec: EpisodeHead, test: OmniglotSplit, calibration: OmniglotSplit, episodes: int, queries: int, seed: int
) -> tuple[EpisodeSet, list[Episode]]:
    """The default comparison's seeded test episodes and the meta-val episodes each bit width calibrates on."""
    sampler = EpisodeSampler(test, spec.ways, spec.shots, queries, seed=seed)
    chosen = EpisodeSet.sampled(sampler, episodes, f"Omniglot meta-{test.name} alphabets (seed {seed})")
    calibrating = calibration_episodes(calibration, spec.ways, spec.shots, max(1, min(queries, 5)), seed=seed)
    return chosen, calibrating


def compare_episodes(
    learner: MetaLearner,
    spec: EpisodeHead,
    model: onnx.ModelProto,
    bits: list[int],
    episodes: EpisodeSet,
    calibration: Sequence[Episode],
    progress: bool = True,
    base_config: QuantConfig | None = None,
    engine: Engine = GOLDEN,
    onnxruntime: bool = True,
) -> dict:
    """The comparison table as a dict: float rows and one row per bit width (each calibrated on `calibration`).

    Each row's "predictions" is an array [E, Q] of predicted class ids; the CLI writes them
    with --predictions and drops them from compare.json. The fixed-point rows run on `engine`;
    `onnxruntime=False` leaves the onnxruntime row out (its entries are None).
    """
    floats = run_float(learner, spec, model, episodes, progress, onnxruntime)
    ort = floats.ort_predictions
    result = {
        "algorithm": learner.algorithm,
        "ways": spec.ways,
        "shots": spec.shots,
        "queries": episodes.queries,
        "inner_steps": spec.inner_steps,
        "episodes": len(episodes),
        "source": episodes.source,
        "float": {
            "torch": _accuracy(floats.torch_predictions, episodes),
            "onnxruntime": None if ort is None else _accuracy(ort, episodes),
            "onnxruntime_agreement": None if ort is None else float((ort == floats.torch_predictions).mean()),
        },
        "predictions": {"torch": floats.torch_predictions, "onnxruntime": ort},
        "fixed": {},
    }
    base = base_config or QuantConfig()
    for b in bits:
        config = QuantConfig(**{**base.to_dict(), "bits": b})
        compiled = compile_calibrated(model, config, calibration, queries=episodes.queries)
        row = run_fixed(compiled.program, episodes, floats, progress, f"{engine.name} {b}-bit", engine)
        result["predictions"][f"{b}-bit"] = row.pop("predictions")
        result["fixed"][str(b)] = row
    return result
