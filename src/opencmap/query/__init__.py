"""Connectivity queries: one method per module, a shared engine, NCS/tau/summaries."""
