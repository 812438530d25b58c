"""``opencmap demo``: run the whole system on the embedded synthetic compendium."""

from __future__ import annotations

from pathlib import Path

import click
__all__ = ["command"]


@click.command(name="demo")
@click.argument("workdir", type=click.Path(file_okay=False, path_type=Path), default="opencmap-demo")
@click.option("--size", type=click.Choice(["tiny", "demo"]), default="demo", show_default=True, help="Compendium size (tiny: quick).")
@click.option("--seed", default=0, show_default=True, help="Compendium seed.")
@click.option("--moa", default="HDAC inhibitor", show_default=True, help="Mechanism whose ground-truth program is the query.")
@click.option("--top", default=10, show_default=True, help="Perturbagens and PCLs to list.")
def command(workdir: Path, size: str, seed: int, moa: str, top: int) -> None:
    """Build the synthetic compendium, process it, build a store, and query a known mechanism.

    Every stage is cached in WORKDIR, so a second run only repeats the query.
    """
    from opencmap.demo import run_demo

    from opencmap.cli.progress import Progress

    with Progress(one_at_a_time=True) as progress:
        res = run_demo(workdir, size=size, seed=seed, moa=moa, top=top, progress=progress)
    click.echo(f"Query: the ground-truth program of '{res.moa}' ({len(res.query_up)} up, {len(res.query_down)} down genes)")
    click.echo(f"\nTop perturbagens ({res.hits_in_top} of {len(res.top_perturbagens)} are {res.moa}s):")
    click.echo(res.top_perturbagens.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not res.top_pcls.empty:
        click.echo("\nTop perturbagen classes (PCLs):")
        click.echo(res.top_pcls.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(f"\nStore: {res.store}\nFull results: {res.results_dir}")
