"""Connectivity methods: one module per method, each a :class:`Method` record + a thin callable.

Every method is run the same way, by the one block runner (:func:`opencmap.query.runner.run_blocks`):
it reads the signature blocks the method's ``access`` pattern asks for, calls the method's
``score`` callable per block and query; the engine (:mod:`opencmap.query.engine`) then applies
``finalize`` across all signatures and (for connectivity methods) NCS, FDR, tau and summaries.
The access patterns (:data:`ACCESS_PATTERNS`):

* ``fused_sets``: the method's ``block_kernel`` walks every set of every query at once, in place
  in the store; ``score`` receives per direction a :class:`SetStats` (the set's statistic and
  leading-edge fraction per signature of the block) - WTCS, CS;
* ``gathered_sets``: ``score`` receives per direction a :class:`SetBlock` (the set genes' ranks
  and scores in a block of signatures) - Lamb, XSum, rank z;
* ``vectors``: ``score`` receives the query vector and the signatures' scores on the genes the
  query gives - cosine, Pearson, Spearman.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from opencmap.errors import ConfigError

__all__ = ["Method", "SetBlock", "SetStats", "get_method", "method_names", "METHOD_NAMES", "ACCESS_PATTERNS"]

#: how a method reads the store (see the module docstring)
ACCESS_PATTERNS = ("fused_sets", "gathered_sets", "vectors")


@dataclass(frozen=True)
class SetBlock:
    """One gene set in a block of ``k`` signatures: ``ranks`` int (G, k) 1-based, 0 = missing;
    ``scores`` float32 (G, k)."""

    ranks: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class SetStats:
    """One gene set in a block of ``k`` signatures, from a fused set walk: the set's statistic
    ``es`` (k,) (enrichment score) and leading-edge fraction ``leadf`` (k,)."""

    es: np.ndarray
    leadf: np.ndarray


@dataclass(frozen=True)
class Method:
    """Metadata and callables of one connectivity method.

    ``kind`` is what a query gives (``geneset``: up/down sets; ``vector``: a numeric profile);
    ``access`` how the method reads the store, which decides what ``score`` receives per block
    and query (module docstring): for ``fused_sets``, ``score(up: SetStats | None, down: SetStats
    | None, **params)`` after ``block_kernel(ranks, scores, rows, bounds, n_features, *, columns,
    out)`` (:func:`opencmap.kernels.wtcs.set_enrichment_scores`) filled every set's statistics;
    ``reads_scores`` says whether that kernel needs the signatures' scores; for
    ``gathered_sets``, ``score(up: SetBlock | None, down: SetBlock | None, *, n_features: int,
    **params)``; for ``vectors``, ``score(vector (g,), scores (g, k), **params)``. Each returns
    ``{output: float array (k,)}``; the first output is the score.
    ``finalize(outputs {name: (S, Q)}, **params)`` post-processes across all signatures.
    ``connectivity`` says whether NCS / FDR / tau / summaries apply (WTCS-like scores in [-1, 1]).
    ``threaded``: ``score`` also takes ``threads=`` (its kernel's thread count, given by the
    backend, :mod:`opencmap.backends`).
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
    threaded: bool = False
    access: Literal["fused_sets", "gathered_sets", "vectors"] = "gathered_sets"
    block_kernel: Callable[..., Any] | None = None
    reads_scores: bool = True

    def __post_init__(self) -> None:
        if self.access not in ACCESS_PATTERNS:
            raise ConfigError(f"method {self.name!r}: access must be one of {ACCESS_PATTERNS}, got {self.access!r}")
        if (self.access == "vectors") != (self.kind == "vector"):
            raise ConfigError(f"method {self.name!r}: kind {self.kind!r} cannot use access {self.access!r}")
        if (self.access == "fused_sets") != (self.block_kernel is not None):
            raise ConfigError(f"method {self.name!r}: a block_kernel goes with access 'fused_sets' (and only there)")

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
