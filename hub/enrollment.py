"""Shard enrollment: join tokens issued at a shard's start, redeemed once for a certificate.

The ``kubernetes`` spawner cannot hand a shard a certificate the hub made
without a Secret, which its Role does not allow. So the shard makes its own
key in its pod and asks for a certificate, proving with a one-time join
token who it is (:mod:`hub.join_tokens` holds the rules):

1. :meth:`Enrollment.issue_token` (the spawner, at each start of a shard)
   makes a token bound to the shard's id, keeps its hash in the hub's LMDB
   (a restarted hub still honours it) and returns the token for the pod
   spec.
2. :meth:`Enrollment.enroll` (the ``EnrollShard`` RPC, served alone on the
   hub's enrollment port with server-only TLS; :mod:`hub.enrollment_edge`)
   checks the request (:meth:`~runtime.tls.ClusterCA.sign_csr` signs it for
   ``canistry://shard/<id>`` only), then redeems the token and returns the
   certificate and the CA's, in that order: a refused token releases
   nothing, and a request the CA will not sign does not use up the token.

A shard must also still be one of the hub's (recorded, not abandoned).
"""

from __future__ import annotations

import asyncio

import lmdb

from hub import join_tokens
from hub.clock import Clock, wall_clock_ms
from hub.store import HubStore
from protos import enrollment_pb2, hub_pb2
from runtime import logs
from runtime.store import get_msg, put_msg
from runtime.tls import ClusterCA, Identity, Role

__all__ = ["TOKEN_TTL_STARTS", "Enrollment"]

log = logs.get_logger(__name__)

#: A token lasts this many shard start timeouts: long enough for a pod to be
#: scheduled, pull its image and enrol within one start; a later start issues another.
TOKEN_TTL_STARTS = 3


class Enrollment:
    """Issues join tokens and enrols shards with them, against the hub's store and CA."""

    def __init__(
        self, hub_store: HubStore, ca: ClusterCA, *, ttl_s: float, clock: Clock = wall_clock_ms
    ) -> None:
        """``ttl_s``: how long a token is good; ``clock``: wall ms (tests pass a fake)."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self._hub = hub_store
        self._ca = ca
        self._ttl_ms = int(ttl_s * 1000)
        self._clock = clock

    def token(self, shard_id: str) -> enrollment_pb2.JoinToken | None:
        """What the hub keeps of ``shard_id``'s current token (its hash), if any."""
        store = self._hub.store
        with store.read() as txn:
            return get_msg(
                txn, store.db("join_tokens"), shard_id.encode(), enrollment_pb2.JoinToken
            )

    async def issue_token(self, shard_id: str) -> str:
        """A new join token for ``shard_id``; the one issued before (if any) is void."""
        token = join_tokens.new_token()
        kept = join_tokens.issue(shard_id, token, now_ms=self._clock(), ttl_ms=self._ttl_ms)
        store = self._hub.store

        def fn(txn: lmdb.Transaction) -> None:
            put_msg(txn, store.db("join_tokens"), shard_id.encode(), kept)

        await self._hub.committer.submit(fn)
        log.info("join_token_issued", shard_id=shard_id, expires_at_ms=kept.expires_at_ms)
        return token

    async def enroll(self, shard_id: str, token: str, csr_pem: bytes) -> tuple[bytes, bytes]:
        """The certificate (PEM) of ``csr_pem``'s key as shard ``shard_id``, and the CA's.

        Raises :class:`~hub.join_tokens.JoinRefused` (a permission error) if
        the token may not enrol that shard now, and
        :class:`~runtime.tls.BadCertificateRequest` (an invalid argument) if
        the CA will not sign the request.
        """
        try:
            identity = Identity(Role.SHARD, shard_id)
        except ValueError:
            log.warning("enroll_refused", shard_id=shard_id[:80], reason="bad-shard-id")
            raise join_tokens.JoinRefused("unknown") from None
        cert_pem = await asyncio.to_thread(self._ca.sign_csr, csr_pem, identity)
        store = self._hub.store
        now_ms = self._clock()

        def fn(txn: lmdb.Transaction) -> None:
            key = shard_id.encode()
            kept = get_msg(txn, store.db("join_tokens"), key, enrollment_pb2.JoinToken)
            used = join_tokens.redeem(kept, shard_id, token, now_ms=now_ms)
            record = get_msg(txn, store.db("shards"), key, hub_pb2.ShardRecord)
            if record is None or record.step == hub_pb2.SPAWN_STEP_ABANDONED:
                raise join_tokens.JoinRefused("not-a-shard")
            put_msg(txn, store.db("join_tokens"), key, used)

        try:
            await self._hub.committer.submit(fn)
        except join_tokens.JoinRefused as exc:
            log.warning("enroll_refused", shard_id=shard_id, reason=exc.reason)
            raise
        log.info("shard_enrolled", shard_id=shard_id)
        return cert_pem, self._ca.cert_pem
