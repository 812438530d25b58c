"""The reference store now lives in :mod:`opencmap.io.store`; this name is that module."""

import sys

from opencmap.io.store import writer as _store

sys.modules[__name__] = _store
