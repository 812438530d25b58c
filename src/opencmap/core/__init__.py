"""In-memory data model: containers and validation. Never opens files."""

from opencmap.core.gct import GCT

__all__ = ["GCT"]
