"""One design's measurements, each cached in the results folder so that nothing is computed twice.

`evaluate_design` is the trial function the driver runs in a worker. It combines three
measurements, each a function of only what it depends on:

- `measure_accuracy(checkpoint, bits)`: the checkpoint's episode exported to ONNX, compiled
  at `bits` (`compiled_program`), run by the golden executor on a fixed set of seeded
  meta-test episodes; `measure_float` gives the float accuracy on the same episodes, once
  per checkpoint;
- `measure_cycles(checkpoint, bits, lanes)`: `episode_cycles` of that program on P lanes;
- `measure_resources(checkpoint, bits, lanes)`: the RTL (`metahw.hw.amaranth.build.build_rtl`)
  synthesised and placed for the target (`metahw.hw.synth.report.synthesize`).

Everything lands under `results_dir/cache/`, keyed by the checkpoint's content hash and the
settings the result depends on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from metahw.app.explore.cache import cached_json, locked
from metahw.app.explore.space import Design
from metahw.errors import UserError
from metahw.hardware import HardwareConfig, derive_hardware

if TYPE_CHECKING:
    import onnx

    from metahw.compiler.program import Program
    from metahw.models.data import OmniglotSplit
    from metahw.models.episodes import EpisodeIndex
    from metahw.models.export import EpisodeHead
    from metahw.models.learners import MetaLearner

#: the issue's target: within this many accuracy points (as a fraction) of float
FLOAT_TOLERANCE = 0.005


@dataclass(frozen=True)
class TrialSettings:
    """Everything besides the design that a measurement depends on (picklable, sent to every worker)."""

    results_dir: Path
    target: str
    episodes: int = 200
    ways: int = 5
    shots: int = 1
    queries: int = 15
    seed: int = 0
    data: Path | None = None
    #: place-and-route effort of every design ("fast": not timing-driven, `metahw.hw.synth.nextpnr`)
    pnr: str = "timing"
    #: seconds after which a design's place-and-route is stopped and the design counted as not fitting
    #: (None: no limit): nextpnr legalises a design packed into 96 % of an ECP5-25k for over 40 minutes
    pnr_timeout: float | None = None

    @property
    def cache(self) -> Path:
        """Folder of the cached measurements."""
        return self.results_dir / "cache"

    def episode_tag(self) -> str:
        """What a compiled program depends on besides checkpoint and bits: episode shape and seed."""
        return f"{self.ways}w{self.shots}s{self.queries}q-seed{self.seed}"

    def accuracy_tag(self) -> str:
        """What an accuracy depends on besides checkpoint and bits: the episodes."""
        return f"{self.episode_tag()}-e{self.episodes}"


@functools.cache
def checkpoint_key(checkpoint: str) -> str:
    """`<name>-<sha256 prefix>` of a checkpoint file or `zoo:NAME`: cache entries follow the file's content."""
    from metahw.models.zoo import PREFIX, zoo_path

    path = zoo_path(checkpoint.removeprefix(PREFIX)) if checkpoint.startswith(PREFIX) else Path(checkpoint)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


@functools.lru_cache(maxsize=4)
def _learner(checkpoint: str) -> MetaLearner:
    from metahw.models.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint).learner


@functools.lru_cache(maxsize=2)
def _splits(data: Path | None) -> tuple[OmniglotSplit, OmniglotSplit]:
    from metahw.models.data import load_omniglot

    omniglot = load_omniglot(data)
    return omniglot.split("test"), omniglot.split("val")


def _exported(checkpoint: str, settings: TrialSettings) -> tuple[MetaLearner, EpisodeHead, onnx.ModelProto]:
    from metahw.models.export import episode_head, export_episode

    learner = _learner(checkpoint)
    spec = episode_head(learner, settings.ways, settings.shots, None)
    return learner, spec, export_episode(learner, spec)


def _episodes(settings: TrialSettings) -> list[EpisodeIndex]:
    from metahw.models.episodes import EpisodeSampler

    sampler = EpisodeSampler(_splits(settings.data)[0], settings.ways, settings.shots, settings.queries, settings.seed)
    return [sampler.sample_index() for _ in range(settings.episodes)]


def _images(split: OmniglotSplit) -> np.ndarray:
    return split.images.reshape(-1, 1, *split.images.shape[2:]).astype(np.float32) / 255.0


def measure_float(checkpoint: str, settings: TrialSettings) -> tuple[dict, bool]:
    """Float accuracy (PyTorch, and onnxruntime on the exported graph) on the fixed episodes; cached."""

    def compute() -> dict:
        from metahw.compiler.compare import run_float
        from metahw.models.episodes import EpisodeSet
        from metahw.models.stats import AccuracySummary

        learner, spec, model = _exported(checkpoint, settings)
        episodes = _episodes(settings)
        chosen = EpisodeSet(_images(_splits(settings.data)[0]), tuple(episodes), "Omniglot meta-test alphabets")
        run = run_float(learner, spec, model, chosen, progress=False)
        labels = np.array([e.query_y for e in episodes])
        ort = AccuracySummary.of((run.ort_predictions == labels).mean(axis=1)).to_dict()
        return {**AccuracySummary.of((run.torch_predictions == labels).mean(axis=1)).to_dict(), "onnxruntime": ort}

    path = settings.cache / "float" / f"{checkpoint_key(checkpoint)}-{settings.accuracy_tag()}.json"
    return cached_json(path, compute)


def compiled_program(checkpoint: str, bits: int, settings: TrialSettings) -> Path:
    """Build folder (program.json, weights.npz, quantisation.json) of the episode compiled at `bits`; cached."""
    from metahw.compiler.compile import compile_episode, save_build
    from metahw.compiler.quant_config import QuantConfig

    folder = settings.cache / "programs" / f"{checkpoint_key(checkpoint)}-b{bits}-{settings.episode_tag()}"
    with locked(folder):
        if not (folder / "program.json").is_file():
            _, _, model = _exported(checkpoint, settings)
            queries = settings.ways * settings.queries
            val = _splits(settings.data)[1]
            save_build(compile_episode(model, QuantConfig(bits=bits), val, queries=queries, seed=settings.seed), folder)
    return folder


def _load_program(checkpoint: str, bits: int, settings: TrialSettings) -> Program:
    from metahw.compiler.program import Program

    return Program.load(compiled_program(checkpoint, bits, settings))


def measure_accuracy(checkpoint: str, bits: int, settings: TrialSettings) -> tuple[dict, bool]:
    """Golden-executor accuracy (mean, 95% CI) of the `bits` program on the fixed episodes, and saturations; cached."""

    def compute() -> dict:
        from metahw.compiler.compare import embed_all, head_inputs
        from metahw.compiler.golden import execute
        from metahw.compiler.stages import head_program
        from metahw.models.stats import AccuracySummary

        program = _load_program(checkpoint, bits, settings)
        episodes = _episodes(settings)
        embedded, saturation = embed_all(program, _images(_splits(settings.data)[0]))
        head = head_program(program)
        correct = []
        for index in episodes:
            run = execute(head, head_inputs(head, embedded, index))
            correct.append((run.values[head.roles.prediction] == index.query_y).mean())
            for name, count in run.saturation.items():
                saturation[name] = saturation.get(name, 0) + count
        return {**AccuracySummary.of(np.array(correct)).to_dict(), "saturations": int(sum(saturation.values()))}

    path = settings.cache / "accuracy" / f"{checkpoint_key(checkpoint)}-b{bits}-{settings.accuracy_tag()}.json"
    return cached_json(path, compute)


def measure_cycles(checkpoint: str, bits: int, lanes: int, settings: TrialSettings) -> tuple[dict, bool]:
    """Cycles per episode (total, adaptation, query) on P = `lanes`; cached."""

    program = _load_program(checkpoint, bits, settings)
    hw = derive_hardware(program, lanes)

    def compute() -> dict:
        from metahw.sim.cost import episode_cycles

        budget = episode_cycles(program, hw)
        return {"total": budget.total, "adaptation": budget.adaptation, "query": budget.query, "groups": hw.groups}

    name = f"{checkpoint_key(checkpoint)}-b{bits}-p{lanes}-{settings.episode_tag()}-h{hardware_key(hw)}"
    return cached_json(settings.cache / "cycles" / f"{name}.json", compute)


def hardware_key(hw: HardwareConfig) -> str:
    """A short digest of the derived design: a cached result of another derivation is not reused."""
    return hashlib.sha256(json.dumps(hw.to_json(), sort_keys=True).encode()).hexdigest()[:12]


def measure_resources(checkpoint: str, bits: int, lanes: int, settings: TrialSettings) -> tuple[dict, bool]:
    """Synthesis report (`used`, `capacity`, `fits`, `fmax_mhz`, ...) of the design's RTL on the target; cached.

    A design with more multipliers than the device has DSP blocks is built again with the lanes
    past them multiplying in LUTs (`dsp_lanes_that_fit`; same cycles), and that report is kept,
    with `dsp_lanes`. On a device with single-port RAM (the iCE40 UP5K's SPRAM) the activation
    banks are single-ported (`act_ports` 1, same cycles) so that they can go there. A design the
    generator or the tools reject with a UserError (a memory that does not fit, say) is recorded
    as not fitting, with the message under `error`; so is one whose place-and-route ran past
    `settings.pnr_timeout`.
    """
    from metahw.hw.amaranth.digests import generator_digest
    from metahw.hw.synth.devices import get_device

    program = _load_program(checkpoint, bits, settings)
    device = get_device(settings.target)
    act_ports = 1 if device.spram_blocks else None
    hw = derive_hardware(program, lanes, act_ports=act_ports)
    name = f"{checkpoint_key(checkpoint)}-b{bits}-p{lanes}-{settings.episode_tag()}-h{hardware_key(hw)}"
    generator = generator_digest()[:12]  # a result of an older RTL generator is not reused

    def compute() -> dict:
        from metahw.hw.amaranth.build import build_rtl
        from metahw.hw.synth.fit import dsp_lanes_that_fit
        from metahw.hw.synth.report import synthesize
        from metahw.sim.plan import check_fits

        def report_of(build: Path) -> dict:
            report = synthesize(
                build, settings.target, progress=False, pnr_effort=settings.pnr, pnr_timeout=settings.pnr_timeout
            ).to_dict()
            if report.get("pnr_outcome") == "timeout":  # not shown to place: not a design to choose
                limit = report["pnr_timeout_s"]
                return {**report, "fits": False, "error": f"nextpnr did not finish within the {limit:g} s limit"}
            return report

        try:
            check_fits(program, hw)
            report = report_of(build_rtl(program, hw, settings.cache / "rtl" / name))
            used = report["used"].get("DSP", 0)
            keep = dsp_lanes_that_fit(hw.lanes, hw.operand_bits, hw.dsp_lanes, used, device)
            if keep is None:
                return {**report, "act_ports": hw.act_ports}
            soft = derive_hardware(program, lanes, dsp_lanes=keep, act_ports=act_ports)
            report = report_of(build_rtl(program, soft, settings.cache / "rtl" / f"{name}-d{keep}"))
            return {**report, "dsp_lanes": keep, "act_ports": hw.act_ports}
        except UserError as exc:
            return {"error": str(exc), "fits": False, "fmax_mhz": None}

    limit = "" if settings.pnr_timeout is None else f"-t{settings.pnr_timeout:g}"
    key = f"{name}-{settings.target}-{settings.pnr}{limit}-g{generator}"
    return cached_json(settings.cache / "resources" / f"{key}.json", compute)


def _resource_summary(report: dict) -> dict:
    """What a trial record keeps of a synthesis report (the whole report stays in the cache)."""
    keys = ("used", "capacity", "fits", "fmax_mhz", "target_mhz", "error", "dsp_lanes", "act_ports")
    return {key: report[key] for key in keys if key in report}


def _luts(resources: dict) -> int | None:
    used = {key.upper(): value for key, value in resources.get("used", {}).items()}
    return used.get("LUT")


def evaluate_design(design: Design, settings: TrialSettings) -> dict:
    """The trial function: every measurement of `design`, the objectives, feasibility, timings and cache hits."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    cached: dict[str, bool] = {}
    results: dict[str, dict] = {}
    steps = {
        "float_accuracy": lambda: measure_float(design.checkpoint, settings),
        "accuracy": lambda: measure_accuracy(design.checkpoint, design.bits, settings),
        "cycles": lambda: measure_cycles(design.checkpoint, design.bits, design.lanes, settings),
        "resources": lambda: measure_resources(design.checkpoint, design.bits, design.lanes, settings),
    }
    for name, step in steps.items():
        t0 = time.perf_counter()
        results[name], cached[name] = step()
        timings[f"{name}_s"] = time.perf_counter() - t0
    results["resources"] = _resource_summary(results["resources"])
    fmax = results["resources"].get("fmax_mhz")
    clock = fmax or results["resources"].get("target_mhz") or HardwareConfig().clock_mhz  # nominal without fmax
    accuracy = results["accuracy"]["accuracy"]
    timings["total_s"] = time.perf_counter() - started
    return {
        **results,
        "objectives": {
            "accuracy": accuracy,
            "latency_ms": results["cycles"]["total"] / (clock * 1e3),
            "luts": _luts(results["resources"]),
        },
        "fits": bool(results["resources"].get("fits")),
        "within_float": accuracy >= results["float_accuracy"]["accuracy"] - FLOAT_TOLERANCE,
        "clock_mhz": clock,
        "clock_source": "fmax" if fmax else "nominal",
        "timings": timings,
        "cached": cached,
    }
