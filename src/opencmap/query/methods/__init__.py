"""Connectivity methods: one module per method, each a :class:`Method` record + a thin callable.

The engine (:mod:`opencmap.query.engine`) runs every method the same way: it reads the signature
blocks a method needs from the store, calls the method's ``score`` callable per block and query,
optionally ``finalize`` across all signatures, then (for connectivity methods) NCS, FDR, tau and
summaries. Gene-set methods receive, per direction, a :class:`SetBlock` (the set genes' ranks and
scores in a block of signatures); vector methods receive the query vector and the signatures'
scores on the genes the query gives.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from opencmap.errors import ConfigError

__all__ = ["Method", "SetBlock", "get_method", "method_names", "METHOD_NAMES"]


@dataclass(frozen=True)
class SetBlock:
    """One gene set in a block of ``k`` signatures: ``ranks`` int (G, k) 1-based, 0 = missing;
    ``scores`` float32 (G, k)."""

    ranks: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Method:
    """Metadata and callables of one connectivity method.

    ``score`` for ``kind="geneset"``: ``score(up: SetBlock | None, down: SetBlock | None, *,
    n_features: int, **params) -> {output: float array (k,)}``; for ``kind="vector"``:
    ``score(vector (g,), scores (g, k), **params) -> {...}``. The first output is the score.
    ``finalize(outputs {name: (S, Q)}, **params)`` post-processes across all signatures.
    ``connectivity`` says whether NCS / FDR / tau / summaries apply (WTCS-like scores in [-1, 1]).
    """

    name: str
    title: str
    reference: str
    kind: Literal["geneset", "vector"]
    outputs: tuple[str, ...]
    score: Callable[..., dict[str, np.ndarray]]
    connectivity: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    finalize: Callable[..., dict[str, np.ndarray]] | None = None

    def options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``self.params`` updated with ``given``; unknown names raise :class:`ConfigError`."""
        unknown = sorted(set(given) - set(self.params))
        if unknown:
            raise ConfigError(
                f"method {self.name!r} has no option(s) {unknown}; its options are {sorted(self.params) or 'none'}"
            )
        return {**self.params, **given}


#: method name -> module of this package
_MODULES = {
    "wtcs": "wtcs",
    "cs": "cs",
    "lamb": "lamb",
    "xsum": "xsum",
    "rankz": "rankz",
    "cosine": "cosine",
    "pearson": "pearson",
    "spearman": "spearman",
}
METHOD_NAMES = tuple(_MODULES)


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name`` (see :data:`METHOD_NAMES`)."""
    key = str(name).lower()
    if key not in _MODULES:
        raise ConfigError(f"unknown metric {name!r}; choose one of {list(METHOD_NAMES)}")
    module = importlib.import_module(f"opencmap.query.methods.{_MODULES[key]}")
    method: Method = module.METHOD
    return method


def method_names(kind: Literal["geneset", "vector"] | None = None) -> tuple[str, ...]:
    """Names of the registered methods (:data:`METHOD_NAMES` order), only those of ``kind`` if given
    (``geneset``: up/down gene-set queries; ``vector``: numeric query profiles)."""
    if kind not in (None, "geneset", "vector"):
        raise ConfigError(f"kind must be 'geneset', 'vector' or None, got {kind!r}")
    return tuple(name for name in METHOD_NAMES if kind is None or get_method(name).kind == kind)
