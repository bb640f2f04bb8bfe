import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from content_service import (
    ImportSummary,
    import_pack_file,
    import_pack_text,
    load_sample_pack,
    parse_pack,
)
from content_service.core import Content, Verdict
from content_service.store import ContentStore
from runtime.errors import BadContentPack, InvalidArgument, UnknownUnit
from tests.content_service.helpers import dump, make_unit


@pytest.fixture
async def store(tmp_path: Path):
    async with ContentStore(tmp_path / "content", durable=False) as s:
        yield s


async def apply(store: ContentStore, text: str) -> ImportSummary:
    return await store.import_units(parse_pack(text))


async def test_reimport_is_idempotent(store: ContentStore) -> None:
    pack = load_sample_pack()
    first = await apply(store, pack)
    n = first.total_units
    assert first == ImportSummary(added=n, changed=0, unchanged=0, total_units=n) and n >= 30
    before = {u.unit.id: (u.unit.version, u.unit.digest) for u in parse_pack(pack)}
    again = await apply(store, pack)
    assert again == ImportSummary(added=0, changed=0, unchanged=n, total_units=n)
    for uid, (_, digest) in before.items():
        unit = store.get_unit(uid).unit
        assert (unit.version, unit.digest) == (1, digest)


async def test_a_changed_unit_gets_a_new_version_and_digest(store: ContentStore) -> None:
    await apply(store, dump([make_unit("math-001"), make_unit("math-002")]))
    old = store.get_unit("math-001")  # warms the cache too
    assert old.unit.version == 1

    summary = await apply(store, dump([make_unit("math-001", reward=70), make_unit("math-002")]))
    assert summary == ImportSummary(added=0, changed=1, unchanged=1, total_units=2)
    new = store.get_unit("math-001")
    assert new.unit.version == 2 and new.unit.reward == 70
    assert new.unit.digest != old.unit.digest
    assert store.get_unit("math-002").unit.version == 1
    [summary_row] = [s for s in store.list_units("math", "", 10).units if s.id == "math-001"]
    assert (summary_row.version, summary_row.reward, summary_row.digest) == (2, 70, new.unit.digest)

    # A pack that leaves units out keeps them; one that moves a unit moves its index entry.
    summary = await apply(store, dump([make_unit("math-002", "science")]))
    assert summary == ImportSummary(added=0, changed=1, unchanged=0, total_units=2)
    assert [s.id for s in store.list_units("math", "", 10).units] == ["math-001"]
    assert [s.id for s in store.list_units("science", "", 10).units] == ["math-002"]
    assert store.stats() == (2, ["math", "science"])


async def test_pagination_across_subjects_and_within_one(store: ContentStore) -> None:
    await apply(store, load_sample_pack())
    count, subjects = store.stats()
    assert count >= 30 and subjects == sorted(subjects) and len(subjects) >= 3

    seen, cursor, pages = [], "", 0
    while True:
        page = store.list_units("", cursor, 7)
        assert len(page.units) <= 7
        seen += [(s.subject, s.id) for s in page.units]
        pages += 1
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == count
    assert pages == -(-count // 7)

    subject = subjects[1]
    mine = [(s, i) for s, i in seen if s == subject]
    page = store.list_units(subject, "", len(mine))
    assert [(s.subject, s.id) for s in page.units] == mine
    assert page.next_cursor == ""  # a page that ends exactly at the end says so
    first = store.list_units(subject, "", 3)
    rest = store.list_units(subject, first.next_cursor, 100)
    assert [s.id for s in first.units + rest.units] == [i for _, i in mine]
    assert all(s.question_count == 3 for s in rest.units)

    with pytest.raises(InvalidArgument, match="another subject"):
        store.list_units(subjects[0], first.next_cursor, 3)
    for bad in ("!!!", "bWF0aA", "a" * 400, "AAAA", "8J-YgA"):
        with pytest.raises(InvalidArgument, match="bad cursor"):
            store.list_units("", bad, 3)
    assert store.list_units("nosuchsubject", "", 5).units == []


async def test_unknown_unit(store: ContentStore) -> None:
    with pytest.raises(UnknownUnit):
        store.get_unit("math-001")


async def test_offline_import_rejects_a_bad_pack_whole(tmp_path: Path) -> None:
    data = tmp_path / "content"
    good = tmp_path / "good.json"
    good.write_text(dump([make_unit("math-001"), make_unit("math-002")]))
    assert import_pack_file(data, good) == ImportSummary(2, 0, 0, 2)

    bad_units = [make_unit("math-001", reward=99), make_unit("math-003"), make_unit("math-002")]
    bad_units[2]["quiz"]["pass_score"] = 9
    bad = tmp_path / "bad.json"
    bad.write_text(dump(bad_units))
    with pytest.raises(BadContentPack, match=r"^line \d+: unit \"math-002\": quiz pass_score"):
        import_pack_file(data, bad)

    async with ContentStore(data) as store:
        assert store.stats() == (2, ["math"])
        assert store.get_unit("math-001").unit.reward == 50

    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"units": "\xff"}')
    with pytest.raises(BadContentPack, match="not UTF-8"):
        import_pack_file(data, binary)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"units": [make_unit("math-001")]}).encode())
    assert import_pack_file(data, bom).unchanged == 1
    n = len(parse_pack(load_sample_pack()))  # it also holds math-001 and math-002
    assert import_pack_text(data, load_sample_pack()) == ImportSummary(n - 2, 2, 0, n)


async def test_grading_follows_an_import_that_changes_the_answer_key(tmp_path: Path) -> None:
    """Decoded answer keys are cached per unit version: an import, here or by another
    process writing the same file, must never leave grading on the old key."""
    data = tmp_path / "content"
    unit = make_unit("math-001", reward=50)
    async with ContentStore(data) as store:
        await apply(store, dump([unit]))
        content = Content(store)
        right = {"q1": "a", "q2": "a", "q3": "a"}
        assert content.verify("math-001", right).result.score == 3  # key cached now
        assert content.verify_batch([("math-001", right, "")])[0] == content.verify(
            "math-001", right
        )

        for q in unit["quiz"]["questions"]:
            q["answer"] = "b"
        await apply(store, dump([unit]))  # through this store's own writer
        verdict = content.verify("math-001", right)
        assert (verdict.result.score, verdict.unit_version) == (0, 2)

        unit["reward"] = 80
        for q in unit["quiz"]["questions"]:
            q["answer"] = "a"
        offline = tmp_path / "pack.json"
        offline.write_text(dump([unit]))
        code = (
            "import sys; from pathlib import Path;"
            "from content_service import import_pack_file;"
            "print(import_pack_file(Path(sys.argv[1]), Path(sys.argv[2])))"
        )
        proc = await asyncio.create_subprocess_exec(  # another writer of the same file
            sys.executable, "-c", code, str(data), str(offline),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode == 0, err.decode()
        assert b"changed=1" in out
        [outcome] = content.verify_batch([("math-001", right, "r1")])
        assert isinstance(outcome, Verdict)
        assert (outcome.result.score, outcome.reward, outcome.unit_version) == (3, 80, 3)


async def test_a_batch_reports_each_bad_item_alone(store: ContentStore) -> None:
    await apply(store, dump([make_unit("math-001")]))
    content = Content(store)
    right = {"q1": "a", "q2": "a"}
    outcomes = content.verify_batch(
        [
            ("math-001", right, ""),
            ("nope-001", right, ""),
            ("Bad Id", right, ""),
            ("nope-001", right, ""),
            ("math-001", {"q9": "a"}, ""),
        ]
    )
    first, unknown, bad_id, unknown_again, bad_answer = outcomes
    assert isinstance(first, Verdict) and first.result.passed
    assert isinstance(unknown, UnknownUnit) and isinstance(unknown_again, UnknownUnit)
    assert unknown is not unknown_again, "each item gets its own error"
    assert isinstance(bad_id, InvalidArgument) and "unit_id must match" in bad_id.message
    assert isinstance(bad_answer, InvalidArgument) and 'no question "q9"' in bad_answer.message
