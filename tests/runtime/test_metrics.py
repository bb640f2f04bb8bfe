from pathlib import Path

import httpx

from runtime.metrics import ADDRESS_FILE, MetricsServer


async def test_an_unset_port_is_taken_below_the_ephemeral_range(tmp_path: Path) -> None:
    """The cluster hands its services ephemeral ports before they bind: never take one."""
    async with MetricsServer("127.0.0.1", 0, data_dir=tmp_path) as server:
        port = int(server.address.rsplit(":", 1)[1])
        assert 20_000 <= port < 30_000
        assert (tmp_path / ADDRESS_FILE).read_text().strip() == server.address
        async with httpx.AsyncClient() as http:
            page = await http.get(f"http://{server.address}/metrics")
        assert page.status_code == 200 and "canistry_rpc_requests" in page.text
    assert not (tmp_path / ADDRESS_FILE).exists()
