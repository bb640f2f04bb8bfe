"""Canistry under Locust: the mix of ``canistry loadtest``, for load that outgrows one machine.

Each Locust user is one Canistry user with its own Ed25519 identity; every
request is signed through :mod:`canistry.client` (its blocking
:class:`~canistry.client.Client`). On start a user registers (waiting out
503s while the cluster adds a shard) and reads the unit list; then each
step is a read (the unit list, a unit, with ``If-None-Match`` when it holds
the unit's ETag, ``/v1/me``, the balance), a quiz submission (mostly right,
always with an ``Idempotency-Key``) or, with a ``register`` share, a new
user signing up in its place, in the shares ``CANISTRY_MIX`` gives
(``read=70,submit=25,register=5``; default ``read=70,submit=30``). Requests
are named as in ``canistry loadtest``'s report. A 429 (the daily limit) is
an expected answer: it counts as a success, and the user only reads from
then on. Any other refusal, or no answer, is a failure.

Run it (the path is printed by ``python -m canistry.loadtest.locustfile``)::

    locust -f LOCUSTFILE --headless -u 200 -r 20 -t 5m --host http://127.0.0.1:8080

Across machines, Locust's own distributed mode: one master, many workers::

    locust -f LOCUSTFILE --master --headless -u 2000 -r 100 -t 10m \\
           --expect-workers 4 --host http://GATEWAY:8080
    locust -f LOCUSTFILE --worker --master-host MASTER_IP   # on each load machine

Only loopback hosts are loaded unless ``CANISTRY_ALLOW_REMOTE=1`` is set
(the same rule as ``--allow-remote``); a refused host stops the run.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import select
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

# Locust runs under gevent, whose monkey-patching removes select.epoll; an old
# trio then fails to import with AttributeError (not ImportError), and httpcore,
# which imports trio only for trio's own async backend, is left half-loaded.
# Nothing here uses trio: make it absent, so httpcore takes its no-trio path.
if "trio" not in sys.modules and not hasattr(select, "epoll"):
    sys.modules["trio"] = None  # type: ignore[assignment]

import httpx
from locust import User, between, events, task
from locust.exception import StopUser

from canistry.client import ApiError, Client, Identity, Unit
from canistry.loadtest._answers import AnswerBook
from canistry.loadtest._config import ConfigError, MixWeights, check_gateway_url
from canistry.loadtest._mix import RIGHT_ANSWER_P, step_weights
from canistry.loadtest._stats import OPS

__all__ = ["CanistryUser"]

T = TypeVar("T")
log = logging.getLogger("canistry.locust")

MIX = MixWeights.parse(os.environ.get("CANISTRY_MIX", "read=70,submit=30"))
ALLOW_REMOTE = os.environ.get("CANISTRY_ALLOW_REMOTE", "") == "1"
#: How long a registration waits out 503s (the cluster adding a shard).
REGISTER_WAIT_S = 30.0
REQUEST_TIMEOUT_S = 10.0
MAX_CATALOGUE_PAGES = 100
_BOOK: AnswerBook | None = None


def _book() -> AnswerBook:
    global _BOOK
    if _BOOK is None:
        _BOOK = AnswerBook.sample()
    return _BOOK


def _refuse_remote(environment: Any, **_kwargs: Any) -> None:
    host = environment.host or ""
    try:
        check_gateway_url(host, allow_remote=ALLOW_REMOTE)
    except ConfigError as exc:
        log.error("canistry locustfile: %s (set CANISTRY_ALLOW_REMOTE=1 to allow)", exc)
        if environment.runner is not None:
            environment.runner.quit()


events.test_start.add_listener(_refuse_remote)  # type: ignore[no-untyped-call]


class CanistryUser(User):
    """One signed-up Canistry user running the mix."""

    wait_time = between(0.01, 0.1)
    abstract = False

    def on_start(self) -> None:
        try:
            base = check_gateway_url(self.host or "", allow_remote=ALLOW_REMOTE)
        except ConfigError as exc:
            raise StopUser from exc
        self.rng = random.Random()
        self.api = Client(base, Identity.generate(), timeout_s=REQUEST_TIMEOUT_S)
        self.units: dict[str, Unit] = {}
        self.completed: set[str] = set()
        self.limited = False
        self.catalogue: list[str] = []
        self.weights = step_weights(MIX)
        if not self._register("register"):
            raise StopUser
        self._read_catalogue()

    def on_stop(self) -> None:
        api = getattr(self, "api", None)
        if api is not None:
            api.close()

    # -- counting --------------------------------------------------------------------------

    def _call(self, op: str, send: Callable[[], T], *, limited_ok: bool = False) -> T | None:
        """``send()`` reported to Locust as ``op``; None when it failed (reported as such)."""
        t0 = time.perf_counter()
        error: BaseException | None = None
        value: T | None = None
        try:
            value = send()
        except ApiError as exc:
            if not (limited_ok and exc.status == 429):
                error = exc
            else:
                self.limited = True
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            error = exc
        self.environment.events.request.fire(
            request_type=OPS.get(op, op).split(" ")[0].strip() or "POST",
            name=op,
            response_time=(time.perf_counter() - t0) * 1000,
            response_length=0,
            exception=error,
            context={},
        )
        return value

    # -- the steps -------------------------------------------------------------------------

    def _register(self, op: str) -> bool:
        n = uuid.uuid4().hex[:12]
        self.api.retry_unavailable_s = REGISTER_WAIT_S
        try:
            done = self._call(
                op, lambda: self.api.register(f"Locust {n}", f"locust-{n}@example.org", "loadtest")
            )
        finally:
            self.api.retry_unavailable_s = 0.0
        return done is not None

    def _read_catalogue(self) -> None:
        cursor: str | None = None
        for _ in range(MAX_CATALOGUE_PAGES):
            page = self._call("list_units", functools.partial(self.api.units, None, cursor, 100))
            if page is None:
                return
            self.catalogue.extend(u.id for u in page.units)
            cursor = page.next_cursor
            if cursor is None:
                return

    @task
    def step(self) -> None:
        weights = dict(self.weights)
        open_units = [u for u in self.catalogue if u not in self.completed]
        if "submit" in weights and (self.limited or not open_units):
            weights["read"] = weights.get("read", 0.0) + weights.pop("submit")
        if not self.catalogue:
            weights.pop("read", None)
            weights.pop("submit", None)
        if not weights:
            weights = {"me": 1.0}
        kind = self.rng.choices(list(weights), list(weights.values()))[0]
        if kind == "signup":
            # A new user arrives in this one's place: a fresh identity, registered.
            self.api.identity = Identity.generate()
            self.units, self.completed, self.limited = {}, set(), False
            self._register("signup")
        elif kind == "list":
            limit = self.rng.choice((10, 20, 50))
            self._call("list_units", lambda: self.api.units(limit=limit))
        elif kind == "read":
            self._read(self.rng.choice(self.catalogue))
        elif kind == "submit":
            self._submit(self.rng.choice(open_units))
        elif kind == "me":
            me = self._call("me", self.api.me)
            if me is not None:
                self.completed.update(me.completed_units)
                self.limited = self.limited or me.today.attempts_left == 0
        else:
            self._call("balance", self.api.balance)

    def _read(self, unit_id: str) -> Unit | None:
        fresh: Unit | None
        held = self.units.get(unit_id)
        if held is not None and held.etag is not None and self.rng.random() < 0.5:
            etag = held.etag
            changed = self._call("read_unit_cond", lambda: self.api.unit_if_changed(unit_id, etag))
            fresh = changed or held
        else:
            fresh = self._call("read_unit", lambda: self.api.unit(unit_id))
        if fresh is not None:
            self.units[unit_id] = fresh
        return fresh

    def _submit(self, unit_id: str) -> None:
        unit = self.units.get(unit_id) or self._read(unit_id)
        if unit is None:
            return
        answers = _book().answers(unit, right=self.rng.random() < RIGHT_ANSWER_P)
        key = uuid.uuid4().hex
        result = self._call(
            "submit",
            lambda: self.api.submit(unit_id, answers.choices, idempotency_key=key),
            limited_ok=True,
        )
        if result is None:
            return
        if result.passed:
            self.completed.add(unit_id)
        if result.attempts_left == 0:
            self.limited = True


if __name__ == "__main__":
    print(__file__)
