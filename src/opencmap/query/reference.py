"""The reference index: everything derived from a store's signatures (and one PCL set) once.

A :class:`ReferenceIndex` holds what every query of a store needs and that depends only on the
store: NCS groups (GUTC ``pert_type x cell_id``), the reference signatures and their order in
group order, the fallback keys of groups without references, the null signatures of the ``cmap``
FDR method, the gene lookup (symbols, ids and aliases -> store genes) and the summary levels'
group structure (:class:`~opencmap.query.summaries.SummaryPlan`, which depends on the PCLs).
Modules that derive more per-store data (tau background rows, random-query FDR nulls) keep it in
the index with :meth:`ReferenceIndex.memo`.

One index per opened store generation and PCL set is shared by the query engine, the API
catalogue and background building (:meth:`ReferenceIndex.of`, keyed by the store's path, its
manifest and the PCLs: a new generation - a rebuilt background, an append - gets a new index).
Each part is built on first use, once, under the index's lock, and never changes afterwards, so
any number of threads can read one index without a global lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from opencmap.core.schema import null_mask, reference_mask
from opencmap.query.genesets import GeneLookup
from opencmap.query.store import Store
from opencmap.query.summaries import SummaryPlan

__all__ = ["ReferenceIndex", "ncs_groups", "null_mask", "reference_mask", "resolve_pcl", "shared_store"]

T = TypeVar("T")

#: indexes kept for reuse (most recently used last); each holds its store open
_KEEP = 4
_MISSING = object()
#: parts that do not depend on the PCLs: an index with PCLs takes them from the store's own index
_STORE_PARTS = frozenset({"groups", "is_reference", "reference_order", "fallback_keys", "null", "lookup", "fdr_nulls"})


# ---------------------------------------------------------------------------------- signature roles
def _column(info: pd.DataFrame, *names: str) -> pd.Series | None:
    for n in names:
        if n in info.columns:
            return info[n]
    return None


def ncs_groups(sig_info: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """GUTC NCS groups: ``pert_type x cell_id`` with ``trt_poscon``/``ctl_vehicle`` -> ``trt_cp``.

    Returns int codes (S,) and the group labels. Missing columns form one group.
    """
    ptype = _column(sig_info, "pert_type")
    cell = _column(sig_info, "cell_id", "cell_iname")
    n = len(sig_info)
    pt = np.full(n, "", dtype=object) if ptype is None else ptype.astype(str).replace({"trt_poscon": "trt_cp", "ctl_vehicle": "trt_cp"}).to_numpy(dtype=object)
    ce = np.full(n, "", dtype=object) if cell is None else cell.astype(str).to_numpy(dtype=object)
    labels = pd.Index(pd.Series(pt) + ":" + pd.Series(ce), dtype=object)
    codes, uniques = pd.factorize(labels)
    return codes.astype(np.int64), pd.Index(uniques, dtype=object)


def resolve_pcl(pcl: Any, store: Store) -> tuple[dict[str, tuple[str, ...]] | None, list[str]]:
    """Perturbagen classes for ``store``: ``pcl`` (GMT path or mapping) or, when None, those
    stored with the store; checked against its perturbagens (:func:`opencmap.query.pcl.load_pcls`),
    with the notes of what was left out."""
    pcl = pcl if pcl is not None else store.pcl
    if pcl is None:
        return None, []
    from opencmap.query.pcl import load_pcls

    info = store.sig_info
    names = info["pert_iname"] if "pert_iname" in info.columns else ()
    return load_pcls(pcl, info["pert_id"] if "pert_id" in info.columns else (), pert_names=names)


# ---------------------------------------------------------------------------------- the index
_open: OrderedDict[str, tuple[tuple[int, int, int], Store]] = OrderedDict()
_open_lock = threading.Lock()


def shared_store(path: str | os.PathLike[str]) -> Store:
    """The store at ``path``, opened once and reused while its manifest file is the same (a new
    generation - rebuilt backgrounds, an append, a rebuild - replaces the file and is reopened).
    For one-call helpers (:func:`~opencmap.query.engine.run_query`) that get a path each call:
    the open store keeps its tables (``sig_info``) and its :class:`ReferenceIndex`."""
    folder = Path(path).resolve()
    try:
        st = os.stat(folder / "manifest.json")
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        return Store(path)  # no store there: Store raises the usual error
    key = str(folder)
    with _open_lock:
        hit = _open.get(key)
        if hit is not None and hit[0] == stamp:
            _open.move_to_end(key)
            return hit[1]
    store = Store(path)
    with _open_lock:
        _open[key] = (stamp, store)
        _open.move_to_end(key)
        while len(_open) > _KEEP:
            _open.popitem(last=False)
    return store


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _pcl_key(pcl: Mapping[str, Sequence[str]] | None) -> str | None:
    if pcl is None:
        return None
    return _digest(sorted((str(k), [str(m) for m in v]) for k, v in pcl.items()))


class ReferenceIndex:
    """Store-derived structures shared by every query of one store generation (module docstring).

    Parameters
    ----------
    store:
        The open store.
    pcl:
        Perturbagen classes (``{name: (pert_id, ...)}``, already checked against the store, as
        :func:`opencmap.query.pcl.load_pcls` returns them) for the PCL summary levels, or None.

    Use :meth:`of` to share one index per store generation; a directly built index is private.
    """

    _shared: OrderedDict[tuple[Any, ...], ReferenceIndex] = OrderedDict()
    _shared_lock = threading.Lock()

    def __init__(self, store: Store, pcl: Mapping[str, Sequence[str]] | None = None, *, base: ReferenceIndex | None = None):
        self.store = store
        self.pcl = None if pcl is None else {str(k): tuple(v) for k, v in pcl.items()}
        #: the index without PCLs of the same store generation, whose PCL-independent parts this one shares
        self._base = base
        #: the store manifest this index was built for (a new generation needs a new index)
        self.manifest = store.manifest
        self._lock = threading.RLock()
        self._parts: dict[Any, Any] = {}

    # ------------------------------------------------------------------ sharing
    @classmethod
    def key(cls, store: Store, pcl: Mapping[str, Sequence[str]] | None = None) -> tuple[Any, ...]:
        """What identifies an index: the store's folder, its manifest (generation, segments,
        checksums, backgrounds) and the PCLs."""
        return (str(store.path.resolve()), _digest(store.manifest), _pcl_key(pcl))

    @classmethod
    def of(cls, store: Store, pcl: Mapping[str, Sequence[str]] | None = None) -> ReferenceIndex:
        """The shared index of ``store`` as it is now (its manifest) and ``pcl``: built on the first
        request, reused by later ones (a few recent store generations are kept)."""
        key = cls.key(store, pcl)
        base = None if pcl is None else cls.of(store)
        with cls._shared_lock:
            index = cls._shared.get(key)
            if index is None:
                index = cls._shared[key] = cls(store, pcl, base=base)
                while len(cls._shared) > _KEEP:
                    cls._shared.popitem(last=False)
            else:
                cls._shared.move_to_end(key)
            return index

    @classmethod
    def forget(cls) -> None:
        """Drop every shared index (their stores close when no engine holds them)."""
        with cls._shared_lock:
            cls._shared.clear()

    def memo(self, key: Any, build: Callable[[], T]) -> T:
        """The part ``key`` of this index, built by ``build()`` on first use (once, under the
        index's lock). Parts are read-only once built."""
        if self._base is not None and key in _STORE_PARTS:
            return self._base.memo(key, build)
        value = self._parts.get(key, _MISSING)
        if value is _MISSING:
            with self._lock:
                value = self._parts.get(key, _MISSING)
                if value is _MISSING:
                    value = build()
                    self._parts[key] = value
        return value  # type: ignore[return-value]

    def warm(self) -> ReferenceIndex:
        """Build every part now (the gene lookup, NCS groups and references, nulls, summaries)."""
        for part in (self.lookup, self.groups, self.reference_order, self.null, self.summary_plan):
            assert part is not None
        return self

    # ------------------------------------------------------------------ parts
    @property
    def groups(self) -> tuple[np.ndarray, pd.Index]:
        """NCS group codes of the store's signatures and their labels."""
        return self.memo("groups", lambda: ncs_groups(self.store.sig_info))

    @property
    def is_reference(self) -> np.ndarray:
        """NCS reference signatures (bool, S)."""
        return self.memo("is_reference", lambda: reference_mask(self.store.sig_info))

    @property
    def reference_order(self) -> np.ndarray:
        """Reference signatures in group order (:func:`opencmap.kernels.ncs.reference_order`)."""
        from opencmap.kernels.ncs import reference_order

        return self.memo("reference_order", lambda: reference_order(self.groups[0], self.is_reference))

    @property
    def fallback_keys(self) -> list[np.ndarray]:
        """Per group: codes of its pert_type and of its cell line (GUTC borrowing)."""

        def build() -> list[np.ndarray]:
            parts = pd.Series(list(self.groups[1]), dtype=object).str.split(":", n=1)
            return [pd.factorize(parts.str[i])[0].astype(np.int64) for i in (0, 1)]

        return self.memo("fallback_keys", build)

    @property
    def null(self) -> np.ndarray:
        """Null signatures of the ``cmap`` FDR method (bool, S)."""
        return self.memo("null", lambda: null_mask(self.store.sig_info))

    @property
    def lookup(self) -> GeneLookup:
        """Gene symbols, ids and aliases -> the store's genes."""
        return self.memo("lookup", lambda: GeneLookup(self.store.genes))

    @property
    def summary_plan(self) -> SummaryPlan:
        """Summary levels of the store's signatures and the index's PCLs."""
        return self.memo("summary_plan", lambda: SummaryPlan.build(self.store.sig_info, pcl=self.pcl))

    # ------------------------------------------------------------------ NCS
    def group_signs(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per NCS group: whether its references have a positive / a negative score in some column
        of ``scores`` (S, Q); OR them over the column chunks of a query set and pass them as
        ``group_signs`` to :meth:`normalise` each chunk as the whole set would be."""
        from opencmap.kernels.ncs import signed_any

        codes, _ = self.groups
        return signed_any(scores, codes, self.is_reference, int(codes.max()) + 1 if codes.size else 0)

    def normalise(
        self, scores: np.ndarray, *, mode: str = "gutc", threads: int = 1, parallel_min: int | None = None,
        group_signs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """NCS (S, Q) of raw connectivity scores (S, Q) with the store's groups and references.

        Groups without reference signatures borrow (GUTC) from groups of the same pert_type,
        then the same cell line, then all groups. NaN scores (undefined) give NaN in every mode
        (``cmap`` mode's NaN -> 0 applies only to scores that are defined). ``threads`` and
        ``parallel_min`` go to the NCS kernel (given by the backend, :mod:`opencmap.backends`);
        ``group_signs``: the whole query set's :meth:`group_signs` when ``scores`` is a chunk of
        its columns (``gutc`` mode; the NCS of a column then does not depend on the chunk).
        """
        from opencmap.kernels.ncs import ncs as ncs_kernel

        codes, _ = self.groups
        options: dict[str, Any] = {"mode": mode, "ref_order": self.reference_order, "threads": threads}
        if parallel_min is not None:
            options["parallel_min"] = parallel_min
        if mode == "gutc":
            options["fallback_keys"] = self.fallback_keys
        if group_signs is not None:  # cmap mode refuses them (ConfigError)
            options["group_signs"] = group_signs
        out = np.asarray(ncs_kernel(scores, codes, self.is_reference, **options), dtype=np.float32)
        if mode == "cmap":
            # sig_queryl1k sets NaN NCS to 0; an undefined score (NaN WTCS) stays undefined here
            undefined = np.isnan(scores)
            if undefined.any():
                out[undefined] = np.nan
        return out
