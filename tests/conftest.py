"""Shared fixtures: where CMap's real files live (``../shared/data`` beside the checkout), and a backend
whose tasks run in spawned processes (:class:`SpawnedBackend`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("OPENCMAP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real L1000 test data (never edited). Skips locally if absent; fails on CI."""
    if not SHARED_DATA.is_dir():
        msg = f"shared test data not found at {SHARED_DATA} (set OPENCMAP_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED_DATA


class SpawnedBackend:
    """A distributed backend for tests: :meth:`map_blocks` pickles every task, runs it in a pool of
    2 *spawned* processes (nothing inherited from this one: the task and its module-level kernel
    must pickle, and the kernel must open its inputs from their paths) and yields the results in
    task order, as a cluster backend does. Everything else is the local backend's."""

    distributed = True

    def __init__(self, pool: Any, settings: Any = None) -> None:
        from opencmap.backends import LocalBackend

        self._local = LocalBackend(settings)
        self.settings = self._local.settings
        self._pool = pool
        self.tasks_run = 0

    def numba_threads(self) -> int:
        return self._local.numba_threads()

    def pool_threads(self) -> int:
        return self._local.pool_threads()

    def executor(self) -> Any:
        return self._local.executor()

    def map_blocks(self, kernel: Any, tasks: Any) -> Any:
        import pickle

        sent = [pickle.loads(pickle.dumps(t)) for t in tasks]  # nothing unpicklable in a task
        self.tasks_run += len(sent)
        yield from self._pool.map(kernel, sent)


@pytest.fixture(scope="session")
def _spawned_pool() -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture()
def spawned_backend(_spawned_pool: Any) -> SpawnedBackend:
    """A :class:`SpawnedBackend` (2 spawned worker processes, shared by the session's tests)."""
    return SpawnedBackend(_spawned_pool)
