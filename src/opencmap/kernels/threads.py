"""Thread counts of the multi-threaded (numba ``prange``) kernels: given by the caller.

Every such kernel takes ``threads`` (default 1): ``threads > 1`` launches the ``prange``
variant on numba's thread pool, ``1`` the one-thread variant (same arithmetic, same results).
Which thread may launch a ``prange`` kernel, and with how many threads, is the backend's
decision (:mod:`opencmap.backends`): not every numba threading layer accepts launches from two
threads at once (``workqueue`` aborts), so the local backend gives 1 to any but the main thread.
"""

from __future__ import annotations

__all__ = ["PARALLEL_MIN"]

#: values (rows x columns) below which NCS, tau and summaries run on one thread even when given
#: more: a parallel launch costs more than it saves for one query
PARALLEL_MIN = 1 << 21
