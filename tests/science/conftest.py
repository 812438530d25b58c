"""One small synthetic compendium run end to end (Level 3 -> Level 5 with CGS -> store + tau
backgrounds), built once per session in a temporary folder and shared by the science tests."""

from __future__ import annotations

import pytest

from .ground_truth import ScienceData, prepare


@pytest.fixture(scope="session")
def science_data(tmp_path_factory: pytest.TempPathFactory) -> ScienceData:
    return prepare(tmp_path_factory.mktemp("science"))
