"""The public surface is small, explicit and light to import."""

from __future__ import annotations

import subprocess
import sys

import opencmap

EXPECTED = {
    "__version__", "GCT",
    "OpenCMapError", "FormatError", "VersionError", "ValidationError", "IdNotFoundError",
    "GeneSetError", "StoreError", "PipelineError", "QueryError", "ConfigError", "OpenCMapWarning",
    "read_gct", "read_meta", "write_gct", "write_gctx", "GCTXWriter", "read_gmt", "write_gmt",
    "read_grp", "write_grp", "read_table", "write_table",
    "make_compendium", "open_compendium", "run_pipeline",
    "build_store", "open_store", "build_background", "run_query", "Engine", "run_demo",
}


def test_all_is_pinned() -> None:
    assert set(opencmap.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in opencmap.__all__:
        assert getattr(opencmap, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        opencmap.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover - must not happen
        raise AssertionError("expected AttributeError")


def test_import_is_light() -> None:
    code = (
        "import sys, opencmap; "
        "heavy = [m for m in ('fastapi', 'uvicorn', 'dask', 'numba', 'h5py', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_errors_form_one_tree() -> None:
    for name in ("FormatError", "VersionError", "ValidationError", "IdNotFoundError", "GeneSetError",
                 "StoreError", "PipelineError", "QueryError", "ConfigError"):
        assert issubclass(getattr(opencmap, name), opencmap.OpenCMapError)
