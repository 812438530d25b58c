"""``opencmap store``: build, append, background, info (CliRunner)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from opencmap.cli import cli
from opencmap.query.store import Store, build_store


_SYNTHETIC = runpy.run_path(str(Path(__file__).resolve().parents[1] / "query" / "synthetic_level5.py"))
make_level5 = _SYNTHETIC["make_level5"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from opencmap.io import write_gctx, write_table

    gct, info, prog = make_level5(seed=3)
    d = tmp_path_factory.mktemp("cli_store")
    write_gctx(gct.take(cols=np.arange(60)), d / "first.gctx")
    write_gctx(gct.take(cols=np.arange(60, gct.shape[1])), d / "second.gctx")
    write_gctx(gct, d / "all.gctx")
    write_table(info, d / "sig_info.txt")
    return d, gct, info


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res


def test_build_append_background_info(files):
    d, gct, info = files
    res = run("store", "build", d / "first.gctx", d / "store", "--sig-info", d / "sig_info.txt", "--block-size", 16)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_signatures"] == 60
    res = run("store", "append", d / "store", d / "second.gctx", "--sig-info", d / "sig_info.txt")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["n_segments"] == 2
    res = run("store", "background", d / "store")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["sig"]["n_rows"] == gct.shape[1]
    res = run("store", "info", d / "store", "--verify")
    out = json.loads(res.stdout)
    assert out["verified"] and out["n_signatures"] == gct.shape[1] and "sig" in out["backgrounds"]
    full = build_store(d / "ref", gct, sig_info=info)
    appended = Store(d / "store")
    np.testing.assert_array_equal(
        full.signature_scores(np.arange(gct.shape[1])), appended.signature_scores(np.arange(gct.shape[1]))
    )


def test_errors_are_one_line(files):
    d, _, _ = files
    from opencmap.cli import main

    (d / "bad").mkdir(exist_ok=True)
    (d / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        main(["store", "info", str(d / "bad")])
    assert exc.value.code == 2
    res = run("store", "build", d / "all.gctx", d / "gl", "--gene-list", "oops")
    assert res.exit_code != 0 and "NAME=FILE" in res.output


def test_append_keep_backgrounds_then_compact(files):
    d, gct, info = files
    store = d / "kc"
    assert run("store", "build", d / "first.gctx", store, "--sig-info", d / "sig_info.txt", "--block-size", 7).exit_code == 0
    assert run("store", "background", store).exit_code == 0
    res = run("store", "append", store, d / "second.gctx", "--sig-info", d / "sig_info.txt", "--keep-backgrounds")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    n_new = gct.shape[1] - 60
    assert out["n_segments"] == 2 and "sig" in out["backgrounds"] and out["stale_backgrounds"]["sig"] == n_new
    res = run("store", "compact", store)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["n_segments"] == 1 and out["n_signatures"] == gct.shape[1] and out["stale_backgrounds"]["sig"] == n_new
    assert json.loads(run("store", "info", store, "--verify").stdout)["verified"]
    ref = build_store(d / "kc_ref", gct, sig_info=info)
    pos = np.arange(gct.shape[1])
    np.testing.assert_array_equal(Store(store).signature_scores(pos), ref.signature_scores(pos))


def test_a_corrupt_store_file_is_one_line_exit_2(files, capsys):
    import shutil

    from opencmap.cli import main

    d, gct, info = files
    shutil.rmtree(d / "corrupt", ignore_errors=True)
    build_store(d / "corrupt", gct, sig_info=info)
    st = Store(d / "corrupt")
    genes = list(st.space().gene_ids)
    f = d / "corrupt" / "segments" / st.segments[0].name / st.default_space / "scores.npy"
    arr = np.load(f, mmap_mode="r+")
    arr[:, 3] = -arr[:, 3] + 1.5  # every gene row of one signature
    arr.flush()
    del arr
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["query", str(d / "corrupt"), "--up-genes", ",".join(genes[:12]), "--down-genes", ",".join(genes[-12:])])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{f} is corrupt: gene row " in err and f"signatures 0..{min(511, gct.shape[1] - 1)} " in err and "store info --verify" in err
