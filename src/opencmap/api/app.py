"""The FastAPI application: :func:`create_app` wires settings, the engine, jobs, routers and the UI.

Heavy resources are opened once in the lifespan: the reference store and its
:class:`~opencmap.query.engine.Engine`, the metadata :class:`~opencmap.api.catalogue.Catalogue`,
the SQLite :class:`~opencmap.api.jobs.JobDB` and the :class:`~opencmap.api.jobs.JobRunner`
(which re-queues jobs a previous server left unfinished).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from opencmap import __version__
from opencmap.api.error_handlers import error_responses, install_error_handlers
from opencmap.api.security import BodySizeLimit, require_token, require_user_key
from opencmap.api.settings import Settings
from opencmap.errors import IdNotFoundError

__all__ = ["create_app", "app_from_env", "API_PREFIX"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def _resources(store: Any, settings: Settings, batch_backend: Any = None) -> Any:
    """Engine, catalogue and query service of one store generation (the engine's caches warmed)."""
    from opencmap.api.catalogue import Catalogue
    from opencmap.api.deps import Resources
    from opencmap.api.execution import QueryService
    from opencmap.query.engine import Engine

    engine = Engine(store, pcl=settings.resolved_pcl_path())
    catalogue = Catalogue.build(store, pcl=engine.pcl, index=engine.index)
    # batch jobs on the cluster of the server's scheduler (a backend connected once, at start-up)
    batch_engine = None if batch_backend is None else Engine(store, pcl=engine.pcl, backend=batch_backend)
    service = QueryService(engine, catalogue, settings, batch_engine=batch_engine)
    service.warm()  # build the reference index and compile the kernels before the first request
    return Resources(store, engine, catalogue, service)


def _open_resources(app: FastAPI, settings: Settings, batch_backend: Any = None) -> None:
    from opencmap.api.deps import Served
    from opencmap.api.jobs import JobDB, JobRunner
    from opencmap.query.store import open_store

    store = open_store(settings.store_path)
    pcl_path = settings.resolved_pcl_path()

    def switched(new: Any) -> None:
        app.state.engine, app.state.catalogue, app.state.service = new.engine, new.catalogue, new.service
        app.state.clue_tables = None  # rebuilt from the new generation on first use

    if batch_backend is None and settings.scheduler:
        from opencmap.backends import resolve_backend

        batch_backend = resolve_backend(settings.scheduler)
    served = Served(_resources(store, settings, batch_backend), lambda st: _resources(st, settings, batch_backend), on_switch=switched)
    now = served.current()
    engine, catalogue, service = now.engine, now.catalogue, now.service
    db = JobDB(
        settings.resolved_db_path(),
        max_results=settings.max_stored_results,
        result_ttl=settings.result_ttl_seconds(),
        max_result_bytes=settings.max_results_bytes,
        max_rows=max(settings.max_job_rows, settings.max_stored_results),
        expired_row_grace=settings.expired_row_hours * 3600.0,
    )
    runner = JobRunner(
        db,
        lambda *a, **k: served.current().service.execute(*a, **k),
        execute_batch=lambda *a, **k: served.current().service.execute(*a, batch=True, **k),
        sig_info=lambda: served.current().store.sig_info,
        workers=settings.workers,
        max_retries=settings.max_retries,
        cache_size=settings.result_cache,
        cache_bytes=settings.result_cache_mb * 2**20,
        memory_budget=settings.job_memory_mb * 2**20,
        estimate=lambda request: served.current().service.estimate_bytes(request),
        sync_lanes=settings.sync_lanes,
        retention_interval=settings.retention_interval_seconds,
        defer_sync_save=True,  # a sync query is answered before its result is saved
    )
    app.state.served = served
    app.state.engine, app.state.catalogue, app.state.service, app.state.runner = engine, catalogue, service, runner
    requeued = runner.start()
    app.state.requeued = requeued
    log.info(
        "serving store %s (%d signatures), PCLs %s, jobs in %s", store.path, store.n_signatures, pcl_path, db.path
    )


def create_app(settings: Settings | None = None, *, batch_backend: Any = None) -> FastAPI:
    """The opencmap API + UI application for ``settings`` (default: from the environment).

    ``batch_backend``: where batch jobs score (default: a Dask cluster if ``settings.scheduler``
    names one, else this process); synchronous queries always run here."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _open_resources(app, settings, batch_backend)
        try:
            yield
        finally:
            app.state.runner.stop()
            if getattr(app.state, "clue_jobs", None) is not None:
                app.state.clue_jobs.close()
            app.state.runner.db.close()

    app = FastAPI(
        title="opencmap",
        version=__version__,
        description="Connectivity Map queries over a self-hosted reference store.",
        lifespan=lifespan,
        docs_url=None,  # served by _mount_docs from local Swagger UI assets (no CDN)
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.settings = settings
    install_error_handlers(app)

    from opencmap.api.routers import cells, genes, genesets, jobs, meta, pcls, perturbagens, queries, signatures, workbench

    # with a token, every /api route requires it (and the OpenAPI document declares the schemes)
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_token)] if settings.api_token else [])
    for module in (meta, signatures, perturbagens, cells, genes, pcls, queries, genesets, jobs, workbench):
        api.include_router(module.router)
    app.include_router(meta.health_router, prefix=API_PREFIX)
    app.include_router(api, responses=error_responses(token=bool(settings.api_token)))
    _mount_docs(app)
    from opencmap.api.clue import router as clue_router  # clue.io's paths (/api/perts, /api/jobs, ...)

    app.include_router(clue_router, prefix="/api", dependencies=[Depends(require_user_key)])
    _mount_ui(app)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Token", "Content-Type", "user_key"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app


def _mount_ui(app: FastAPI) -> None:
    from opencmap.web import plotly_js, static_dir

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/ui/", include_in_schema=False)
    def ui() -> FileResponse:
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    @app.get("/ui/vendor/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        path = plotly_js()
        if path is None:
            raise IdNotFoundError("plotly.js is not installed on the server: pip install 'opencmap[serve]'")
        return FileResponse(path, media_type="application/javascript", headers={"Cache-Control": "max-age=86400"})

    app.mount("/ui/static", StaticFiles(directory=static_dir()), name="ui-static")


def _docs_assets() -> Path | None:
    """Folder of the Swagger UI 5 assets bundled with ``fastapi-offline`` (serve extra), if installed."""
    import importlib.util

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "static"
        if (folder / "swagger-ui-bundle.js").is_file():
            return folder
    return None


def _mount_docs(app: FastAPI) -> None:
    """``/api/docs``: Swagger UI from locally served assets, so it works offline.

    (No ReDoc page: its bundle loads a logo from its vendor's CDN.)
    """
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    assets = _docs_assets()
    missing = HTMLResponse(
        "<h1>API documentation</h1><p>The documentation viewer is not installed on this server "
        "(<code>pip install 'opencmap[serve]'</code>). The OpenAPI description is at "
        f'<a href="{API_PREFIX}/openapi.json">{API_PREFIX}/openapi.json</a>.</p>'
    )

    @app.get("/api/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if assets is None:
            return missing
        return get_swagger_ui_html(
            openapi_url=f"{API_PREFIX}/openapi.json",
            title="opencmap API",
            swagger_js_url="/api/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/api/docs-assets/swagger-ui.css",
            swagger_favicon_url="data:,",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )

    if assets is not None:
        app.mount("/api/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory opencmap.api.app:app_from_env`` (settings from ``OPENCMAP_*``).

    The settings' ``host`` is checked as ``opencmap serve`` checks it (no open server beyond
    loopback without ``OPENCMAP_ALLOW_OPEN``); uvicorn's own ``--host`` is not visible here.
    """
    settings = Settings()
    settings.check_exposure()
    return create_app(settings)
