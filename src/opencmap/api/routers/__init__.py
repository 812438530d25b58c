"""One router per API resource (mounted under ``/api/v1`` by :func:`opencmap.api.create_app`)."""
