"""``opencmap serve``: start the REST API and web UI (needs the ``serve`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

__all__ = ["command"]

_EXTRA_HINT = "opencmap serve needs the 'serve' extra: pip install 'opencmap[serve]' (fastapi, uvicorn, pydantic-settings, plotly)"


@click.command(name="serve")
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Reference store [env OPENCMAP_STORE_PATH; default opencmap-demo/store, made by `opencmap demo`].")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file for jobs and results [env OPENCMAP_DB_PATH; default beside the store].")
@click.option("--pcl", "pcl_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PCL GMT file (members = pert_ids) [default: compendium-*/pcl.gmt beside the store].")
@click.option("--host", default=None, help="Interface to listen on [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default 8000].")
@click.option("--workers", type=int, default=None, help="Threads running batch jobs [default 1].")
@click.option("--token", "api_token", default=None, help="Require this API token (shared deployments) [env OPENCMAP_API_TOKEN].")
@click.option("--max-stored-results", type=click.IntRange(min=1), default=None,
              help="Finished results kept in the database; the oldest beyond this expire (HTTP 410, resubmit) "
                   "[env OPENCMAP_MAX_STORED_RESULTS; default 200].")
@click.option("--result-ttl-hours", type=click.FloatRange(min=0), default=None,
              help="Hours a finished result is kept, 0 = no age limit [env OPENCMAP_RESULT_TTL_HOURS; default 168].")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow this CORS origin (repeatable; default: CORS off).")
@click.option("--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]), show_default=True)
def command(log_level: str, **options: object) -> None:
    """Serve the REST API (/api/v1, docs at /api/docs) and the web UI (/ui/) for a store.

    Options left out come from OPENCMAP_* environment variables, then the defaults.
    """
    missing = [m for m in ("fastapi", "uvicorn", "pydantic_settings") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(f"{_EXTRA_HINT}; missing: {', '.join(missing)}")
    import uvicorn

    from opencmap.api import Settings, create_app

    given = {k: v for k, v in options.items() if v is not None and v != ()}
    if "cors_origins" in given:
        given["cors_origins"] = list(given["cors_origins"])  # type: ignore[call-overload]
    settings = Settings(**given)  # type: ignore[arg-type]
    from opencmap.query.store import open_store

    open_store(settings.store_path)  # a missing or bad store: one clear error line, before uvicorn starts
    app = create_app(settings)
    click.echo(f"opencmap: serving {settings.store_path} on http://{settings.host}:{settings.port}/ui/", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, timeout_graceful_shutdown=10)
