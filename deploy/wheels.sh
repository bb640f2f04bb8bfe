#!/usr/bin/env bash
# Build every wheel the image needs into deploy/wheels/ (the Dockerfile copies it; nothing
# in the build reaches a package index). Run it with the Python the image runs:
#   deploy/wheels.sh                    # this host's python3 (3.11 for local/python:3.11-bookworm)
#   PYTHON=python3.12 deploy/wheels.sh  # for the default python:3.12-slim base
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mkdir -p deploy/wheels
"$PYTHON" -m pip wheel --quiet --wheel-dir deploy/wheels ".[kubernetes]" setuptools wheel
rm -f deploy/wheels/canistry-*.whl  # the image builds canistry from its own source copy
ls deploy/wheels | wc -l | xargs echo "deploy/wheels: wheels:"
