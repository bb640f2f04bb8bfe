"""The one rule every service applies to a principal's text.

Users reach the cluster only through the gateway, which derives each
principal from the request's signing key (``gateway.principal``), so inside
the cluster a principal is an opaque key. The registry and the shards check
it with :func:`check_principal` before it becomes a store key, so that no
peer can store something no gateway would ever send.
"""

from __future__ import annotations

from runtime.errors import InvalidArgument

__all__ = ["MAX_PRINCIPAL_CHARS", "check_principal"]

#: Longer than any IC principal's text (63), short enough to be a cheap LMDB key.
MAX_PRINCIPAL_CHARS = 128


def check_principal(principal: str) -> str:
    """Return ``principal`` if it is 1-128 printable ASCII characters without spaces.

    Raises :class:`InvalidArgument` naming what is wrong.
    """
    if not principal:
        raise InvalidArgument("principal is required")
    if len(principal) > MAX_PRINCIPAL_CHARS:
        raise InvalidArgument(f"principal is longer than {MAX_PRINCIPAL_CHARS} characters")
    if not (principal.isascii() and principal.isprintable()) or " " in principal:
        raise InvalidArgument("principal must be printable ASCII without spaces")
    return principal
