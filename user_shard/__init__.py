"""The user shard: the single writer of its users' profiles, progress, daily
stats and micro-bank balances.

Layout: ``config`` (ShardConfig); pure rules in ``limits`` (daily limits),
``microbank`` (balances and the minting allowance), ``submission`` (what a
quiz submission records) and ``validate`` (input); LMDB in ``store``; the
operations in ``core``; the content and hub clients in ``peers``; the
background loops in ``refiller`` and ``sweeper``; the gRPC edge in
``grpc_edge``; ``service`` builds the parts and runs their lifecycle.
"""

from user_shard.config import ShardConfig
from user_shard.core import ShardCounters
from user_shard.service import ShardService

__all__ = ["ShardConfig", "ShardCounters", "ShardService"]
