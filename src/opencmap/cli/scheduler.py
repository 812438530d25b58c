"""``--scheduler ADDRESS``: run a command's store scans on a Dask cluster.

One option for every command that does heavy work: store scans through the block runner
(``query``, ``store background``, ``store fdr-null``, ``serve``'s batch jobs), store builds
(``store build``, ``store append``: blocks read and ranked on the workers) and pipeline runs
(``process``: plates, replicate sets and CGS batches on the workers), read from ``OPENCMAP_SCHEDULER`` when
not given, and :func:`backend_for`, which turns it into a backend: the local one without an
address, a :class:`~opencmap.backends.DaskBackend` connected to the scheduler otherwise (its
dashboard link shown as a note). A scheduler that does not answer within
``OPENCMAP_SCHEDULER_TIMEOUT`` seconds (default 10) is one error line (exit 2,
:class:`~opencmap.errors.SchedulerUnreachableError`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["ENVVAR", "TIMEOUT_ENVVAR", "scheduler_option", "backend_for"]

F = TypeVar("F", bound=Callable[..., Any])

#: environment variable read when ``--scheduler`` is not given
ENVVAR = "OPENCMAP_SCHEDULER"
#: environment variable of the seconds to wait for the scheduler (default 10)
TIMEOUT_ENVVAR = "OPENCMAP_SCHEDULER_TIMEOUT"


def scheduler_option(f: F) -> F:
    """The ``--scheduler ADDRESS`` option (keyword ``scheduler``; env ``OPENCMAP_SCHEDULER``)."""
    return click.option(
        "--scheduler",
        "scheduler",
        envvar=ENVVAR,
        metavar="ADDRESS",
        default=None,
        help="Run the heavy work on the Dask cluster of this scheduler (e.g. tcp://HOST:8786) [env OPENCMAP_SCHEDULER; "
        "default: this machine]. Its workers need opencmap and the files (store, inputs) at the same paths (a shared filesystem).",
    )(f)


def backend_for(address: str | None, settings: Any = None) -> Any:
    """The backend of ``--scheduler``: ``None`` (the local default; or a
    :class:`~opencmap.backends.LocalBackend` with ``settings``) without an address, else a
    :class:`~opencmap.backends.DaskBackend` connected to it, closed when the command ends."""
    if not address:
        if settings is None:
            return None
        from opencmap.backends import LocalBackend

        return LocalBackend(settings)
    import os

    from opencmap.backends import DaskBackend
    from opencmap.backends.dask import DEFAULT_TIMEOUT
    from opencmap.errors import ConfigError

    text = os.environ.get(TIMEOUT_ENVVAR, "").strip()
    try:
        timeout = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENVVAR}={text!r} is not a number of seconds") from None
    backend = DaskBackend.from_scheduler(address, settings, timeout=timeout)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(backend.close)
    workers = backend.workers()
    link = f"; dashboard {backend.dashboard_link}" if backend.dashboard_link else ""
    click.echo(f"note: running on the Dask cluster at {backend.address} ({workers['workers']} workers, "
               f"{workers['threads']} threads){link}", err=True)  # fmt: skip
    return backend
