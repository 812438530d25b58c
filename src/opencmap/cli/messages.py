"""Library messages as the command line says them: flags and paths, not Python arguments.

The library's errors and warnings speak to Python callers (``min_genes``, ``overwrite=True``);
:func:`for_cli` rewrites them at the CLI boundary: ``pass overwrite=True (CLI --overwrite)`` ->
``pass --overwrite``, ``give gene_info= (CLI --gene-info, ...)`` -> ``give --gene-info (...)``, and
the query arguments that are CLI options (``min_genes`` -> ``--min-genes``, ...).
"""

from __future__ import annotations

import re

__all__ = ["for_cli", "ARGUMENT_FLAGS"]

# Python argument -> the flag of the same meaning (only names that are not also field/table names)
ARGUMENT_FLAGS: dict[str, str] = {
    "min_genes": "--min-genes",
    "max_genes": "--max-genes",
    "es_tail": "--es-tail",
    "tau_method": "--tau-method",
    "fdr_method": "--fdr-method",
    "fdr_null_size": "--fdr-null-size",
    "fdr_seed": "--fdr-seed",
    "sig_genes": "--sig-genes",
    "block_size": "--block-size",
    "n_random": "--n-random",
    "keep_backgrounds": "--keep-backgrounds",
    "default_space": "--default-space",
    "signature_major": "--signature-major",
}

# "pass overwrite=True (CLI --overwrite)" / "pass overwrite=True (--overwrite)" -> "pass --overwrite"
_PASS = re.compile(r"\b[a-z_]+=[A-Za-z0-9_'\"]+ \((?:CLI )?(--[a-z0-9-]+)\)")
# "give gene_info= (CLI --gene-info, e.g. X)" -> "give --gene-info (e.g. X)"
_GIVE = re.compile(r"\b[a-z_]+= \((?:CLI )?(--[a-z0-9-]+)(?:, ([^)]*))?\)")
_WORDS = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, ARGUMENT_FLAGS)) + r")(?![\w=])")


def for_cli(message: str) -> str:
    """``message`` with Python arguments replaced by their command-line flags."""
    text = _PASS.sub(lambda m: m.group(1), message)
    text = _GIVE.sub(lambda m: m.group(1) + (f" ({m.group(2)})" if m.group(2) else ""), text)
    return _WORDS.sub(lambda m: ARGUMENT_FLAGS[m.group(1)], text)
