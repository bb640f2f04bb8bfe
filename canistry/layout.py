"""Where ``canistry up`` keeps a cluster's files under its data directory.

<data-dir>/
  cluster.json       the ports of content, registry and hub (stable across runs)
  up.lock            held while a `canistry up` runs here
  content/ registry/ hub/   each service's LMDB and service.pid
  hub/ca/                   the cluster CA: ca.pem, ca.key (0600; the hub's)
  tls/<name>/               ca.pem, cert.pem, key.pem of content, registry, hub,
                            gateway and operator (the command line)
  shards/<shard-id>/        each shard's LMDB, log, and tls/ (issued by the hub)
  logs/<service>.log        JSON logs of the core services
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.files import write_atomically
from runtime.tls import TLSConfig, TLSError

__all__ = ["CERTIFIED", "DEFAULT_DATA_DIR", "ClusterLayout", "operator_tls"]

DEFAULT_DATA_DIR = Path(".canistry")
CORE_SERVICES = ("content", "registry", "hub")
#: Who gets a certificate from `canistry up` (shards get theirs from the hub).
CERTIFIED = (*CORE_SERVICES, "gateway", "operator")


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

    @property
    def ca_dir(self) -> Path:
        """The cluster CA, kept with the hub, which issues shard certificates from it."""
        return self.service_dir("hub") / "ca"

    def tls_dir(self, name: str) -> Path:
        """The certificate directory of ``name`` (one of :data:`CERTIFIED`)."""
        return self.data_dir / "tls" / name

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


def operator_tls(
    *, tls_dir: Path | None, data_dir: Path | None, insecure: bool = False
) -> TLSConfig | None:
    """The certificate the command line presents to a cluster.

    ``--tls-dir`` if given, else the operator certificate that ``canistry up``
    made under the data directory (default ``./.canistry``); None with
    ``--insecure``. Raises :class:`TLSError` saying what to pass when there
    is none.
    """
    if insecure:
        return None
    if tls_dir is not None:
        return TLSConfig.from_dir(tls_dir)
    where = ClusterLayout(data_dir or DEFAULT_DATA_DIR).tls_dir("operator")
    try:
        return TLSConfig.from_dir(where)
    except TLSError:
        raise TLSError(
            f"no operator certificate in {where}; pass --data-dir of a cluster that "
            "`canistry up` runs, or --tls-dir DIR (ca.pem, cert.pem, key.pem)"
        ) from None
