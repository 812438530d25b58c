"""pandas 2.x runs with pandas 3's string semantics.

opencmap is written for pandas 3, where text columns are the ``str`` dtype (missing values are
NaN, ``astype("str")`` keeps them missing). Some optional extras (anndata) still require
pandas < 3; on pandas 2.3 the same semantics are the documented opt-in ``future.infer_string``,
which this module switches on when opencmap is imported. pandas < 2.3 has no such switch and is
refused. On pandas 3 nothing is changed.
"""

from __future__ import annotations

import pandas as pd

_MAJOR, _MINOR = (int(part) for part in pd.__version__.split(".")[:2])

if _MAJOR < 3:
    if (_MAJOR, _MINOR) < (2, 3):
        raise ImportError(f"opencmap needs pandas >= 2.3 (found {pd.__version__}); pip install -U pandas")
    pd.set_option("future.infer_string", True)
