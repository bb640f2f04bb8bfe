"""The hub's enrollment port: ``EnrollShard`` and nothing else, to callers without a certificate.

A listener of its own (``--enroll-port``), with server-only TLS: the hub
shows its certificate, and the shard, which holds none yet, checks it
against the cluster CA. The binding is ``anonymous`` (``runtime.rpc``), so
the port serves no other service, not even health; the join token in each
request is what authorizes it (:mod:`hub.enrollment`). The main port keeps
mutual TLS and its rules, and does not serve ``EnrollShard``.
"""

from __future__ import annotations

import grpc

from hub.enrollment import Enrollment
from protos import enrollment_pb2, enrollment_pb2_grpc
from runtime.rpc import Context, ServiceBinding

__all__ = ["SERVICE_NAME", "EnrollmentServicer", "binding"]

SERVICE_NAME = enrollment_pb2.DESCRIPTOR.services_by_name["Enrollment"].full_name

#: Largest request the port reads: a CSR and a token fit in a few KiB.
MAX_REQUEST_BYTES = 64 * 1024


class EnrollmentServicer(enrollment_pb2_grpc.EnrollmentServicer):
    def __init__(self, enrollment: Enrollment) -> None:
        self._enrollment = enrollment

    async def EnrollShard(
        self, request: enrollment_pb2.EnrollShardRequest, context: Context
    ) -> enrollment_pb2.EnrollShardReply:
        cert_pem, ca_pem = await self._enrollment.enroll(
            request.shard_id, request.token, request.csr_pem
        )
        return enrollment_pb2.EnrollShardReply(cert_pem=cert_pem, ca_pem=ca_pem)


def binding(enrollment: Enrollment) -> ServiceBinding:
    """The anonymous binding of :class:`EnrollmentServicer` for the enrollment server."""
    servicer = EnrollmentServicer(enrollment)

    def add(server: grpc.aio.Server) -> None:
        enrollment_pb2_grpc.add_EnrollmentServicer_to_server(servicer, server)

    return ServiceBinding(SERVICE_NAME, add, anonymous=True)
