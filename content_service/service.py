"""The content service process: store, single writer and gRPC server.

Also the offline helpers the CLI uses: :func:`import_pack_text` and
:func:`import_pack_file` write a pack straight into a service's store, and
:func:`load_sample_pack` returns the pack that ships with the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from content_service.config import ContentConfig
from content_service.core import Content
from content_service.grpc_edge import ACCESS, ContentServicer
from content_service.pack import parse_pack, read_pack
from content_service.store import ContentStore, ImportSummary, apply_pack, store_config
from protos import content_pb2, content_pb2_grpc
from runtime import logs
from runtime.lifecycle import Lifecycle
from runtime.metrics import Figure
from runtime.rpc import Server, ServiceBinding
from runtime.store import Store

__all__ = [
    "SERVICE_NAME",
    "ContentService",
    "import_pack_file",
    "import_pack_text",
    "load_sample_pack",
]

log = logs.get_logger(__name__)

SERVICE_NAME = content_pb2.DESCRIPTOR.services_by_name["Content"].full_name


class ContentService(Lifecycle):
    """One content service. ``async with ContentService(cfg) as svc:`` serves at ``svc.address``.

    ``stop()`` is idempotent: it drains the server, then finishes queued
    writes, then closes the store.
    """

    def __init__(self, config: ContentConfig) -> None:
        self.config = config
        self.store = ContentStore(
            config.data_dir, durable=config.durable, cache_size=config.cache_units
        )
        self.content = Content(self.store)
        servicer = ContentServicer(self.content)
        self._server = Server(
            "content",
            config.server,
            [
                ServiceBinding(
                    SERVICE_NAME,
                    lambda s: content_pb2_grpc.add_ContentServicer_to_server(servicer, s),
                    access=ACCESS,
                )
            ],
        )
        self._started = False
        self._stopped = False

    @property
    def address(self) -> str:
        return self._server.address

    def figures(self) -> Iterator[Figure]:
        """What ``/metrics`` reports besides RPCs (read at each scrape)."""
        count, subjects = self.store.stats()
        yield "content_units", "Units in the store", count
        yield "content_subjects", "Subjects in the store", len(subjects)

    async def start(self) -> None:
        self._started = True
        try:
            await self.store.start()
            await self._server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        try:
            await self._server.stop()
        finally:
            await self.store.stop()


def import_pack_text(data_dir: Path, text: str) -> ImportSummary:
    """Import a pack given as JSON text into the content store in ``data_dir``.

    For offline use (``canistry content import``, ``canistry serve content
    --pack``) while no content service runs in this process: LMDB forbids
    opening one environment twice in a process. A service in another process
    is fine and serves the new content at once. One durable transaction;
    raises :class:`BadContentPack` and changes nothing if the pack is bad.
    """
    units = parse_pack(text)
    store = Store(store_config(data_dir))
    try:
        with store.write() as txn:
            summary = apply_pack(store, txn, units)
    finally:
        store.close()
    log.info("content_imported", data_dir=str(data_dir), **asdict(summary))
    return summary


def import_pack_file(data_dir: Path, pack_path: Path) -> ImportSummary:
    """:func:`import_pack_text` for the UTF-8 (BOM allowed) file at ``pack_path``.

    Raises :class:`BadContentPack` for text that is not UTF-8, and
    :class:`OSError` if the file cannot be read.
    """
    return import_pack_text(data_dir, read_pack(pack_path))


def load_sample_pack() -> str:
    """The text of the sample pack that ships with the package."""
    return (
        resources.files("content_service")
        .joinpath("packs", "sample.json")
        .read_text(encoding="utf-8-sig")
    )
