"""The user shard: the single writer of its users' profiles, progress, daily
stats and micro-bank balances.

Layout: ``config`` (ShardConfig); pure rules in ``limits`` (daily limits),
``ledger`` (the micro-bank), ``submission`` (what a quiz submission records)
and ``validate`` (input); LMDB in ``store``; the allowance loop in
``refiller``; the gRPC edge in ``servicer``; ``service`` ties them together.
"""

from user_shard.config import ShardConfig
from user_shard.service import ShardCounters, ShardService

__all__ = ["ShardConfig", "ShardCounters", "ShardService"]
