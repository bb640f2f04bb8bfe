"""A user shard's operations, in the order each flow needs (docs/design.md §2).

:class:`Shard` is what the gRPC edge (``grpc_edge``) calls. The rules live in
``limits``, ``ledger``, ``submission`` and ``validate``, the I/O in
``store``, the peers in ``peers``; this module only orders them. Errors come
from ``runtime.errors``; nothing here sees gRPC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from canistry import __version__
from protos import shard_pb2
from runtime import logs
from runtime.errors import (
    CanistryError,
    InvalidArgument,
    ProposalDecided,
    ShardDisabled,
    UnknownProposal,
    UnknownUser,
)
from user_shard import microbank
from user_shard.limits import DailyLimits, today
from user_shard.peers import ContentClient
from user_shard.refiller import Refiller
from user_shard.store import ShardStore
from user_shard.submission import precheck, replay
from user_shard.validate import (
    merge_profile,
    request_fingerprint,
    validate_principal,
    validate_profile,
    validate_submission,
)
from user_shard.voting import VoteReporter

__all__ = ["BUSY_AT", "MAX_CENSUS", "MAX_SUBMIT_BATCH", "Shard", "ShardCounters"]

log = logs.get_logger(__name__)

#: The most principals one Census call may name.
MAX_CENSUS = 1000
#: The most submissions one SubmitQuizBatch call may carry.
MAX_SUBMIT_BATCH = 256
#: Submissions in progress from which grading lingers for company (see
#: :class:`~user_shard.batching.VerifyBatcher`): below it a submission is graded at
#: once, so a lightly loaded shard adds no latency; at it, each content call costs
#: far more than each submission in it, and the linger is small beside their latency.
BUSY_AT = 4


@dataclass(frozen=True)
class ShardCounters:
    """Counters since this process started (benchmarks read these)."""

    submissions: int
    """Submissions recorded (attempts written), replays excluded."""
    replays: int
    """Submissions answered from a stored idempotent reply."""
    rewarded: int
    """Submissions that earned tokens."""
    commit_batches: int
    """Durable write transactions committed."""
    commit_jobs: int
    """Writes committed; ``commit_jobs / commit_batches`` is the mean batch size."""
    hub_calls: int
    """Allowance requests sent since start, retries included."""


class Shard:
    """One shard's users, over an open store, its content client and its refiller.

    ``clock`` returns wall time in ms (the UTC day of the daily limits).
    """

    def __init__(
        self,
        shard_id: str,
        store: ShardStore,
        content: ContentClient,
        refiller: Refiller,
        *,
        limits: DailyLimits,
        policy: microbank.RefillPolicy,
        mint_rate: microbank.MintRate,
        clock: Callable[[], int],
        votes: VoteReporter | None = None,
    ) -> None:
        """``votes`` reports the votes cast here to the hub (None: votes are refused)."""
        self.shard_id = shard_id
        self.store = store
        self.content = content
        self.refiller = refiller
        self.limits = limits
        self.policy = policy
        self.mint_rate = mint_rate
        self._clock = clock
        self._submissions = 0
        self._replays = 0
        self._rewarded = 0
        self._in_progress = 0
        """Submissions between grading and their reply; at :data:`BUSY_AT` or more the
        shard is busy, and grading lingers to share a content call."""
        self.votes = votes
        self._disabled: bool | None = None  # read from the store at first use

    @property
    def counters(self) -> ShardCounters:
        committer = self.store.committer
        return ShardCounters(
            submissions=self._submissions,
            replays=self._replays,
            rewarded=self._rewarded,
            commit_batches=committer.batches,
            commit_jobs=committer.jobs,
            hub_calls=self.refiller.calls_sent,
        )

    # -- users -----------------------------------------------------------------

    async def create_user(self, request: shard_pb2.CreateUserRequest) -> shard_pb2.UserReply:
        principal = validate_principal(request.principal)
        validate_profile(request.profile)
        user, created = await self.store.create_user(principal, request.profile, self._clock())
        return self._user_reply(user, created=created)

    async def get_user(self, request: shard_pb2.GetUserRequest) -> shard_pb2.UserReply:
        return self._user_reply(self._user(request.principal))

    async def update_profile(self, request: shard_pb2.UpdateProfileRequest) -> shard_pb2.UserReply:
        principal = validate_principal(request.principal)
        current = self._user(request.principal)
        profile = merge_profile(current.profile, request.profile, request.fields)
        user = await self.store.update_profile(principal, profile)
        return self._user_reply(user)

    async def get_balance(self, request: shard_pb2.GetBalanceRequest) -> shard_pb2.Balance:
        user = self._user(request.principal)
        return shard_pb2.Balance(staked=user.staked, pending=user.pending)

    def status(self) -> shard_pb2.ShardStatus:
        figures = self.store.ledger()
        used, size = self.store.usage()
        return shard_pb2.ShardStatus(
            store_bytes_used=used,
            store_map_size=size,
            shard_id=self.shard_id,
            users=figures.users,
            allowance_remaining=figures.allowance_remaining,
            granted_total=figures.granted_total,
            credited_total=figures.credited_total,
            pending_total=figures.pending_total,
            next_seq=figures.next_seq,
            hub_calls=figures.hub_calls + self.refiller.unrecorded_calls,
            rewarded_submissions=figures.rewarded_submissions,
            disabled=self.disabled,
            version=__version__,
        )

    def census(self, request: shard_pb2.CensusRequest) -> shard_pb2.CensusReply:
        """Which named principals have a profile here, and this shard's size.

        The registry confirms its pending assignments with it. Raises
        InvalidArgument for more than ``MAX_CENSUS`` names or a bad one.
        """
        if len(request.principals) > MAX_CENSUS:
            raise InvalidArgument(f"at most {MAX_CENSUS} principals per census")
        keys = [validate_principal(p) for p in request.principals]
        found = self.store.existing(keys)
        used, size = self.store.usage()
        return shard_pb2.CensusReply(
            found=[p.decode() for p in found],
            users=self.store.ledger().users,
            store_bytes_used=used,
            store_map_size=size,
        )

    # -- quizzes ---------------------------------------------------------------

    async def submit_quizzes(
        self, items: Sequence[tuple[shard_pb2.SubmitQuizRequest, str]]
    ) -> list[shard_pb2.SubmitQuizReply | CanistryError]:
        """Each ``(request, request_id)`` handled as :meth:`submit_quiz` handles it alone,
        concurrently; its reply, or the domain error it raised, in order.

        An item's error (a domain error, or a bug: then a plain
        :class:`CanistryError`) is logged under its own request id and fails
        that item only. Raises InvalidArgument only for a batch over :data:`MAX_SUBMIT_BATCH`.
        """
        if len(items) > MAX_SUBMIT_BATCH:
            raise InvalidArgument(f"a batch holds at most {MAX_SUBMIT_BATCH} submissions")
        company = len(items) - 1
        return await asyncio.gather(*(self._one(r, rid, company) for r, rid in items))

    async def _one(
        self, request: shard_pb2.SubmitQuizRequest, request_id: str, company: int
    ) -> shard_pb2.SubmitQuizReply | CanistryError:
        token = logs.bind_request_id(request_id or logs.new_request_id())
        try:
            return await self.submit_quiz(request, company=company)
        except CanistryError as exc:
            log.info("submission_refused", code=exc.code, detail=exc.message)
            return exc
        except Exception:
            # A bug fails its own item, as it would fail its own call; the class and
            # text describe our internals, so they go to the log only.
            log.exception("submission_internal_error")
            return CanistryError("internal error")
        finally:
            logs.reset_request_id(token)

    async def submit_quiz(
        self, request: shard_pb2.SubmitQuizRequest, *, company: int = 0
    ) -> shard_pb2.SubmitQuizReply:
        """Verify and record one submission (docs/design.md §2, "Submit a quiz").

        ``company``: how many other submissions arrived with this one (a
        batch); with them the shard counts as busy sooner, so that their
        grading shares one content call.

        Raises InvalidArgument, IdempotencyKeyReused, UnknownUser,
        DailyLimitExceeded, UnknownUnit (from the content service), or
        Unavailable when the content service cannot grade it now; in every
        error case nothing was recorded.
        """
        validate_submission(request)
        principal = validate_principal(request.principal)
        if self.disabled:
            raise ShardDisabled(
                f"shard {self.shard_id} is disabled by an adopted proposal: reads work, "
                "submissions wait until it is enabled again"
            )
        answers = dict(request.answers)
        fingerprint = request_fingerprint(request.unit_id, answers)
        key = request.idempotency_key
        if key:
            stored = self.store.stored_reply(principal, key)
            if stored is not None:
                self._replays += 1
                return replay(stored, fingerprint)
        user = self._user(request.principal)
        precheck(user, self.limits, self._clock())
        self._in_progress += 1
        try:
            verdict = await self.content.verify(
                request.unit_id, answers, linger=self._in_progress + company >= BUSY_AT
            )
            outcome = await self.store.record_submission(
                principal, request.unit_id, verdict, self.limits, self._clock(), key, fingerprint
            )
        finally:
            self._in_progress -= 1
        self._submissions += 1
        if outcome.earned > 0:
            self._rewarded += 1
            self.mint_rate.record(outcome.earned, time.monotonic())
        if self.policy.needs_refill(outcome.ledger):
            self.refiller.wake()
        return outcome.reply

    # -- governance ------------------------------------------------------------

    @property
    def disabled(self) -> bool:
        if self._disabled is None:
            self._disabled = self.store.disabled()
        return self._disabled

    async def set_disabled(self, request: shard_pb2.SetDisabledRequest) -> shard_pb2.ShardStatus:
        """Disable (no submissions, so no minting) or enable this shard, durably."""
        if request.shard_id != self.shard_id:
            raise InvalidArgument(f"this is {self.shard_id}, not {request.shard_id}")
        await self.store.set_disabled(request.disabled)
        self._disabled = request.disabled
        return self.status()

    async def cast_vote(self, request: shard_pb2.CastVoteRequest) -> shard_pb2.CastVoteReply:
        """Record a user's vote with their staked balance as its power, and have it counted.

        Raises UnknownUser, NotEnoughStake (nothing staked), AlreadyVoted,
        UnknownProposal, ProposalDecided, or Unavailable when the hub cannot
        count it now (it stays recorded and is reported later).
        """
        principal = validate_principal(request.principal)
        if self.votes is None or request.proposal_id < 1:
            raise InvalidArgument("no such proposal")
        vote = await self.store.record_vote(
            principal, request.proposal_id, yes=request.yes, now_ms=self._clock()
        )
        outcome = await self.votes.report(request.proposal_id, principal)
        if outcome.status == "unknown":
            raise UnknownProposal(f"no proposal {request.proposal_id}")
        if outcome.status == "decided":
            raise ProposalDecided(f"proposal {request.proposal_id} is decided; the vote came late")
        return shard_pb2.CastVoteReply(
            voting_power=vote.voting_power, yes=outcome.yes, no=outcome.no, state=outcome.state
        )

    # -- helpers ---------------------------------------------------------------

    def _user(self, principal: str) -> shard_pb2.UserRecord:
        user = self.store.user(validate_principal(principal))
        if user is None:
            raise UnknownUser(f"no user {principal!r} on this shard")
        return user

    def _user_reply(
        self, user: shard_pb2.UserRecord, *, created: bool = False
    ) -> shard_pb2.UserReply:
        shown = shard_pb2.UserRecord()
        shown.CopyFrom(user)
        shown.today.CopyFrom(today(user.today, self._clock()))
        return shard_pb2.UserReply(
            user=shown, created=created, attempts_left=self.limits.attempts_left(shown.today)
        )
