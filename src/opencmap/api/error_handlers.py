"""HTTP errors of the API: one JSON envelope, and library errors mapped to status codes.

Every error response is ``{"error": {"code": <short name>, "message": <what and what to do>,
"details": ...}}``. Library errors (:mod:`opencmap.errors`) keep their messages: unknown ids ->
404, unusable gene sets / options -> 422, bad files -> 422, store problems -> 409.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from opencmap.errors import (
    ConfigError,
    FormatError,
    GeneSetError,
    IdNotFoundError,
    OpenCMapError,
    QueryError,
    StoreError,
    ValidationError,
)

__all__ = ["install_error_handlers", "error_response", "status_for"]

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[OpenCMapError], int, str], ...] = (
    (IdNotFoundError, 404, "not_found"),
    (GeneSetError, 422, "invalid_gene_set"),
    (FormatError, 422, "bad_file"),
    (ConfigError, 422, "invalid_option"),
    (QueryError, 422, "invalid_query"),
    (ValidationError, 422, "invalid_input"),
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


def _clean(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for e in errors[:20]:
        out.append({"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(OpenCMapError)
    async def _library_error(request: Request, exc: OpenCMapError) -> JSONResponse:
        status, code = status_for(exc)
        return error_response(status, code, str(exc))

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
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed", 410: "expired", 413: "too_large"}
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")
