"""The reference store's files (moving here from :mod:`opencmap.query.store`)."""
