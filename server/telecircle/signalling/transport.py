"""The websocket guard: limits on each socket.io websocket, frame by frame, before
engine.io decodes anything.

What python-engineio 4.15 (aiohttp driver) leaves open, and what is done about it:

- Engine.io hands every frame to the application, at any rate; pongs, acks, packets for
  other namespaces and refused packets never reach the per-connection message limit.
  Here every frame spends a token (``socket_frames_per_second``/``socket_frame_burst``,
  well above the message rate) and a connection out of tokens is closed at once.
- Engine.io's driver builds its ``WebSocketResponse`` with aiohttp's ``autoping=True``:
  aiohttp answers websocket PING control frames (and drops unsolicited PONGs) inside
  ``receive()``, so they never reach a per-connection limit and each PING costs a PONG
  write. Here the websocket is built with ``autoping=False``: a PING or PONG spends a
  token from the same frame bucket (a PING is then answered, a PONG dropped), and does
  not keep a websocket without a socket.io connection open past its deadline.
- A websocket that answers pings but never connects socket.io (or stays after its
  connection was refused or ended) is kept for ever. Here it may send nothing but
  pongs and one connect to the default namespace, and is closed once
  ``socket_connect_timeout`` passes without a socket.io connection.
- A text frame that is not an engine.io packet a websocket client sends (empty, not a
  packet type, a message that is not a socket.io packet, a pong carrying data) is
  decoded by engine.io outside any error handling: it ends the request with a logged
  traceback, and ``"4[[[[..."`` recurses in ``json.loads``. Here such a frame closes
  the connection before engine.io sees it.

A websocket the guard closes is cut (TCP abort) if the client does not complete the
close handshake within the ping timeout, at once for a flood: aiohttp 3.14 would go on
reading, and dropping, whatever the client sends for up to 10 s.

What engine.io, socket.io and aiohttp already bound, and is left to them (tested in
tests/signalling/test_abuse.py): frames above ``max_http_buffer_size`` (aiohttp's
``max_msg_size``, checked on the frame header and after decompression), a frame
trickled a byte at a time or a silent socket (engine.io waits ``ping_interval +
ping_timeout`` for each frame), cross-site websockets (same origin by default).

The seam: engine.io builds the websocket through its driver table
(``AsyncServer._async["websocket"]``, called with the socket's handler and the server,
then awaited with the request environ, which holds the aiohttp request).
:func:`install` gives one server its own table whose websocket is
:class:`GuardedWebSocket`; tests/signalling/test_abuse.py fails loudly if engine.io
stops using it. The guard is left in the environ, where the signalling server finds it
when the socket.io connection arrives.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import WSMsgType, web
from engineio.async_drivers import aiohttp as engineio_aiohttp

from telecircle.services.clock import Clock
from telecircle.signalling.ratelimit import TokenBucket

log = logging.getLogger(__name__)

ENVIRON_KEY: Final = "telecircle.transport_guard"

# Why a websocket was closed (logged, and passed to the signalling server).
FRAME_FLOOD = "frame_flood"
NO_CONNECTION = "no_socketio_connection"
NOT_A_PACKET = "not_an_engineio_packet"

# Engine.io packets a websocket client sends: close (1), ping (2), pong (3), upgrade
# (5) and noop (6) bare, or a message (4) carrying a socket.io packet (its type digit).
_CLIENT_PACKET = re.compile(r"[12356]|4\d.*", re.DOTALL)
_PONG = "3"
# A socket.io connect to the default namespace, with or without an auth object.
_CONNECT = re.compile(r"40(\{.*)?", re.DOTALL)


@dataclass(frozen=True)
class TransportLimits:
    frames_per_second: float
    frame_burst: int
    connect_timeout: float


class _Stage(enum.Enum):
    OPEN = "open"  # before the socket.io connect
    CONNECTING = "connecting"  # the connect is being decided
    CONNECTED = "connected"
    ENDED = "ended"  # refused, or ended by either side


class TransportGuard:
    """One websocket's limits; the signalling server tells it how the socket.io
    connection on it goes (:meth:`connected`, :meth:`ended`)."""

    def __init__(self, limits: TransportLimits, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._bucket = TokenBucket(limits.frames_per_second, limits.frame_burst, clock)
        self._stage = _Stage.OPEN
        self._deadline: float | None = clock.now() + limits.connect_timeout
        self._on_close: Callable[[str], None] | None = None
        self._hang_up: Callable[[], None] | None = None

    def on_hang_up(self, hang_up: Callable[[], None]) -> None:
        """How :meth:`hang_up` ends the websocket (set by the websocket itself)."""
        self._hang_up = hang_up

    def hang_up(self) -> None:
        """Close the websocket's TCP connection once what is written has gone out: the
        server is going away and has said what it had to (a client that does not close
        its end would otherwise hold the shutdown for its whole timeout)."""
        if self._hang_up is not None:
            self._hang_up()

    def connected(self, on_close: Callable[[str], None]) -> None:
        """The socket.io connection was accepted; ``on_close(reason)`` is called if the
        guard closes the websocket under it."""
        self._stage = _Stage.CONNECTED
        self._deadline = None
        self._on_close = on_close

    def ended(self) -> None:
        """The socket.io connection was refused or has ended: only pongs, until the
        client closes the websocket or the connect timeout does."""
        if self._stage is not _Stage.ENDED:
            self._stage = _Stage.ENDED
            self._deadline = self._clock.now() + self._limits.connect_timeout
            self._on_close = None

    def time_left(self) -> float | None:
        """Seconds until the websocket must have a socket.io connection (None: it has)."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock.now())

    def screen(self, frame: str | bytes) -> str | None:
        """None to pass ``frame`` on to engine.io, or why the websocket must close."""
        if not self._bucket.take():
            return FRAME_FLOOD
        if self._stage is _Stage.CONNECTED:
            # Binary frames go on: the socket.io packet screen refuses each, counted.
            if isinstance(frame, str) and not _CLIENT_PACKET.fullmatch(frame):
                return NOT_A_PACKET
            return None
        if frame == _PONG:
            return None
        if self._stage is _Stage.OPEN and isinstance(frame, str) and _CONNECT.fullmatch(frame):
            self._stage = _Stage.CONNECTING
            return None
        return NO_CONNECTION

    def spend_control_frame(self) -> str | None:
        """A websocket PING or PONG control frame came: None if it may be answered (a
        PING) or dropped (a PONG), or why the websocket must close. It spends a token
        like any frame, whatever the stage: the connect timeout bounds a websocket
        without a socket.io connection."""
        return None if self._bucket.take() else FRAME_FLOOD

    def close(self, reason: str) -> None:
        """The websocket is being closed for ``reason``: say so."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(reason)  # the signalling server logs it, with the connection's ids
        else:
            log.info("websocket closed", extra={"reason": reason, "stage": self._stage.value})


class GuardedWebSocket(engineio_aiohttp.WebSocket):  # type: ignore[misc]
    """Engine.io's aiohttp websocket, each frame (data or PING/PONG control frame)
    screened by a :class:`TransportGuard`."""

    def __init__(self, handler: Any, server: Any, *, limits: TransportLimits, clock: Clock):
        super().__init__(handler, server)
        self.guard = TransportGuard(limits, clock)
        self._request: web.BaseRequest | None = None

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        """Upstream's ``__call__`` (prepare the websocket, run engine.io's handler on it,
        return it to aiohttp), with the guard left in the environ and the websocket built
        with ``autoping=False``: python-engineio 4.15.1's driver keeps aiohttp 3.14's
        default ``autoping=True``, under which ``receive()`` answers every PING control
        frame itself, unseen by :meth:`wait` and so by any limit."""
        environ[ENVIRON_KEY] = self.guard
        request = environ.get("aiohttp.request")
        if not isinstance(request, web.BaseRequest):
            raise RuntimeError("engine.io's environ holds no aiohttp request")
        self._request = request
        self.guard.on_hang_up(self._hang_up)
        sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, autoping=False)
        self._sock = sock  # upstream's send() and close() use it
        await sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return sock

    async def wait(self) -> str | bytes:
        """The next data frame that passes the guard; PING control frames are answered
        and PONGs dropped on the way, each spending a token. Raises OSError (engine.io's
        signal that the websocket is gone: it closes the connection) when the websocket
        is closed, for a frame that does not pass, or when the connect timeout passes."""
        guard = self.guard
        reason: str | None
        try:
            # One deadline for the whole wait: control frames do not push it back.
            async with asyncio.timeout(guard.time_left()):
                frame, reason = await self._next_frame()
        except TimeoutError:
            frame, reason = "", NO_CONNECTION
        else:
            if reason is None and guard.time_left() == 0.0:
                reason = NO_CONNECTION  # pongs alone do not keep it open past the deadline
        if reason is None:
            return frame
        guard.close(reason)
        if reason == FRAME_FLOOD:
            self._abort()
        else:
            # Engine.io closes it with a handshake (what is queued, an ack that says
            # why, goes out first); a client has a ping timeout to answer.
            asyncio.get_running_loop().call_later(self.server.ping_timeout, self._abort)
        raise OSError(reason)

    async def _next_frame(self) -> tuple[str | bytes, str | None]:
        """The next data frame and the guard's verdict on it (None: pass it on), or
        ``("", reason)`` for a control frame that closes the websocket. Raises OSError,
        as upstream's ``wait()`` does, for a message carrying neither text nor bytes
        (the websocket closed, is closing, or failed)."""
        guard = self.guard
        sock: web.WebSocketResponse = self._sock
        while True:
            message = await sock.receive()
            if message.type is WSMsgType.PING or message.type is WSMsgType.PONG:
                reason = guard.spend_control_frame()
                if reason is None and guard.time_left() == 0.0:
                    reason = NO_CONNECTION  # nor do pings keep it open past the deadline
                if reason is not None:
                    return "", reason
                if message.type is WSMsgType.PING:
                    await sock.pong(message.data)
                continue  # an unsolicited PONG is dropped
            data = message.data
            if not isinstance(data, (bytes, str)):
                raise OSError()
            return data, guard.screen(data)

    def _hang_up(self) -> None:
        """Close the TCP connection after what is queued for it (nothing if closed)."""
        transport = self._request.transport if self._request is not None else None
        if transport is not None:
            transport.close()

    def _abort(self) -> None:
        """Cut the TCP connection (nothing if it is closed). aiohttp 3.14's close
        handshake (``WebSocketResponse.close()``) goes on reading, and dropping, whatever
        the client sends until its close frame comes or 10 s pass, without yielding
        while messages are queued: tens of milliseconds of a frame flood at a time."""
        transport = self._request.transport if self._request is not None else None
        if transport is not None:
            transport.abort()


def install(engine: Any, limits: TransportLimits, clock: Clock) -> None:
    """Make the engine.io server ``engine`` build guarded websockets (this server only:
    the driver table is copied, never changed). Raises RuntimeError if engine.io no
    longer builds websockets through that table."""
    table = getattr(engine, "_async", None)
    if not isinstance(table, dict) or table.get("websocket") is not engineio_aiohttp.WebSocket:
        raise RuntimeError(
            "python-engineio no longer builds websockets through AsyncServer._async"
            "['websocket']: re-read telecircle/signalling/transport.py against it"
        )
    websocket = functools.partial(GuardedWebSocket, limits=limits, clock=clock)
    engine._async = {**table, "websocket": websocket}


def guard_of(environ: dict[str, Any] | None) -> TransportGuard | None:
    """The guard of the websocket a socket.io connection came in on."""
    guard = None if environ is None else environ.get(ENVIRON_KEY)
    return guard if isinstance(guard, TransportGuard) else None
