"""The hub: the token treasury under a hard cap, and the shards it creates.

Layout, pure first: ``treasury`` (the allowance rule), ``capacity`` (when to
spawn, promote a warm shard or refill the warm pool), ``backoff`` (when to
restart) and ``config`` (the settings and the init config fixed in LMDB)
hold no I/O. ``store`` is the LMDB side; ``spawner`` starts shard processes
(tests inject an in-memory one, ``tests/hub/fake_spawner.py``); ``spawn_steps`` runs the
recorded, resumable spawn sequence and promotions; ``supervisor`` restarts
crashed shards, warm ones too; ``rounds`` runs the capacity checks; ``core``
ties the treasury and capacity rounds together; ``grpc_edge`` is the gRPC
edge and ``service`` the lifecycle; ``clock`` is the wall clock they share.
``stop_shards`` (in ``spawner``) lets ``canistry up`` stop the hub's shards
on shutdown, since the hub's own ``stop()`` leaves them running.
"""

from hub.spawner import stop_shards

__all__ = ["stop_shards"]
