"""``/health`` and ``/info``: liveness and what this server offers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from opencmap import __version__
from opencmap.api.catalogue import Catalogue
from opencmap.api.deps import get_catalogue, get_engine, get_service, get_settings
from opencmap.api.execution import QueryService
from opencmap.api.schemas import GeneSetMetric
from opencmap.api.settings import Settings
from opencmap.query.engine import Engine

__all__ = ["router", "health_router"]

router = APIRouter(tags=["server"])
health_router = APIRouter(tags=["server"])


@health_router.get("/health", summary="Liveness check (no token needed)")
def health() -> dict[str, str]:
    return {"status": "ok", "version": __version__}


def _pert_types(catalogue: Catalogue) -> dict[str, int]:
    """Perturbagens per ``pert_type`` (e.g. trt_cp, trt_sh, ctl_vector), most frequent first."""
    perts = catalogue.perturbagens
    if "pert_type" not in perts.columns:
        return {}
    return {str(k): int(v) for k, v in perts["pert_type"].astype(str).value_counts().items()}


@router.get("/info", summary="Store, feature spaces, metrics and limits of this server")
def info(
    engine: Annotated[Engine, Depends(get_engine)],
    catalogue: Annotated[Catalogue, Depends(get_catalogue)],
    settings: Annotated[Settings, Depends(get_settings)],
    service: Annotated[QueryService, Depends(get_service)],
) -> dict[str, Any]:
    from opencmap.backends import describe_backend

    store = engine.store
    store_info = store.info()
    store_info.pop("path", None)  # do not reveal server paths
    return {
        "version": __version__,
        "store": store_info,
        "spaces": {name: sp.n_features for name, sp in store.spaces.items()},
        "default_space": store.default_space,
        "metrics": list(GeneSetMetric.__args__),
        "n_perturbagens": len(catalogue.perturbagens),
        "n_cells": len(catalogue.cells),
        "n_pcls": len(catalogue.pcls),
        "pert_types": _pert_types(catalogue),
        "limits": {
            "max_genes_per_set": settings.max_genes_per_set,
            "max_sets_per_job": settings.max_sets_per_job,
            "max_sync_queries": settings.max_sync_queries,
            "max_body_bytes": settings.max_body_bytes,
        },
        "token_required": bool(settings.api_token),
        # where queries run: kind, workers and threads (no scheduler address or paths)
        "execution": {
            lane: {k: v for k, v in describe_backend(e.backend).items() if k in ("kind", "workers", "threads")}
            for lane, e in (("sync", engine), ("batch", service.batch_engine))
        },
    }
