"""Tests of opencmap.pipeline (a package so its module names do not clash with tests/kernels)."""
