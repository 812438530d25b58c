"""The ``opencmap`` command line: thin shells over the library.

Each sub-command lives in its own module of this package and exposes a click command or group
named ``command``. They are imported lazily, so ``opencmap --help`` stays fast and a command's
heavy dependencies load only when it runs.

Errors from the library (:class:`opencmap.errors.OpenCMapError`) and from the operating system
(:class:`OSError`: a full disk, a missing permission) are shown as one line on stderr and exit
with status 2; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from typing import Any

import click

from opencmap import __version__
from opencmap.errors import OpenCMapError

__all__ = ["main", "cli"]

# command name -> (module under opencmap.cli, one-line help shown in `opencmap --help`)
_COMMANDS: dict[str, tuple[str, str]] = {
    "gct": ("gct", "Inspect, convert, subset and concatenate GCT/GCTX files."),
    "datasets": ("datasets", "Generate the synthetic L1000 compendium (demo, tests, benchmarks)."),
    "process": ("process", "Run the processing pipeline (Level 2/3 -> Level 4 and 5)."),
    "store": ("store", "Build, inspect and extend reference stores; build tau backgrounds."),
    "query": ("query", "Run connectivity queries against a reference store."),
    "demo": ("demo", "Run the whole system on the embedded synthetic compendium."),
    "fetch": ("fetch", "Download a public LINCS release (GSE92742, GSE70138, LINCS2020), resumable and verified."),
    "serve": ("serve", "Start the REST API and web UI."),
}


class _LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [n for n, (mod, _) in _COMMANDS.items() if importlib.util.find_spec(f"opencmap.cli.{mod}")]
        return sorted(set(names) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = _COMMANDS.get(cmd_name)
        if entry is None or importlib.util.find_spec(f"opencmap.cli.{entry[0]}") is None:
            return None
        module = importlib.import_module(f"opencmap.cli.{entry[0]}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Show the one-line help without importing every command module.
        rows = [(n, _COMMANDS[n][1]) for n in self.list_commands(ctx) if n in _COMMANDS]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="opencmap")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """opencmap: an open, fast, self-hostable Connectivity Map for LINCS L1000 data."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    import warnings

    warnings.showwarning = _show_warning  # one line, flags named; no Python source line under it
    from opencmap.cli.progress import progress_mode
    from opencmap.io.decompress import set_progress_factory

    # .gctx.gz inputs are decompressed once to a file; on a terminal that shows a bar
    set_progress_factory(_decompress_bar if progress_mode() == "bars" else _decompress_lines)


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings as one readable line on stderr (library names translated to flags), without the
    source line Python's default format adds."""
    from opencmap.cli.messages import for_cli
    from opencmap.errors import OpenCMapWarning

    label = "warning" if issubclass(category, OpenCMapWarning) else f"warning ({category.__name__})"
    click.echo(f"{label}: {for_cli(str(message))}", err=True)


def _decompress_lines(source: Any) -> Any:
    """Off a terminal: a line on stderr when a decompression starts, every 30 s, and at the end."""
    import time

    state = {"last": 0.0, "ended": False}

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        end = done >= total
        if state["ended"] or not (done == 0 or end or now - state["last"] >= 30):
            return
        state["last"], state["ended"] = now, end
        pct = 100 * done / total if total else 100
        click.echo(f"decompressing {source.name}: {pct:.0f}% of {total / 1e6:,.1f} MB compressed", err=True)

    return progress


def _decompress_bar(source: Any) -> Any:
    """A tqdm bar over the compressed bytes of one decompression (closed when it reaches the end)."""
    from tqdm import tqdm

    bar = tqdm(desc=f"decompressing {source.name}", unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return progress


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``opencmap`` script."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        return cli.main(args=args, prog_name="opencmap", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except OpenCMapError as exc:
        if debug:
            raise
        from opencmap.cli.messages import for_cli

        click.echo(f"error: {for_cli(str(exc))}", err=True)
        sys.exit(2)
    except OSError as exc:  # a full disk, no permission, ...: one line, not a traceback
        if debug:
            raise
        click.echo(f"error: {_os_message(exc)}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


def _os_message(exc: OSError) -> str:
    """One line for an operating-system error: what, where, and for a full disk what to do."""
    import errno

    what = exc.strerror or str(exc) or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"disk full{where} ({what}); free space (or write elsewhere) and run the command again"
    return f"{what}{where}"
