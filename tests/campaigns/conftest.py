"""Fault campaigns run against real clusters, the same ones the integration tests start."""

from tests.integration.conftest import make_cluster

__all__ = ["make_cluster"]
