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

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from opencmap import __version__
from opencmap.api.error_handlers import install_error_handlers
from opencmap.api.security import BodySizeLimit, require_token, require_user_key
from opencmap.api.settings import Settings
from opencmap.errors import IdNotFoundError

__all__ = ["create_app", "app_from_env", "API_PREFIX"]

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def _open_resources(app: FastAPI, settings: Settings) -> None:
    from opencmap.api.catalogue import Catalogue
    from opencmap.api.execution import QueryService
    from opencmap.api.jobs import JobDB, JobRunner
    from opencmap.query.engine import Engine
    from opencmap.query.store import open_store

    store = open_store(settings.store_path)
    pcl_path = settings.resolved_pcl_path()
    engine = Engine(store, pcl=pcl_path)
    catalogue = Catalogue.build(store, pcl=engine.pcl)
    service = QueryService(engine, catalogue, settings)
    db = JobDB(settings.resolved_db_path(), max_results=settings.max_stored_results, result_ttl=settings.result_ttl_seconds())
    runner = JobRunner(
        db,
        service.execute,
        sig_info=lambda: store.sig_info,
        workers=settings.workers,
        max_retries=settings.max_retries,
        cache_size=settings.result_cache,
    )
    app.state.engine, app.state.catalogue, app.state.service, app.state.runner = engine, catalogue, service, runner
    requeued = runner.start()
    app.state.requeued = requeued
    log.info(
        "serving store %s (%d signatures), PCLs %s, jobs in %s", store.path, store.n_signatures, pcl_path, db.path
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The opencmap API + UI application for ``settings`` (default: from the environment)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _open_resources(app, settings)
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
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.settings = settings
    install_error_handlers(app)

    from opencmap.api.routers import cells, genes, genesets, jobs, meta, pcls, perturbagens, queries, signatures

    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_token)])
    for module in (meta, signatures, perturbagens, cells, genes, pcls, queries, genesets, jobs):
        api.include_router(module.router)
    app.include_router(meta.health_router, prefix=API_PREFIX)
    app.include_router(api)
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


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory opencmap.api.app:app_from_env`` (settings from ``OPENCMAP_*``)."""
    return create_app(Settings())
