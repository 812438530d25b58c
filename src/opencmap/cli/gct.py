"""``opencmap gct``: inspect, convert, subset and concatenate GCT/GCTX files."""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["command"]


def _write_options(chunks: int | None, compression: str | None, precision: int | None, output: str) -> dict:
    if output.lower().endswith(".gctx"):
        return {"chunks": chunks, "compression": compression}
    return {"precision": precision}


_chunks_opt = click.option("--chunks", type=click.IntRange(min=1), default=None, help="GCTX: columns per HDF5 chunk (default: ~64 KiB chunks of whole columns).")
_compression_opt = click.option("--compression", type=click.Choice(["none", "gzip"]), default="none", show_default=True, help="GCTX: matrix compression.")
_precision_opt = click.option("--precision", type=click.IntRange(min=0, max=12), default=None, help="GCT text: decimals to write (default: exact float32 round trip; CMap uses 4).")


@click.group(name="gct", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Inspect, convert, subset and concatenate GCT (text) and GCTX (HDF5) files.

    Formats are detected by content; outputs are chosen by extension (.gct or .gctx).
    """


@command.command("info")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(path: str, as_json: bool) -> None:
    """Show format version, dimensions, dtype, chunking, compression and metadata fields of PATH."""
    from opencmap.io import gct_info

    facts = gct_info(path)
    if as_json:
        click.echo(json.dumps(facts.__dict__, indent=2, default=list))
        return
    click.echo(f"path:         {facts.path}")
    click.echo(f"format:       {facts.format}")
    click.echo(f"dimensions:   {facts.n_rows} rows x {facts.n_cols} columns")
    click.echo(f"dtype:        {facts.dtype}")
    click.echo(f"chunks:       {facts.chunks if facts.chunks else 'none (contiguous or text)'}")
    click.echo(f"compression:  {facts.compression or 'none'}")
    click.echo(f"row fields:   ({len(facts.row_fields)}) {', '.join(facts.row_fields)}")
    click.echo(f"col fields:   ({len(facts.col_fields)}) {', '.join(facts.col_fields)}")


@command.command("convert")
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@_chunks_opt
@_compression_opt
@_precision_opt
def convert(source: str, output: str, chunks: int | None, compression: str, precision: int | None) -> None:
    """Convert SOURCE to OUTPUT (GCT <-> GCTX, chosen by OUTPUT's extension)."""
    from opencmap.io import read_gct, write

    write(read_gct(source), output, **_write_options(chunks, None if compression == "none" else compression, precision, output))
    click.echo(f"wrote {output}", err=True)


def _ids(values: tuple[str, ...], files: tuple[str, ...]) -> list[str] | None:
    from opencmap.io import read_grp

    if not values and not files:
        return None
    ids = list(values)
    for f in files:
        ids.extend(read_grp(f))
    return ids


def _field_filter(pairs: tuple[str, ...], option: str) -> dict[str, list[str]] | None:
    if not pairs:
        return None
    wanted: dict[str, list[str]] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise click.BadParameter(f"expected FIELD=VALUE, got {pair!r}", param_hint=option)
        wanted.setdefault(field, []).append(value)
    return wanted


@command.command("subset")
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--rid", "rids", multiple=True, help="Row id to keep (repeatable; kept in the order given).")
@click.option("--rid-file", "rid_files", multiple=True, type=click.Path(dir_okay=False), help="GRP file of row ids to keep.")
@click.option("--cid", "cids", multiple=True, help="Column id to keep (repeatable).")
@click.option("--cid-file", "cid_files", multiple=True, type=click.Path(dir_okay=False), help="GRP file of column ids to keep.")
@click.option("--row-field", "row_fields", multiple=True, metavar="FIELD=VALUE", help="Keep rows whose FIELD equals VALUE (repeat: same field = any of, different fields = all).")
@click.option("--col-field", "col_fields", multiple=True, metavar="FIELD=VALUE", help="Keep columns whose FIELD equals VALUE.")
@click.option("--ignore-missing", is_flag=True, help="Skip ids not in SOURCE (with a warning) instead of failing.")
@_chunks_opt
@_compression_opt
@_precision_opt
def subset(
    source: str,
    output: str,
    rids: tuple[str, ...],
    rid_files: tuple[str, ...],
    cids: tuple[str, ...],
    cid_files: tuple[str, ...],
    row_fields: tuple[str, ...],
    col_fields: tuple[str, ...],
    ignore_missing: bool,
    chunks: int | None,
    compression: str,
    precision: int | None,
) -> None:
    """Write the rows/columns of SOURCE selected by ids or metadata to OUTPUT.

    GCTX sources are read partially: only the selected part of the matrix is loaded.
    """
    from opencmap.io import read_gct, write

    gct = read_gct(
        source,
        rid=_ids(rids, rid_files),
        cid=_ids(cids, cid_files),
        row_filter=_field_filter(row_fields, "--row-field"),
        col_filter=_field_filter(col_fields, "--col-field"),
        ignore_missing=ignore_missing,
    )
    write(gct, output, **_write_options(chunks, None if compression == "none" else compression, precision, output))
    click.echo(f"wrote {output}: {gct.shape[0]} rows x {gct.shape[1]} columns", err=True)


@command.command("concat")
@click.argument("output", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--rows", "by_rows", is_flag=True, help="Stack rows (columns must agree) instead of columns (rows must agree).")
@_chunks_opt
@_compression_opt
@_precision_opt
def concat(output: str, inputs: tuple[str, ...], by_rows: bool, chunks: int | None, compression: str, precision: int | None) -> None:
    """Concatenate INPUTS into OUTPUT along columns (default) or rows (--rows).

    The other axis's ids must be the same in every input (any order).
    """
    from opencmap.cli.progress import Progress
    from opencmap.io.concat import concat_files

    with Progress(enabled=len(inputs) >= 3, unit="file") as bar:
        concat_files(
            list(inputs),
            output,
            axis="row" if by_rows else "col",
            progress=bar.for_stage("concat"),
            **_write_options(chunks, None if compression == "none" else compression, precision, output),
        )
    click.echo(f"wrote {Path(output)}", err=True)
