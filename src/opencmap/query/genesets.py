"""Query definitions and their validation against a store's feature space.

A :class:`Query` is either an up/down pair of gene sets (Entrez ids or symbols) or a numeric
vector over genes (for cosine / Spearman). :func:`validate_query` restricts a gene-set query to a
feature space (spec §6.1): tokens (Entrez ids, Ensembl gene ids, current, previous or store
symbols, aliases) are resolved by :class:`GeneLookup` with the bundled gene identity table
(:mod:`opencmap.core.gene_identity`), every mapping, ambiguous name, unknown gene and gene outside
the space is recorded in the :class:`ValidatedQuery`, and a :class:`~opencmap.errors.GeneSetError` is raised when a set becomes empty,
falls outside ``min_genes..max_genes`` (10..150 by default, the clue.io rule), both sets are
identical, or a gene is in both.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from opencmap.core.gene_identity import GeneIdentity, GeneMapping, normalised_key
from opencmap.errors import (
    AmbiguousGeneWarning,
    ConfigError,
    GeneMappingWarning,
    GeneSetError,
    OpenCMapWarning,
    QueryError,
    UnknownGeneWarning,
    ValidationError,
)
from opencmap.query.store import FeatureSpace, Store

__all__ = [
    "Query",
    "ValidatedQuery",
    "GeneLookup",
    "validate_query",
    "restrict_query",
    "ValidatedBatch",
    "validate_queries",
    "check_unique_names",
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


SIDES = ("up", "down")


def _sides(v: ValidatedQuery) -> list[str]:
    """The sides a query reports on: up, down, and ``vector`` for numeric queries."""
    return [*SIDES, "vector"] if v.is_vector else list(SIDES)


@dataclass(frozen=True)
class ValidatedQuery:
    """A query restricted to a feature space: 0-based rows of the space per direction.

    What happened to every gene given is recorded: ``mapped[side]`` maps each token that was not
    the store's own gene id to ``(gene_id, symbol, via)`` (``via`` one of
    :data:`~opencmap.core.gene_identity.VIA_RULES`, with ``", case changed"`` appended when the
    case differs; ``symbol`` is the current symbol when the gene identity table knows the gene);
    ``ambiguous[side]`` maps each name of several genes to its candidates ``(entrez_id, symbol)``
    (not used); ``unknown`` lists tokens that are no gene of the store and ``dropped`` known genes
    outside the feature space (both sides, in order), ``reasons`` says why per token (also for
    mapped tokens worth a word, and repeats of a gene), ``suggestions`` what to write instead,
    from the gene identity table only.
    """

    name: str
    up_rows: np.ndarray
    down_rows: np.ndarray
    up_genes: tuple[str, ...]
    down_genes: tuple[str, ...]
    unknown: tuple[str, ...] = ()  # not a gene of the store at all
    dropped: tuple[str, ...] = ()  # a known gene outside the feature space
    suggestions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    vector: np.ndarray | None = None  # float (n_features,) NaN where not given
    mapped: Mapping[str, Mapping[str, tuple[str, str, str]]] = field(default_factory=dict)
    ambiguous: Mapping[str, Mapping[str, tuple[tuple[str, str], ...]]] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_vector(self) -> bool:
        return self.vector is not None

    def noteworthy_mappings(self, side: str) -> dict[str, tuple[str, str, str]]:
        """Mappings of ``side`` a reader must be told of: not an exact id or symbol of the gene."""
        return {t: m for t, m in dict(self.mapped.get(side, {})).items() if m[2] not in ("symbol", "store symbol")}

    def summary(self) -> dict[str, object]:
        mapped = [f"{t}->{m[0]} {m[1]} ({m[2]})" for side in _sides(self) for t, m in self.noteworthy_mappings(side).items()]
        ambiguous = [
            f"{t}: " + " or ".join(f"{s} ({e})" for e, s in c) for side in _sides(self) for t, c in dict(self.ambiguous.get(side, {})).items()
        ]
        return {
            "query": self.name,
            "n_up": len(self.up_genes),
            "n_down": len(self.down_genes),
            "unknown": ",".join(self.unknown),
            "dropped": ",".join(self.dropped),
            "mapped": "; ".join(mapped),
            "ambiguous": "; ".join(ambiguous),
        }

    def notes(self) -> list[str]:
        """One line per side and kind of event (mapped, ambiguous, unknown, outside the space)."""
        return [text for _, text in self._events()]

    def _events(self) -> list[tuple[type[Warning], str]]:
        """The lines of :meth:`notes`, each with the warning category :func:`_warn` raises it as."""
        out: list[tuple[type[Warning], str]] = []
        for side in _sides(self):
            mapped = self.noteworthy_mappings(side)
            if mapped:
                out.append(
                    (
                        GeneMappingWarning,
                        f"query {self.name}, {side}: {len(mapped)} gene(s) mapped: "
                        + "; ".join(f"{t} -> {m[0]} {m[1]} ({m[2]})" for t, m in list(mapped.items())[:10])
                        + (" ..." if len(mapped) > 10 else ""),
                    )
                )
            amb = dict(self.ambiguous.get(side, {}))
            if amb:
                out.append(
                    (
                        AmbiguousGeneWarning,
                        f"query {self.name}, {side}: {len(amb)} ambiguous name(s) not used: "
                        + "; ".join(f"{t} = " + " or ".join(f"{s} ({e})" for e, s in c) for t, c in list(amb.items())[:10]),
                    )
                )
        lost = [t for t in (*self.unknown, *self.dropped)]
        if lost:
            parts = []
            if self.unknown:
                parts.append(f"{len(self.unknown)} unknown: " + ", ".join(_with_reason(t, self.reasons) for t in self.unknown[:10]))
                if self.suggestions:
                    parts.append("did you mean " + "; ".join(f"{t} -> {' or '.join(s)}" for t, s in list(self.suggestions.items())[:5]))
            if self.dropped:
                parts.append(f"{len(self.dropped)} outside the feature space: " + ", ".join(self.dropped[:10]))
            used = int(np.isfinite(self.vector).sum()) if self.vector is not None else len(self.up_genes) + len(self.down_genes)
            out.append((UnknownGeneWarning, f"query {self.name}: {len(lost)} gene(s) not used ({used} used) - " + "; ".join(parts)))
        return out


def _with_reason(token: str, reasons: Mapping[str, str]) -> str:
    reason = reasons.get(token, "")
    return f"{token} ({reason})" if reason else token


class GeneLookup:
    """Maps tokens (Entrez ids, Ensembl ids, symbols, any case) to genes of a store's gene table.

    Rules, in order (every outcome is a :class:`~opencmap.core.gene_identity.GeneMapping`):
    the store's gene id; an Entrez id of a probe-space store's ``entrez_id`` column; through the
    gene identity table (bundled by default, :func:`opencmap.io.gene_identity.bundled_gene_identity`)
    an Entrez id, an Ensembl gene id or a current symbol; the store's own symbol; a previous symbol
    or alias of exactly one gene. Names of several genes are ambiguous and resolve to none.

    The identity table is trusted for a store gene only when the store's symbol for that Entrez id
    is one of the gene's names in the table (a store whose ids are not Entrez ids, such as a
    synthetic one, keeps its own table). A current symbol wins over another gene's old name, also
    the store's: the mapping's ``note`` says so.

    Build it once per gene table (the engine caches it) and pass it to :func:`validate_query`.
    ``identity=None`` uses no identity table (store ids and symbols only).
    """

    def __init__(self, genes: pd.DataFrame, identity: GeneIdentity | None | str = "bundled"):
        if isinstance(identity, str):
            if identity != "bundled":
                raise ValidationError(f"identity must be a GeneIdentity, None or 'bundled', got {identity!r}")
            from opencmap.io.gene_identity import bundled_gene_identity

            identity = bundled_gene_identity()
        self.identity = identity
        ids = genes["pr_gene_id"].astype(str).tolist()
        self.ids = set(ids)
        symbols = (
            genes["pr_gene_symbol"].fillna("").astype(str).str.strip().replace({"-666": "", "nan": ""}).tolist()
            if "pr_gene_symbol" in genes.columns
            else [""] * len(ids)
        )
        self.symbol_of = dict(zip(ids, symbols, strict=True))
        self.by_symbol: dict[str, str] = {}
        self._by_symbol_exact: dict[str, str] = {}  # symbol -> first gene (probe) carrying it
        self._by_symbol_ci: dict[str, list[str]] = {}  # upper case -> distinct symbols
        for gid, sym in zip(ids, symbols, strict=True):
            if sym:
                self._by_symbol_exact.setdefault(sym, gid)
                self.by_symbol.setdefault(sym.upper(), gid)
                spellings = self._by_symbol_ci.setdefault(sym.upper(), [])
                if sym not in spellings:
                    spellings.append(sym)
        self.by_entrez: dict[str, str] = {}
        self.entrez_of: dict[str, str] = {}
        if "entrez_id" in genes.columns:  # probe-space stores: Entrez id -> first probe
            for gid, ez in zip(ids, genes["entrez_id"].astype(str).tolist(), strict=True):
                if ez:
                    self.by_entrez.setdefault(ez, gid)
                    self.entrez_of[gid] = ez
        else:
            self.entrez_of = {g: g for g in ids if g.isdigit()}
        # store genes the identity table describes (the store's symbol is one of the gene's names)
        self.confirmed: set[str] = set()
        if identity is not None:
            for gid, ez in self.entrez_of.items():
                rec = identity.get(ez)
                sym = self.symbol_of.get(gid, "")
                if rec is not None and (not sym or sym.upper() in {n.upper() for n in rec.names}):
                    self.confirmed.add(gid)

    # ------------------------------------------------------------------ helpers
    def _display(self, gid: str) -> str:
        """Current symbol of a store gene when the identity table describes it, else the store's."""
        if gid in self.confirmed and self.identity is not None:
            rec = self.identity.get(self.entrez_of[gid])
            if rec is not None:
                return rec.symbol
        return self.symbol_of.get(gid, "") or gid

    def _store_gene(self, entrez: str) -> tuple[str | None, str]:
        """The store gene of an Entrez id of the identity table, or None and why not."""
        candidates = [entrez] if entrez in self.ids else []
        if entrez in self.by_entrez:
            candidates.append(self.by_entrez[entrez])
        for gid in candidates:
            if gid in self.confirmed:
                return gid, ""
        if candidates:
            gid = candidates[0]
            return None, (
                f"the store's gene {gid} is named {self.symbol_of.get(gid) or '(no symbol)'}, not a name of "
                f"Entrez {entrez} in the gene identity table: this store's ids are not Entrez ids"
            )
        return None, "not measured in this store"

    def _symbol_match(self, t: str) -> tuple[list[str], bool]:
        gid = self._by_symbol_exact.get(t)
        if gid is not None:
            return [gid], False
        return [self._by_symbol_exact[sym] for sym in self._by_symbol_ci.get(t.upper(), [])], True

    # ------------------------------------------------------------------ public
    def map(self, token: str) -> GeneMapping:
        """Resolve one token against the store (see the class docstring)."""
        raw = str(token)
        t = raw.strip()
        if not t:
            return GeneMapping(raw, "unknown", note="empty")
        if t in self.ids:
            return GeneMapping(raw, "resolved", self.entrez_of.get(t), self._display(t), "id", gene_id=t)
        if t in self.by_entrez:
            gid = self.by_entrez[t]
            return GeneMapping(raw, "resolved", t, self._display(gid), "entrez", gene_id=gid)
        r = self.identity.resolve(t) if self.identity is not None else GeneMapping(raw, "unknown")
        r = replace(r, token=raw)
        missing: GeneMapping | None = None
        if r.resolved and r.via in ("entrez", "ensembl", "symbol"):
            gid, why = self._store_gene(r.entrez_id or "")
            if gid is not None:
                return replace(r, gene_id=gid)
            missing = replace(r, status="unknown", note="; ".join(x for x in (f"{r.symbol}, Entrez {r.entrez_id}, {why}", r.note) if x))
        hits, case_changed = self._symbol_match(t)
        if len(hits) == 1:
            gid = hits[0]
            if missing is not None and missing.via == "symbol" and gid in self.confirmed:
                # the store's old name of one gene is the current symbol of another: current wins
                return replace(
                    missing,
                    note=f"{t} is the current symbol of {missing.symbol} (Entrez {missing.entrez_id}), which is not in this "
                    f"store; the store's gene {gid} (now {self._display(gid)}) carried this name before",
                )
            note = ""
            if r.status == "ambiguous":
                note = "the store's own symbol; in the gene identity table also " + ", ".join(f"{s} ({e})" for e, s in r.candidates)
            elif r.resolved and r.entrez_id != self.entrez_of.get(gid):
                note = f"the store's own symbol; in the gene identity table {r.via} of {r.symbol} (Entrez {r.entrez_id})"
            return GeneMapping(raw, "resolved", self.entrez_of.get(gid), self._display(gid), "store symbol", case_changed=case_changed, note=note, gene_id=gid)
        if len(hits) > 1:
            cands = tuple((self.entrez_of.get(g, g), self.symbol_of.get(g, "")) for g in hits)
            return GeneMapping(raw, "ambiguous", candidates=cands, note="symbol of several genes of the store (differing in case)")
        if missing is not None:
            return missing
        if r.resolved:  # previous symbol or alias of one gene
            gid, why = self._store_gene(r.entrez_id or "")
            if gid is not None:
                return replace(r, gene_id=gid)
            return replace(r, status="unknown", note=f"{r.via} of {r.symbol}, Entrez {r.entrez_id}, {why}")
        return r

    def resolve(self, token: str) -> str | None:
        """The store gene id ``token`` resolves to, or ``None`` (unknown or ambiguous)."""
        return self.map(token).gene_id

    def suggest(self, token: str, mapping: GeneMapping | None = None) -> tuple[str, ...]:
        """What to write instead of ``token`` -- from the gene tables only, never by similarity.

        For an ambiguous name: its candidates that are genes of this store. For an unknown token:
        the one store gene whose symbol (first current and store symbols, then any name in the
        gene identity table, spreadsheet dates included) equals the token once case, spaces and
        punctuation are dropped. Empty otherwise.
        """
        m = mapping if mapping is not None else self.map(token)
        if m.status == "ambiguous":
            out = []
            for e, _ in m.candidates:
                gid = e if e in self.ids else self.by_entrez.get(e)
                if gid is not None and (gid in self.confirmed or self.identity is None or e not in self.identity):
                    out.append(self._display(gid))
            return tuple(dict.fromkeys(out))
        if m.status != "unknown":
            return ()
        key = normalised_key(token)
        if not key:
            return ()
        for gids in (self._current_keys().get(key, set()), self._name_key_genes(key)):
            if len(gids) == 1:
                gid = next(iter(gids))
                return () if gid.startswith("absent:") else (self._display(gid),)
            if len(gids) > 1:
                return ()
        return ()

    def _current_keys(self) -> dict[str, set[str]]:
        """Normalised store and current symbols -> store gene ids (built on first use)."""
        keys = getattr(self, "_keys", None)
        if keys is None:
            keys = {}
            for gid, sym in self.symbol_of.items():
                if sym:
                    keys.setdefault(normalised_key(sym), set()).add(gid)
            if self.identity is not None:
                for gid in self.confirmed:
                    rec = self.identity.get(self.entrez_of[gid])
                    if rec is not None:
                        keys.setdefault(normalised_key(rec.symbol), set()).add(gid)
            self._keys = keys
        return keys

    def _name_key_genes(self, key: str) -> set[str]:
        """Genes (store ids, or ``absent:<entrez>``) having any identity-table name with this key."""
        if self.identity is None:
            return set()
        out = set()
        for ez in self.identity.suggestion_keys().get(key, set()):
            gid, _ = self._store_gene(ez)
            out.add(gid if gid is not None else f"absent:{ez}")
        return out


def _restrict(tokens: Sequence[str], lookup: GeneLookup, space: FeatureSpace) -> dict[str, object]:
    """Resolve one side's tokens: kept gene ids and what happened to every other token."""
    kept: dict[str, str] = {}  # gene id -> first token
    mapped: dict[str, tuple[str, str, str]] = {}
    ambiguous: dict[str, tuple[tuple[str, str], ...]] = {}
    unknown: list[str] = []
    dropped: list[str] = []
    reasons: dict[str, str] = {}
    suggestions: dict[str, tuple[str, ...]] = {}
    tokens = list(dict.fromkeys(str(t).strip() for t in tokens if str(t).strip()))
    maps = [lookup.map(t) for t in tokens]
    rows = space.positions([m.gene_id or "" for m in maps])
    for token, m, row in zip(tokens, maps, rows, strict=True):
        if m.status == "ambiguous":
            ambiguous[token] = m.candidates
            reasons[token] = "ambiguous: " + " or ".join(f"{s} ({e})" for e, s in m.candidates)
            if s := lookup.suggest(token, m):
                suggestions[token] = s
            continue
        if m.gene_id is None:
            unknown.append(token)
            if m.note:
                reasons[token] = m.note
            if len(suggestions) < 20 and (s := lookup.suggest(token, m)):
                suggestions[token] = s
            continue
        if m.via != "id":
            via = m.via + (", case changed" if m.case_changed else "")
            mapped[token] = (m.gene_id, m.symbol or "", via or "")
            if m.note:
                reasons[token] = m.note
        if row < 0:
            dropped.append(token)
            reasons[token] = f"{m.symbol or m.gene_id} ({m.gene_id}) is not in feature space {space.name!r}"
        elif m.gene_id in kept:
            reasons[token] = f"same gene as {kept[m.gene_id]} ({m.gene_id}), counted once"
        else:
            kept[m.gene_id] = token
    return {
        "kept": list(kept),
        "mapped": mapped,
        "ambiguous": ambiguous,
        "unknown": unknown,
        "dropped": dropped,
        "reasons": reasons,
        "suggestions": suggestions,
    }


def _warn(v: ValidatedQuery) -> None:
    """Warn once per line of ``v.notes()``, with the same text."""
    for category, text in v._events():
        warnings.warn(text, category, stacklevel=3)


def _validate_vector(query: Query, space: FeatureSpace, genes: pd.DataFrame | GeneLookup, *, warn: bool) -> ValidatedQuery:
    """A numeric query aligned to ``space``; row ids outside it are resolved like gene-set tokens."""
    vec = query.vector
    assert vec is not None
    values = pd.to_numeric(pd.Series(vec.to_numpy(), index=[str(i).strip() for i in vec.index]), errors="coerce")
    values = values[~values.index.duplicated()]
    index = list(values.index)
    rows = space.positions(index)
    mapped: dict[str, tuple[str, str, str]] = {}
    ambiguous: dict[str, tuple[tuple[str, str], ...]] = {}
    reasons: dict[str, str] = {}
    outside = np.flatnonzero(rows < 0)
    if outside.size:
        lookup = genes if isinstance(genes, GeneLookup) else GeneLookup(genes)
        taken = {index[i]: index[i] for i in np.flatnonzero(rows >= 0)}
        for i in outside:
            token = index[i]
            m = lookup.map(token)
            if m.status == "ambiguous":
                ambiguous[token] = m.candidates
                reasons[token] = "ambiguous: " + " or ".join(f"{s} ({e})" for e, s in m.candidates)
                continue
            if m.gene_id is None or m.gene_id == token or space.positions([m.gene_id])[0] < 0:
                if m.note:
                    reasons[token] = m.note
                continue
            via = (m.via or "") + (", case changed" if m.case_changed else "")
            mapped[token] = (m.gene_id, m.symbol or "", via)
            if m.gene_id in taken:
                reasons[token] = f"same gene as {taken[m.gene_id]} ({m.gene_id}), its first value kept"
                continue
            taken[m.gene_id] = token
            index[i] = m.gene_id
        values.index = pd.Index(index, dtype=object)
        values = values[~values.index.duplicated()]
    aligned = values.reindex(space.gene_ids).to_numpy(dtype=np.float64)
    n = int(np.isfinite(aligned).sum())
    if n < 3:
        raise GeneSetError(
            f"query {query.name!r}: only {n} of its {len(values)} genes are finite values in feature "
            f"space {space.name!r}; a vector query needs at least 3"
        )
    unknown = tuple(str(g) for g in values.index[space.positions(list(values.index)) < 0] if g not in ambiguous)[:50]
    v = ValidatedQuery(
        query.name, np.empty(0, np.intp), np.empty(0, np.intp), (), (), unknown=unknown, vector=aligned,
        mapped={"vector": mapped}, ambiguous={"vector": ambiguous}, reasons=reasons,
    )
    if warn:
        _warn(v)
    return v


def validate_query(
    query: Query,
    space: FeatureSpace,
    genes: pd.DataFrame | GeneLookup,
    *,
    min_genes: int = DEFAULT_MIN_GENES,
    max_genes: int = DEFAULT_MAX_GENES,
    warn: bool = False,
) -> ValidatedQuery:
    """Restrict ``query`` to ``space`` and check it (spec §6.1); see the module docstring.

    ``genes`` is the store's gene table or a :class:`GeneLookup` built from it. With ``warn``,
    every gene not taken as written is also reported as a warning (:class:`GeneMappingWarning`,
    :class:`AmbiguousGeneWarning`, :class:`UnknownGeneWarning`).
    """
    if query.is_vector:
        return _validate_vector(query, space, genes, warn=warn)

    lookup = genes if isinstance(genes, GeneLookup) else GeneLookup(genes)
    if not query.up and not query.down:
        raise GeneSetError(f"query {query.name!r} has neither up nor down genes")
    restricted = restrict_query(query, space, lookup)
    up, dn = list(restricted.up_genes), list(restricted.down_genes)
    unknown, dropped, suggestions = restricted.unknown, restricted.dropped, restricted.suggestions
    ambiguous = [t for side in SIDES for t in restricted.ambiguous.get(side, {})]
    if not up and not dn and not dropped:
        given = [str(t).strip() for t in (*query.up, *query.down) if str(t).strip()]
        few = ", ".join(_with_reason(t, restricted.reasons) for t in given[:5]) + (" ..." if len(given) > 5 else "")
        raise GeneSetError(
            f"query {query.name!r}: no {'up' if query.up else 'down'} gene is in feature space {space.name!r}: all "
            f"{len(given)} genes are unknown to this store ({few}); write Entrez ids, Ensembl gene ids or gene symbols"
        )
    hint = ""
    if unknown:
        hint += f" Unknown ids/symbols: {', '.join(map(str, unknown[:10]))}"
        hint += " ..." if len(unknown) > 10 else ""
        if suggestions:
            pairs = list(suggestions.items())[:5]
            hint += " (did you mean " + "; ".join(f"{t} -> {' or '.join(map(str, s))}" for t, s in pairs) + "?)"
        hint += "."
    if ambiguous:
        hint += " Ambiguous (not used): " + "; ".join(f"{t} = {restricted.reasons.get(t, '')[len('ambiguous: '):]}" for t in ambiguous[:5]) + "."
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
    both = [g for g in up if g in set(dn)]
    if both:
        up_token = {lookup.map(t).gene_id: str(t).strip() for t in reversed(query.up)}
        dn_token = {lookup.map(t).gene_id: str(t).strip() for t in reversed(query.down)}
        named = [f"{g} (up: {up_token.get(g, g)}, down: {dn_token.get(g, g)})" for g in both[:10]]
        raise GeneSetError(
            f"query {query.name!r}: {len(both)} genes are in both the up and down sets: {', '.join(named)}; "
            f"a gene can be on one side only"
        )
    if warn:
        _warn(restricted)
    return restricted


def restrict_query(query: Query, space: FeatureSpace, genes: pd.DataFrame | GeneLookup) -> ValidatedQuery:
    """Restrict a gene-set ``query`` to ``space`` without checking it (see :func:`validate_query`).

    Tokens resolve by :class:`GeneLookup`'s rules; mapped tokens go to ``mapped``, names of
    several genes to ``ambiguous``, tokens that are no gene of the store to ``unknown`` (with
    ``suggestions`` from the gene tables), known genes outside the space to ``dropped``, and
    ``reasons`` says why. Never raises for sizes, empty or overlapping sets: use it to report what
    a query would keep.
    """
    if query.is_vector:
        raise GeneSetError(f"query {query.name!r} is a numeric vector; restrict it with validate_query")
    lookup = genes if isinstance(genes, GeneLookup) else GeneLookup(genes)
    up = _restrict(query.up, lookup, space)
    dn = _restrict(query.down, lookup, space)
    unknown = tuple(up["unknown"] + dn["unknown"])  # type: ignore[operator]
    v = ValidatedQuery(
        name=query.name,
        up_rows=space.positions(up["kept"]).astype(np.intp),  # type: ignore[arg-type]
        down_rows=space.positions(dn["kept"]).astype(np.intp),  # type: ignore[arg-type]
        up_genes=tuple(up["kept"]),  # type: ignore[arg-type]
        down_genes=tuple(dn["kept"]),  # type: ignore[arg-type]
        unknown=unknown,
        dropped=tuple(up["dropped"] + dn["dropped"]),  # type: ignore[operator]
        suggestions={**up["suggestions"], **dn["suggestions"]},  # type: ignore[dict-item]
        mapped={"up": up["mapped"], "down": dn["mapped"]},  # type: ignore[dict-item]
        ambiguous={"up": up["ambiguous"], "down": dn["ambiguous"]},  # type: ignore[dict-item]
        reasons={**up["reasons"], **dn["reasons"]},  # type: ignore[dict-item]
    )
    return v


@dataclass(frozen=True)
class ValidatedBatch:
    """Queries validated once (:func:`validate_queries`), ready to run without validating again.

    Records what they were validated against (the ``feature_space``, ``min_genes``,
    ``max_genes``, ``on_invalid`` and the metric's kind): :meth:`Engine.run
    <opencmap.query.engine.Engine.run>` takes a batch only for a run with the same values on a
    space with the same genes (the rows of a :class:`ValidatedQuery` are positions in it). ``queries`` are the valid ones, in order (skipped ones left out
    with ``on_invalid="skip"``); ``notes`` what validation found (skipped queries, and each
    query's :meth:`ValidatedQuery.notes`), in order; ``events`` the same lines with the warning
    category each is raised as when the batch runs.
    """

    queries: tuple[ValidatedQuery, ...]
    feature_space: FeatureSpace = field(repr=False)
    min_genes: int
    max_genes: int
    on_invalid: str
    metric_kind: str
    notes: tuple[str, ...] = ()
    events: tuple[tuple[type[Warning], str], ...] = ()

    @property
    def space(self) -> str:
        """The name of the feature space the queries were validated against."""
        return self.feature_space.name

    def matches(self, space: FeatureSpace, *, min_genes: int, max_genes: int, on_invalid: str, metric_kind: str) -> bool:
        """Whether a run with these values may use the batch as it is."""
        same_space = self.feature_space is space or (
            self.feature_space.name == space.name and self.feature_space.gene_ids.equals(space.gene_ids)
        )
        return same_space and (self.min_genes, self.max_genes, self.on_invalid, self.metric_kind) == (
            min_genes, max_genes, on_invalid, metric_kind
        )

    def emit(self, stacklevel: int = 3) -> None:
        """Raise every line of ``events`` as a warning of its category, in order."""
        for category, text in self.events:
            warnings.warn(text, category, stacklevel=stacklevel)


def check_unique_names(queries: Iterable[Query | ValidatedQuery]) -> None:
    """Raise :class:`~opencmap.errors.QueryError` naming the repeats if two queries share a name."""
    names = [q.name for q in queries]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise QueryError(f"query names must be unique; repeated: {dup}")


def validate_queries(
    queries: Sequence[Query],
    space: FeatureSpace,
    genes: pd.DataFrame | GeneLookup,
    *,
    metric: str = "wtcs",
    min_genes: int = DEFAULT_MIN_GENES,
    max_genes: int = DEFAULT_MAX_GENES,
    on_invalid: str = "raise",
) -> ValidatedBatch:
    """Validate every query of a batch once (:func:`validate_query`) for ``metric`` (a query of
    the other kind, vector or gene sets, raises :class:`~opencmap.errors.QueryError`).

    ``on_invalid="raise"`` raises the first :class:`~opencmap.errors.GeneSetError`; ``"skip"``
    leaves invalid queries out with a note (``query X skipped: ...``). Nothing is warned here: the
    batch records its warnings (:attr:`ValidatedBatch.events`) and the run raises them. A batch
    with no valid query left is returned empty (the run refuses it).
    """
    from opencmap.query.methods import get_method

    if on_invalid not in ("raise", "skip"):
        raise ConfigError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
    method = get_method(metric)
    lookup = genes if isinstance(genes, GeneLookup) else GeneLookup(genes)
    valid: list[ValidatedQuery] = []
    notes: list[str] = []
    events: list[tuple[type[Warning], str]] = []
    for q in queries:
        if q.is_vector != (method.kind == "vector"):
            want = "a numeric vector" if method.kind == "vector" else "up/down gene sets"
            raise QueryError(f"metric {method.name!r} needs {want}; query {q.name!r} is not")
        try:
            v = validate_query(q, space, lookup, min_genes=min_genes, max_genes=max_genes)
        except GeneSetError as exc:
            if on_invalid == "raise":
                raise
            events.append((OpenCMapWarning, f"skipped: {exc}"))
            notes.append(f"query {q.name} skipped: {exc}")
            continue
        events += v._events()
        notes += v.notes()
        valid.append(v)
    return ValidatedBatch(
        queries=tuple(valid),
        feature_space=space,
        min_genes=min_genes,
        max_genes=max_genes,
        on_invalid=on_invalid,
        metric_kind=method.kind,
        notes=tuple(notes),
        events=tuple(events),
    )


# ---------------------------------------------------------------------------------- sources
_DIRECTION_SUFFIXES = ("_UP", "_DN", "_DOWN", "-UP", "-DN", "-DOWN", ".UP", ".DN")


def _query_name(set_name: str) -> str:
    for suffix in _DIRECTION_SUFFIXES:
        if set_name.upper().endswith(suffix):
            return set_name[: -len(suffix)]
    return set_name


def _suffix_side(set_name: str) -> str | None:
    """``"up"``/``"down"`` when ``set_name`` ends with a direction suffix, else ``None``."""
    for suffix in _DIRECTION_SUFFIXES:
        if set_name.upper().endswith(suffix):
            return "up" if suffix.endswith("UP") else "down"
    return None


def _sets_by_query(path: str | os.PathLike[str], side: str) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The sets of one GMT file of ``side`` sets, keyed by query name (direction suffix removed),
    and the set names they were read from.

    Refuses a file with no sets, a set with no genes, a set named for the other direction (``X_DN`` in the up file:
    the files are probably swapped) and two sets naming the same query (``X_UP`` and ``X_DN`` in
    one file): a GMT file holds the sets of one direction.
    """
    from opencmap.io import read_gmt

    file = os.path.basename(os.fspath(path))
    sets = read_gmt(path)
    if not sets:
        raise GeneSetError(f"{side} file {file!r} has no gene sets")
    out: dict[str, tuple[str, ...]] = {}
    names: dict[str, str] = {}
    for s in sets:
        if not s.genes:
            raise GeneSetError(f"{side} file {file!r}: set {s.name!r} has no genes")
        query = _query_name(s.name)
        if query in out:
            raise GeneSetError(
                f"{side} file {file!r}: sets {names[query]!r} and {s.name!r} both name query {query!r}; a GMT "
                "file holds the sets of one direction (up sets in the up file, down sets in the down file)"
            )
        out[query], names[query] = tuple(s.genes), s.name
    for s in sets:
        named = _suffix_side(s.name)
        if named is not None and named != side:
            raise GeneSetError(
                f"{side} file {file!r}: set {s.name!r} is named as a {named} set; give up sets in the up "
                "file and down sets in the down file (are the two files swapped?)"
            )
    return out, names


def queries_from_gmt(
    up: str | os.PathLike[str] | None = None, down: str | os.PathLike[str] | None = None
) -> list[Query]:
    """Queries from GMT files of up and/or down sets.

    Sets are paired by name after removing a direction suffix (``X_UP`` with ``X_DN``, as CMap's
    query files, or identical names); the query is named by the stripped name. Raises
    :class:`~opencmap.errors.GeneSetError` for a file with no sets, a set whose suffix names the
    other direction, two sets of one file naming the same query, and sets without a partner.
    """
    up_sets, up_names = _sets_by_query(up, "up") if up is not None else ({}, {})
    dn_sets, dn_names = _sets_by_query(down, "down") if down is not None else ({}, {})
    if up_sets and dn_sets and set(up_sets) != set(dn_sets):
        only_up = [up_names[k] for k in up_sets if k not in dn_sets]
        only_dn = [dn_names[k] for k in dn_sets if k not in up_sets]
        parts = []
        if only_up:
            parts.append(f"{len(only_up)} set(s) of up file {os.path.basename(os.fspath(up))!r} have no down partner: {_first(only_up)}")  # type: ignore[arg-type]
        if only_dn:
            parts.append(f"{len(only_dn)} set(s) of down file {os.path.basename(os.fspath(down))!r} have no up partner: {_first(only_dn)}")  # type: ignore[arg-type]
        raise GeneSetError(
            "the up and down GMT files must name the same queries, paired as X_UP with X_DN (or identical "
            "names); " + "; ".join(parts)
        )
    names = list(up_sets) or list(dn_sets)
    return [Query(n, up=up_sets.get(n, ()), down=dn_sets.get(n, ())) for n in names]


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
