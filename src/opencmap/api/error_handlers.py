"""HTTP errors of the API: one JSON envelope, and library errors mapped to status codes.

Every error response is ``{"error": {"code": <short name>, "message": <what and what to do>,
"details": ...}}``. Library errors (:mod:`opencmap.errors`) keep their messages: unknown ids ->
404, unusable gene sets / options -> 422, bad files -> 422, a corrupt store file -> 503
``store_corrupt``, other store problems -> 409 (with the
server's store and database paths replaced by "the served store" / "the job database", as
``/info`` hides them). Operating-system errors: a full disk (``ENOSPC``, SQLite's "database or
disk is full") -> 507 ``insufficient_storage``; other OS and SQLite errors -> 503 ``unavailable``.
"""

from __future__ import annotations

import html
import logging
import sqlite3
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencmap.errors import (
    ConfigError,
    FormatError,
    GeneSetError,
    IdNotFoundError,
    OpenCMapError,
    QueryError,
    StoreCorruptError,
    StoreError,
    ValidationError,
)

__all__ = [
    "install_error_handlers",
    "error_response",
    "status_for",
    "hide_paths",
    "error_responses",
    "ErrorResponse",
    "html_error",
    "wants_html",
]


class ErrorDetail(BaseModel):
    code: str = Field(description="Short machine-readable name, e.g. not_found, invalid_gene_set, expired.")
    message: str = Field(description="What went wrong and what to do.")
    details: Any = Field(None, description="Per-field problems of an invalid request (loc, msg, type).")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_ERROR_DOCS: dict[int, str] = {
    400: "Malformed request body (not JSON, or not a JSON object).",
    401: "Missing or wrong API token.",
    404: "Unknown id (job, signature, gene, ...) or download name.",
    409: "The served store cannot answer this (e.g. no such feature space).",
    410: "The job's result expired (retention policy); resubmit the query.",
    413: "Request body larger than the server's limit.",
    422: "Invalid request: a field fails the schema (invalid_request), or the request is well-formed but "
    "cannot be run (invalid_gene_set, invalid_query, invalid_option, bad_file, invalid_input).",
    503: "The server cannot read or write its files now (an OS or database error); try again later. Or "
    "(store_corrupt) a file of the served store does not match its checksums: queries are refused until "
    "the store is rebuilt or restored.",
    507: "The server's disk is full: the result could not be saved.",
}


def error_responses(*, token: bool) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` of every /api route: the error codes they can answer, in the error format."""
    codes = [c for c in _ERROR_DOCS if token or c != 401]
    return {c: {"model": ErrorResponse, "description": _ERROR_DOCS[c]} for c in codes}

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[OpenCMapError], int, str], ...] = (
    (IdNotFoundError, 404, "not_found"),
    (GeneSetError, 422, "invalid_gene_set"),
    (FormatError, 422, "bad_file"),
    (ConfigError, 422, "invalid_option"),
    (QueryError, 422, "invalid_query"),
    (ValidationError, 422, "invalid_input"),
    (StoreCorruptError, 503, "store_corrupt"),
    (StoreError, 409, "store_conflict"),
)


def status_for(exc: OpenCMapError) -> tuple[int, str]:
    """HTTP status and error code of a library error."""
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    return 400, "bad_request"


def error_response(status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - opencmap</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/ui/static/style.css"></head>
<body><header class="top"><a class="brand" href="/ui/">opencmap</a></header>
<main><section class="card error-page"><h1>{title}</h1><p>{text}</p>
<p><a href="/ui/#/">Start a new query</a> · <a href="/ui/#/jobs">Job history</a> · <a href="/ui/#/guide">How to read the results</a></p>
<p class="muted">Error {status}{detail}</p></section></main></body></html>
"""


def wants_html(request: Request) -> bool:
    """A browser page outside the API (``/ui``, ``/``): errors are HTML pages, not JSON."""
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get("accept", "")


def html_error(status: int, detail: str = "") -> HTMLResponse:
    """An error page for people (the API keeps its JSON envelope)."""
    if status == 404:
        title, text = "Page not found", "There is no page at this address. It may have moved, or the link has a typo."
    elif status >= 500:
        title, text = "Something went wrong on the server", (
            "The server could not finish this request. Try again; if it keeps happening, the server log says why."
        )
    else:
        title, text = "This request could not be served", "The server refused this request."
    extra = f": {html.escape(detail)}" if detail and status < 500 else ""
    return HTMLResponse(_PAGE.format(title=title, text=text, status=status, detail=extra), status_code=status)


def hide_paths(request: Request, message: str) -> str:
    """``message`` without the server's store and job database paths (clients never see them)."""
    state = request.app.state
    names: list[tuple[Path, str]] = []
    engine = getattr(state, "engine", None)
    if engine is not None:
        names.append((Path(engine.store.path), "the served store"))
    runner = getattr(state, "runner", None)
    if runner is not None:
        names += [(Path(runner.db.results_dir), "the results folder"), (Path(runner.db.path), "the job database")]
    settings = getattr(state, "settings", None)
    if settings is not None:
        names.append((Path(settings.store_path), "the served store"))
    for path, label in names:
        for text in sorted({str(path), str(path.resolve()), str(path.absolute())}, key=len, reverse=True):
            if text and text != ".":
                message = message.replace(text, label)
    return message


def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in errors[:20]:
        out.append({"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(OpenCMapError)
    async def _library_error(request: Request, exc: OpenCMapError) -> Response:
        status, code = status_for(exc)
        message = hide_paths(request, str(exc))
        if wants_html(request):
            return html_error(status, message)
        return error_response(status, code, message)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        return _system_error(request, exc)

    @app.exception_handler(sqlite3.Error)
    async def _sqlite_error(request: Request, exc: sqlite3.Error) -> JSONResponse:
        return _system_error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "malformed_json", "the request body is not valid JSON", _clean(errors))
        if any(list(e.get("loc", ())) == ["body"] and e.get("type") == "model_attributes_type" for e in errors):
            return error_response(
                400, "malformed_json", "the request body must be a JSON object (send Content-Type: application/json)", _clean(errors)
            )
        first = errors[0] if errors else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        message = f"invalid request: {where}: {first.get('msg', '')}" if first else "invalid request"
        return error_response(422, "invalid_request", message, _clean(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_html(request):
            return html_error(exc.status_code, exc.detail if isinstance(exc.detail, str) and exc.status_code != 404 else "")
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 410: "expired", 413: "too_large"}
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), detail, headers=getattr(exc, "headers", None))

    def _system_error(request: Request, exc: BaseException) -> JSONResponse:
        from opencmap.api.jobs import is_disk_full

        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        if is_disk_full(exc):
            return error_response(
                507, "insufficient_storage",
                "the server's disk is full: the result could not be saved; ask its operator to free space, then resubmit",
            )  # fmt: skip
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return error_response(
            503, "unavailable", f"the server could not read or write its files ({hide_paths(request, reason)}); try again later",
            headers={"Retry-After": "30"},
        )  # fmt: skip

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if wants_html(request):
            return html_error(500)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")
