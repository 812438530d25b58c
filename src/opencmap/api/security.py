"""Security basics: request body size limit (ASGI middleware) and the optional API token."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit", "require_token", "require_user_key"]

#: the two ways of sending the token, declared in the OpenAPI document (when the server has one)
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer", description="Authorization: Bearer <token>")
header_scheme = APIKeyHeader(name="X-API-Token", auto_error=False, scheme_name="apiToken", description="X-API-Token: <token>")


class BodySizeLimit:
    """Reject request bodies larger than ``max_bytes`` with 413 (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks = []
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Send) -> None:
        import json

        body = json.dumps(
            {"error": {"code": "too_large", "message": f"request body larger than this server's limit of {self.max_bytes} bytes"}}
        ).encode()
        await send(
            {"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
        )  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def require_token(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)] = None,
    header: Annotated[str | None, Security(header_scheme)] = None,
) -> None:
    """Dependency: when the server has an API token, the request must carry it.

    Accepted as ``Authorization: Bearer <token>`` or ``X-API-Token: <token>`` (both declared as
    security schemes in the OpenAPI document; the app adds this dependency only with a token).
    """
    expected: Any = request.app.state.settings.api_token
    if not expected:
        return
    given = (bearer.credentials.strip() if bearer is not None else "") or (header or "")
    if not given or not hmac.compare_digest(given.encode(), str(expected).encode()):
        raise HTTPException(
            401,
            "this server needs an API token: send 'Authorization: Bearer <token>' (the UI asks for it)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_user_key(request: Request) -> None:
    """Dependency of the CLUE-compatible routes: clue.io's ``user_key`` is this server's API token.

    CLUE clients send their key as a ``user_key`` header (cmapPy, clueR) or query parameter
    (``?user_key=``); the native ``Authorization: Bearer`` / ``X-API-Token`` headers work too.
    Without a server token every request is let through (the key is not checked).
    """
    expected: Any = request.app.state.settings.api_token
    if not expected:
        return
    given = request.headers.get("user_key") or request.query_params.get("user_key") or request.headers.get("x-api-token", "")
    auth = request.headers.get("authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given or not hmac.compare_digest(given.encode(), str(expected).encode()):
        raise HTTPException(
            401,
            ("wrong user_key" if given else "missing user_key")
            + ": this server needs its API token as the 'user_key' header (the key you would give clue.io)",
        )
