"""What every Canistry service shares.

Layering, bottom up: ``errors`` (the rooted hierarchy) and ``logs`` depend on
nothing of ours; ``store`` (LMDB, group commit) and ``rpc`` (servers,
channels, the error edge) build on them; ``process`` runs a service until a
signal. Service packages (``content_service``, ``user_shard``, ``registry``,
``hub``) use ``runtime`` and never each other's internals: they talk over
gRPC through the stubs in ``protos``.
"""
