"""The image on its own: ``canistry --version`` answers, and so does its HEALTHCHECK.

testcontainers starts the image. Ryuk cannot be pulled here and this host
looks like a container to testcontainers, hence the three variables set below
(only if the environment does not set them already).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.polling import eventually

for name, value in (
    ("TESTCONTAINERS_RYUK_DISABLED", "true"),
    ("TESTCONTAINERS_CONNECTION_MODE", "docker_host"),
    ("TC_HOST", "127.0.0.1"),
):
    os.environ.setdefault(name, value)

pytestmark = pytest.mark.timeout(300)

# Certificates made in the container, then the content service on the image's port 7000:
# what the image's HEALTHCHECK asks, with the certificate at /var/lib/canistry/tls.
SERVE_CONTENT = (
    "canistry init-certs --ca-dir /tmp/ca content=/var/lib/canistry/tls >/dev/null && "
    "exec canistry serve content --sample --data-dir /var/lib/canistry/data "
    "--host 0.0.0.0 --port 7000 --tls-dir /var/lib/canistry/tls"
)


def test_version_answers(image: str, engine: Any) -> None:
    out = engine.containers.run(image, ["--version"], remove=True)
    assert out.decode().strip() == "canistry 0.1.0"


async def test_health_check_answers(image: str) -> None:
    from testcontainers.core.container import DockerContainer

    container = (
        DockerContainer(image)
        .with_command([SERVE_CONTENT])
        .with_kwargs(entrypoint=["sh", "-c"], user="canistry")
    )
    with container:
        wrapped = container.get_wrapped_container()

        def health() -> str | None:
            wrapped.reload()
            status: str = wrapped.attrs["State"].get("Health", {}).get("Status", "")
            return status if status in ("healthy", "unhealthy") else None

        assert await eventually(health, 120, "the image's HEALTHCHECK") == "healthy"
        code, out = wrapped.exec_run(
            ["canistry", "probe", "127.0.0.1:7000", "--tls-dir", "/var/lib/canistry/tls"]
        )
        assert code == 0 and b"SERVING" in out, out
        # Without a cluster certificate the server does not answer at all.
        code, out = wrapped.exec_run(["canistry", "probe", "127.0.0.1:7000", "--insecure"])
        assert code == 1, out
