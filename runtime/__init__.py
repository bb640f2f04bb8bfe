"""What every Canistry service shares.

Layering, bottom up: ``errors`` (the rooted hierarchy), ``logs`` and ``tls``
(the cluster CA, certificates and identities) depend on nothing of ours;
``authz`` (who may call which RPC) reads identities; ``store`` (LMDB, group
commit) and ``rpc`` (servers, channels, mutual TLS, the error and
authorization edge) build on them; ``process`` runs a service until a
signal. Service packages (``content_service``, ``user_shard``, ``registry``,
``hub``) use ``runtime`` and never each other's internals: they talk over
gRPC through the stubs in ``protos``.
"""
