"""FastAPI dependencies: the resources opened in the app's lifespan, reopened when the store
changes (:class:`Served`: a newly committed store generation is picked up at the start of the next
request; requests already running finish on the generation they started with)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from opencmap.api.catalogue import Catalogue
from opencmap.api.execution import QueryService
from opencmap.api.jobs import JobRunner
from opencmap.api.settings import Settings
from opencmap.query.engine import Engine
from opencmap.query.store import Store

__all__ = ["Resources", "Served", "get_settings", "get_engine", "get_catalogue", "get_service", "get_runner"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What one store generation is served with."""

    store: Store
    engine: Engine
    catalogue: Catalogue
    service: QueryService


class Served:
    """The resources of the store generation being served.

    :meth:`current` checks (one ``stat``) whether another generation was committed since
    (``opencmap store background``, append, compact, ``build --overwrite`` in another process)
    and, if so, opens it and builds its resources with ``build`` before switching: every new
    request and job then uses it, while those already running keep the objects they hold (their
    memory-mapped files stay readable). One thread builds; the others keep the current generation
    meanwhile. ``on_switch`` is called with the new resources (e.g. to drop caches built from the
    old ones).
    """

    def __init__(self, resources: Resources, build: Callable[[Store], Resources], on_switch: Callable[[Resources], None] | None = None):
        self._now = resources
        self._build = build
        self._on_switch = on_switch
        self._lock = threading.Lock()

    def current(self) -> Resources:
        now = self._now
        if not now.store.changed() or not self._lock.acquire(blocking=False):
            return now
        try:
            now = self._now
            if now.store.changed():
                store = now.store.current()
                new = self._build(store)
                self._now = new
                log.info("serving store %s generation %s (was %s)", store.path, store.generation, now.store.generation)
                if self._on_switch is not None:
                    self._on_switch(new)
            return self._now
        finally:
            self._lock.release()


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.served.current().engine


def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.served.current().catalogue


def get_service(request: Request) -> QueryService:
    return request.app.state.served.current().service


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner
