"""Bad input gets a clear error with the right status, and nothing crashes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from canistry.up import Cluster
from protos import content_pb2, content_pb2_grpc
from runtime.rpc import make_channel
from tests.integration.direct import SAMPLE, Direct, new_principal, right_answers


async def _shard_call_status(
    direct: Direct, p: str, unit_id: str, answers: dict
) -> grpc.StatusCode:  # type: ignore[type-arg]
    a = await direct.lookup(p)
    from protos import shard_pb2

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await direct.shard(a.address).SubmitQuiz(
            shard_pb2.SubmitQuizRequest(principal=p, unit_id=unit_id, answers=answers)
        )
    return info.value.code()


async def test_unknown_unit_and_malformed_answers(shared_cluster: Cluster) -> None:
    direct, p = Direct(shared_cluster), new_principal()
    await direct.register(p)
    unit = SAMPLE[3]
    assert (
        await _shard_call_status(direct, p, "no-such-unit", {"q1": "a"})
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await _shard_call_status(direct, p, unit["id"], {"nope": "a"})
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    first_q = unit["quiz"]["questions"][0]["id"]
    assert (
        await _shard_call_status(direct, p, unit["id"], {first_q: "zz"})
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    # Nothing was recorded, and the shard still serves.
    user = (await direct.user(p)).user
    assert user.today.attempts == 0
    assert (await direct.submit(p, unit["id"], right_answers(unit))).passed


async def test_bad_content_pack_is_rejected_whole_with_its_line(
    shared_cluster: Cluster, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    content = shared_cluster.children["content"].address
    good = json.loads(json.dumps({"units": SAMPLE[:1]}))
    good["units"][0]["id"] = "fresh-unit-001"
    bad = {"units": [good["units"][0], {**SAMPLE[1], "reward": -5, "id": "fresh-unit-002"}]}
    text = json.dumps(bad, indent=2)
    operator = shared_cluster.tls("operator")
    async with make_channel(content, operator) as ch:
        stub = content_pb2_grpc.ContentStub(ch)
        before = await stub.GetContentStats(content_pb2.GetContentStatsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ImportPack(content_pb2.ImportPackRequest(pack_json=text))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "line" in info.value.details() and "reward" in info.value.details()
        after = await stub.GetContentStats(content_pb2.GetContentStatsRequest())
        assert after.unit_count == before.unit_count, "a bad pack is rejected whole"

    pack = tmp_path / "bad.json"
    pack.write_text(text)
    argv = [sys.executable, "-m", "canistry", "content", "import", str(pack)]
    result = await asyncio.to_thread(
        subprocess.run,
        [*argv, "--content-addr", content, "--tls-dir", str(operator.cert.parent)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "line" in result.stderr and "reward" in result.stderr


def test_content_import_refuses_a_data_dir_without_a_cluster(tmp_path: Path) -> None:
    pack = Path(__file__).parents[2] / "content_service" / "packs" / "sample.json"
    result = subprocess.run(
        [sys.executable, "-m", "canistry", "content", "import", str(pack)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "no cluster at .canistry" in result.stderr
    assert not (tmp_path / ".canistry").exists(), "nothing is created on a refusal"
