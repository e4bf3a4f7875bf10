"""Websocket PING/PONG control frames against the transport guard, on a real server on
loopback (signalling/transport.py).

python-engineio 4.15.1's aiohttp driver leaves aiohttp's ``autoping=True``, under which
aiohttp answers PING control frames inside ``receive()``, outside every per-connection
limit. The guard builds the websocket with ``autoping=False`` and spends a frame token on
each PING or PONG: a flood of them is closed like a flood of data frames, a few are
answered, and they do not keep a websocket without a socket.io connection open.

The client speaks engine.io v4 and socket.io v5 by hand over aiohttp's websocket client,
its own ``autoping`` off too, so that the test sees the server's PONG frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from telecircle.signalling import transport
from tests.conftest import RunningServer, start_server

pytestmark = pytest.mark.timeout(90)

SOCKET_PATH = "/socket.io/?EIO=4&transport=websocket"
# Small frame limits, so that a flood is quick to make; the message limits sit under
# them as the settings require.
FRAME_LIMITS: dict[str, Any] = {
    "socket_frames_per_second": 20.0,
    "socket_frame_burst": 20,
    "messages_per_second": 10.0,
    "message_burst": 10,
    "rate_limit_strikes": 10,
}
FLOOD_PINGS = 500
POLITE_PINGS = 5
# Longest wait for anything the server should do (a failure bound, not a measurement).
PATIENCE = 10.0

StartServer = Callable[..., Awaitable[RunningServer]]


class Wire:
    """A websocket to the server speaking engine.io/socket.io by hand. It answers
    engine.io pings, resolves acks, and records PONG control frames and other text."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.http = http
        self.ws = ws
        self.pongs: list[bytes] = []
        self.texts: list[str] = []
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.changed = asyncio.Event()
        self.closed = asyncio.Event()
        self._next_id = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, cookie: str = "") -> Wire:
        """Open the websocket and read engine.io's open packet."""
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                url.replace("http", "ws", 1) + SOCKET_PATH,
                headers={"Cookie": cookie} if cookie else {},
                autoping=False,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
            opening = await ws.receive(timeout=PATIENCE)
        except BaseException:
            await http.close()
            raise
        assert opening.type is aiohttp.WSMsgType.TEXT and opening.data.startswith("0"), opening
        return cls(http, ws)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.PONG:
                    self.pongs.append(message.data)
                elif message.type is aiohttp.WSMsgType.TEXT:
                    await self._take_text(message.data)
                elif message.type is not aiohttp.WSMsgType.PING:
                    break  # closed, closing, or failed
                self.changed.set()
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.closed.set()
            self.changed.set()
            for future in self.acks.values():
                if not future.done():
                    future.set_exception(ConnectionError("closed"))

    async def _take_text(self, text: str) -> None:
        if text == "2":  # engine.io's ping
            await self.ws.send_str("3")
            return
        digits = len(text[2:]) - len(text[2:].lstrip("0123456789"))
        if text.startswith("43") and digits:  # an ack on the default namespace
            future = self.acks.get(int(text[2 : 2 + digits]))
            data = json.loads(text[2 + digits :])
            if future is not None and not future.done():
                future.set_result(data[0] if data else None)
        else:
            self.texts.append(text)

    async def until(self, predicate: Callable[[], bool], timeout: float = PATIENCE) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def until_pongs(self, count: int) -> None:
        await self.until(lambda: len(self.pongs) >= count or self.closed.is_set())

    async def connect(self) -> str:
        """Connect socket.io's default namespace; returns the answer (``40{...}``)."""
        await self.ws.send_str("40")

        def answered() -> bool:
            return self.closed.is_set() or any(t.startswith(("40", "44")) for t in self.texts)

        await self.until(answered)
        return next((t for t in self.texts if t.startswith(("40", "44"))), "closed")

    async def call(self, event: str, data: Any) -> Any:
        ack_id, self._next_id = self._next_id, self._next_id + 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks[ack_id] = future
        await self.ws.send_str(f"42{ack_id}{json.dumps([event, data])}")
        return await asyncio.wait_for(future, PATIENCE)

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.ws.close()
        await self.http.close()


@pytest.fixture
async def serve(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[StartServer]:
    """Starts a server with the given settings overrides; stops it afterwards."""
    caplog.set_level(logging.INFO)
    started: list[RunningServer] = []

    async def start(**overrides: Any) -> RunningServer:
        server = await start_server(tmp_path, **overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        # Bounded: pytest-timeout stops timing a test once it has failed, and a server
        # left with a broken connection could otherwise hang its teardown for ever.
        async with asyncio.timeout(3 * PATIENCE):
            await server.runner.cleanup()


def reasons(caplog: pytest.LogCaptureFixture, message: str) -> list[str]:
    """The ``reason`` of each record logged as ``message``."""
    return [vars(r)["reason"] for r in caplog.records if r.getMessage() == message]


def assert_no_errors(caplog: pytest.LogCaptureFixture) -> None:
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


async def test_a_ping_flood_on_a_connected_socket_is_closed(
    serve: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """PING control frames far above socket_frames_per_second close the connection as a
    frame flood: answered until the frame allowance is spent, then cut."""
    server = await serve(**FRAME_LIMITS)
    room = await server.create_room()
    wire = await Wire.open(server.url, await server.clinician_cookie(room))
    sent = 0
    try:
        assert (await wire.connect()).startswith("40{")
        for i in range(FLOOD_PINGS):
            if wire.closed.is_set():
                break
            try:
                await wire.ws.ping(str(i).encode())
            except (ConnectionError, aiohttp.ClientError):
                break
            sent += 1
            if i % 50 == 0:
                await asyncio.sleep(0)
        await asyncio.wait_for(wire.closed.wait(), PATIENCE)
    finally:
        await wire.close()
    assert sent > 0
    assert len(wire.pongs) < FLOOD_PINGS, "the server stopped answering"
    assert wire.pongs == [str(i).encode() for i in range(len(wire.pongs))]
    assert reasons(caplog, "closing abusive connection") == [transport.FRAME_FLOOD]
    assert_no_errors(caplog)


async def test_a_few_pings_are_answered_and_the_connection_stays(
    serve: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """PINGs (and unsolicited PONGs) under the frame limit: each PING gets a PONG with
    its payload, and the socket.io connection goes on as before."""
    server = await serve(**FRAME_LIMITS)
    room = await server.create_room()
    wire = await Wire.open(server.url, await server.clinician_cookie(room))
    try:
        assert (await wire.connect()).startswith("40{")
        joined = await wire.call("join", {"room_code": room})
        assert joined["ok"], joined
        payloads = [f"still there? {i}".encode() for i in range(POLITE_PINGS)]
        for count, payload in enumerate(payloads, start=1):
            await wire.ws.ping(payload)
            await wire.until_pongs(count)
        await wire.ws.pong(b"unsolicited")
        await wire.ws.pong(b"")
        assert wire.pongs == payloads
        media = await wire.call("set_media", {"audio_on": False})
        assert media["ok"], media
        assert not wire.closed.is_set()
    finally:
        await wire.close()
    assert reasons(caplog, "closing abusive connection") == []
    assert reasons(caplog, "websocket closed") == []
    assert_no_errors(caplog)


async def test_pings_do_not_keep_a_websocket_without_socketio_open(
    serve: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A websocket that never connects socket.io and sends only PINGs (under the frame
    limit) is closed once socket_connect_timeout passes. Engine.io's own timeouts are
    set far beyond the test's bound, so only the guard can close it."""
    server = await serve(
        socket_connect_timeout=1.5, socket_ping_interval=60.0, socket_ping_timeout=5.0
    )
    wire = await Wire.open(server.url)
    try:
        # At most 200 PINGs, one every 0.1 s: 20 s, well before engine.io would act.
        for i in range(200):
            try:
                await wire.ws.ping(str(i).encode())
            except (ConnectionError, aiohttp.ClientError):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wire.closed.wait(), 0.1)
            if wire.closed.is_set():
                break
        await asyncio.wait_for(wire.closed.wait(), PATIENCE)
    finally:
        await wire.close()
    assert wire.pongs, "the pings were answered while it was open"
    assert wire.pongs == [str(i).encode() for i in range(len(wire.pongs))]
    assert reasons(caplog, "websocket closed") == [transport.NO_CONNECTION]
    assert_no_errors(caplog)
