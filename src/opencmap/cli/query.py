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
@click.option("--sig-genes", default=50, show_default=True, help="Genes per direction for --sig-id queries.")
@click.option("--name", default="query", show_default=True, help="Name of a single query.")
@click.option("--metric", default="wtcs", show_default=True, help="wtcs, cs, lamb, xsum, rankz (gene sets); cosine, pearson, spearman (vectors, or --sig-id).")
@click.option("--es-tail", type=click.Choice(["both", "up", "down"]), help="Tail for wtcs/cs (default both).")
@click.option("--space", help="Feature space (default: the store's default).")
@click.option("--min-genes", default=10, show_default=True)
@click.option("--max-genes", default=150, show_default=True)
@click.option("--pcl", type=_FILE, help="PCL GMT (members = pert_ids) for PCL summaries (default: the PCLs stored with the store).")
@click.option("--tau-method", type=click.Choice(["exact", "cmap"]), default="exact", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), help="Write full results into this folder.")
@click.option("--format", "fmt", type=click.Choice(["tsv", "parquet", "gctx"]), default="tsv", show_default=True)
@click.option("--top", default=20, show_default=True, help="Connections to print per query.")
@click.option("--level", default="sig", show_default=True, help="Level to print: sig, pert_cell, pert_summary, pcl_cell, pcl_summary.")
@click.option("--direction", type=click.Choice(["positive", "negative", "both"]), default="positive", show_default=True)
def command(store: Path, up_file: Path | None, down_file: Path | None, up_genes: str | None, down_genes: str | None,
            sig_ids: tuple[str, ...], vectors: Path | None, sig_genes: int, name: str, metric: str, es_tail: str | None, space: str | None,
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
    if not queries:
        raise click.UsageError("give --up/--down files, --up-genes/--down-genes, --vectors or --sig-id")
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
        files = result.write(out_dir, format=fmt)
        click.echo(f"wrote {len(files)} files to {out_dir}", err=True)
