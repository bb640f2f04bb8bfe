"""A typed Python client for the Canistry HTTP API (docs/design.md §7), async and blocking.

    from canistry.client import AsyncClient, Identity

    me = Identity.load_or_create(Path("~/.canistry/identity.pem").expanduser())
    async with AsyncClient("http://127.0.0.1:8080", me, retry_unavailable_s=30) as api:
        await api.register("Ada", "ada@example.org")
        unit = await api.unit("math-001")
        result = await api.submit(unit.id, {"q1": "a"})

Every user request is signed with the identity's Ed25519 key (docs/design.md §5);
the principal is the key's IC self-authenticating principal, the same text
dfx shows for the same key. Errors raise :class:`ApiError`, which carries
the problem document.
"""

from canistry.client._async import AsyncClient
from canistry.client._identity import Identity, IdentityError
from canistry.client._models import (
    ApiError,
    Balance,
    Choice,
    ClusterInfo,
    Me,
    Profile,
    Proposal,
    ProposalPage,
    Question,
    Registration,
    ShardInfo,
    ShardResult,
    SubmissionResult,
    Today,
    Unit,
    UnitPage,
    UnitSummary,
    VoteResult,
)
from canistry.client._sync import Client

__all__ = [
    "ApiError",
    "AsyncClient",
    "Balance",
    "Choice",
    "Client",
    "ClusterInfo",
    "Identity",
    "IdentityError",
    "Me",
    "Profile",
    "Proposal",
    "ProposalPage",
    "Question",
    "Registration",
    "ShardInfo",
    "ShardResult",
    "SubmissionResult",
    "Today",
    "Unit",
    "UnitPage",
    "UnitSummary",
    "VoteResult",
]
