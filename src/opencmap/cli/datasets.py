"""``opencmap datasets``: generate and inspect the synthetic L1000 compendium."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["command"]


def _parse_inferred(value: str | None) -> int | None | str:
    if value is None:
        return "default"
    if value.lower() in ("all", "full"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter(f"expected a number of genes or 'all', got {value!r}") from None
    if n < 0:
        raise click.BadParameter("must be >= 0")
    return n


@click.group(name="datasets")
def command() -> None:
    """Generate the synthetic L1000 compendium (demo, tests, benchmarks)."""


@command.command(name="make")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default="demo", show_default=True, type=click.Choice(["tiny", "demo"]), help="Named size.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed (same seed, same bytes).")
@click.option("--n-profiles", type=click.IntRange(min=1), default=None, help="Grow the compound library to at least this many profiles.")
@click.option("--n-inferred", default=None, metavar="N|all", help="Inferred genes to include (default: the size's own; 'all' = 11,350).")
@click.option("--overwrite", is_flag=True, help="Replace an existing compendium in OUT_DIR.")
@click.option("--ids-only", is_flag=True, help="Level 3 GCTX column metadata = inst_ids only (less memory for huge runs).")
@click.option("--beads", is_flag=True, help="Also write bead-level LXB files + plate maps (lxb/, map/; ~70 MB per 384-well plate).")
@click.option("--bead-plates", type=click.IntRange(min=1), default=None, help="With --beads: only the first N plates (required beyond tiny).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def make(
    out_dir: Path,
    size: str,
    seed: int,
    n_profiles: int | None,
    n_inferred: str | None,
    overwrite: bool,
    ids_only: bool,
    beads: bool,
    bead_plates: int | None,
    quiet: bool,
) -> None:
    """Write a synthetic compendium (Level 3 GCTX + GEO tables + ground truth) to OUT_DIR."""
    from opencmap.cli.progress import Progress
    from opencmap.datasets import make_compendium

    inferred = _parse_inferred(n_inferred)
    bar = Progress(enabled=not quiet, unit="profile")
    progress = bar.for_stage("generating")

    try:
        comp = make_compendium(
            out_dir,
            size,
            seed=seed,
            n_profiles=n_profiles,
            n_inferred=inferred,
            overwrite=overwrite,
            level3_col_meta=not ids_only,
            beads=beads,
            bead_plates=bead_plates,
            progress=progress,
        )
    finally:
        bar.close()
    m = comp.manifest
    click.echo(f"wrote {m['n_profiles']} profiles x {m['n_genes']} genes ({m['n_plates']} plates) to {comp.path}")
    if "beads" in m:
        b = m["beads"]
        click.echo(f"bead-level: {b['n_wells']} wells ({b['n_beads']:,d} beads) of {len(b['plates'])} plates in {comp.path / b['lxb']}")


@command.command(name="info")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
def info(path: Path) -> None:
    """Summarise a compendium folder (from its manifest)."""
    from opencmap.datasets import open_compendium

    m = open_compendium(path).manifest
    click.echo(f"size: {m['size']}  seed: {m['seed']}  generator version: {m['generator_version']}")
    click.echo(
        f"profiles: {m['n_profiles']}  plates: {m['n_plates']}  perturbagens: {m['n_perturbagens']}  "
        f"genes: {m['n_genes']} ({m['n_landmarks']} landmarks, {m['n_bing']} BING)"
    )
    click.echo(f"cell lines: {', '.join(m['spec']['cell_ids'])}")
    click.echo(f"failed wells: {len(m['failed_inst_ids'])}")
    for key, f in m["files"].items():
        click.echo(f"  {key:<13} {f['name']:<18} {f['bytes']:>14,d} bytes  sha256 {f['sha256'][:16]}")


@command.command(name="truth")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def truth(path: Path, out: Path) -> None:
    """Write the noise-free signature of every condition of the compendium at PATH to OUT (.gctx/.gct)."""
    from opencmap.datasets import true_signatures
    from opencmap.io import write

    gct = true_signatures(path)
    write(gct, out)
    click.echo(f"wrote {gct.data.shape[1]} true signatures x {gct.data.shape[0]} genes to {out}")
