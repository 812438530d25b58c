"""``opencmap query``: run connectivity queries against a reference store.

Printed: the top connections per query on stdout (:mod:`opencmap.cli.tables`: a compact table on
a terminal, every column as TSV when piped; ``--columns``, ``--format-stdout``), and a notes block
on stderr saying what the result used (:meth:`QueryResult.report`), flags named as on the command
line. With ``--out``, the full results
are written as a new folder (written aside, then swapped in); a non-empty folder needs
``--overwrite``. ``--scheduler`` scores on a Dask cluster (:mod:`opencmap.cli.scheduler`).
Everything that can be refused (output folder, PCL file, level) is checked before
the query runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from opencmap.cli.scheduler import scheduler_option
from opencmap.core.schema import LEVELS

__all__ = ["command"]

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(name="query")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--up", "up_file", type=_FILE, help="Up genes: GMT (several queries, paired by name with --down) or GRP.")
@click.option("--down", "down_file", type=_FILE, help="Down genes: GMT or GRP.")
@click.option("--up-genes", help="Comma-separated up genes (Entrez ids, Ensembl ids or symbols).")
@click.option("--down-genes", help="Comma-separated down genes.")
@click.option("--sig-id", "sig_ids", multiple=True, help="Use a store signature as the query (its top/bottom genes; repeatable).")
@click.option("--vectors", type=_FILE, help="GCT/GCTX of numeric query profiles (genes x queries) for cosine/pearson/spearman.")
@click.option("--de", "de_tables", type=_FILE, multiple=True,
              help="Differential-expression table (DESeq2/edgeR/limma/Seurat/scanpy CSV, TSV or .xlsx) or a scanpy .h5ad "
                   "with rank_genes_groups: one query per contrast (repeatable).")
@click.option("--de-padj", default=0.05, show_default=True, help="Keep DE rows with adjusted p-value <= this (1: no filter).")
@click.option("--de-top", default=150, show_default=True, help="DE genes per side: the largest |log fold change| among the kept rows.")
@click.option("--de-gene-col", help="DE table column of gene ids (default: detected; row names as a fallback).")
@click.option("--de-lfc-col", help="DE table column of log fold changes (default: detected).")
@click.option("--de-padj-col", help="DE table column of adjusted p-values (default: detected).")
@click.option("--de-group-col", help="DE table column splitting it into contrasts (default: group/contrast/cluster if present).")
@click.option("--de-sheet", help="Excel sheet of the DE table: name or 0-based position (default: the first).")
@click.option("--rnk", "rnk_files", type=_FILE, multiple=True, help="Pre-ranked gene list (gene<TAB>score) as a vector query (cosine/pearson/spearman; repeatable).")
@click.option("--sig-genes", default=50, show_default=True, help="Genes per direction for --sig-id queries.")
@click.option("--name", default="query", show_default=True, help="Name of a single query.")
@click.option("--metric", default="wtcs", show_default=True, help="wtcs, cs, lamb, xsum, rankz (gene sets); cosine, pearson, spearman (vectors, or --sig-id).")
@click.option("--es-tail", type=click.Choice(["both", "up", "down"]), help="Tail for wtcs/cs (default both).")
@click.option("--space", help="Feature space (default: the store's default).")
@click.option("--min-genes", default=10, show_default=True)
@click.option("--max-genes", default=150, show_default=True)
@click.option("--pcl", type=_FILE, help="PCL GMT (members = pert_ids) for PCL summaries (default: the PCLs stored with the store).")
@click.option("--tau-method", type=click.Choice(["exact", "cmap"]), default="exact", show_default=True)
@click.option("--fdr-method", type=click.Choice(["random_query_pooled", "random_query", "cmap"]), default="random_query_pooled", show_default=True,
              help="FDR q-values: random-query nulls with BH (pooled tail / per signature), or cmapM's method against the null signatures (flagged where it says nothing).")
@click.option("--fdr-null-size", type=int, default=None, help="Random queries per query size for the random-query FDR (default 1000; cached in the store).")
@click.option("--fdr-seed", type=int, default=None, help="Seed of the random queries (default 0).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Write full results as this new folder.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder whole (no file of the earlier run is kept).")
@click.option("--format", "fmt", type=click.Choice(["tsv", "parquet", "gctx", "h5ad"]), default="tsv", show_default=True,
              help="Files of --out: long tables (tsv, parquet), one GCTX per level and metric, or one AnnData .h5ad per level (needs anndata).")
@click.option("--top", default=20, show_default=True, help="Connections to print per query.")
@click.option("--level", type=click.Choice(list(LEVELS)), default="sig",
              show_default=True, help="Level to print (pcl_* levels need --pcl or PCLs stored with the store).")
@click.option("--direction", type=click.Choice(["positive", "negative", "both"]), default="positive", show_default=True)
@click.option("--columns", help="Comma-separated columns to print (default: a compact set per level, e.g. rank,pert_iname,"
              "pert_type,cell_id,pert_idose,pert_itime,tau,ncs,wtcs,fdr_q; 'all' for every column).")
@scheduler_option
@click.option("--format-stdout", "stdout_format", type=click.Choice(["auto", "table", "tsv"]), default="auto", show_default=True,
              help="Printed connections: a table on a terminal, TSV (every column unless --columns) when piped; or force one.")
def command(store: Path, up_file: Path | None, down_file: Path | None, up_genes: str | None, down_genes: str | None,
            sig_ids: tuple[str, ...], vectors: Path | None, de_tables: tuple[Path, ...], de_padj: float, de_top: int,
            de_gene_col: str | None, de_lfc_col: str | None, de_padj_col: str | None, de_group_col: str | None,
            de_sheet: str | None, rnk_files: tuple[Path, ...], sig_genes: int, name: str, metric: str, es_tail: str | None, space: str | None,
            min_genes: int, max_genes: int, pcl: Path | None, tau_method: str, fdr_method: str, fdr_null_size: int | None,
            fdr_seed: int | None, out_dir: Path | None, overwrite: bool,
            fmt: str, top: int, level: str, direction: str, columns: str | None, scheduler: str | None, stdout_format: str) -> None:
    """Query STORE with up/down gene sets (files or lists) or store signatures.

    Genes may be Entrez ids, Ensembl gene ids, current or previous symbols or aliases; how each
    was read, and what was not used, is printed as notes."""
    from opencmap.errors import GeneIdentityWarning, OpenCMapWarning
    from opencmap.io.atomic import check_output_dir
    from opencmap.query.pcl import check_levels
    from opencmap.io.result_archive import FOLDER_MARKERS

    if out_dir is not None:
        check_output_dir(out_dir, overwrite=overwrite, flag="--overwrite", replaceable=FOLDER_MARKERS)
    if pcl is None:  # the PCLs stored with the store stand in for --pcl
        from opencmap.query.store import Store

        check_levels([level], Store(store).pcl)
    # the library's warnings are shown once, in the notes block, not as Python warning lines
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", OpenCMapWarning)
        result = _run(store, pcl, level, metric, space, sig_genes, scheduler,
                      {"up_file": up_file, "down_file": down_file, "up": _genes(up_genes), "down": _genes(down_genes),
                       "name": name, "vectors": vectors, "sig_ids": sig_ids, "de_tables": de_tables, "rnk_files": rnk_files},
                      {"padj": None if de_padj >= 1 else de_padj, "top": de_top, "sheet": _sheet(de_sheet), "gene_col": de_gene_col,
                       "lfc_col": de_lfc_col, "padj_col": de_padj_col, "group_col": de_group_col},
                      {"min_genes": min_genes, "max_genes": max_genes, "tau_method": tau_method, "fdr_method": fdr_method,
                       "fdr_null_size": fdr_null_size, "fdr_seed": fdr_seed, "require_levels": [level],
                       **({} if es_tail is None else {"es_tail": es_tail})})
    lines = result.report()
    # gene identity warnings repeat what each query's notes already say (ValidatedQuery.notes)
    lines += [
        f"warning: {w.message}"
        for w in seen
        if issubclass(w.category, OpenCMapWarning) and not issubclass(w.category, GeneIdentityWarning) and str(w.message) not in lines
    ]
    from opencmap.cli.messages import for_cli

    click.echo("notes:", err=True)
    for line in lines:
        click.echo(f"  {for_cli(line)}", err=True)
    for w in seen:  # anything else: category and message, without Python's source line
        if not issubclass(w.category, OpenCMapWarning):
            click.echo(f"warning ({w.category.__name__}): {for_cli(str(w.message))}", err=True)
    from opencmap.cli.tables import print_connections

    tables = [(q.name, result.top(top, query=q.name, level=level, direction=direction)) for q in result.queries]
    print_connections(tables, level=level, direction=direction, metric=metric, columns=columns, stdout_format=stdout_format)
    if out_dir is not None:
        files = result.write(out_dir, format=fmt, overwrite=overwrite, overwrite_flag="--overwrite")
        click.echo(f"wrote {len(files)} files to {out_dir} (notes.txt: what the result used)", err=True)


def _genes(text: str | None) -> list[str] | None:
    """A comma-separated gene list (None when the option was not given or is empty)."""
    return None if not text else [g for g in text.split(",") if g.strip()]


def _sheet(text: str | None) -> str | int | None:
    """``--de-sheet``: a 0-based position when it is a number, else a sheet name."""
    return int(text) if text is not None and text.isdigit() else text


def _run(store: Path, pcl: Path | None, level: str, metric: str, space: str | None, sig_genes: int, scheduler: str | None,
         inputs: dict[str, Any], de_options: dict[str, Any], options: dict[str, Any]) -> Any:
    """Open the store (and PCLs), build the request (:func:`opencmap.query.request.build_request`)
    and run it; returns the QueryResult (its notes open with the request's, e.g. a DE table's selection)."""
    from opencmap.cli.progress import Progress
    from opencmap.cli.scheduler import backend_for
    from opencmap.query.engine import Engine
    from opencmap.query.methods import get_method
    from opencmap.query.request import build_request

    engine = Engine(store, pcl=pcl, backend=backend_for(scheduler))
    if level != "sig" and not get_method(metric).connectivity:
        raise click.UsageError(f"--level {level} needs a connectivity metric (wtcs, cs); {metric} results have only the sig level")
    request = build_request(engine.store, metric=metric, space=space, n_sig_genes=sig_genes, de_options=de_options, **inputs, **options)
    if not request.queries:
        raise click.UsageError("give --up/--down files, --up-genes/--down-genes, --vectors, --sig-id, --de or --rnk")
    with Progress(unit="sig") as bar:
        return request.run(engine, progress=bar.for_stage("scoring"))
