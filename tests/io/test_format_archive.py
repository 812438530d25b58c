"""Files written by earlier opencmap versions (tests/data/archive/<version>/) still read, with the
same values (anndata's practice). Each folder was written by tools/make_format_archive.py; see its
README.md. Files are copied to a temporary folder first, so nothing here writes into tests/data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from opencmap.io import read_gct, read_table
from opencmap.query.background import load_background
from opencmap.query.engine import Engine
from opencmap.query.fdr_null import load_or_build_null
from opencmap.query.genesets import Query
from opencmap.query.result import QueryResult
from opencmap.query.store import Store

ARCHIVE = Path(__file__).resolve().parent.parent / "data" / "archive"
FOLDERS = sorted(p for p in ARCHIVE.iterdir() if p.is_dir()) if ARCHIVE.is_dir() else []


def test_there_is_an_archive_and_it_is_small() -> None:
    assert FOLDERS, f"no archived files under {ARCHIVE}; write them with tools/make_format_archive.py"
    for folder in FOLDERS:
        assert (folder / "README.md").is_file() and (folder / "archive.json").is_file()
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        assert total < 2_000_000, f"{folder} holds {total} bytes; keep an archive under 2 MB"


@pytest.fixture(params=FOLDERS, ids=lambda p: p.name, scope="module")
def archived(request, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp(f"archive-{request.param.name}") / request.param.name
    shutil.copytree(request.param, dest)
    return dest


def _query(folder: Path) -> tuple[Query, dict]:
    q = json.loads((folder / "query.json").read_text())
    return Query(q["name"], up=tuple(q["up"]), down=tuple(q["down"])), dict(q["options"])


def _assert_same_result(got: QueryResult, expect: QueryResult, *, exact: bool = True) -> None:
    """Same levels, rows, columns and values (``exact=False``: floats to 1e-6 relative, for results
    computed again on a machine whose SIMD rounds the last bit of a sum differently)."""
    assert list(got.levels) == list(expect.levels)
    for level in expect.levels:
        if exact:
            pd.testing.assert_frame_equal(got.to_frame(level), expect.to_frame(level), check_exact=True)
        else:
            pd.testing.assert_frame_equal(got.to_frame(level), expect.to_frame(level), check_exact=False, rtol=1e-6, atol=1e-7)


def test_store_background_and_fdr_null_cache_read(archived: Path) -> None:
    store = Store(archived / "store")
    store.verify()  # every chunk checksum matches
    run_info = read_table(archived / "run" / "sig_info.txt")
    assert sorted(store.sig_ids) == sorted(run_info["sig_id"].astype(str))
    level5 = read_gct(archived / "run" / "level5.gctx")
    pos = store.sig_positions(list(level5.cids[:5]))
    assert pos.shape == (5,)
    bg = load_background(store, "sig")
    assert bg is not None and len(bg.ids) > 0 and np.isfinite(bg.values[:, 0]).all()
    query, options = _query(archived)
    null = load_or_build_null(store, n_up=len(query.up), n_down=len(query.down), n_random=options["fdr_null_size"])
    assert null.cached, "the archived FDR null cache was not read (it would have been rebuilt)"


def test_query_against_the_archived_store_equals_the_archived_result(archived: Path) -> None:
    query, options = _query(archived)
    got = Engine(Store(archived / "store")).run([query], **options)
    saved = QueryResult.load(archived / "result.ocr")
    _assert_same_result(got, saved, exact=False)
    assert got.describe()["notes"] == saved.describe()["notes"]
    assert "tau" in got.to_frame("sig") and got.to_frame("sig")["tau"].notna().any()
    # the tables of the result folder: same rows and scores
    table = pd.read_csv(archived / "result" / "sig.tsv", sep="\t", dtype={"sig_id": str})
    frame = got.to_frame("sig")
    assert table["sig_id"].tolist() == frame["sig_id"].astype(str).tolist()
    for col in ("wtcs", "ncs", "tau", "fdr_q"):
        np.testing.assert_allclose(table[col].to_numpy(float), frame[col].to_numpy(float), rtol=1e-6, equal_nan=True)
    describe = json.loads((archived / "result" / "describe.json").read_text())
    assert describe["notes"] == saved.describe()["notes"]


def test_job_database_reads_its_result(archived: Path) -> None:
    from opencmap.api.jobs.store import JobDB

    job_id = json.loads((archived / "archive.json").read_text())["job_id"]
    store = Store(archived / "store")
    db = JobDB(archived / "jobs.db")
    try:
        job = db.get(job_id)
        assert job is not None and job["status"] == "done"
        _assert_same_result(db.load_result(job_id, store_sig_info=store.sig_info), QueryResult.load(archived / "result.ocr"))
    finally:
        db.close()


def test_pipeline_outputs_read(archived: Path) -> None:
    from opencmap.pipeline.params import PipelineParams

    run = archived / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    params = PipelineParams.from_dict(manifest["params"])
    now = params.to_dict()
    # every archived parameter reads back as written; parameters added since take their defaults
    assert {k: now[k] for k in manifest["params"]} == manifest["params"]
    defaults = PipelineParams().to_dict()
    assert {k: v for k, v in now.items() if k not in manifest["params"]} == {k: defaults[k] for k in now if k not in manifest["params"]}
    level4, level5 = read_gct(run / "level4.gctx"), read_gct(run / "level5.gctx")
    info = read_table(run / "sig_info.txt")
    assert level5.cids.tolist() == info["sig_id"].astype(str).tolist()
    assert level4.data.shape[0] == level5.data.shape[0] and np.isfinite(level5.data).all()
    assert json.loads((run / "work" / "run.json").read_text())["identity"]


def test_gct_and_gctx_written_by_us_read_alike(archived: Path) -> None:
    text, hdf = read_gct(archived / "matrix.gct"), read_gct(archived / "matrix.gctx")
    assert text.rids.tolist() == hdf.rids.tolist() and text.cids.tolist() == hdf.cids.tolist()
    np.testing.assert_array_equal(text.data, hdf.data)  # text is written to round-trip float32 exactly
    level5 = read_gct(archived / "run" / "level5.gctx").subset(rids=list(hdf.rids), cids=list(hdf.cids))
    np.testing.assert_array_equal(hdf.data, level5.data)


def test_inference_model_reads_and_infers_the_archived_values(archived: Path) -> None:
    from opencmap.pipeline.infer import apply_inference, load_inference_model

    model = load_inference_model(archived / "inference_model.h5")
    inferred = read_gct(archived / "inferred.gct")
    assert set(model.dependent_ids) <= set(inferred.rids)
    # the landmark rows it was given come back unchanged, so they are its input again
    again = apply_inference(inferred.subset(rids=list(model.landmark_ids)), model, min_r=0.5)
    assert again.rids.tolist() == inferred.rids.tolist() and again.cids.tolist() == inferred.cids.tolist()
    lm = np.isin(inferred.rids, model.landmark_ids)
    np.testing.assert_array_equal(again.data[lm], inferred.data[lm])
    # inferred genes: the same OLS weights; BLAS may round the last float32 bit differently for
    # another memory layout of the input (seen: 12 of 4,000 values 1 ulp apart)
    np.testing.assert_allclose(again.data[~lm], inferred.data[~lm], rtol=1e-6, atol=0)
