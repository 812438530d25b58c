"""FastAPI dependencies: the resources opened once in the app's lifespan."""

from __future__ import annotations

from fastapi import Request

from opencmap.api.catalogue import Catalogue
from opencmap.api.execution import QueryService
from opencmap.api.jobs import JobRunner
from opencmap.api.settings import Settings
from opencmap.query.engine import Engine

__all__ = ["get_settings", "get_engine", "get_catalogue", "get_service", "get_runner"]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


def get_service(request: Request) -> QueryService:
    return request.app.state.service


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner
