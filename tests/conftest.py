"""Fixtures shared by the whole suite: the Omniglot data, a private decode cache, a tiny trained checkpoint.

Everything here is sized for CI on two cores: the data is decoded once per session into a
temporary cache, torch runs single-threaded (tiny tensors are faster that way and do not fight
other jobs for the cores), and the shared checkpoint is a width-4 ProtoNet trained for a few
dozen episodes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from metahw.cli import main
from metahw.models.data import OmniglotImages, default_data_dir, load_omniglot

#: Environment for subprocesses started by tests (also applied to this process in pytest_configure).
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

OMNIGLOT_ZIPS = ("images_background_small1.zip", "images_background_small2.zip")


#: The test files that build Verilator models or g++ C simulations, run synthesis tools or start `metahw`
#: subprocesses, slowest first (seconds on two cores in CI). With `--dist loadfile` each file runs on one
#: worker; these start first, so that the many short files fill the workers' last minutes instead of one
#: long file running alone at the end.
SLOW_FILES = (
    "tests/hw/amaranth/test_rtl_own_embeddings.py",
    "tests/hw/hls4ml/test_hls4ml_csim.py",
    "tests/hw/amaranth/test_rtl_heads_verilator.py",
    "tests/hw/synth/test_synth_flow.py",
    "tests/models/test_cli_models.py",
    "tests/sim/test_sim_episodes.py",
    "tests/hw/hls4ml/test_hls4ml_user_embeddings.py",
    "tests/hw/amaranth/test_own_model_cli.py",
    "tests/cli/test_bad_inputs.py",
    "tests/hw/amaranth/test_rtl_verilator.py",
    "tests/models/test_runs.py",
    "tests/test_hardware_derivation.py",
    "tests/hw/hls4ml/test_hls4ml_cli.py",
)


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist hands out --dist loadfile's files by descending test count unless told not to:
    # keep the order of `pytest_collection_modifyitems` (slow files first) instead
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    torch.set_num_threads(1)
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)
    # the tests' designs are tiny: compiling their Verilator models and hls4ml C simulations at -O0 saves
    # a third or more of each build, and their few short episodes run fast enough unoptimised
    os.environ.setdefault("METAHW_VERILATOR_OPT", "-O0")
    os.environ.setdefault("METAHW_HLS_CSIM_OPT", "-O0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the `SLOW_FILES` first, slowest first; every other file keeps its place after them."""
    rank = {path: k for k, path in enumerate(SLOW_FILES)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(SLOW_FILES)))


def _find_data_dir() -> Path | None:
    candidates = [default_data_dir(), Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in OMNIGLOT_ZIPS):
            return candidate
    return None


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Decode caches go to a session folder, never to the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("metahw-cache")
    saved = os.environ.get("METAHW_CACHE")
    os.environ["METAHW_CACHE"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("METAHW_CACHE", None)
    else:
        os.environ["METAHW_CACHE"] = saved


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder holding the two official Omniglot background zips ($METAHW_DATA or ../shared/data/omniglot)."""
    found = _find_data_dir()
    if found is None:
        pytest.skip("Omniglot zips not found: set METAHW_DATA to the folder holding images_background_small{1,2}.zip")
    return found


@pytest.fixture(scope="session")
def omniglot(data_dir: Path, _private_cache: Path) -> OmniglotImages:
    """All 242 background characters, decoded once per session."""
    return load_omniglot(data_dir)


@pytest.fixture(scope="session")
def cli_env(_private_cache: Path, data_dir: Path) -> dict[str, str]:
    """Environment for `metahw` subprocesses: the session cache, the data, one thread."""
    return {**os.environ, **SINGLE_THREAD_ENV, "METAHW_CACHE": str(_private_cache), "METAHW_DATA": str(data_dir)}


@pytest.fixture(scope="session")
def tiny_checkpoint(omniglot: OmniglotImages, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-4 Conv-4 ProtoNet meta-trained for 40 episodes, saved once per session (read-only by convention)."""
    from metahw.models.checkpoint import save_checkpoint
    from metahw.models.train import TrainConfig, train

    cfg = TrainConfig(
        "protonet", ways=5, shots=1, queries=5, episodes=40, width=4, lr=3e-3, calibration_batches=3, val_episodes=20
    )
    ckpt = train(cfg, omniglot, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-protonet.pt"
    save_checkpoint(ckpt, path)
    return path


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured output of one in-process `metahw` run."""

    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, data_dir: Path):
    """Run `metahw ARGS` in this process through the real entry point, with the test data and output captured."""
    monkeypatch.setenv("METAHW_DATA", str(data_dir))

    def invoke(*args: object) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["metahw", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = capsys.readouterr()
        code = exit_info.value.code
        return CliResult(0 if code is None else int(code), out, err)

    return invoke
