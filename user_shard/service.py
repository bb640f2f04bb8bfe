"""The user shard service: its store, its peers (content, hub), its server.

:class:`ShardService` orders each flow (DESIGN §2); the rules live in
``limits``, ``ledger``, ``submission`` and ``validate``, the I/O in
``store``, the gRPC edge in ``servicer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from protos import content_pb2, content_pb2_grpc, hub_pb2, hub_pb2_grpc, shard_pb2
from runtime import logs
from runtime.errors import (
    CanistryError,
    DeadlineExceeded,
    InvalidArgument,
    Unavailable,
    UnknownUser,
)
from runtime.lifecycle import Lifecycle
from runtime.rpc import Server, make_channel, rpc_errors
from runtime.tls import Role
from user_shard import ledger as bank
from user_shard.config import ShardConfig
from user_shard.limits import DailyLimits, today
from user_shard.refiller import Refiller
from user_shard.servicer import binding
from user_shard.store import ShardStore
from user_shard.submission import Verdict, precheck, replay
from user_shard.sweeper import ReplySweeper
from user_shard.validate import (
    merge_profile,
    request_fingerprint,
    validate_principal,
    validate_profile,
    validate_submission,
)

__all__ = ["ShardCounters", "ShardService"]

log = logs.get_logger(__name__)

#: Deadline of one VerifyQuiz call; past it the submission fails as unavailable.
CONTENT_DEADLINE_S = 2.0
#: Deadline of one RequestAllowance call; the refiller retries past it.
HUB_DEADLINE_S = 3.0
#: The most principals one Census call may name.
MAX_CENSUS = 1000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


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


class ShardService(Lifecycle):
    """One user shard. Use as ``async with ShardService(cfg) as svc:``.

    ``clock`` returns wall time in ms; tests pass a fake one to cross a UTC day.
    """

    def __init__(self, config: ShardConfig, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self._clock = clock
        self.limits = DailyLimits(config.daily_attempt_limit, config.daily_token_limit)
        self.policy = bank.RefillPolicy(
            config.base_allowance, config.low_water_fraction, config.refill_target_s
        )
        self.mint_rate = bank.MintRate(window_s=config.refill_target_s)
        self.store = ShardStore(
            config.data_dir,
            durable=config.durable,
            group_commit=config.group_commit,
            map_size=config.map_size,
        )
        self.sweeper = ReplySweeper(
            self.store,
            retention_ms=int(config.idempotency_retention_s * 1000),
            interval_s=config.idempotency_sweep_interval_s,
            batch=config.idempotency_sweep_batch,
            clock=clock,
        )
        self._sweep_task: asyncio.Task[None] | None = None
        self._content_channel: grpc.aio.Channel | None = None
        self._hub_channel: grpc.aio.Channel | None = None
        self._content: content_pb2_grpc.ContentAsyncStub | None = None
        self._hub: hub_pb2_grpc.HubAsyncStub | None = None
        self.refiller = Refiller(
            self.store,
            self.policy,
            self.mint_rate,
            self._ask_hub,
            retry_max_s=config.hub_retry_max_s,
        )
        self._refill_task: asyncio.Task[None] | None = None
        self._server: Server | None = None
        self._started = False
        self._stopped = False
        self._submissions = 0
        self._replays = 0
        self._rewarded = 0

    # -- lifecycle -------------------------------------------------------------

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("service not started")
        return self._server.address

    @property
    def server(self) -> Server:
        if self._server is None:
            raise RuntimeError("service not started")
        return self._server

    async def start(self) -> None:
        """Open the store, connect to peers, start the refiller, then serve."""
        if self._started:
            return
        self._started = True
        try:
            await self.store.start()
            self._content_channel = make_channel(
                self.config.content_address, self.config.server.tls, server_role=Role.CONTENT
            )
            self._content = content_pb2_grpc.ContentStub(self._content_channel)
            await self._connect_hub()
            self._refill_task = asyncio.create_task(self.refiller.run(), name="allowance-refill")
            self._sweep_task = asyncio.create_task(self.sweeper.run(), name="idempotency-sweep")
            # shard_id: the edge refuses calls meant for another shard (a
            # stale route to an address this shard now holds).
            self._server = Server(
                f"shard-{self.config.shard_id}",
                self.config.server,
                [binding(self)],
                shard_id=self.config.shard_id,
            )
            await self._server.start()
        except BaseException:
            await self.stop()
            raise
        log.info("shard_started", shard_id=self.config.shard_id, address=self.address)

    async def stop(self) -> None:
        """Drain calls, stop the refiller, finish queued writes, close. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            await self._server.stop()
        for task in (self._refill_task, self._sweep_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.store.stop()
        for channel in (self._content_channel, self._hub_channel):
            if channel is not None:
                await channel.close()
        log.info("shard_stopped", shard_id=self.config.shard_id)

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

    async def shard_status(self) -> shard_pb2.ShardStatus:
        ledger = self.store.ledger()
        used, size = self.store.usage()
        return shard_pb2.ShardStatus(
            store_bytes_used=used,
            store_map_size=size,
            shard_id=self.config.shard_id,
            users=ledger.users,
            allowance_remaining=ledger.allowance_remaining,
            granted_total=ledger.granted_total,
            credited_total=ledger.credited_total,
            pending_total=ledger.pending_total,
            next_seq=ledger.next_seq,
            hub_calls=ledger.hub_calls + self.refiller.unrecorded_calls,
            rewarded_submissions=ledger.rewarded_submissions,
        )

    async def census(self, request: shard_pb2.CensusRequest) -> shard_pb2.CensusReply:
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

    async def submit_quiz(self, request: shard_pb2.SubmitQuizRequest) -> shard_pb2.SubmitQuizReply:
        """Verify and record one submission (DESIGN §2, "Submit a quiz").

        Raises InvalidArgument, IdempotencyKeyReused, UnknownUser,
        DailyLimitExceeded, UnknownUnit (from the content service), or
        Unavailable when the content service cannot be reached; in every
        error case nothing was recorded.
        """
        validate_submission(request)
        principal = validate_principal(request.principal)
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
        verdict = await self._verify(request.unit_id, answers)
        outcome = await self.store.record_submission(
            principal, request.unit_id, verdict, self.limits, self._clock(), key, fingerprint
        )
        self._submissions += 1
        if outcome.earned > 0:
            self._rewarded += 1
            self.mint_rate.record(outcome.earned, time.monotonic())
        if self.policy.needs_refill(outcome.ledger):
            self.refiller.wake()
        return outcome.reply

    # -- peers -----------------------------------------------------------------

    async def _verify(self, unit_id: str, answers: dict[str, str]) -> Verdict:
        assert self._content is not None, "service not started"
        try:
            async with rpc_errors("content service"):
                reply = await self._content.VerifyQuiz(
                    content_pb2.VerifyQuizRequest(unit_id=unit_id, answers=answers),
                    timeout=CONTENT_DEADLINE_S,
                )
        except DeadlineExceeded as exc:
            raise Unavailable("content service did not answer in time") from exc
        except CanistryError as exc:
            if type(exc) is CanistryError:  # the peer failed without a reason we know
                raise Unavailable("content service failed") from exc
            raise
        return Verdict(reply.passed, reply.score, reply.total, reply.reward)

    async def _ask_hub(self, request: bank.AllowanceRequest) -> int:
        assert self._hub is not None, "service not started"
        try:
            async with rpc_errors("hub"):
                grant = await self._hub.RequestAllowance(
                    hub_pb2.AllowanceRequest(
                        shard_id=self.config.shard_id,
                        seq=request.seq,
                        amount=request.amount,
                        staked_delta=request.staked_delta,
                    ),
                    timeout=HUB_DEADLINE_S,
                )
        except (Unavailable, DeadlineExceeded):
            # A channel that failed waits out gRPC's own reconnect backoff
            # (up to minutes); a fresh one lets the next retry, at most
            # hub_retry_max_s away, reach a hub that came back.
            await self._connect_hub()
            raise
        if grant.seq != request.seq:
            raise Unavailable(f"hub answered seq {grant.seq} to seq {request.seq}")
        granted: int = grant.granted
        return granted

    async def _connect_hub(self) -> None:
        old = self._hub_channel
        self._hub_channel = make_channel(
            self.config.hub_address, self.config.server.tls, server_role=Role.HUB
        )
        self._hub = hub_pb2_grpc.HubStub(self._hub_channel)
        if old is not None:
            await old.close()

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
