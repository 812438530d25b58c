"""``opencmap serve``: start the REST API and web UI (needs the ``serve`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from opencmap.cli.scheduler import scheduler_option

__all__ = ["command"]

_EXTRA_HINT = "opencmap serve needs the 'serve' extra: pip install 'opencmap[serve]' (fastapi, uvicorn, pydantic-settings, plotly)"


class _SettingsOption(click.Option):
    """An option whose help names the :class:`~opencmap.api.settings.Settings` default of the
    field of the same name (``{default}`` in the help), read only when the help is shown, so the
    two cannot drift and the serve extra is not imported at start-up."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        try:
            from opencmap.api.settings import Settings
        except ImportError:  # no serve extra: the command itself says what to install
            default = "(needs the serve extra)"
        else:
            value = Settings.model_fields[self.name or ""].default
            default = f"{value:g}" if isinstance(value, float) else str(value)
        return record[0], record[1].replace("{default}", default)


@click.command(name="serve")
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Reference store [env OPENCMAP_STORE_PATH; default opencmap-demo/store, made by `opencmap demo`].")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="SQLite file for jobs and results [env OPENCMAP_DB_PATH; default beside the store].")
@click.option("--pcl", "pcl_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PCL GMT file (members = pert_ids) [default: compendium-*/pcl.gmt beside the store].")
@click.option("--host", cls=_SettingsOption, default=None, help="Interface to listen on [default {default}].")
@click.option("--port", cls=_SettingsOption, type=int, default=None, help="Port [default {default}].")
@click.option("--workers", cls=_SettingsOption, type=int, default=None, help="Threads running batch jobs [default {default}].")
@click.option("--token", "api_token", default=None,
              help="Require this API token. Visible to other users in `ps`: prefer env OPENCMAP_TOKEN or --token-file.")
@click.option("--token-file", "token_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Require the API token on the first line of this file [env OPENCMAP_TOKEN_FILE].")
@click.option("--allow-open", "allow_open", is_flag=True, default=None,
              help="Allow --host beyond loopback without a token (otherwise refused) [env OPENCMAP_ALLOW_OPEN].")
@click.option("--job-memory-mb", cls=_SettingsOption, type=click.IntRange(min=1), default=None,
              help="Memory budget of running batch jobs; sets how many run at once [env OPENCMAP_JOB_MEMORY_MB; default {default}].")
@click.option("--max-results-bytes", cls=_SettingsOption, type=click.IntRange(min=1), default=None,
              help="Bytes of finished results kept on disk; the oldest beyond this expire "
                   "[env OPENCMAP_MAX_RESULTS_BYTES; default {default}].")
@click.option("--max-stored-results", cls=_SettingsOption, type=click.IntRange(min=1), default=None,
              help="Finished results kept in the database; the oldest beyond this expire (HTTP 410, resubmit) "
                   "[env OPENCMAP_MAX_STORED_RESULTS; default {default}].")
@click.option("--result-ttl-hours", cls=_SettingsOption, type=click.FloatRange(min=0), default=None,
              help="Hours a finished result is kept, 0 = no age limit [env OPENCMAP_RESULT_TTL_HOURS; default {default}].")
@click.option("--expired-row-hours", cls=_SettingsOption, type=click.FloatRange(min=0), default=None,
              help="Hours an expired job stays listed before its row is deleted (it then answers 410 Gone), 0 = at once "
                   "[env OPENCMAP_EXPIRED_ROW_HOURS; default {default}].")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow this CORS origin (repeatable; default: CORS off).")
@scheduler_option
@click.option("--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]), show_default=True)
def command(log_level: str, **options: object) -> None:
    """Serve the REST API (/api/v1, docs at /api/docs) and the web UI (/ui/) for a store.

    With --scheduler, batch jobs score on that Dask cluster; synchronous queries stay here.

    Options left out come from OPENCMAP_* environment variables, then the defaults.
    """
    missing = [m for m in ("fastapi", "uvicorn", "pydantic_settings") if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(f"{_EXTRA_HINT}; missing: {', '.join(missing)}")
    import uvicorn

    from opencmap.api import Settings, create_app

    from pydantic import ValidationError as SettingsError

    from opencmap.errors import ConfigError

    given = {k: v for k, v in options.items() if v is not None and v != ()}
    if "cors_origins" in given:
        given["cors_origins"] = list(given["cors_origins"])  # type: ignore[call-overload]
    if "api_token" in given:
        click.echo("opencmap: warning: a token given with --token is visible to other users (ps); "
                   "prefer OPENCMAP_TOKEN or --token-file", err=True)  # fmt: skip
    try:
        settings = Settings(**given)  # type: ignore[arg-type]
    except SettingsError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "settings"
        raise ConfigError(f"{where}: {str(first.get('msg', exc)).removeprefix('Value error, ')}") from None
    settings.check_exposure()  # no open server beyond loopback by accident
    from opencmap.query.store import open_store

    open_store(settings.store_path)  # a missing or bad store: one clear error line, before uvicorn starts
    from opencmap.cli.scheduler import backend_for

    # batch jobs on a Dask cluster: connected now, so an unreachable scheduler is one error line
    batch_backend = backend_for(settings.scheduler) if settings.scheduler else None
    app = create_app(settings, batch_backend=batch_backend)
    click.echo(f"opencmap: serving {settings.store_path} on http://{settings.host}:{settings.port}/ui/", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, timeout_graceful_shutdown=10)
