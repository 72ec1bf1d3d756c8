"""Episodic evaluation of a learner: mean accuracy and 95% CI over seeded test episodes, or given episodes.

When the backbone is frozen during adaptation (every mode except 'full' of the MAML
family), all images of the split (or of the episode set's pool) are embedded once and
episodes are classified from the cached embeddings, which makes 1000-episode evaluations
take seconds. `evaluate_episodes` runs the user's own episodes (models/episode_sources.py).
"""

from __future__ import annotations

import numpy as np
import torch

from metahw.models.data import OmniglotSplit
from metahw.models.episodes import EpisodeSampler, EpisodeSet
from metahw.models.learners import MetaLearner
from metahw.models.stats import AccuracySummary
from metahw.progress import track


@torch.no_grad()
def embed_images(learner: MetaLearner, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    """Embeddings [B, D] of uint8 images [B, 28, 28] (strokes = 255) with the learner's backbone."""
    learner.eval()
    device = next(learner.parameters()).device
    out = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start : start + batch]).to(device, torch.float32).div_(255.0).unsqueeze(1)
        out.append(learner.backbone(x))
    return torch.cat(out)


def evaluate(
    learner: MetaLearner,
    split: OmniglotSplit,
    ways: int,
    shots: int,
    queries: int = 15,
    episodes: int = 1000,
    seed: int = 0,
    within_alphabet: bool = False,
    mode: str = "full",
    progress: bool = True,
) -> AccuracySummary:
    """Accuracy of `learner` over `episodes` seeded episodes of `split` (same seed, same episodes)."""
    learner.eval()
    sampler = EpisodeSampler(split, ways, shots, queries, seed=seed, within_alphabet=within_alphabet)
    device = next(learner.parameters()).device
    cached = not (mode == "full" and learner.adapts_backbone)
    features = embed_images(learner, split.images.reshape(-1, *split.images.shape[2:])) if cached else None
    accuracies = np.empty(episodes)
    desc = f"eval {learner.algorithm} {ways}w{shots}s {mode}"
    for i in track(range(episodes), episodes, desc, progress):
        index = sampler.sample_index()
        qy = torch.from_numpy(index.query_y).to(device)
        sy = torch.from_numpy(index.support_y).to(device)
        if features is not None:
            with torch.no_grad():
                logits = learner.logits_from_features(features[index.support], sy, features[index.query], ways, mode)
        else:
            ep = sampler.gather(index)
            sx, qx = (torch.from_numpy(a).to(device) for a in (ep.support_x, ep.query_x))
            logits = learner.logits(sx, sy, qx, ways, mode)
        accuracies[i] = (logits.argmax(-1) == qy).float().mean().item()
    return AccuracySummary.of(accuracies)


@torch.no_grad()
def predict_episodes(
    learner: MetaLearner, episodes: EpisodeSet, mode: str = "full", progress: bool = True, cached: bool = True
) -> list[np.ndarray]:
    """Predicted class ids [Q] of `learner` on every episode of the set.

    With `cached` the pool is embedded once when the backbone stays frozen; without, every
    episode's images go through `learner.logits` as `run_error` does (the one-shot runs).
    """
    learner.eval()
    device = next(learner.parameters()).device
    images = torch.from_numpy(episodes.images)
    features = None
    if cached and not (mode == "full" and learner.adapts_backbone):
        features = torch.cat([learner.backbone(images[s : s + 500].to(device)) for s in range(0, len(images), 500)])
    predictions = []
    desc = f"eval {learner.algorithm} {episodes.ways}w{episodes.shots}s {mode}"
    for index in track(episodes.indices, len(episodes), desc, progress):
        ways = int(index.support_y.max()) + 1
        sy = torch.from_numpy(index.support_y).to(device)
        if features is not None:
            logits = learner.logits_from_features(features[index.support], sy, features[index.query], ways, mode)
        else:
            with torch.enable_grad():  # the MAML family adapts the backbone by gradient steps
                sx, qx = images[index.support].to(device), images[index.query].to(device)
                logits = learner.logits(sx, sy, qx, ways, mode)
        predictions.append(logits.argmax(-1).cpu().numpy())
    return predictions


def accuracy_of(episodes: EpisodeSet, predictions: list[np.ndarray]) -> AccuracySummary | None:
    """Accuracy of per-episode predictions against the set's query labels (None when they are not known)."""
    if not episodes.labelled:
        return None
    return AccuracySummary.of(np.array([np.mean(p == i.query_y) for p, i in zip(predictions, episodes.indices)]))
