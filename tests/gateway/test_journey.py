"""A user's whole journey over HTTP, and registrations past the soft limit landing on new shards."""

from __future__ import annotations

import asyncio

import pytest

from canistry.client import ApiError, AsyncClient, Unit
from canistry.up import Cluster
from tests.gateway.support import client, registered


async def test_full_journey(url: str) -> None:
    api = client(url)
    reg = await api.register("Ada", "ada@example.org", "university", "f")
    assert reg.created and reg.principal == api.identity.principal  # type: ignore[union-attr]
    assert reg.profile.education == "university"
    again = await api.register("Ada", "ada@example.org")
    assert not again.created and again.shard == reg.shard

    page = await api.units(limit=5)
    assert len(page.units) == 5 and page.next_cursor
    nxt = await api.units(limit=5, cursor=page.next_cursor)
    assert not {u.id for u in nxt.units} & {u.id for u in page.units}
    math = await api.units(subject="math", limit=100)
    assert math.units and all(u.subject == "math" for u in math.units)

    unit = await api.unit(math.units[0].id)
    assert unit.questions and all(q.choices for q in unit.questions)
    raw = (await api.http.get(f"/v1/units/{unit.id}")).json()
    assert all(set(q) == {"id", "prompt", "choices"} for q in raw["quiz"]["questions"])

    wrong = {q.id: q.choices[-1].id for q in unit.questions}
    answers = await find_right_answers(api, unit)
    if wrong == answers:
        wrong = {q.id: q.choices[0].id for q in unit.questions}
    failed = await api.submit(unit.id, wrong)
    assert not failed.passed and failed.reward == 0

    passed = await api.submit(unit.id, answers)
    assert passed.passed and passed.first_completion and passed.reward == unit.reward
    assert passed.balance + passed.pending == unit.reward
    repeat = await api.submit(unit.id, answers)
    assert repeat.passed and not repeat.first_completion and repeat.reward == 0

    me = await api.me()
    assert unit.id in me.completed_units
    assert me.balance.staked + me.balance.pending == unit.reward
    assert me.today.earned == unit.reward
    assert me.today.attempts == repeat.attempts_today
    assert me.today.attempts_left == repeat.attempts_left
    balance = await api.balance()
    assert (balance.staked, balance.pending) == (me.balance.staked, me.balance.pending)

    changed = await api.update_profile(name="Ada L.", gender="")
    assert changed.profile.name == "Ada L." and changed.profile.email == "ada@example.org"
    assert (await api.me()).profile.name == "Ada L."

    cluster = await api.cluster()
    assert cluster.cap == 4_200_000_000 and cluster.total_granted > 0
    assert any(s.id == reg.shard for s in cluster.shards)
    await api.aclose()


async def find_right_answers(api: AsyncClient, unit: Unit) -> dict[str, str]:
    """Not from the key (it never leaves the content service): from the sample pack file."""
    from tests.integration.direct import SAMPLE

    (spec,) = [u for u in SAMPLE if u["id"] == unit.id]
    return {q["id"]: q["answer"] for q in spec["quiz"]["questions"]}


async def test_daily_attempt_limit_gives_429(url: str) -> None:
    api = await registered(url)
    unit = await api.unit("math-001")
    wrong = {unit.questions[0].id: "zz-no-such-choice"}
    with pytest.raises(ApiError) as bad:
        await api.submit(unit.id, wrong)
    assert bad.value.status == 400
    answers = await find_right_answers(api, unit)
    wrongs = {q: next(c.id for c in qq.choices if c.id != a)
              for qq in unit.questions for q, a in answers.items() if q == qq.id}  # fmt: skip
    left = (await api.me()).today.attempts_left
    results = await asyncio.gather(*(api.submit(unit.id, wrongs) for _ in range(left)))
    assert sorted(r.attempts_left for r in results) == list(range(left))
    with pytest.raises(ApiError) as limited:
        await api.submit(unit.id, answers)
    assert limited.value.status == 429 and limited.value.code == "daily-limit-exceeded"
    assert limited.value.retry_after and limited.value.retry_after > 0
    me = await api.me()
    assert me.today.attempts_left == 0 and unit.id not in me.completed_units
    await api.aclose()


async def test_registrations_past_the_soft_limit_spawn_shards(
    url: str, gw_cluster: Cluster
) -> None:
    # Soft limit 3, hard limit 4: ten users need at least three shards. Between a
    # full shard and a new one the gateway answers 503 + Retry-After; the client waits.
    users = [await registered(url, f"User{i}") for i in range(10)]
    shards = {(await u.me()).shard for u in users}
    assert len(shards) >= 2, shards
    view = await users[0].cluster()
    assert len(view.shards) >= 3
    assert all(s.users <= s.capacity == 4 for s in view.shards)
    assert sum(s.users for s in view.shards) >= 10
    # Every user is served by the shard the registry gave them, including new ones.
    unit = await users[-1].unit("math-001")
    answers = await find_right_answers(users[-1], unit)
    for u in users:
        r = await u.submit(unit.id, answers)
        assert r.first_completion and r.reward == unit.reward
    for u in users:
        await u.aclose()
