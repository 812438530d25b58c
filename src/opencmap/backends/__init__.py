"""Executors: local (default) and Dask. They run kernels they are handed."""
