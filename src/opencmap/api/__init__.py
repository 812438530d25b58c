"""The opencmap REST API (FastAPI): ``create_app(settings)``; run it with ``opencmap serve``.

Needs the ``serve`` extra (``pip install 'opencmap[serve]'``). Routes live under ``/api/v1``
(OpenAPI schema at ``/api/v1/openapi.json``, docs at ``/api/docs``); the web UI under ``/ui/``.
"""

from __future__ import annotations

from opencmap.api.app import API_PREFIX, create_app
from opencmap.api.settings import Settings

__all__ = ["create_app", "Settings", "API_PREFIX"]
