"""In-memory data model: containers and validation. Never opens files.

``core.schema`` names the table columns, 0/1 flags, signature roles and result levels once.
"""

from opencmap.core.gct import GCT

__all__ = ["GCT"]
