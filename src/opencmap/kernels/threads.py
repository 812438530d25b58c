"""Which thread may launch the multi-threaded (numba ``prange``) kernels.

Not every numba threading layer accepts kernel launches from two threads at once (``workqueue``
aborts), and the pipeline's reader thread and the API's job threads run kernels beside the main
thread. So the ``prange`` kernels are launched from the main thread only; other threads run the
1-thread variants (same arithmetic, same results).
"""

from __future__ import annotations

import threading

__all__ = ["in_main_thread"]


def in_main_thread() -> bool:
    """True in the main thread, where the multi-threaded (``prange``) kernels may be launched."""
    return threading.current_thread() is threading.main_thread()
