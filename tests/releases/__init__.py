"""Miniature replicas of the public LINCS releases (:mod:`releases.replicas`) and their tests."""
