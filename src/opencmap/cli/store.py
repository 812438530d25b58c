"""``opencmap store``: build, inspect, extend and compact reference stores; build tau backgrounds."""

from __future__ import annotations

import json
from pathlib import Path

import click
from tqdm import tqdm

__all__ = ["command"]


def _bar(desc: str):  # type: ignore[no-untyped-def]
    bar = tqdm(desc=desc, unit="sig", file=None, disable=None, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return bar, progress


@click.group(name="store")
def command() -> None:
    """Build, inspect and extend reference stores; build tau backgrounds."""


@command.command("build")
@click.argument("signatures", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--sig-info", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="sig_info table (default: column metadata).")
@click.option("--gene-info", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Gene table with pr_is_lm / pr_is_bing (default: row metadata).")
@click.option("--space", "spaces", multiple=True, help="Feature space to build: lm, bing, full (repeatable; default: all the gene table defines).")
@click.option("--gene-list", "gene_lists", multiple=True, metavar="NAME=FILE.grp", help="Extra space from a GRP gene list (repeatable).")
@click.option("--default-space", help="Space queries use by default.")
@click.option("--signature-major/--no-signature-major", default=True, show_default=True, help="Also store scores signature-major.")
@click.option("--block-size", type=int, default=None, help="Signatures per block (bounds memory; default: about 2 GiB of buffers).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
def build(signatures: Path, dest: Path, sig_info: Path | None, gene_info: Path | None, spaces: tuple[str, ...],
          gene_lists: tuple[str, ...], default_space: str | None, signature_major: bool, block_size: int | None, overwrite: bool) -> None:
    """Build a reference store DEST from Level 5 SIGNATURES (GCT/GCTX, or an AnnData .h5ad with signatures as obs)."""
    from opencmap.io import read_grp
    from opencmap.query.store import build_store

    lists = {}
    for item in gene_lists:
        name, sep, path = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=FILE, got {item!r}", param_hint="--gene-list")
        lists[name] = read_grp(path)
    bar, progress = _bar("building")
    with bar:
        store = build_store(dest, signatures, sig_info=sig_info, gene_info=gene_info, spaces=list(spaces) or None,
                            gene_lists=lists or None, default_space=default_space, signature_major=signature_major,
                            block_size=block_size, overwrite=overwrite, progress=progress)
    click.echo(json.dumps(store.info(), indent=1))


@command.command("append")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("signatures", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sig-info", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="sig_info table of the new signatures.")
@click.option("--block-size", type=int, default=None, help="Signatures per block (default: about 2 GiB of buffers).")
@click.option("--keep-backgrounds", is_flag=True,
              help="Keep the tau backgrounds, marked stale (appended signatures get no tau until rebuilt).")
def append(store: Path, signatures: Path, sig_info: Path | None, block_size: int | None, keep_backgrounds: bool) -> None:
    """Add SIGNATURES to STORE as a new segment (tau backgrounds must be rebuilt afterwards)."""
    from opencmap.query.store import append_store

    bar, progress = _bar("appending")
    with bar:
        st = append_store(store, signatures, sig_info=sig_info, block_size=block_size,
                          keep_backgrounds=keep_backgrounds, progress=progress)
    click.echo(json.dumps(st.info(), indent=1))


@command.command("compact")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
def compact(store: Path) -> None:
    """Merge the segments of STORE (left by appends) into one."""
    from opencmap.query.store import compact_store

    bar, progress = _bar("compacting")
    bar.unit = "values"
    with bar:
        st = compact_store(store, progress=progress)
    click.echo(json.dumps(st.info(), indent=1))


@command.command("background")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--query-sigs", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="GRP of sig_ids used as background queries (default: exemplars).")
@click.option("--n-genes", default=50, show_default=True, help="Top/bottom genes per background query.")
@click.option("--query-space", help="Space the query genes are picked from (default lm if present).")
@click.option("--pcl", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PCL GMT (members = pert_ids).")
@click.option("--symmetric/--no-symmetric", default=True, show_default=True)
@click.option("--same-cell/--all-cells", default=True, show_default=True, help="Mask the background to the row's cell line.")
def background(store: Path, query_sigs: Path | None, n_genes: int, query_space: str | None, pcl: Path | None,
               symmetric: bool, same_cell: bool) -> None:
    """Build the tau backgrounds of STORE by querying it with its own signatures."""
    from opencmap.io import read_grp
    from opencmap.query.background import build_background

    bar, progress = _bar("background")
    with bar:
        entries = build_background(store, query_sigs=read_grp(query_sigs) if query_sigs else None, n_genes=n_genes,
                                   query_space=query_space, pcl=pcl, symmetric=symmetric, same_cell=same_cell,
                                   progress=progress)
    click.echo(json.dumps({k: {"n_rows": v["n_rows"], "n_queries": v["n_queries"]} for k, v in entries.items()}, indent=1))


@command.command("info")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verify", is_flag=True, help="Recompute every checksum.")
def info(store: Path, verify: bool) -> None:
    """Describe STORE (and check its files with --verify)."""
    from opencmap.query.store import Store

    st = Store(store)
    if verify:
        st.verify()
    out = st.info()
    if verify:
        out["verified"] = True
    click.echo(json.dumps(out, indent=1))
