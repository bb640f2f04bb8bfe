import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from content_service import ContentConfig, ContentService, load_sample_pack, parse_pack
from protos import content_pb2, content_pb2_grpc
from runtime import rpc
from runtime.errors import ERROR_TRAILER, UnknownUnit
from tests.content_service.helpers import dump, line_of, make_unit

SAMPLE = parse_pack(load_sample_pack())
FIRST = SAMPLE[0]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ContentService]:
    async with ContentService(ContentConfig(data_dir=tmp_path / "content", durable=False)) as svc:
        async with rpc.make_channel(svc.address) as channel:
            reply = await content_pb2_grpc.ContentStub(channel).ImportPack(
                content_pb2.ImportPackRequest(pack_json=load_sample_pack())
            )
        assert reply.added == reply.total_units == len(SAMPLE)
        yield svc


@pytest.fixture
async def stub(service: ContentService) -> AsyncIterator["content_pb2_grpc.ContentAsyncStub"]:
    async with rpc.make_channel(service.address) as channel:
        yield content_pb2_grpc.ContentStub(channel)


async def status_of(call) -> tuple[grpc.StatusCode, str, str | None]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    trailer = dict(info.value.trailing_metadata() or ()).get(ERROR_TRAILER)
    return info.value.code(), info.value.details() or "", trailer


async def test_get_unit_never_sends_answers(service: ContentService) -> None:
    async with rpc.make_channel(service.address) as channel:
        raw_call = channel.unary_unary(
            "/canistry.content.v1.Content/GetUnit",
            request_serializer=content_pb2.GetUnitRequest.SerializeToString,
            response_deserializer=None,  # the bytes as sent
        )
        raw: bytes = await raw_call(content_pb2.GetUnitRequest(unit_id=FIRST.unit.id))
    unit = content_pb2.Unit.FromString(raw)
    assert unit.SerializeToString() == raw, "reply carries fields a Unit does not have"
    assert unit.id == FIRST.unit.id and unit.version == 1 and unit.digest == FIRST.unit.digest
    assert len(unit.quiz.questions) == 3 and all(len(q.choices) >= 2 for q in unit.quiz.questions)
    assert not {"answer", "answers"} & set(content_pb2.Unit.DESCRIPTOR.fields_by_name)
    assert not {"answer", "answers"} & all_keys(json_format.MessageToDict(unit))


def all_keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in all_keys(v)}
    return set()


async def test_verify_quiz_grades(stub) -> None:
    right = dict(FIRST.answers)
    reply = await stub.VerifyQuiz(
        content_pb2.VerifyQuizRequest(unit_id=FIRST.unit.id, answers=right)
    )
    assert (reply.passed, reply.score, reply.total) == (True, 3, 3)
    assert (reply.reward, reply.unit_version) == (FIRST.unit.reward, 1)

    q1 = FIRST.unit.quiz.questions[0]
    wrong = next(c.id for c in q1.choices if c.id != right[q1.id])
    one_right = {q1.id: right[q1.id]}
    reply = await stub.VerifyQuiz(
        content_pb2.VerifyQuizRequest(unit_id=FIRST.unit.id, answers=one_right)
    )
    assert (reply.passed, reply.score) == (False, 1)
    reply = await stub.VerifyQuiz(
        content_pb2.VerifyQuizRequest(unit_id=FIRST.unit.id, answers={q1.id: wrong})
    )
    assert (reply.passed, reply.score, reply.total) == (False, 0, 3)


async def test_status_codes(stub, service: ContentService) -> None:
    code, details, trailer = await status_of(
        stub.GetUnit(content_pb2.GetUnitRequest(unit_id="nope-1"))
    )
    assert (code, trailer) == (grpc.StatusCode.NOT_FOUND, "unknown-unit")
    code, _, trailer = await status_of(
        stub.VerifyQuiz(content_pb2.VerifyQuizRequest(unit_id="nope-1", answers={"q1": "a"}))
    )
    assert (code, trailer) == (grpc.StatusCode.NOT_FOUND, "unknown-unit")
    for bad_id in ("", "UPPER", "../etc", "x" * 65):
        code, _, _ = await status_of(stub.GetUnit(content_pb2.GetUnitRequest(unit_id=bad_id)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT

    for answers in ({"q9": "a"}, {"q1": "zz"}, {"q1": ""}, {f"q{i}": "a" for i in range(1, 5)}):
        code, details, trailer = await status_of(
            stub.VerifyQuiz(content_pb2.VerifyQuizRequest(unit_id=FIRST.unit.id, answers=answers))
        )
        assert (code, trailer) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid-argument"), details

    code, details, _ = await status_of(stub.ListUnits(content_pb2.ListUnitsRequest(limit=101)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "100" in details
    code, details, _ = await status_of(stub.ListUnits(content_pb2.ListUnitsRequest(cursor="@@")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cursor" in details
    code, _, _ = await status_of(stub.ListUnits(content_pb2.ListUnitsRequest(subject="a\0b")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    # Callers one hop away get the domain class back.
    with pytest.raises(UnknownUnit):
        async with rpc.rpc_errors("content"):
            await stub.GetUnit(content_pb2.GetUnitRequest(unit_id="nope-1"))


async def test_bad_pack_is_refused_whole_and_the_server_keeps_serving(stub) -> None:
    before = await stub.GetContentStats(content_pb2.GetContentStatsRequest())
    units = [make_unit(FIRST.unit.id, FIRST.unit.subject, reward=1), make_unit("zzz-001")]
    units[1]["quiz"]["questions"][1]["answer"] = "nine"
    text = dump(units)
    code, details, trailer = await status_of(
        stub.ImportPack(content_pb2.ImportPackRequest(pack_json=text))
    )
    assert (code, trailer) == (grpc.StatusCode.INVALID_ARGUMENT, "bad-content-pack")
    line = line_of(text, '"answer": "nine"')
    assert (
        details
        == f'line {line}: unit "zzz-001": question "q2": answer "nine" is not one of its choices'
    )
    code, details, _ = await status_of(
        stub.ImportPack(content_pb2.ImportPackRequest(pack_json="{"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("line 1: invalid JSON")

    after = await stub.GetContentStats(content_pb2.GetContentStatsRequest())
    assert after == before and after.unit_count == len(SAMPLE)
    unit = await stub.GetUnit(content_pb2.GetUnitRequest(unit_id=FIRST.unit.id))
    assert (unit.reward, unit.version) == (FIRST.unit.reward, 1)


async def test_import_changes_versions_and_reads_follow(stub) -> None:
    await stub.GetUnit(content_pb2.GetUnitRequest(unit_id=FIRST.unit.id))  # cached now
    changed = load_sample_pack().replace(FIRST.unit.title, FIRST.unit.title + " (revised)", 1)
    reply = await stub.ImportPack(content_pb2.ImportPackRequest(pack_json=changed))
    assert (reply.added, reply.changed, reply.unchanged) == (0, 1, len(SAMPLE) - 1)
    unit = await stub.GetUnit(content_pb2.GetUnitRequest(unit_id=FIRST.unit.id))
    assert unit.version == 2 and unit.digest != FIRST.unit.digest and "(revised)" in unit.title
    verdict = await stub.VerifyQuiz(
        content_pb2.VerifyQuizRequest(unit_id=FIRST.unit.id, answers=dict(FIRST.answers))
    )
    assert verdict.unit_version == 2


async def test_list_units_pages_and_stats(stub) -> None:
    stats = await stub.GetContentStats(content_pb2.GetContentStatsRequest())
    assert stats.unit_count == len(SAMPLE)
    assert list(stats.subjects) == sorted({u.unit.subject for u in SAMPLE})

    page = await stub.ListUnits(content_pb2.ListUnitsRequest())
    assert len(page.units) == 20 and page.next_cursor
    rest = await stub.ListUnits(content_pb2.ListUnitsRequest(cursor=page.next_cursor, limit=100))
    assert rest.next_cursor == ""
    ids = [s.id for s in [*page.units, *rest.units]]
    assert sorted(ids) == sorted(u.unit.id for u in SAMPLE)

    subject = stats.subjects[0]
    only = await stub.ListUnits(content_pb2.ListUnitsRequest(subject=subject, limit=100))
    assert {s.subject for s in only.units} == {subject}
    assert len(only.units) == sum(u.unit.subject == subject for u in SAMPLE)


async def test_data_survives_restart_and_sees_offline_imports(tmp_path: Path) -> None:
    cfg = ContentConfig(data_dir=tmp_path / "content")
    pack = tmp_path / "pack.json"
    pack.write_text(dump([make_unit("math-001")]))
    async with ContentService(cfg) as svc:
        async with rpc.make_channel(svc.address) as channel:
            stub = content_pb2_grpc.ContentStub(channel)
            await stub.ImportPack(content_pb2.ImportPackRequest(pack_json=pack.read_text()))
            assert (await stub.GetUnit(content_pb2.GetUnitRequest(unit_id="math-001"))).version == 1

            # Another process imports into the same store while we serve.
            pack.write_text(dump([make_unit("math-001", reward=7), make_unit("math-002")]))
            code = (
                "import sys; from pathlib import Path;"
                "from content_service import import_pack_file;"
                "print(import_pack_file(Path(sys.argv[1]), Path(sys.argv[2])))"
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                code,
                str(cfg.data_dir),
                str(pack),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
            assert proc.returncode == 0, err.decode()
            assert b"changed=1" in out and b"added=1" in out
            unit = await stub.GetUnit(content_pb2.GetUnitRequest(unit_id="math-001"))
            assert (unit.version, unit.reward) == (2, 7)
    await svc.stop()  # idempotent

    async with ContentService(cfg) as svc:
        async with rpc.make_channel(svc.address) as channel:
            stats = await content_pb2_grpc.ContentStub(channel).GetContentStats(
                content_pb2.GetContentStatsRequest()
            )
    assert (stats.unit_count, list(stats.subjects)) == (2, ["math"])


def test_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        ContentConfig(data_dir=str(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ContentConfig(data_dir=tmp_path, cache_units=-1)


async def test_a_batch_grades_each_item_alone_and_in_order(stub) -> None:
    second = SAMPLE[1]
    q1 = FIRST.unit.quiz.questions[0]
    wrong = next(c.id for c in q1.choices if c.id != FIRST.answers[q1.id])
    items = [
        content_pb2.VerifyQuizRequest(unit_id=FIRST.unit.id, answers=dict(FIRST.answers)),
        content_pb2.VerifyQuizRequest(unit_id="nope-1", answers={"q1": "a"}),
        content_pb2.VerifyQuizRequest(unit_id=FIRST.unit.id, answers={q1.id: wrong}),
        content_pb2.VerifyQuizRequest(unit_id=second.unit.id, answers={"no-such-q": "a"}),
        content_pb2.VerifyQuizRequest(unit_id=second.unit.id, answers=dict(second.answers)),
    ]
    reply = await stub.VerifyQuizBatch(content_pb2.VerifyQuizBatchRequest(items=items))
    kinds = [o.WhichOneof("outcome") for o in reply.outcomes]
    assert kinds == ["reply", "error", "reply", "error", "reply"]
    first, missing, failed, malformed, passed = reply.outcomes
    assert first.reply.passed and first.reply.reward == FIRST.unit.reward
    assert missing.error.code == UnknownUnit.code
    assert not failed.reply.passed
    assert malformed.error.code == "invalid-argument"
    assert passed.reply.passed and passed.reply.reward == second.unit.reward
    for one, alone in zip(items, reply.outcomes, strict=True):  # the same as one call each
        if alone.WhichOneof("outcome") == "reply":
            assert await stub.VerifyQuiz(one) == alone.reply

    too_many = content_pb2.VerifyQuizBatchRequest(items=[items[0]] * 1025)
    code, _, trailer = await status_of(stub.VerifyQuizBatch(too_many))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and trailer == "invalid-argument"
