"""Every format opencmap writes refuses a newer format version the same way: VersionError naming
the file (io/versions.py). Each test bumps the version of a copy of an archived file."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from opencmap.errors import ConfigError, FetchError, FormatError, StoreError, VersionError
from opencmap.io.versions import check_format_version

ARCHIVE = Path(__file__).resolve().parent.parent / "data" / "archive"
LATEST = sorted(p for p in ARCHIVE.iterdir() if p.is_dir())[-1]


@pytest.fixture
def copy(tmp_path):
    def make(name: str) -> Path:
        src = LATEST / name
        dest = tmp_path / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
        return dest

    return make


def _refused(exc: pytest.ExceptionInfo, path: Path, what: str) -> None:
    text = str(exc.value)
    assert text.startswith(f"{path}: "), text
    assert f"{what} format version" in text and "is newer than this opencmap supports" in text and "upgrade opencmap" in text
    assert exc.value.path == str(path)


# ---------------------------------------------------------------------------------- the helper
def test_helper_passes_older_and_equal_versions_and_refuses_newer() -> None:
    assert check_format_version(1, 2, what="store") == 1
    assert check_format_version("2", 2, what="store") == 2
    assert check_format_version(2.0, 2, what="store") == 2
    assert check_format_version((1, 0), (1, 1), what="GCTX") == (1, 0)
    with pytest.raises(VersionError) as exc:
        check_format_version(3, 2, what="store", path="/s/manifest.json")
    assert str(exc.value) == (
        "/s/manifest.json: store format version 3 is newer than this opencmap supports (<= 2): "
        "it was written by a newer opencmap; upgrade opencmap"
    )
    with pytest.raises(VersionError, match=r"GCTX2\.0 is newer .*\(<= GCTX1\.0\)"):
        check_format_version((2,), (1,), what="GCTX", shown=("GCTX2.0", "GCTX1.0"))


@pytest.mark.parametrize("also", [StoreError, ConfigError, FetchError])
def test_helper_keeps_the_callers_error_type_too(also) -> None:
    with pytest.raises(VersionError) as exc:
        check_format_version(5, 4, what="x", path="f", also=also)
    assert isinstance(exc.value, also) and exc.value.path == "f"


@pytest.mark.parametrize("bad", ["two", None, 1.5, [1]])
def test_helper_refuses_a_version_that_is_no_whole_number(bad) -> None:
    with pytest.raises(FormatError, match="not a whole number") as exc:
        check_format_version(bad, 2, what="store", path="m.json")
    assert not isinstance(exc.value, VersionError)


# ---------------------------------------------------------------------------------- each format
def test_store(copy) -> None:
    from opencmap.query.store import STORE_FORMAT_VERSION, Store

    folder = copy("store")
    mpath = folder / "manifest.json"
    m = json.loads(mpath.read_text())
    m["format_version"] = STORE_FORMAT_VERSION + 1  # the archive holds an older format
    mpath.write_text(json.dumps(m))
    with pytest.raises(VersionError) as exc:
        Store(folder)
    _refused(exc, mpath, "store")


def test_background(copy) -> None:
    from opencmap.query.background import load_background
    from opencmap.query.store import Store

    folder = copy("store")
    mpath = folder / "manifest.json"
    m = json.loads(mpath.read_text())
    m["backgrounds"]["sig"]["format_version"] = 99
    mpath.write_text(json.dumps(m))
    with pytest.raises(VersionError) as exc:
        load_background(Store(folder), "sig")
    _refused(exc, mpath, "τ background 'sig'")


def test_fdr_null_cache(copy) -> None:
    from opencmap.query.fdr_null import load_or_build_null
    from opencmap.query.store import Store

    folder = copy("store")
    (meta_path,) = folder.glob("fdr_null/*/meta.json")
    meta = json.loads(meta_path.read_text())
    meta["params"]["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    q = json.loads((LATEST / "query.json").read_text())
    with pytest.raises(VersionError) as exc:
        load_or_build_null(Store(folder), n_up=len(q["up"]), n_down=len(q["down"]), n_random=q["options"]["fdr_null_size"])
    _refused(exc, meta_path, "FDR null cache")


def test_query_result(copy) -> None:
    from opencmap.query.result import QueryResult

    path = copy("result.ocr")
    buf = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buf, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "header.json":
                header = json.loads(data)
                header["format_version"] += 1
                data = json.dumps(header).encode()
            dst.writestr(item, data)
    path.write_bytes(buf.getvalue())
    with pytest.raises(VersionError) as exc:
        QueryResult.load(path)
    _refused(exc, path, "query result")


def test_job_database(copy) -> None:
    from opencmap.api.jobs.store import JobDB

    path = copy("jobs.db")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    conn.close()
    with pytest.raises(VersionError) as exc:
        JobDB(path)
    _refused(exc, path, "job database")
    assert isinstance(exc.value, StoreError) and "OPENCMAP_DB_PATH" in str(exc.value)


def test_fetch_manifest(tmp_path) -> None:
    from opencmap.io.fetch import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, _read_manifest

    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps({"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION + 1, "files": {}}))
    with pytest.raises(VersionError) as exc:
        _read_manifest(tmp_path)
    _refused(exc, path, "fetch manifest")
    assert isinstance(exc.value, FetchError)


def test_pipeline_work_folder(copy) -> None:
    from opencmap.pipeline.workfolder import WorkFolder

    folder = copy("run")
    path = folder / "work" / "run.json"
    stored = json.loads(path.read_text())
    stored["format_version"] += 1
    path.write_text(json.dumps(stored))
    with pytest.raises(VersionError) as exc:
        WorkFolder(folder / "work", stored["identity"], restart=False)
    _refused(exc, path, "pipeline work folder")
    assert isinstance(exc.value, ConfigError)


def test_pipeline_parameters(copy) -> None:
    from opencmap.pipeline.params import PARAMS_VERSION, PipelineParams

    manifest = json.loads((copy("run") / "manifest.json").read_text())
    params = dict(manifest["params"], params_version=PARAMS_VERSION + 1)
    with pytest.raises(VersionError, match="pipeline parameters format version") as exc:
        PipelineParams.from_dict(params)
    assert isinstance(exc.value, ConfigError)


def test_compendium_manifest(tmp_path) -> None:
    from opencmap.datasets import open_compendium
    from opencmap.datasets.make import MANIFEST_FORMAT, MANIFEST_VERSION

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION + 1}))
    with pytest.raises(VersionError) as exc:
        open_compendium(tmp_path)
    _refused(exc, path, "synthetic compendium manifest")


def test_gctx(copy) -> None:
    from opencmap.io import read_gct

    path = copy("matrix.gctx")
    with h5py.File(path, "r+") as h5:
        h5.attrs["version"] = np.bytes_(b"GCTX2.0")
    with pytest.raises(VersionError, match="GCTX2.0") as exc:
        read_gct(path)
    assert str(path) in str(exc.value) and "newer than this opencmap supports" in str(exc.value)


def test_inference_model(copy) -> None:
    from opencmap.pipeline.infer import load_inference_model

    path = copy("inference_model.h5")
    with h5py.File(path, "r+") as h5:
        h5.attrs["format_version"] = int(h5.attrs["format_version"]) + 1
    with pytest.raises(VersionError) as exc:
        load_inference_model(path)
    text = str(exc.value)
    assert text.startswith(f"{path}, node /: inference model format version") and "newer than this opencmap supports" in text
