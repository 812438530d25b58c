"""``opencmap store``: build, inspect, extend and compact reference stores; build tau backgrounds."""

from __future__ import annotations

import json
from pathlib import Path

import click
from opencmap.cli.progress import Progress
from opencmap.cli.scheduler import scheduler_option

__all__ = ["command"]


def _bar(desc: str, unit: str = "sig"):  # type: ignore[no-untyped-def]
    """Bars on a terminal, periodic lines otherwise (:class:`opencmap.cli.progress.Progress`)."""
    bar = Progress(unit=unit)
    return bar, bar.for_stage(desc)


@click.group(name="store")
def command() -> None:
    """Build, inspect and extend reference stores; build tau backgrounds."""


def _disk_line(estimate: dict) -> str:
    per = ", ".join(f"{k} {v / 1e3:.1f} KB" for k, v in estimate["bytes_per_signature_per_space"].items())
    return (f"store: {estimate['n_signatures']} signatures x {estimate['bytes_per_signature'] / 1e3:.1f} KB "
            f"({per}) = {estimate['total_bytes'] / 1e9:.2f} GB on disk")


@command.command("build")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--release", type=click.Choice(["GSE92742", "GSE70138", "LINCS2020", "opencmap"]),
              help="Release of the folder(s) (default: detected from the file names).")
@click.option("--sig-info", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="sig_info table (matrix file only; default: column metadata).")
@click.option("--gene-info", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Gene table: GEO gene_info or LINCS 2020 geneinfo_beta (matrix file only; default: row metadata).")
@click.option("--pert-info", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Perturbagen annotations carried into the store (moa, target): compoundinfo_beta.txt, a pert_info with moa/target.")
@click.option("--pcl", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PCL GMT (members = pert_ids), stored: queries then summarise by PCL without --pcl.")
@click.option("--pert-type", "pert_types", multiple=True, help="Keep only these pert types, e.g. trt_cp (repeatable).")
@click.option("--exemplar-only", is_flag=True, help="Keep only exemplar signatures (is_exemplar_sig / sig_metrics is_exemplar).")
@click.option("--qc-pass", is_flag=True, help="Keep only signatures with qc_pass = 1 (LINCS 2020).")
@click.option("--cell", "cells", multiple=True, help="Keep only these cell lines (repeatable).")
@click.option("--time", "times", multiple=True, help="Keep only these time points in hours, e.g. 24 (repeatable).")
@click.option("--touchstone", is_flag=True, help="Keep only Touchstone perturbagens (is_touchstone / is_gold).")
@click.option("--dry-run", is_flag=True, help="Only state what would be stored and the disk it needs.")
@click.option("--matrix", "matrix_name", help="Level 5 file of the folder to use when it holds several (LINCS 2020 default: level5_beta_trt_cp_*; e.g. level5_beta_ctl_n58022x12328.gctx).")
@click.option("--space", "spaces", multiple=True, help="Feature space to build: lm, bing, full (repeatable; default: all the gene table defines).")
@click.option("--gene-list", "gene_lists", multiple=True, metavar="NAME=FILE.grp", help="Extra space from a GRP gene list (repeatable).")
@click.option("--default-space", help="Space queries use by default.")
@click.option("--signature-major/--no-signature-major", default=True, show_default=True, help="Also store scores signature-major.")
@click.option("--block-size", type=int, default=None, help="Signatures per block (bounds memory; default: about 2 GiB of buffers).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store.")
@scheduler_option
def build(sources: tuple[Path, ...], dest: Path, release: str | None, sig_info: Path | None, gene_info: Path | None,
          pert_info: Path | None, pcl: Path | None, pert_types: tuple[str, ...], exemplar_only: bool, qc_pass: bool,
          cells: tuple[str, ...], times: tuple[str, ...], touchstone: bool, dry_run: bool, matrix_name: str | None,
          spaces: tuple[str, ...], gene_lists: tuple[str, ...], default_space: str | None, signature_major: bool,
          block_size: int | None, overwrite: bool, scheduler: str | None) -> None:
    """Build a reference store DEST from release folder(s) or a Level 5 matrix file.

    SOURCES: one or more release folders (GSE92742, GSE70138, LINCS 2020 or an `opencmap process`
    output; several are combined into one store), or one GCT/GCTX file with --sig-info/--gene-info, or an
    AnnData .h5ad holding signatures as obs.
    """
    from opencmap.io import read_grp

    lists = {}
    for item in gene_lists:
        name, sep, path = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=FILE, got {item!r}", param_hint="--gene-list")
        lists[name] = read_grp(path)
    folders = [p for p in sources if p.is_dir()]
    if folders and len(folders) != len(sources):
        raise click.BadParameter("give release folders or one matrix file, not both", param_hint="SOURCES")
    filtered = bool(pert_types or exemplar_only or qc_pass or cells or times or touchstone)
    if folders:
        if sig_info or gene_info:
            raise click.BadParameter("a release folder brings its own tables; --sig-info/--gene-info are for a matrix file")
        _build_release(folders, dest, release=release, pert_info=pert_info, pcl=pcl, pert_types=pert_types,
                       exemplar_only=exemplar_only, qc_pass=qc_pass, cells=cells, times=times, touchstone=touchstone,
                       dry_run=dry_run, spaces=spaces, gene_lists=lists, default_space=default_space,
                       signature_major=signature_major, block_size=block_size, overwrite=overwrite, matrix=matrix_name,
                       scheduler=scheduler)
        return
    if len(sources) != 1:
        raise click.BadParameter("give one matrix file (or release folders)", param_hint="SOURCES")
    if release or filtered or dry_run or matrix_name:
        raise click.BadParameter("--release, --matrix, filters and --dry-run need release folders", param_hint="SOURCES")
    from opencmap.query.store import build_store

    info = None
    if pert_info is not None:
        from opencmap.io.releases import annotate_signatures
        from opencmap.query.release_store import read_pert_annotations
        from opencmap.io.store.writer import _load_table

        info = annotate_signatures(_load_table(sig_info), read_pert_annotations(pert_info), matrix=sources[0])
    from opencmap.cli.scheduler import backend_for

    backend = backend_for(scheduler)
    bar, progress = _bar("building")
    with bar:
        store = build_store(dest, sources[0], sig_info=info if info is not None else sig_info, gene_info=gene_info,
                            spaces=list(spaces) or None, gene_lists=lists or None, default_space=default_space,
                            signature_major=signature_major, block_size=block_size, overwrite=overwrite,
                            progress=progress, pcl=pcl, on_plan=lambda est: click.echo(_disk_line(est), err=True),
                            backend=backend)
    click.echo(json.dumps(store.info(), indent=1))


def _build_release(folders: list[Path], dest: Path, *, release: str | None, pert_info: Path | None, pcl: Path | None,
                   pert_types: tuple[str, ...], exemplar_only: bool, qc_pass: bool, cells: tuple[str, ...],
                   times: tuple[str, ...], touchstone: bool, dry_run: bool, spaces: tuple[str, ...],
                   gene_lists: dict, default_space: str | None, signature_major: bool, block_size: int | None,
                   overwrite: bool, matrix: str | None, scheduler: str | None = None) -> None:
    from opencmap.query.release_store import BuildFilters, _hours, build_release_store, plan_release_store
    from opencmap.query.store import check_disk

    filters = BuildFilters(pert_types=tuple(pert_types), exemplar_only=exemplar_only, qc_pass=qc_pass,
                           cells=tuple(cells), times=tuple(_hours(t) for t in times), touchstone=touchstone)
    plan = plan_release_store(folders, release=release, pert_info=pert_info, pcl=pcl, filters=filters,
                              spaces=list(spaces) or None, gene_lists=gene_lists or None, signature_major=signature_major,
                              matrix=matrix)
    for line in plan.notes:
        click.echo(f"note: {line}", err=True)
    click.echo(_disk_line(plan.estimate), err=True)
    if dry_run:
        described = plan.describe()
        described["free_gb"] = round(check_disk_free(dest) / 1e9, 3)
        click.echo(json.dumps(described, indent=1))
        return
    check_disk(dest, plan.estimate["total_bytes"])
    from opencmap.cli.scheduler import backend_for

    backend = backend_for(scheduler)
    bar, progress = _bar("building")
    with bar:
        store, _ = build_release_store(dest, plan, gene_lists=gene_lists or None, default_space=default_space,
                                       signature_major=signature_major, block_size=block_size, overwrite=overwrite,
                                       progress=progress, backend=backend)
    out = store.info()
    out["notes"] = plan.notes
    out["disk"] = plan.describe()["disk"]
    click.echo(json.dumps(out, indent=1))


def check_disk_free(dest: Path) -> int:
    import shutil

    probe = dest if dest.exists() else dest.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


@command.command("append")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("signatures", type=click.Path(exists=True, path_type=Path))
@click.option("--sig-info", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="sig_info table of the new signatures (matrix file only).")
@click.option("--release", type=click.Choice(["GSE92742", "GSE70138", "LINCS2020", "opencmap"]),
              help="Release of the folder (default: detected from the file names).")
@click.option("--pert-info", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Perturbagen annotations (moa, target) for a release folder, e.g. compoundinfo_beta.txt.")
@click.option("--pert-type", "pert_types", multiple=True, help="Keep only these pert types (release folder; repeatable).")
@click.option("--exemplar-only", is_flag=True, help="Keep only exemplar signatures (release folder).")
@click.option("--qc-pass", is_flag=True, help="Keep only qc_pass = 1 signatures (release folder).")
@click.option("--cell", "cells", multiple=True, help="Keep only these cell lines (release folder; repeatable).")
@click.option("--time", "times", multiple=True, help="Keep only these time points in hours (release folder; repeatable).")
@click.option("--touchstone", is_flag=True, help="Keep only Touchstone perturbagens (release folder).")
@click.option("--matrix", "matrix_name", help="Level 5 file of the folder to use when it holds several (LINCS 2020 default: level5_beta_trt_cp_*; e.g. level5_beta_ctl_n58022x12328.gctx).")
@click.option("--block-size", type=int, default=None, help="Signatures per block (default: about 2 GiB of buffers).")
@click.option("--keep-backgrounds", is_flag=True,
              help="Keep the tau backgrounds, marked stale (appended signatures get no tau until rebuilt).")
@scheduler_option
def append(store: Path, signatures: Path, sig_info: Path | None, release: str | None, pert_info: Path | None,
           pert_types: tuple[str, ...], exemplar_only: bool, qc_pass: bool, cells: tuple[str, ...], times: tuple[str, ...],
           touchstone: bool, matrix_name: str | None, block_size: int | None, keep_backgrounds: bool,
           scheduler: str | None) -> None:
    """Add SIGNATURES (a matrix file or a release folder) to STORE as a new segment (tau backgrounds must be rebuilt afterwards)."""
    from opencmap.cli.scheduler import backend_for

    bar, progress = _bar("appending")
    backend = backend_for(scheduler)
    if signatures.is_dir():
        if sig_info:
            raise click.BadParameter("a release folder brings its own tables; --sig-info is for a matrix file")
        from opencmap.query.release_store import BuildFilters, _hours, append_release_store

        filters = BuildFilters(pert_types=tuple(pert_types), exemplar_only=exemplar_only, qc_pass=qc_pass,
                               cells=tuple(cells), times=tuple(_hours(t) for t in times), touchstone=touchstone)
        with bar:
            st, plan = append_release_store(store, signatures, release=release, pert_info=pert_info, filters=filters,
                                            block_size=block_size, keep_backgrounds=keep_backgrounds, progress=progress,
                                            matrix=matrix_name, backend=backend)
        for line in plan.notes:
            click.echo(f"note: {line}", err=True)
        click.echo(json.dumps(st.info(), indent=1))
        return
    if release or pert_info or pert_types or exemplar_only or qc_pass or cells or times or touchstone or matrix_name:
        raise click.BadParameter("--release, --pert-info and filters need a release folder", param_hint="SIGNATURES")
    from opencmap.query.store import append_store

    with bar:
        st = append_store(store, signatures, sig_info=sig_info, block_size=block_size,
                          keep_backgrounds=keep_backgrounds, progress=progress, backend=backend)
    click.echo(json.dumps(st.info(), indent=1))


@command.command("compact")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
def compact(store: Path) -> None:
    """Merge the segments of STORE (left by appends) into one."""
    from opencmap.query.store import compact_store

    bar, progress = _bar("compacting", unit="values")
    with bar:
        st = compact_store(store, progress=progress)
    click.echo(json.dumps(st.info(), indent=1))


@command.command("background")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--query-sigs", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="GRP of sig_ids used as background queries (default: exemplars).")
@click.option("--n-genes", default=50, show_default=True, help="Top/bottom genes per background query.")
@click.option("--query-space", help="Space the query genes are picked from (default lm if present).")
@click.option("--pcl", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="PCL GMT (members = pert_ids; default: the store's PCLs).")
@click.option("--symmetric/--no-symmetric", default=True, show_default=True)
@click.option("--same-cell/--all-cells", default=True, show_default=True, help="Mask the background to the row's cell line.")
@click.option("--tail", "tails", type=click.Choice(["all", "both", "up", "down"]), multiple=True,
              help="Kind of background (repeatable): both = two-sided queries (WTCS), up / down = one-sided queries "
                   "(ES_up / -ES_dn); a query's tau is read only from a background of its own tail. Default: all.")
@scheduler_option
def background(store: Path, query_sigs: Path | None, n_genes: int, query_space: str | None, pcl: Path | None,
               symmetric: bool, same_cell: bool, tails: tuple[str, ...], scheduler: str | None) -> None:
    """Build the tau backgrounds of STORE by querying it with its own signatures."""
    from opencmap.cli.scheduler import backend_for
    from opencmap.io import read_grp
    from opencmap.query.background import build_background

    backend = backend_for(scheduler)
    bar, progress = _bar("background")
    with bar:
        entries = build_background(store, query_sigs=read_grp(query_sigs) if query_sigs else None, n_genes=n_genes,
                                   query_space=query_space, pcl=pcl, symmetric=symmetric, same_cell=same_cell,
                                   tail=list(tails) or "all", progress=progress, backend=backend)
    click.echo(json.dumps({k: {"tail": v["tail"], "n_rows": v["n_rows"], "n_queries": v["n_queries"]} for k, v in entries.items()}, indent=1))


@command.command("fdr-null")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--size", "sizes", multiple=True, required=True, metavar="UP,DOWN",
              help="Query size (up genes, down genes) to build the random-query FDR null for (repeatable).")
@click.option("--n-random", default=1000, show_default=True, help="Random queries per size.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random queries.")
@click.option("--metric", type=click.Choice(["wtcs", "cs"]), default="wtcs", show_default=True)
@click.option("--space", help="Scoring space (default: the store's default).")
@click.option("--es-tail", type=click.Choice(["both", "up", "down"]), help="Tail, as the queries will use (default both).")
@click.option("--per-signature", is_flag=True,
              help="Also keep every signature's full null (n_signatures x n_random floats), needed by --fdr-method random_query.")
@scheduler_option
def fdr_null(store: Path, sizes: tuple[str, ...], n_random: int, seed: int, metric: str, space: str | None, es_tail: str | None,
             per_signature: bool, scheduler: str | None) -> None:
    """Build the random-query FDR nulls of STORE for the given query sizes ahead of time (else a
    query builds its size's null on first use)."""
    from opencmap.cli.scheduler import backend_for
    from opencmap.query.fdr_null import build_fdr_nulls

    parsed = []
    for text in sizes:
        try:
            up, down = (int(v) for v in text.split(","))
        except ValueError:
            raise click.BadParameter(f"{text!r} is not UP,DOWN (two integers, e.g. 50,50)", param_hint="--size") from None
        parsed.append((up, down))
    backend = backend_for(scheduler)
    bar, progress = _bar("fdr null")
    with bar:
        nulls = build_fdr_nulls(store, parsed, metric=metric, space=space, options={} if es_tail is None else {"es_tail": es_tail},
                                n_random=n_random, seed=seed, values=per_signature, progress=progress, backend=backend)
    click.echo(json.dumps({n.key: {"path": str(n.path), "cached_before": n.cached, **n.params} for n in nulls}, indent=1))


@command.command("info")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verify", is_flag=True,
              help="Check every file (each tile of every data file against its hash, every file against its checksum) "
                   "and remove what interrupted runs left.")
def info(store: Path, verify: bool) -> None:
    """Describe STORE (and check its files with --verify: exit status 2 naming each damaged file and tile)."""
    from opencmap.query.store import Store, cleanup_store

    removed = cleanup_store(store) if verify else []
    st = Store(store)
    report = None
    if verify:
        bar, progress = _bar("verifying", unit="B")
        with bar:
            report = st.verify(progress=progress)
    out = st.info()
    if report is not None:
        out["verified"] = True
        out["removed_leftovers"] = removed
        out["verify"] = report.to_dict()
        for path in removed:
            click.echo(f"note: removed {path} (left by an interrupted run)", err=True)
        for line in report.lines():
            click.echo(f"verified {line}", err=True)
    click.echo(json.dumps(out, indent=1))
