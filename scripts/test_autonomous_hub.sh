#!/bin/sh
# The autonomous hub's whole story on a real cluster of processes, with readable output:
# no admin RPC exists (reflection lists the hub's methods, none sets anything), spawns
# happen by themselves, only hub-created shards mint, and the cap holds.
#
#   scripts/test_autonomous_hub.sh [extra pytest flags]
set -eu
cd "$(dirname "$0")/.."
exec python3 -m pytest -v -s --no-header -p no:cacheprovider -m autonomous_hub \
    tests/integration/test_autonomous_hub.py "$@"
