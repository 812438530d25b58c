"""Gene sets: a named, described, ordered collection of unique gene (or perturbagen) ids.

This module never opens files; GMT and GRP reading and writing live in :mod:`opencmap.io.gmt`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opencmap.errors import GeneSetError

__all__ = ["GeneSet"]

_FORBIDDEN = ("\t", "\n", "\r")


def _clean_token(value: Any, what: str, set_name: str) -> str:
    text = str(value)
    if any(ch in text for ch in _FORBIDDEN):
        raise GeneSetError(
            f"gene set {set_name!r}: {what} {text!r} contains a tab or newline, which GMT cannot "
            f"store. Remove it."
        )
    return text


@dataclass(frozen=True, slots=True)
class GeneSet:
    """A gene set as stored in a GMT line.

    Parameters
    ----------
    name:
        Non-empty set name (GMT column 1); no tabs or newlines.
    description:
        Free text (GMT column 2); may be empty; no tabs or newlines.
    genes:
        Member ids, stored as a tuple of non-empty strings in the given order. Integer-like ids
        (Entrez ``780``) are kept as strings. Duplicates are rejected (see
        :meth:`GeneSet.from_members` to drop them instead).

    Raises
    ------
    GeneSetError
        Empty name, tabs/newlines, empty or duplicated gene ids.
    """

    name: str
    description: str = ""
    genes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        name = "" if self.name is None else str(self.name)
        if not name.strip():
            raise GeneSetError("a gene set needs a non-empty name")
        name = _clean_token(name, "name", name)
        description = _clean_token("" if self.description is None else self.description, "description", name)
        if isinstance(self.genes, (str, bytes)):
            raise GeneSetError(f"gene set {name!r}: genes must be a sequence of ids, not one string")
        genes = tuple(_clean_token(g, "gene id", name).strip() for g in self.genes)
        empty = [i for i, g in enumerate(genes) if not g]
        if empty:
            raise GeneSetError(f"gene set {name!r}: empty gene id at position(s) {empty[:5]}; remove them")
        if len(set(genes)) != len(genes):
            seen: set[str] = set()
            dups = sorted({g for g in genes if g in seen or seen.add(g)})  # type: ignore[func-returns-value]
            raise GeneSetError(
                f"gene set {name!r}: duplicated gene ids {dups[:10]}; each id may appear once "
                f"(use GeneSet.from_members to drop repeats)"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "genes", genes)

    @classmethod
    def from_members(cls, name: str, members: Iterable[Any], description: str = "") -> GeneSet:
        """Build a set from ``members``, dropping blank ids and later repeats (order kept)."""
        genes = dict.fromkeys(str(m).strip() for m in members)
        genes.pop("", None)
        return cls(name, description, tuple(genes))

    def __len__(self) -> int:
        return len(self.genes)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.genes)

    def __contains__(self, gene: object) -> bool:
        return str(gene) in self.genes
