"""Before any load: is a gateway there, and what units does it list.

:func:`probe` asks ``/healthz``; :func:`read_catalogue` pages through the
unit list. Neither is counted as load. The transport is made here too, so
that every client of the run goes where ``--gateway`` says.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from canistry.client import ApiError, AsyncClient
from canistry.loadtest._config import LoadTestConfig

__all__ = [
    "SetupFailed",
    "TransportFactory",
    "Unreachable",
    "loopback_transport",
    "probe",
    "read_catalogue",
]

TransportFactory = Callable[[], httpx.AsyncBaseTransport]

PROBE_TIMEOUT_S = 5.0
MAX_CATALOGUE_PAGES = 100


class Unreachable(Exception):
    """No Canistry gateway answers at the URL."""


class SetupFailed(Exception):
    """The gateway answers, but the run cannot start (its unit list cannot be read)."""


def loopback_transport() -> httpx.AsyncBaseTransport:
    # An explicit transport also makes httpx ignore proxy settings from the
    # environment: the load goes to --gateway and nowhere else.
    return httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4)
    )


async def probe(config: LoadTestConfig, transport: TransportFactory) -> None:
    """Raises :class:`Unreachable` unless ``/healthz`` answers as a Canistry gateway does."""
    timeout = min(PROBE_TIMEOUT_S, config.request_timeout_s)
    async with httpx.AsyncClient(
        base_url=config.gateway, timeout=timeout, transport=transport()
    ) as http:
        try:
            response = await http.get("/healthz")
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise Unreachable(f"no gateway answers at {config.gateway} ({reason})") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        raise Unreachable(
            f"no Canistry gateway answers at {config.gateway}: GET /healthz gave "
            f"{response.status_code} {response.text[:80]!r}"
        )


async def read_catalogue(api: AsyncClient) -> tuple[list[str], list[str]]:
    """Every unit id and subject the gateway lists; raises :class:`SetupFailed`."""
    ids: list[str] = []
    subjects: set[str] = set()
    cursor: str | None = None
    try:
        for _ in range(MAX_CATALOGUE_PAGES):
            page = await api.units(cursor=cursor, limit=100)
            ids.extend(u.id for u in page.units)
            subjects.update(u.subject for u in page.units)
            cursor = page.next_cursor
            if cursor is None:
                break
    except (ApiError, httpx.HTTPError, KeyError, ValueError) as exc:
        raise SetupFailed(f"cannot read the unit list: {exc}") from exc
    return ids, sorted(subjects)
