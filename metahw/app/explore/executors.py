"""Where trials run: a local process pool, or Ray remote tasks on an existing cluster.

Both hand back `concurrent.futures.Future`s, so the driver waits on either the same way;
`slots` is how many trials it keeps in flight.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from metahw.errors import UserError


class RayExecutor(Executor):
    """Submits each call as a Ray remote task on the cluster at `address` (`ray.init(address=...)`)."""

    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise UserError(
                "a Ray cluster (`ray_address`) needs the 'ray' package (pip install 'metahw[ray]' or pip install ray).",
                ("ray_address",),
            ) from None
        self._ray = ray
        self._owns_connection = not ray.is_initialized()
        if self._owns_connection:
            try:
                ray.init(address=address, log_to_driver=False)
            except ConnectionError as exc:
                raise UserError(f"cannot connect to the Ray cluster at {address} ({exc}).") from None
        self._remote: dict[Callable, Any] = {}
        self._refs: list = []

    @property
    def slots(self) -> int:
        """The cluster's CPUs: one trial per CPU."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Run `fn(*args, **kwargs)` as a remote task; its result arrives on the returned future."""
        if fn not in self._remote:
            self._remote[fn] = self._ray.remote(fn)
        ref = self._remote[fn].remote(*args, **kwargs)
        self._refs.append(ref)
        return ref.future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancel unfinished tasks when asked, then disconnect if this executor connected."""
        if cancel_futures:
            for ref in self._refs:
                with contextlib.suppress(Exception):  # a task that already finished cannot be cancelled
                    self._ray.cancel(ref, force=True)
        if self._owns_connection:
            self._ray.shutdown()


@dataclass(frozen=True)
class Pool:
    """An executor and the number of trials to keep in flight on it."""

    executor: Executor
    slots: int


@contextlib.contextmanager
def open_pool(workers: int | None = None, ray_address: str | None = None) -> Iterator[Pool]:
    """A process pool of `workers` (default: the CPU count), or Ray tasks when `ray_address` is given."""
    if workers is not None and workers < 1:
        raise UserError(f"`workers` must be >= 1, got {workers}.", ("workers",))
    if ray_address is not None:
        executor = RayExecutor(ray_address)
        pool = Pool(executor, workers or executor.slots)
    else:
        workers = workers or os.cpu_count() or 1
        # spawned, not forked: a worker forked from a driver that has used torch's thread pools
        # can hang for ever on a lock inherited mid-use (seen in load_state_dict)
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        pool = Pool(executor, workers)
    try:
        yield pool
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
