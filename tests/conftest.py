"""Shared fixtures: where CMap's real files live (``../shared/data`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

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
