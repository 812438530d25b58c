"""``opencmap fetch``: download a public LINCS release (thin shell over :func:`opencmap.io.fetch.fetch_release`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from opencmap.io.fetch import FetchProgress

__all__ = ["command"]


class _BarProgress(FetchProgress):
    """One tqdm bar per file on a terminal; the library's periodic log lines otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.bar: Any = None

    def start(self, name: str, total: int | None, done: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                        file=sys.stderr, leave=True)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _LineProgress(FetchProgress):
    """Off a terminal (logs, CI): a line on stderr when a file starts, every 30 s, and when it is done."""

    def __init__(self, every: float = 30.0) -> None:
        super().__init__(every)
        self._t0 = 0.0

    def start(self, name: str, total: int | None, done: int) -> None:
        import time

        self._name, self._total, self._done = name, total, done
        self._last = self._t0 = time.perf_counter()
        click.echo(f"downloading {name} ({_size(total)})" + (f", resuming at {_size(done)}" if done else ""), err=True)

    def advance(self, n: int) -> None:
        import time

        self._done += n
        now = time.perf_counter()
        if now - self._last >= self.every:
            self._last = now
            pct = f"{100 * self._done / self._total:.0f}%, " if self._total else ""
            rate = self._done / max(now - self._t0, 1e-9) / 1e6
            click.echo(f"  {self._name}: {pct}{_size(self._done)} ({rate:.1f} MB/s)", err=True)

    def finish(self) -> None:
        click.echo(f"  {self._name}: done ({_size(self._done)})", err=True)


def _size(n: int | None) -> str:
    return "size unknown" if n is None else f"{n / 1e6:,.1f} MB"


@click.command("fetch")
@click.argument("release_name", metavar="RELEASE")  # checked by the library: one typed line naming the known releases
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--level", "levels", multiple=True, type=click.Choice(["3", "4"]),
              help="Also fetch the Level 3 or Level 4 matrices and the instance table (repeatable).")
@click.option("--file", "extra", multiple=True, metavar="NAME",
              help="Also fetch this catalogue entry (e.g. level5_ctl, pert_metrics; see --list). Repeatable.")
@click.option("--mirror", metavar="BASE_URL", help="Download from BASE_URL, serving the official hosts' relative paths.")
@click.option("--dry-run", is_flag=True, help="List the files, their sizes and the disk needed; download nothing.")
@click.option("--list", "list_catalogue", is_flag=True, help="Show the release's catalogue of files and exit.")
@click.option("--retries", default=5, show_default=True, type=click.IntRange(min=0),
              help="Times a dropped transfer is resumed at once before giving up (the .part is kept).")
@click.option("--decompress/--no-decompress", default=True, show_default=True,
              help="Decompress .gctx.gz matrices into the .gctx next to them while downloading (needed to read them).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
def command(release_name: str, dest: Path, levels: tuple[str, ...], extra: tuple[str, ...], mirror: str | None,
            dry_run: bool, list_catalogue: bool, retries: int, decompress: bool, progress: bool | None) -> None:
    """Download RELEASE (GSE92742, GSE70138 or LINCS2020) into DEST, resumably, verified.

    \b
    Default files: the Level 5 matrix and the signature, metrics, gene, perturbagen/compound and
    cell tables. GEO files are checked against the series' SHA512SUMS file, LINCS 2020 files
    against the size the server announces; DEST/opencmap-fetch.json records what was verified,
    and verified files are never downloaded again. An interrupted run resumes where it stopped.
      opencmap fetch GSE92742 data/GSE92742 --dry-run
      opencmap fetch LINCS2020 data/LINCS2020 --file level5_ctl
    """
    from opencmap.io.fetch import describe_plan, fetch_release, plan_fetch, release

    rel = release(release_name)
    if list_catalogue:
        click.echo(f"{rel.name}: {rel.description}\n{rel.base_url}")
        for f in rel.files:
            when = "default" if f.default else (f"--level {f.level}" if f.level in (3, 4) else f"--file {f.name}")
            size = f.size if f.size is not None else (f"~{f.approx_size}" if f.approx_size else "?")
            click.echo(f"  {f.name:<26} {f.path:<72} {f.role:<16} {size!s:>14}  {when}{'  ' + f.note if f.note else ''}")
        return
    level_ints = [int(x) for x in levels]
    if dry_run:
        plan = plan_fetch(rel.name, dest, levels=level_ints, extra=extra, mirror=mirror)
        for line in describe_plan(plan):
            click.echo(line)
        if not plan.fits(decompress=decompress):
            from opencmap.errors import DiskSpaceError

            needed = plan.download_bytes + (plan.unpacked_bytes if decompress else 0)
            raise DiskSpaceError(
                f"{dest}: {needed / 1e9:.2f} GB needed{' (with the decompressed copies; --no-decompress skips them)' if decompress and plan.unpacked_bytes else ''} "
                f"but {plan.free_bytes / 1e9:.2f} GB free; free space or choose another DEST"
            )
        return
    from opencmap.cli.progress import progress_mode

    bars = progress if progress is not None else progress_mode() == "bars"
    result = fetch_release(rel.name, dest, levels=level_ints, extra=extra, mirror=mirror,
                           progress=_BarProgress() if bars else _LineProgress(), retries=retries, decompress=decompress)
    for f in result.files:
        click.echo(f"{f.status:<10} {f.path}  ({f.size} bytes, verified by {f.verified_by})")
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(f"{result.bytes_downloaded} bytes downloaded in {result.seconds:.1f} s; manifest {result.manifest}")
