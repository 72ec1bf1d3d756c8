"""Rung 1 of the verification ladder: PyTorch float == onnxruntime on the exported episode."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch

from metahw.errors import UserError
from metahw.models import head
from metahw.models.data import OmniglotSplit
from metahw.models.episodes import EpisodeSampler
from metahw.models.export import EpisodeHead, reference_logits
from metahw.models.learners import MetaLearner
from metahw.progress import track


@dataclass(frozen=True)
class ExportCheck:
    """Agreement of onnxruntime with PyTorch over `episodes` random episodes.

    The relative error of an episode is max|ort - torch| / max|torch| over its logits;
    `max_relative_error` is the worst episode's.
    """

    episodes: int
    max_relative_error: float
    predictions_equal: bool
    mismatched_predictions: int

    def passed(self, tolerance: float = 1e-4) -> bool:
        """True when the error is within `tolerance` and every prediction agrees."""
        return self.predictions_equal and self.max_relative_error <= tolerance

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def ort_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A CPU onnxruntime session for an in-memory model."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def check_export(
    model: onnx.ModelProto,
    learner: MetaLearner,
    spec: EpisodeHead,
    split: OmniglotSplit,
    episodes: int = 100,
    queries: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> ExportCheck:
    """Run the same seeded episodes through onnxruntime and PyTorch and compare logits/predictions."""
    sampler = EpisodeSampler(split, spec.ways, spec.shots, queries, seed=seed)
    drawn = ((ep.support_x, ep.support_y, ep.query_x) for ep in (sampler.sample() for _ in range(episodes)))

    def reference(sx: np.ndarray, y: torch.Tensor, qx: np.ndarray) -> np.ndarray:
        return reference_logits(learner, spec, torch.from_numpy(sx), y, torch.from_numpy(qx)).numpy()

    return compare_episodes(model, drawn, episodes, spec.ways, reference, progress)


#: (support images, support labels 0..N-1, query images) of one episode.
EpisodeArrays = tuple[np.ndarray, np.ndarray, np.ndarray]
#: Float reference logits of one episode from (support images, one-hot labels, query images).
Reference = Callable[[np.ndarray, torch.Tensor, np.ndarray], np.ndarray]


def compare_episodes(
    model: onnx.ModelProto,
    episodes: Iterable[EpisodeArrays],
    count: int,
    ways: int,
    reference: Reference,
    progress: bool = True,
) -> ExportCheck:
    """Run each episode through the episode graph in onnxruntime and through `reference`; worst disagreement."""
    session = ort_session(model)
    worst, mismatched = 0.0, 0
    for sx, sy, qx in track(episodes, count, "onnxruntime vs torch", progress):
        y = head.one_hot(torch.from_numpy(sy), ways)
        expected = reference(sx, y, qx)
        logits, prediction = session.run(None, {"support_x": sx, "support_y": y.numpy(), "query_x": qx})
        worst = max(worst, float(np.abs(logits - expected).max() / max(np.abs(expected).max(), 1e-30)))
        mismatched += int((prediction != expected.argmax(-1)).sum())
    return ExportCheck(count, worst, mismatched == 0, mismatched)


def require_passed(result: ExportCheck, tolerance: float) -> None:
    """UserError (nothing is written) when onnxruntime and the float reference disagree beyond `tolerance`."""
    if not result.passed(tolerance):
        raise UserError(
            f"onnxruntime disagrees with PyTorch: max relative error {result.max_relative_error:.2e} "
            f"(tolerance {tolerance:.0e}), {result.mismatched_predictions} predictions differ; "
            "nothing was written."
        )
