"""Pure numeric kernels on arrays: no pandas, no I/O, no logging.

Thread counts and tuning thresholds are parameters (``threads=1`` by default); which values a
run uses is decided by a backend (:mod:`opencmap.backends`), see :mod:`opencmap.kernels.threads`.
"""
