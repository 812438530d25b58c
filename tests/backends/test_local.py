"""The backend seam: settings, the local backend's thread rules, and results equal whatever the settings."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from opencmap.backends import Backend, BlockTask, LocalBackend, Settings, block_bounds, default_backend, resolve_backend
from opencmap.errors import ConfigError


def test_settings_defaults_are_todays_values_and_validate():
    s = Settings()
    assert (s.query_block_bytes, s.es_block_bytes, s.es_block_min) == (48 << 20, 32 << 20, 1024)
    assert (s.build_memory, s.build_sync_bytes, s.build_release_fraction, s.random_access_fraction) == (2 << 30, 1 << 28, None, 0.5)
    assert s.kernel_options("wtcs_network_max", "parallel_min") == {}  # the kernels' own defaults
    assert Settings(parallel_min=0).kernel_options("parallel_min") == {"parallel_min": 0}
    assert s.replace(threads=1).threads == 1 and s.threads is None
    with pytest.raises(ConfigError, match="threads"):
        Settings(threads=0)
    with pytest.raises(ConfigError, match="query_block_bytes"):
        Settings(query_block_bytes=-1)
    with pytest.raises(ConfigError, match="unknown setting"):
        s.replace(thread=2)


def test_local_backend_threads_follow_the_thread_rule():
    import numba

    backend = LocalBackend()
    assert isinstance(backend, Backend)
    assert backend.numba_threads() == numba.get_num_threads() == backend.pool_threads()
    assert LocalBackend(Settings(threads=1)).numba_threads() == 1
    seen = {}

    def work():
        seen["numba"] = backend.numba_threads()
        seen["pool"] = backend.pool_threads()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"numba": 1, "pool": numba.get_num_threads()}  # prange kernels: main thread only
    assert resolve_backend(None) is default_backend() and resolve_backend(backend) is backend
    assert backend.executor() is LocalBackend(Settings(threads=1)).executor()  # one process-wide pool


def _block_sum(task: BlockTask) -> float:
    return float(np.arange(task.start, task.stop).sum() * task.params["scale"])


def test_map_blocks_runs_every_task_in_order():
    tasks = [BlockTask("store", lo, hi, {"scale": 2}) for lo, hi in block_bounds(10, 3)]
    assert [(t.start, t.stop) for t in tasks] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    got = list(LocalBackend().map_blocks(_block_sum, tasks))
    assert got == [6.0, 24.0, 42.0, 18.0]
    assert block_bounds(0, 5) == []
