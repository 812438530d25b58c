"""The web UI: static HTML/JS/CSS served by the API process (``opencmap serve``).

The UI talks only to the REST API (``/api/v1``). plotly.js is served locally from the installed
``plotly`` Python package (its bundled ``plotly.min.js``); no CDN is used.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["static_dir", "plotly_js"]


def static_dir() -> Path:
    """Folder of the UI's static files."""
    return Path(__file__).with_name("static")


def plotly_js() -> Path | None:
    """Path of the ``plotly.min.js`` bundled with the ``plotly`` package, or None if not installed."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    return None
