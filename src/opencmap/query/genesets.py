"""Query definitions and their validation against a store's feature space.

A :class:`Query` is either an up/down pair of gene sets (Entrez ids or symbols) or a numeric
vector over genes (for cosine / Spearman). :func:`validate_query` restricts a gene-set query to a
feature space (spec §6.1): ids absent from the space are dropped and reported, symbols are mapped
to Entrez ids, and a :class:`~opencmap.errors.GeneSetError` is raised when a set becomes empty,
falls outside ``min_genes..max_genes`` (10..150 by default, the clue.io rule), both sets are
identical, or a gene is in both.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from opencmap.errors import GeneSetError, ValidationError
from opencmap.query.store import FeatureSpace, Store

__all__ = [
    "Query",
    "ValidatedQuery",
    "GeneLookup",
    "validate_query",
    "restrict_query",
    "queries_from_gmt",
    "query_from_grp",
    "signature_queries",
    "as_queries",
    "queries_from_files",
    "vector_queries",
    "queries_from_gct",
]

DEFAULT_MIN_GENES = 10
DEFAULT_MAX_GENES = 150


@dataclass(frozen=True)
class Query:
    """One query: ``up``/``down`` gene ids or symbols, or a numeric ``vector`` indexed by gene id."""

    name: str
    up: tuple[str, ...] = ()
    down: tuple[str, ...] = ()
    vector: pd.Series | None = field(default=None, compare=False)

    @property
    def is_vector(self) -> bool:
        return self.vector is not None


@dataclass(frozen=True)
class ValidatedQuery:
    """A query restricted to a feature space: 0-based rows of the space per direction."""

    name: str
    up_rows: np.ndarray
    down_rows: np.ndarray
    up_genes: tuple[str, ...]
    down_genes: tuple[str, ...]
    unknown: tuple[str, ...] = ()  # not a gene of the store at all
    dropped: tuple[str, ...] = ()  # a known gene outside the feature space
    suggestions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    vector: np.ndarray | None = None  # float (n_features,) NaN where not given

    @property
    def is_vector(self) -> bool:
        return self.vector is not None

    def summary(self) -> dict[str, object]:
        return {
            "query": self.name,
            "n_up": len(self.up_genes),
            "n_down": len(self.down_genes),
            "unknown": ",".join(self.unknown),
            "dropped": ",".join(self.dropped),
        }


class GeneLookup:
    """Maps tokens (Entrez ids or symbols, any case) to Entrez ids of a store's gene table.

    Build it once per gene table (the engine caches it) and pass it to :func:`validate_query`.
    """

    def __init__(self, genes: pd.DataFrame):
        ids = genes["pr_gene_id"].astype(str).tolist()
        self.ids = set(ids)
        self.by_symbol: dict[str, str] = {}
        if "pr_gene_symbol" in genes.columns:
            for gid, sym in zip(ids, genes["pr_gene_symbol"].astype(str).tolist(), strict=True):
                self.by_symbol.setdefault(sym.upper(), gid)
        self.by_entrez: dict[str, str] = {}
        if "entrez_id" in genes.columns:  # probe-space stores: Entrez id -> first probe
            for gid, ez in zip(ids, genes["entrez_id"].astype(str).tolist(), strict=True):
                if ez:
                    self.by_entrez.setdefault(ez, gid)
        self._symbols = sorted(self.by_symbol)

    def resolve(self, token: str) -> str | None:
        t = str(token).strip()
        if t in self.ids:
            return t
        return self.by_entrez.get(t) or self.by_symbol.get(t.upper())

    def suggest(self, token: str) -> tuple[str, ...]:
        return tuple(difflib.get_close_matches(str(token).upper(), self._symbols, n=3, cutoff=0.75))


def _restrict(
    tokens: Sequence[str], lookup: GeneLookup, space: FeatureSpace
) -> tuple[list[str], list[str], list[str]]:
    kept: dict[str, None] = {}
    unknown: list[str] = []
    dropped: list[str] = []
    tokens = list(dict.fromkeys(str(t).strip() for t in tokens if str(t).strip()))
    resolved = [lookup.resolve(t) for t in tokens]
    rows = space.positions([g or "" for g in resolved])
    for token, gid, row in zip(tokens, resolved, rows, strict=True):
        if gid is None:
            unknown.append(token)
        elif row < 0:
            dropped.append(token)
        else:
            kept.setdefault(gid)
    return list(kept), unknown, dropped


def validate_query(
    query: Query,
    space: FeatureSpace,
    genes: pd.DataFrame | GeneLookup,
    *,
    min_genes: int = DEFAULT_MIN_GENES,
    max_genes: int = DEFAULT_MAX_GENES,
) -> ValidatedQuery:
    """Restrict ``query`` to ``space`` and check it (spec §6.1); see the module docstring.

    ``genes`` is the store's gene table or a :class:`GeneLookup` built from it.
    """
    if query.is_vector:
        vec = query.vector
        assert vec is not None
        values = pd.to_numeric(pd.Series(vec.to_numpy(), index=[str(i) for i in vec.index]), errors="coerce")
        values = values[~values.index.duplicated()]
        aligned = values.reindex(space.gene_ids).to_numpy(dtype=np.float64)
        n = int(np.isfinite(aligned).sum())
        if n < 3:
            raise GeneSetError(
                f"query {query.name!r}: only {n} of its {len(values)} genes are finite values in feature "
                f"space {space.name!r}; a vector query needs at least 3"
            )
        unknown = tuple(str(g) for g in values.index[space.positions(list(values.index)) < 0][:50])
        return ValidatedQuery(query.name, np.empty(0, np.intp), np.empty(0, np.intp), (), (), unknown=unknown, vector=aligned)

    lookup = genes if isinstance(genes, GeneLookup) else GeneLookup(genes)
    if not query.up and not query.down:
        raise GeneSetError(f"query {query.name!r} has neither up nor down genes")
    restricted = restrict_query(query, space, lookup)
    up, dn = list(restricted.up_genes), list(restricted.down_genes)
    unknown, dropped, suggestions = restricted.unknown, restricted.dropped, restricted.suggestions
    hint = ""
    if unknown:
        hint += f" Unknown ids/symbols: {', '.join(map(str, unknown[:10]))}"
        hint += " ..." if len(unknown) > 10 else ""
        if suggestions:
            pairs = list(suggestions.items())[:5]
            hint += " (did you mean " + "; ".join(f"{t} -> {' or '.join(map(str, s))}" for t, s in pairs) + "?)"
        hint += "."
    if dropped:
        hint += f" Outside feature space {space.name!r}: {list(dropped[:10])}."
    for side, given, kept in (("up", query.up, up), ("down", query.down, dn)):
        if given and not kept:
            raise GeneSetError(f"query {query.name!r}: no {side} gene is in feature space {space.name!r}.{hint}")
        if kept and not min_genes <= len(kept) <= max_genes:
            raise GeneSetError(
                f"query {query.name!r}: {len(kept)} {side} genes in feature space {space.name!r}, "
                f"need {min_genes}..{max_genes} (change min_genes/max_genes to allow it).{hint}"
            )
    if up and dn and set(up) == set(dn):
        raise GeneSetError(f"query {query.name!r}: the up and down sets are identical")
    both = sorted(set(up) & set(dn))
    if both:
        raise GeneSetError(f"query {query.name!r}: {len(both)} genes are in both the up and down sets: {both[:10]}")
    return restricted


def restrict_query(query: Query, space: FeatureSpace, genes: pd.DataFrame | GeneLookup) -> ValidatedQuery:
    """Restrict a gene-set ``query`` to ``space`` without checking it (see :func:`validate_query`).

    Symbols map to Entrez ids; ids that are no gene of the store go to ``unknown`` (with close
    symbols in ``suggestions``), known genes outside the space to ``dropped``. Never raises for
    sizes, empty or overlapping sets: use it to report what a query would keep.
    """
    if query.is_vector:
        raise GeneSetError(f"query {query.name!r} is a numeric vector; restrict it with validate_query")
    lookup = genes if isinstance(genes, GeneLookup) else GeneLookup(genes)
    up, unk_up, drop_up = _restrict(query.up, lookup, space)
    dn, unk_dn, drop_dn = _restrict(query.down, lookup, space)
    unknown = tuple(unk_up + unk_dn)
    return ValidatedQuery(
        name=query.name,
        up_rows=space.positions(up).astype(np.intp),
        down_rows=space.positions(dn).astype(np.intp),
        up_genes=tuple(up),
        down_genes=tuple(dn),
        unknown=unknown,
        dropped=tuple(drop_up + drop_dn),
        suggestions={t: s for t in unknown[:20] if (s := lookup.suggest(t))},
    )


# ---------------------------------------------------------------------------------- sources
_DIRECTION_SUFFIXES = ("_UP", "_DN", "_DOWN", "-UP", "-DN", "-DOWN", ".UP", ".DN")


def _query_name(set_name: str) -> str:
    for suffix in _DIRECTION_SUFFIXES:
        if set_name.upper().endswith(suffix):
            return set_name[: -len(suffix)]
    return set_name


def _direction(set_name: str) -> str | None:
    upper = set_name.upper()
    for suffix in _DIRECTION_SUFFIXES:
        if upper.endswith(suffix):
            return "up" if suffix.endswith("UP") else "down"
    return None


def _sets_by_query(path: str | os.PathLike[str], side: str) -> dict[str, Any]:
    """Sets of one GMT file keyed by query name; refuses a set named for the other side or two
    sets that name the same query."""
    from opencmap.io import read_gmt

    by_name: dict[str, Any] = {}
    for s in read_gmt(path):
        other = _direction(s.name)
        if other is not None and other != side:
            raise GeneSetError(
                f"set {s.name!r} of the {side} GMT file {os.fspath(path)} is named as a {other} set: the up and "
                f"down files look swapped; give the file of _UP sets as up and the file of _DN sets as down"
            )
        key = _query_name(s.name)
        if key in by_name:
            raise GeneSetError(
                f"sets {by_name[key].name!r} and {s.name!r} of the {side} GMT file {os.fspath(path)} both name query "
                f"{key!r}; give each query one {side} set"
            )
        by_name[key] = s
    return by_name


def queries_from_gmt(
    up: str | os.PathLike[str] | None = None, down: str | os.PathLike[str] | None = None
) -> list[Query]:
    """Queries from GMT files of up and/or down sets.

    Sets are paired by name after removing a direction suffix (``X_UP`` with ``X_DN``, as CMap's
    query files); the query is named by the stripped name. Raises
    :class:`~opencmap.errors.GeneSetError` (one line, naming the sets and both files) when a set
    has no partner in the other file, when a file holds sets named for the other direction (files
    swapped), or when two sets of a file name the same query.
    """
    up_sets = _sets_by_query(up, "up") if up is not None else {}
    dn_sets = _sets_by_query(down, "down") if down is not None else {}
    if up_sets and dn_sets and set(up_sets) != set(dn_sets):
        only_up = [up_sets[k].name for k in up_sets if k not in dn_sets]
        only_dn = [dn_sets[k].name for k in dn_sets if k not in up_sets]
        parts = []
        if only_up:
            parts.append(f"{len(only_up)} set(s) of up file {os.fspath(up)} have no down partner: {_first(only_up)}")  # type: ignore[arg-type]
        if only_dn:
            parts.append(f"{len(only_dn)} set(s) of down file {os.fspath(down)} have no up partner: {_first(only_dn)}")  # type: ignore[arg-type]
        raise GeneSetError(
            "the up and down GMT files must name the same queries, paired as X_UP with X_DN (or identical "
            "names); " + "; ".join(parts)
        )
    names = list(up_sets) or list(dn_sets)
    return [
        Query(
            n,
            up=tuple(up_sets[n].genes) if n in up_sets else (),
            down=tuple(dn_sets[n].genes) if n in dn_sets else (),
        )
        for n in names
    ]


def _first(names: Sequence[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" (+{len(names) - n} more)" if len(names) > n else "")


def query_from_grp(
    up: str | os.PathLike[str] | None = None,
    down: str | os.PathLike[str] | None = None,
    *,
    name: str = "query",
) -> Query:
    """One query from GRP files (one gene per line)."""
    from opencmap.io import read_grp

    return Query(
        name,
        up=tuple(read_grp(up)) if up is not None else (),
        down=tuple(read_grp(down)) if down is not None else (),
    )


def signature_queries(
    store: Store,
    sig_ids: Sequence[str] | None = None,
    *,
    positions: Sequence[int] | np.ndarray | None = None,
    n_genes: int = 50,
    space: str | None = None,
) -> list[Query]:
    """Turn store signatures into up/down queries: their top and bottom ``n_genes`` genes.

    ``space`` is the space the genes are picked from (default: ``lm`` when the store has it,
    as CMap's introspection; else the default space).
    """
    if (sig_ids is None) == (positions is None):
        raise ValidationError("give exactly one of sig_ids or positions")
    pos = store.sig_positions(sig_ids) if sig_ids is not None else np.asarray(positions, dtype=np.intp)
    name_space = space or ("lm" if "lm" in store.spaces else store.default_space)
    sp = store.space(name_space)
    if not 1 <= n_genes <= sp.n_features // 2:
        raise ValidationError(f"n_genes must be in 1..{sp.n_features // 2} for space {sp.name!r}, got {n_genes}")
    scores = store.signature_scores(pos, space=sp.name)
    ids = store.sig_ids
    queries = []
    for row, p in zip(scores, pos, strict=True):
        vals = np.where(np.isnan(row), 0.0, row)
        order = np.argsort(-vals, kind="stable")
        top = sp.gene_ids[order[:n_genes]]
        bottom = sp.gene_ids[order[::-1][:n_genes]]
        queries.append(Query(str(ids[p]), up=tuple(top), down=tuple(bottom)))
    return queries


def as_queries(
    up: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    down: Iterable[str] | Mapping[str, Iterable[str]] | None = None,
    *,
    name: str = "query",
) -> list[Query]:
    """Queries from Python lists (one query) or dicts ``{name: genes}`` (several, paired by name)."""
    if isinstance(up, Mapping) or isinstance(down, Mapping):
        ups = dict(up or {})  # type: ignore[arg-type]
        dns = dict(down or {})  # type: ignore[arg-type]
        if ups and dns and set(ups) != set(dns):
            only_up = [str(k) for k in ups if k not in dns]
            only_dn = [str(k) for k in dns if k not in ups]
            raise GeneSetError(
                "the up and down dictionaries must have the same query names; only in up: "
                f"{_first(only_up) or 'none'}; only in down: {_first(only_dn) or 'none'}"
            )
        names = list(ups) or list(dns)
        return [Query(str(n), up=tuple(map(str, ups.get(n, ()))), down=tuple(map(str, dns.get(n, ())))) for n in names]
    return [Query(name, up=tuple(map(str, up or ())), down=tuple(map(str, down or ())))]


def queries_from_files(
    up: str | os.PathLike[str] | None = None,
    down: str | os.PathLike[str] | None = None,
    *,
    name: str = "query",
) -> list[Query]:
    """Queries from GMT (several, paired by name) or GRP (one) files, chosen by extension."""
    paths = [p for p in (up, down) if p is not None]
    if not paths:
        raise GeneSetError("give an up and/or a down gene set file")
    kinds = {str(p).lower().rsplit(".", 1)[-1] for p in paths}
    if kinds <= {"gmt"}:
        return queries_from_gmt(up, down)
    if kinds <= {"grp", "txt"}:
        return [query_from_grp(up, down, name=name)]
    raise GeneSetError(f"gene set files must be both .gmt or both .grp, got {[str(p) for p in paths]}")


def vector_queries(
    store: Store,
    sig_ids: Sequence[str],
    *,
    space: str | None = None,
) -> list[Query]:
    """Store signatures as numeric vector queries (for cosine / Pearson / Spearman)."""
    sp = store.space(space)
    pos = store.sig_positions(sig_ids)
    scores = store.signature_scores(pos, space=sp.name)
    return [Query(str(s), vector=pd.Series(row, index=sp.gene_ids)) for s, row in zip(sig_ids, scores, strict=True)]


def queries_from_gct(path: str | os.PathLike[str]) -> list[Query]:
    """Vector queries from a GCT/GCTX file: one query per column, rows = gene ids."""
    from opencmap.io import read_gct

    gct = read_gct(path)
    return [Query(str(c), vector=pd.Series(gct.data[:, j], index=gct.rids)) for j, c in enumerate(gct.cids)]
