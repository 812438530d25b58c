"""``opencmap query``: run connectivity queries against a reference store."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

__all__ = ["command"]

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(name="query")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--up", "up_file", type=_FILE, help="Up genes: GMT (several queries, paired by name with --down) or GRP.")
@click.option("--down", "down_file", type=_FILE, help="Down genes: GMT or GRP.")
@click.option("--up-genes", help="Comma-separated up genes (Entrez ids or symbols).")
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
@click.option("--pcl", type=_FILE, help="PCL GMT (members = pert_ids) for PCL summaries.")
@click.option("--tau-method", type=click.Choice(["exact", "cmap"]), default="exact", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write full results into this folder.")
@click.option("--format", "fmt", type=click.Choice(["tsv", "parquet", "gctx", "h5ad"]), default="tsv", show_default=True,
              help="Files of --out: long tables (tsv, parquet), one GCTX per level and metric, or one AnnData .h5ad per level (needs anndata).")
@click.option("--top", default=20, show_default=True, help="Connections to print per query.")
@click.option("--level", default="sig", show_default=True, help="Level to print: sig, pert_cell, pert_summary, pcl_cell, pcl_summary.")
@click.option("--direction", type=click.Choice(["positive", "negative", "both"]), default="positive", show_default=True)
def command(store: Path, up_file: Path | None, down_file: Path | None, up_genes: str | None, down_genes: str | None,
            sig_ids: tuple[str, ...], vectors: Path | None, de_tables: tuple[Path, ...], de_padj: float, de_top: int,
            de_gene_col: str | None, de_lfc_col: str | None, de_padj_col: str | None, de_group_col: str | None,
            de_sheet: str | None, rnk_files: tuple[Path, ...], sig_genes: int, name: str, metric: str, es_tail: str | None, space: str | None,
            min_genes: int, max_genes: int, pcl: Path | None, tau_method: str, out_dir: Path | None, fmt: str,
            top: int, level: str, direction: str) -> None:
    """Query STORE with up/down gene sets (files or lists) or store signatures."""
    from opencmap.query.engine import Engine
    from opencmap.query.genesets import as_queries, queries_from_files, queries_from_gct, signature_queries, vector_queries
    from opencmap.query.methods import get_method

    engine = Engine(store, pcl=pcl)
    queries = []
    if up_file or down_file:
        queries += queries_from_files(up_file, down_file, name=name)
    if up_genes or down_genes:
        split = lambda s: [g for g in (s or "").split(",") if g.strip()]  # noqa: E731
        queries += as_queries(split(up_genes), split(down_genes), name=name)
    vector_metric = get_method(metric).kind == "vector"
    if vectors:
        queries += queries_from_gct(vectors)
    if sig_ids:
        if vector_metric:
            queries += vector_queries(engine.store, list(sig_ids), space=space)
        else:
            queries += signature_queries(engine.store, list(sig_ids), n_genes=sig_genes)
    if de_tables or rnk_files:
        queries += _de_queries(engine.store, de_tables, rnk_files, space=space, padj=de_padj, top=de_top, min_genes=min_genes,
                               vector=vector_metric, gene_col=de_gene_col, lfc_col=de_lfc_col, padj_col=de_padj_col,
                               group_col=de_group_col, sheet=de_sheet)
    if not queries:
        raise click.UsageError("give --up/--down files, --up-genes/--down-genes, --vectors, --sig-id, --de or --rnk")
    options = {} if es_tail is None else {"es_tail": es_tail}
    bar = tqdm(desc="scoring", unit="sig", disable=None, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with bar:
        result = engine.run(queries, metric=metric, space=space, min_genes=min_genes, max_genes=max_genes,
                            tau_method=tau_method, progress=progress, **options)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    for q in result.queries:
        if q.unknown or q.dropped:
            click.echo(f"query {q.name}: dropped {len(q.unknown)} unknown and {len(q.dropped)} out-of-space genes", err=True)
        table = result.top(top, query=q.name, level=level, direction=direction)
        click.echo(f"# {q.name}: top {len(table)} at level {level} ({direction})")
        click.echo(table.to_csv(sep="\t", index=False, float_format="%.4f"), nl=False)
    if out_dir is not None:
        if fmt == "h5ad":
            out_dir.mkdir(parents=True, exist_ok=True)
            files = [result.write_h5ad(out_dir / f"{level_name}.h5ad", level=level_name) for level_name in result.levels]
        else:
            files = result.write(out_dir, format=fmt)
        click.echo(f"wrote {len(files)} files to {out_dir}", err=True)


def _de_queries(store, de_tables, rnk_files, *, space, padj, top, min_genes, vector, sheet, **columns):  # type: ignore[no-untyped-def]
    """Queries from DE tables / .h5ad / .rnk files, genes taken among the store's; notes on stderr."""
    import warnings

    from opencmap.errors import DESelectionWarning
    from opencmap.query.de import queries_from_de, queries_from_rnk, store_resolver

    resolver = store_resolver(store, space)
    sheet_arg = int(sheet) if sheet is not None and sheet.isdigit() else sheet
    queries = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DESelectionWarning)  # the same facts are printed as notes below
        for table in de_tables:
            de = queries_from_de(table, padj=None if padj >= 1 else padj, top=top, min_genes=min_genes, resolver=resolver,
                                 sheet=sheet_arg, vector=vector, **columns)
            queries += list(de)
            for sel in de.selections:
                click.echo(f"note: query {sel.name}: from {sel.source}: {sel.columns.describe() if sel.columns else sel.tool}; "
                           f"{len(sel.up)} up, {len(sel.down)} down genes" + (f", {sel.n_vector} vector values" if sel.n_vector else ""), err=True)
            for note in de.notes:
                click.echo(f"note: {note}", err=True)
        for rnk in rnk_files:
            de = queries_from_rnk(rnk, resolver=resolver)
            queries += list(de)
            for note in de.notes:
                click.echo(f"note: {note}", err=True)
    return queries
