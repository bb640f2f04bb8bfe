"""Content-down campaign (DESIGN §6, invariant 7): submissions fail with 503 and change nothing.

``tests/gateway/test_routing.py::test_content_down_submit_is_503_and_changes_nothing``
covers one submission with the content service stopped gracefully. This
campaign takes it further: the content service SIGKILLed, or SIGSTOPped
(there, but silent: the shard's deadline must turn the hang into a 503),
while several users submit at once, each with an idempotency key. Every
one gets a 503 problem document with ``Retry-After``; afterwards no attempt
is used, nothing is completed, no balance moved; and once content is back,
the same key is served afresh (a 503 is never stored as the key's reply).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest

from canistry.up import Cluster
from tests.campaigns.support import LONG, UNITS, Sub, User, pick, seeded_rng
from tests.integration.direct import right_answers

pytestmark = pytest.mark.slow


async def submit_raw(user: User, unit_id: str, key: str) -> tuple[int, dict[str, str], object]:
    r = await user.api.send_signed(
        "POST",
        f"/v1/units/{unit_id}/submissions",
        json={"answers": right_answers(UNITS[unit_id])},
        headers={"Idempotency-Key": key},
    )
    return r.status_code, dict(r.headers), r.json()


async def restart_content(cluster: Cluster) -> None:
    content = cluster.children["content"]
    # Started from the loop's thread: a child dies with the thread that started it
    # (PR_SET_PDEATHSIG), and a worker thread may end before the test does.
    content.start()
    await asyncio.to_thread(content.wait_ready, 30)


@pytest.mark.timeout(pick(240, 900))
@pytest.mark.parametrize("fault", ["sigkill", "sigstop"])
async def test_with_content_down_every_submission_is_503_and_changes_nothing(
    campaign_cluster: Cluster, fault: str
) -> None:
    rng = seeded_rng(f"content-down campaign ({fault})")
    cluster = campaign_cluster
    users = [User(cluster.gateway_url, rng, timeout_s=15) for _ in range(pick(3, 8))]
    rounds, answered = pick(1, 5), 0
    try:
        for user in users:
            await user.register()
        for _ in range(rounds):
            plan = {u.principal: (rng.choice(u.open_units()), uuid.uuid4().hex) for u in users}
            before = {u.principal: await u.api.me() for u in users}
            content = cluster.children["content"]
            assert content.proc is not None
            pid = content.proc.pid
            os.kill(pid, signal.SIGKILL if fault == "sigkill" else signal.SIGSTOP)
            try:
                replies = await asyncio.gather(
                    *(submit_raw(u, *plan[u.principal]) for u in users for _ in range(2))
                )
            finally:
                if fault == "sigstop":
                    os.kill(pid, signal.SIGCONT)
                else:
                    content.proc.wait()
                    await restart_content(cluster)
            for status, headers, body in replies:
                assert status == 503, (status, body)
                assert headers["content-type"].startswith("application/problem+json")
                assert float(headers["retry-after"]) >= 0
                assert isinstance(body, dict) and body["status"] == 503 and body["type"]
                answered += 1
            for u in users:
                after = await u.api.me()
                was = before[u.principal]
                assert after.today.attempts == was.today.attempts, "no attempt is used"
                assert after.completed_units == was.completed_units
                assert after.balance == was.balance
            # Content is back: the same keys are served afresh, once.
            for u in users:
                unit_id, key = plan[u.principal]
                u.api.retry_unavailable_s = 30  # the shard may not see content at once
                try:
                    reply = await u.submit(key, Sub(unit_id, right_answers(UNITS[unit_id])))
                finally:
                    u.api.retry_unavailable_s = 0
                assert reply.first_completion and reply.passed
                assert reply.attempts_today == before[u.principal].today.attempts + 1
        for u in users:
            await u.check()  # the books: each key once, each unit paid once
        print(
            f"content-down campaign ({fault}){' (long)' if LONG else ''}: {rounds} outages, "
            f"{answered} submissions answered 503 with nothing changed"
        )
    finally:
        for u in users:
            await u.aclose()
