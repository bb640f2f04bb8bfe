"""Each service's access rules: complete, and saying what docs/design.md §5 says."""

from content_service.grpc_edge import ACCESS as CONTENT
from hub.grpc_edge import ACCESS as HUB
from protos import content_pb2, hub_pb2, registry_pb2, shard_pb2
from registry.grpc_edge import ACCESS as REGISTRY
from runtime.authz import ANY, compile_rules
from runtime.tls import Role
from user_shard.grpc_edge import ACCESS as SHARD


def _name(module: object, service: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[service].full_name)  # type: ignore[attr-defined]


def test_rules_cover_every_method_and_follow_the_design() -> None:
    rules = compile_rules(
        [
            (_name(content_pb2, "Content"), CONTENT),
            (_name(hub_pb2, "Hub"), HUB),
            (_name(registry_pb2, "Registry"), REGISTRY),
            (_name(shard_pb2, "UserShard"), SHARD),
        ]
    )
    assert rules["/canistry.content.v1.Content/VerifyQuiz"] == {Role.SHARD}
    assert rules["/canistry.content.v1.Content/ImportPack"] == {Role.OPERATOR}
    assert rules["/canistry.hub.v1.Hub/RequestAllowance"] == {Role.SHARD}
    assert rules["/canistry.hub.v1.Hub/EnsureCapacity"] == ANY
    assert rules["/canistry.registry.v1.Registry/RegisterShard"] == {Role.HUB}
    # Governance: only the hub carries out what stakers adopted.
    assert rules["/canistry.registry.v1.Registry/SetShardState"] == {Role.HUB}
    assert rules["/canistry.shard.v1.UserShard/SetDisabled"] == {Role.HUB}
    assert rules["/canistry.shard.v1.UserShard/CastVote"] == {Role.GATEWAY}
    assert rules["/canistry.hub.v1.Hub/CreateProposal"] == {Role.GATEWAY}
    assert rules["/canistry.hub.v1.Hub/ReportVotes"] == {Role.SHARD}
    for method in ("CreateUser", "GetUser", "UpdateProfile", "SubmitQuiz", "GetBalance"):
        assert rules[f"/canistry.shard.v1.UserShard/{method}"] == {Role.GATEWAY}
    assert rules["/canistry.shard.v1.UserShard/GetShardStatus"] == {
        Role.GATEWAY,
        Role.OPERATOR,
        Role.HUB,
    }
