"""Rung 1 of the verification ladder: PyTorch float == onnxruntime on the exported episode."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch

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
    session = ort_session(model)
    sampler = EpisodeSampler(split, spec.ways, spec.shots, queries, seed=seed)
    worst, mismatched = 0.0, 0
    for _ in track(range(episodes), episodes, "onnxruntime vs torch", progress):
        ep = sampler.sample()
        y = head.one_hot(torch.from_numpy(ep.support_y), spec.ways)
        expected = reference_logits(
            learner, spec, torch.from_numpy(ep.support_x), y, torch.from_numpy(ep.query_x)
        ).numpy()
        logits, prediction = session.run(
            None, {"support_x": ep.support_x, "support_y": y.numpy(), "query_x": ep.query_x}
        )
        worst = max(worst, float(np.abs(logits - expected).max() / max(np.abs(expected).max(), 1e-30)))
        mismatched += int((prediction != expected.argmax(-1)).sum())
    return ExportCheck(episodes, worst, mismatched == 0, mismatched)
