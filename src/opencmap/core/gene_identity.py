"""Gene identity: resolve what a user wrote (Entrez id, Ensembl id, symbol) to one gene, or say why not.

A :class:`GeneIdentity` holds :class:`GeneRecord` rows (Entrez id, current symbol, previous
symbols, aliases, Ensembl gene ids) and resolves a token by these rules, in order:

1. an Entrez id of the table (``via="entrez"``);
2. an Ensembl gene id ``ENSG...`` (any case, a ``.N`` version suffix stripped; ``via="ensembl"``);
3. a current symbol (``via="symbol"``): the current symbol always wins, also when the token is a
   previous symbol or alias of other genes (that is said in :attr:`GeneMapping.note`);
4. a previous symbol of exactly one gene (``via="previous symbol"``; an alias of other genes is
   said in the note);
5. an alias of exactly one gene (``via="alias"``).

A previous symbol of several genes, or (failing rules 1-4) an alias of several genes, is
**ambiguous**: it resolves to none of them and :attr:`GeneMapping.candidates` lists them all.

Symbols match exactly first, then ignoring case (``case_changed`` is then set). Nothing is ever
matched by string similarity: :meth:`GeneIdentity.suggest` only offers the genes whose name is the
token once case, spaces and punctuation are removed, or whose symbol a spreadsheet turned into a
date (``SEPT7`` -> ``7-Sep``), and only when that names exactly one gene.

This module never opens files; :func:`opencmap.datasets.gene_identity` loads the bundled table.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from opencmap.errors import ValidationError

__all__ = ["GeneRecord", "GeneMapping", "GeneIdentity", "VIA_RULES", "normalised_key"]

#: every ``via`` a mapping can report, in the order the rules are tried
VIA_RULES = ("id", "entrez", "ensembl", "symbol", "store symbol", "previous symbol", "alias")

_ENSEMBL = re.compile(r"^(ENSG\d{6,})(\.\d+)?$", re.IGNORECASE)
_DATE_SYMBOL = re.compile(r"^(SEPT|SEP|MARCH|MAR|DEC|OCT|NOV|APR|FEB|JAN|JUN|JUL|AUG|MAY)(\d{1,2})$")
_NOT_ALNUM = re.compile(r"[^0-9A-Z]+")


def normalised_key(token: str) -> str:
    """``token`` upper-cased with everything but letters and digits removed (``hla-drb 1`` -> ``HLADRB1``)."""
    return _NOT_ALNUM.sub("", str(token).upper())


def _split(value: object) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and value != value):
        return ()
    return tuple(v for v in str(value).split("|") if v)


@dataclass(frozen=True)
class GeneRecord:
    """One gene: its Entrez id, current symbol and every other name it is known by."""

    entrez_id: str
    symbol: str
    previous_symbols: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    ensembl_ids: tuple[str, ...] = ()
    lincs_symbol: str = ""
    space: str = ""  # lm / bing / aig for L1000 genes, "" otherwise
    ncbi_current: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """Current symbol, LINCS symbol, previous symbols and aliases."""
        return (self.symbol, *((self.lincs_symbol,) if self.lincs_symbol else ()), *self.previous_symbols, *self.aliases)

    def label(self) -> str:
        return f"{self.symbol} (Entrez {self.entrez_id})"


@dataclass(frozen=True)
class GeneMapping:
    """How one token was resolved.

    ``status`` is ``resolved`` (``entrez_id``/``symbol``/``via`` set), ``ambiguous``
    (``candidates`` lists ``(entrez_id, symbol)`` of every gene it may mean) or ``unknown``.
    ``gene_id`` is the id of the gene in a store's gene table when the mapping was made against
    one (:class:`opencmap.query.genesets.GeneLookup`), ``None`` otherwise or when it is not there.
    ``note`` says anything a reader should know (case changed, version suffix stripped, the name
    is also another gene's previous symbol, the gene is not in the store, ...).
    """

    token: str
    status: str
    entrez_id: str | None = None
    symbol: str | None = None
    via: str | None = None
    candidates: tuple[tuple[str, str], ...] = ()
    case_changed: bool = False
    note: str = ""
    gene_id: str | None = None

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    @property
    def trivial(self) -> bool:
        """Written as the gene's id or exact symbol: nothing a reader needs to be told."""
        return self.resolved and self.via in ("id", "symbol", "store symbol") and not self.case_changed

    def describe(self) -> str:
        """One line, e.g. ``AARS -> 16 AARS1 (previous symbol)``."""
        if self.status == "ambiguous":
            cands = ", ".join(f"{s} ({e})" for e, s in self.candidates)
            return f"{self.token} is ambiguous: {cands}"
        if self.status == "unknown":
            return f"{self.token}: unknown" + (f" ({self.note})" if self.note else "")
        via = self.via or ""
        if self.case_changed:
            via += ", case changed"
        target = self.gene_id if self.gene_id is not None else self.entrez_id
        return f"{self.token} -> {target} {self.symbol} ({via})" + (f"; {self.note}" if self.note else "")


@dataclass
class GeneIdentity:
    """An indexed gene identity table (see the module docstring for the rules).

    Parameters
    ----------
    records:
        One :class:`GeneRecord` per Entrez id (duplicated ids raise
        :class:`~opencmap.errors.ValidationError`).
    version:
        The table's version (e.g. ``"1"``), reported with mappings.
    source:
        Where the table comes from (free text).
    """

    records: Iterable[GeneRecord]
    version: str = ""
    source: str = ""
    _by_id: dict[str, GeneRecord] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.records = tuple(self.records)
        self._by_id = {}
        self._ensembl: dict[str, list[str]] = defaultdict(list)
        self._current: dict[str, list[str]] = defaultdict(list)  # exact -> ids
        self._current_ci: dict[str, list[str]] = defaultdict(list)  # upper -> ids
        self._other: dict[str, dict[str, str]] = defaultdict(dict)  # upper -> {id: "previous symbol"/"alias"}
        self._other_exact: dict[str, set[str]] = defaultdict(set)  # exact -> ids
        for r in self.records:
            if r.entrez_id in self._by_id:
                raise ValidationError(f"gene identity table: Entrez id {r.entrez_id} appears twice")
            self._by_id[r.entrez_id] = r
            for e in r.ensembl_ids:
                self._ensembl[e.upper()].append(r.entrez_id)
            # a withdrawn Entrez id's last symbol is no current symbol any more: a previous one
            current = r.symbol if r.ncbi_current else ""
            if current:
                self._current[current].append(r.entrez_id)
                self._current_ci[current.upper()].append(r.entrez_id)
            previous = (r.lincs_symbol, *r.previous_symbols, *(() if current else (r.symbol,)))
            for kind, names in (("previous symbol", previous), ("alias", r.aliases)):
                for n in names:
                    if n and n.upper() != current.upper():
                        self._other[n.upper()].setdefault(r.entrez_id, kind)
                        self._other_exact[n].add(r.entrez_id)
        self._keys: tuple[dict[str, set[str]], dict[str, set[str]]] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frame(cls, table: pd.DataFrame, *, version: str = "", source: str = "") -> GeneIdentity:
        """From a frame with the bundled table's columns (``entrez_id``, ``symbol``, and any of
        ``previous_symbols``, ``aliases``, ``ensembl_ids`` (``|``-separated), ``lincs_symbol``,
        ``space``, ``ncbi_current``)."""
        missing = {"entrez_id", "symbol"} - set(table.columns)
        if missing:
            raise ValidationError(f"gene identity table: missing column(s) {sorted(missing)}")
        n = len(table)

        def col(name: str, default: object = "") -> list:
            return table[name].tolist() if name in table.columns else [default] * n

        records = [
            GeneRecord(
                entrez_id=str(e).strip(),
                symbol=str(s).strip(),
                previous_symbols=_split(p),
                aliases=_split(a),
                ensembl_ids=_split(en),
                lincs_symbol="" if ls is None or ls != ls else str(ls),
                space="" if sp is None or sp != sp else str(sp),
                ncbi_current=str(nc).strip() not in ("0", "False", "false"),
            )
            for e, s, p, a, en, ls, sp, nc in zip(
                col("entrez_id"), col("symbol"), col("previous_symbols"), col("aliases"), col("ensembl_ids"),
                col("lincs_symbol"), col("space"), col("ncbi_current", "1"), strict=True,
            )
        ]
        return cls(records, version=version, source=source)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, entrez_id: object) -> bool:
        return str(entrez_id) in self._by_id

    def get(self, entrez_id: str) -> GeneRecord | None:
        return self._by_id.get(str(entrez_id))

    def previous_symbol_owners(self, name: str) -> dict[str, str]:
        """``{entrez_id: "previous symbol" | "alias"}`` of the genes carrying ``name`` (any case)
        other than as their current symbol."""
        return dict(self._other.get(str(name).upper(), {}))

    # ------------------------------------------------------------------ resolution
    def resolve(self, token: str) -> GeneMapping:
        """Resolve one token (see the module docstring)."""
        raw = str(token)
        t = raw.strip()
        if not t:
            return GeneMapping(raw, "unknown", note="empty")
        if t.isdigit():
            rec = self._by_id.get(t) or self._by_id.get(t.lstrip("0") or "0")
            if rec is not None:
                return GeneMapping(raw, "resolved", rec.entrez_id, rec.symbol, "entrez")
            return GeneMapping(raw, "unknown", note="not an Entrez id of the gene identity table")
        m = _ENSEMBL.match(t)
        if m:
            ids = self._ensembl.get(m.group(1).upper(), [])
            note = f"version suffix {m.group(2)} ignored" if m.group(2) else ""
            if len(ids) == 1:
                rec = self._by_id[ids[0]]
                return GeneMapping(raw, "resolved", rec.entrez_id, rec.symbol, "ensembl", case_changed=m.group(1) != m.group(1).upper(), note=note)
            if len(ids) > 1:
                return GeneMapping(raw, "ambiguous", candidates=self._candidates(ids), note=f"Ensembl id of {len(ids)} genes")
            return GeneMapping(raw, "unknown", note="not an Ensembl gene id of the gene identity table")
        ids = self._current.get(t)
        case_changed = False
        if not ids:
            ids = self._current_ci.get(t.upper())
            case_changed = bool(ids)
        if ids:
            if len(ids) > 1:
                return GeneMapping(raw, "ambiguous", candidates=self._candidates(ids), note="current symbol of several genes")
            rec = self._by_id[ids[0]]
            others = {k: v for k, v in self._other.get(t.upper(), {}).items() if k != rec.entrez_id}
            note = ""
            if others:
                note = "current symbol wins; also " + "; ".join(
                    f"{kind} of {self._by_id[e].label()}" for e, kind in sorted(others.items(), key=lambda kv: int(kv[0]))
                )
            return GeneMapping(raw, "resolved", rec.entrez_id, rec.symbol, "symbol", case_changed=case_changed, note=note)
        owners = self._other.get(t.upper(), {})
        for kind in ("previous symbol", "alias"):  # previous symbols first, then aliases
            ids = [e for e, k in owners.items() if k == kind]
            if len(ids) == 1:
                rec = self._by_id[ids[0]]
                case_changed = ids[0] not in self._other_exact.get(t, set())
                rest = {e: k for e, k in owners.items() if e != ids[0]}
                note = ""
                if rest:
                    note = "also " + "; ".join(f"{k} of {self._by_id[e].label()}" for e, k in sorted(rest.items(), key=lambda kv: int(kv[0])))
                return GeneMapping(raw, "resolved", rec.entrez_id, rec.symbol, kind, case_changed=case_changed, note=note)
            if len(ids) > 1:
                return GeneMapping(raw, "ambiguous", candidates=self._candidates(ids), note=f"{kind} of {len(ids)} genes")
        return GeneMapping(raw, "unknown")

    def _candidates(self, ids: Iterable[str]) -> tuple[tuple[str, str], ...]:
        return tuple((e, self._by_id[e].symbol) for e in sorted(set(ids), key=int))

    # ------------------------------------------------------------------ suggestions
    def suggestion_keys(self, *, current_only: bool = False) -> Mapping[str, set[str]]:
        """Normalised name (:func:`normalised_key`, and spreadsheet-date forms) -> Entrez ids:
        of every name of the genes, or of their current symbols only."""
        if self._keys is None:
            every: dict[str, set[str]] = defaultdict(set)
            current: dict[str, set[str]] = defaultdict(set)
            for r in self.records:
                for n in r.names:
                    for k in _keys_of(n):
                        every[k].add(r.entrez_id)
                if r.ncbi_current:
                    for k in _keys_of(r.symbol):
                        current[k].add(r.entrez_id)
            self._keys = (dict(current), dict(every))
        return self._keys[0] if current_only else self._keys[1]

    def suggest(self, token: str) -> tuple[str, ...]:
        """Current symbols the token may stand for, from the table only (see the module docstring):
        the one gene whose current symbol, else whose only name, has the token's normalised form.

        Empty when the token resolves, names no gene, or its normalised form names several genes.
        """
        if self.resolve(token).status != "unknown":
            return ()
        key = normalised_key(token)
        for current_only in (True, False):
            ids = self.suggestion_keys(current_only=current_only).get(key, set())
            if len(ids) == 1:
                return (self._by_id[next(iter(ids))].symbol,)
            if len(ids) > 1:
                return ()
        return ()


def _keys_of(name: str) -> list[str]:
    """Normalised keys of a gene name: itself, and the dates a spreadsheet makes of SEPT7, MARCH1, ..."""
    key = normalised_key(name)
    keys = [key] if key else []
    m = _DATE_SYMBOL.match(name.upper())
    if m:
        month, day = m.group(1)[:3], int(m.group(2))
        keys += [f"{day}{month}", f"{day:02d}{month}", f"{month}{day}", f"{month}{day:02d}"]
    return keys
