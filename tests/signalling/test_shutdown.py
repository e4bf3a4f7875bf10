"""A graceful stop ends every client's connection itself, whatever the client does."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SIGNALLING, start_server


@pytest.mark.parametrize("restarting", [False, True], ids=["stopping", "restarting"])
async def test_a_graceful_stop_closes_connections_the_clients_keep_open(
    tmp_path: Path, restarting: bool
) -> None:
    """Engine.io's goodbye (its CLOSE packet, or the transport dropped for a restart)
    leaves the TCP connection for the client to close, and aiohttp's shutdown waits for
    each one up to its shutdown timeout (10 s by default) before cancelling it. The
    server closes them itself once its goodbye is out. The client here is a bare
    websocket that connects to socket.io and then reads nothing and closes nothing."""
    server = await start_server(tmp_path, resume_after_restart=restarting)
    http = aiohttp.ClientSession()
    try:
        code = await server.create_room()
        cookie = await server.clinician_cookie(code, "A")
        url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        ws = await http.ws_connect(url, headers={"Cookie": cookie}, autoclose=False)
        assert (await ws.receive_str()).startswith("0{")  # engine.io open
        await ws.send_str("40")  # socket.io connect
        assert (await ws.receive_str()).startswith("40{")
        web_server = server.runner.server
        assert web_server is not None
        [connection] = web_server.connections

        await server.app[SIGNALLING].close(restarting=restarting)
        transport = connection.transport
        assert transport is None or transport.is_closing()
    finally:
        await http.close()
        await server.runner.cleanup()
