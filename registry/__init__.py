"""The registry: which shard each principal lives on, and the shard directory.

Layout: ``assignment`` holds the rule (pure), ``store`` the LMDB map and its
single writer, ``poker`` the background nudge to the hub, ``core`` ties them
into the operations, ``grpc_edge`` is the gRPC edge and ``service`` the
lifecycle. New principals go to the newest active shard below the hard limit;
when none is left the registry answers ``NoCapacity`` and pokes the hub.
"""
