"""Trials as Ray remote tasks on a one-CPU local cluster started with `ray start --head` (skipped without ray)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import tests.app.explore.fakes as fakes
from metahw.app.explore.executors import open_pool
from metahw.app.explore.objectives import OBJECTIVES
from metahw.app.explore.study import run_study

ray = pytest.importorskip("ray", reason="ray is not installed (optional: pip install 'metahw[ray]')")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Address of a fresh head node; the `ray start --block` process (and with it the node) is ended afterwards."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    port = _free_port()
    temp = tmp_path_factory.mktemp("ray")
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            "--num-cpus",
            "1",
            "--port",
            str(port),
            "--node-ip-address",
            "127.0.0.1",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
            "--temp-dir",
            str(temp),
        ],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"127.0.0.1:{port}"
    head.terminate()
    head.wait(timeout=30)


def test_trials_run_as_ray_tasks(ray_head: str, tmp_path: Path):
    ray.cloudpickle.register_pickle_by_value(fakes)  # the workers cannot import the test package
    with open_pool(ray_address=ray_head) as pool:
        assert pool.slots == 1
        outcome = run_study(
            fakes.space(),
            tuple(OBJECTIVES.values()),
            4,
            fakes.fake_evaluate,
            tmp_path,
            pool,
            {"study": "ray"},
            progress=False,
        )
    assert outcome.ran == 4 and {r["state"] for r in outcome.records} == {"complete"}
    assert not ray.is_initialized()
