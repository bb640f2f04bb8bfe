"""Who may call what: each RPC is authorized by the caller's cluster identity.

Mutual TLS (``runtime.tls``) proves who the peer is; this module decides
what it may do. Each service declares, next to its servicer, one rule per
RPC: the roles allowed to call it. :class:`~runtime.rpc.Server` checks every
call against those rules before the handler runs and answers
``PERMISSION_DENIED`` (:class:`NotAuthorized`) otherwise. The rules are
complete by construction: a TLS server refuses to start if a method of a
service it serves has no rule, so a new RPC is closed until someone opens it.

Finer checks that depend on the request (a shard may ask allowance only for
itself) belong to the service, which reads :func:`caller`.

Without TLS (in-process unit tests, or ``canistry serve --insecure``) there
is no identity to check, so nothing is enforced and :func:`caller` is None.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from typing import Any

import grpc
from google.protobuf import descriptor_pool

from runtime.errors import PermissionDenied
from runtime.tls import Identity, Role

__all__ = ["ANY", "NotAuthorized", "Rules", "caller", "compile_rules"]

#: Every role holding a cluster certificate (health checks, reflection, counters).
ANY: frozenset[Role] = frozenset(Role)

#: One service's rules: RPC method name (``"VerifyQuiz"``) -> roles allowed to call it.
Rules = Mapping[str, Collection[Role]]


class NotAuthorized(PermissionDenied):
    """The caller's identity may not call this RPC."""

    code = "not-authorized"


def caller(context: grpc.aio.ServicerContext[Any, Any]) -> Identity | None:
    """The cluster identity of the peer of this call; None without TLS.

    The identity comes from the peer certificate that the TLS handshake
    verified against the cluster CA, so a caller cannot choose it.
    """
    uris = context.auth_context().get("peer_uri")
    return _identity(tuple(uris)) if uris else None


@lru_cache(maxsize=1024)
def _identity(uris: tuple[bytes, ...]) -> Identity | None:
    found = [i for i in (Identity.from_uri(u.decode(errors="replace")) for u in uris) if i]
    return found[0] if len(found) == 1 else None


def compile_rules(services: Iterable[tuple[str, Rules]]) -> dict[str, frozenset[Role]]:
    """Full method path (``/pkg.Service/Method``) -> allowed roles, for every RPC.

    ``services`` pairs each full service name with its rules. Raises
    ``ValueError`` if a method has no rule or a rule names no method, and
    if a streaming method is not open to :data:`ANY` (the edge checks only
    unary calls; a stream is guarded by the handshake alone).
    """
    out: dict[str, frozenset[Role]] = {}
    pool = descriptor_pool.Default()
    for full_name, rules in services:
        service = pool.FindServiceByName(full_name)
        methods = {m.name: m for m in service.methods}
        missing = sorted(set(methods) - set(rules))
        unknown = sorted(set(rules) - set(methods))
        if missing or unknown:
            raise ValueError(
                f"{full_name}: access rules must cover exactly its methods; "
                f"missing {missing}, unknown {unknown}"
            )
        for name, roles in rules.items():
            allowed = frozenset(Role(r) for r in roles)
            method = methods[name]
            if (method.client_streaming or method.server_streaming) and allowed != ANY:
                raise ValueError(f"{full_name}/{name}: a streaming method must be open to ANY")
            out[f"/{full_name}/{name}"] = allowed
    return out
