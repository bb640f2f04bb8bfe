"""Where ``canistry up`` keeps a cluster's files under its data directory.

<data-dir>/
  cluster.json       the ports of content, registry and hub (stable across runs)
  up.lock            held while a `canistry up` runs here
  content/ registry/ hub/   each service's LMDB and service.pid
  shards/<shard-id>/        each shard's LMDB, identity and log (the hub's)
  logs/<service>.log        JSON logs of the core services
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.process import write_atomically

__all__ = ["DEFAULT_DATA_DIR", "ClusterLayout"]

DEFAULT_DATA_DIR = Path(".canistry")
CORE_SERVICES = ("content", "registry", "hub")


@dataclass(frozen=True)
class ClusterLayout:
    data_dir: Path

    @property
    def cluster_file(self) -> Path:
        return self.data_dir / "cluster.json"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "up.lock"

    @property
    def shards_dir(self) -> Path:
        return self.data_dir / "shards"

    def service_dir(self, name: str) -> Path:
        return self.data_dir / name

    def log_file(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    def ready_file(self, name: str) -> Path:
        return self.data_dir / "run" / f"{name}.addr"

    def read_ports(self) -> dict[str, int]:
        """The ports recorded for the core services; empty if none yet."""
        try:
            data = json.loads(self.cluster_file.read_text())
        except FileNotFoundError:
            return {}
        return {k: int(v) for k, v in data.get("ports", {}).items()}

    def write_ports(self, ports: dict[str, int]) -> None:
        write_atomically(self.cluster_file, json.dumps({"ports": ports}, indent=2) + "\n")

    def hub_address(self) -> str | None:
        port = self.read_ports().get("hub")
        return None if port is None else f"127.0.0.1:{port}"
