"""Fixtures for the query engine tests (data: :mod:`synthetic_level5`)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

_SYNTHETIC = runpy.run_path(str(Path(__file__).with_name("synthetic_level5.py")))
make_level5 = _SYNTHETIC["make_level5"]
PCL = _SYNTHETIC["PCL"]


@pytest.fixture(scope="session")
def level5():
    return make_level5()


@pytest.fixture(scope="session")
def built_store(level5, tmp_path_factory):
    """A store of the synthetic compendium with tau backgrounds (built once per session)."""
    from opencmap.query.background import build_background
    from opencmap.query.store import build_store

    gct, info, _ = level5
    path = tmp_path_factory.mktemp("store") / "ref"
    store = build_store(path, gct, sig_info=info, block_size=50)
    build_background(store, pcl=PCL)
    from opencmap.query.store import Store

    return Store(path)


@pytest.fixture(scope="session")
def pcl():
    """The PCLs of the synthetic compendium."""
    return PCL
