"""The HTTP gateway (docs/design.md §7): authenticates users, routes them, caches content.

Layering, bottom up. Pure modules, no I/O: ``principal`` (IC principals of
Ed25519 keys), ``signing`` (docs/design.md §5 request signatures, both sides),
``errors`` (the gateway's error classes), ``problems`` (errors to RFC 9457
documents), ``caches`` (TTL/LRU caches, ETags), ``idempotency`` (the
``Idempotency-Key`` rules) and ``views`` (protobuf to JSON). Then ``store``
(the LMDB that workers share: nonces and stored replies), ``channels`` and
``upstream`` (gRPC: every channel is made in ``channels``; routing with a
cached registry lookup), ``core`` (what each route does), ``edge`` and
``app`` (FastAPI), and ``server`` (uvicorn, workers, signals).

The client side of the signature lives in :mod:`canistry.client`, which
imports only the pure modules.
"""

from gateway.config import GatewayConfig, default_workers

__all__ = ["GatewayConfig", "default_workers"]
