"""Signalling attacks on a Telecircle server, run in their own process.

An attacker does not share the server's event loop: ``python -m tests.signalling.rogue``
reads a :class:`Plan` as JSON on stdin, runs that one attack against the server on
loopback and prints one JSON object: what it sent, and what the server did (acks, close
codes, how long each connection lasted). Every loop is bounded by the plan's duration
and counts, and every wait by a timeout. Nothing here asserts; the test does.

The clients are real: python-socketio's own client where the attack is one a socket.io
client can make, aiohttp websockets speaking engine.io/socket.io by hand where it is not
(binary attachments, broken frames), raw TCP where not even that (a frame or a request
trickled a byte at a time).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import socketio

SOCKET_PATH = "/socket.io/?EIO=4&transport=websocket"
MB = 1024 * 1024
# Websocket close codes (RFC 6455).
MESSAGE_TOO_BIG = 1009


@dataclass
class Plan:
    attack: str
    url: str
    cookie: str
    duration: float
    room_code: str = ""
    rate: float = 1000.0  # events per second (event_flood)
    app_limit: int = 0  # the application's message limit (bytes)
    engine_limit: int = 0  # engine.io's frame limit (bytes)
    connections: int = 10  # of each kind (half_open, slowloris)
    wait: float = 10.0  # longest wait for the server to act on one connection

    def to_json(self) -> str:
        return json.dumps(asdict(self))


@dataclass
class Report:
    attack: str
    start: float = 0.0  # time.monotonic(), as the test's clock
    end: float = 0.0
    sent_events: int = 0
    sent_frames: int = 0
    sent_bytes: int = 0
    connections: int = 0
    acks: dict[str, int] = field(default_factory=dict)  # "ok" or the error code
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # one per connection

    def ack(self, result: Any) -> None:
        code = "ok" if result.get("ok") else result.get("error", {}).get("code", "?")
        self.acks[code] = self.acks.get(code, 0) + 1


# ---- engine.io / socket.io by hand ---------------------------------------------------


class RawSocket:
    """A websocket to the server speaking engine.io v4 and socket.io v5 by hand."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse):
        self.http = http
        self.ws = ws
        self.opened = time.monotonic()
        self.closed_at: float | None = None
        self.close_code: int | None = None
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.texts: list[str] = []
        self.answer_pings = True
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0

    @classmethod
    async def open(cls, url: str, cookie: str = "", compress: int = 0) -> RawSocket:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                url.replace("http", "ws", 1) + SOCKET_PATH,
                headers={"Cookie": cookie} if cookie else {},
                compress=compress,
                max_msg_size=0,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
            opening = await asyncio.wait_for(ws.receive(), 10)
        except BaseException:
            await http.close()
            raise
        assert isinstance(opening.data, str) and opening.data.startswith("0"), opening
        socket = cls(http, ws)
        socket._reader = asyncio.create_task(socket._read())
        return socket

    async def connect(self, namespace: str = "") -> str:
        """Send a socket.io connect; returns the server's answer (``40...`` or ``44...``)."""
        await self.send_text(f"40{namespace}," if namespace else "40")
        if namespace:
            return await self.next_text(
                lambda t: t.startswith((f"40{namespace},", f"44{namespace},"))
            )
        return await self.next_text(lambda t: t.startswith(("40", "44")) and t[2:3] != "/")

    async def next_text(self, match: Callable[[str], bool], timeout: float = 10) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for i, text in enumerate(self.texts):
                    if match(text):
                        del self.texts[i]
                        return text
                if self.closed_at is not None:
                    raise ConnectionError("closed")
                await asyncio.sleep(0.01)

    async def send_text(self, text: str) -> None:
        await self.ws.send_str(text)

    async def emit(self, body: str, namespace: str = "", with_ack: bool = True) -> int | None:
        """Send ``42<ns,><id><body>``; returns the ack id (its future is in ``acks``)."""
        ack_id = None
        if with_ack:
            ack_id = self._next_id
            self._next_id += 1
            self.acks[ack_id] = asyncio.get_running_loop().create_future()
        ns = f"{namespace}," if namespace else ""
        await self.send_text(f"42{ns}{'' if ack_id is None else ack_id}{body}")
        return ack_id

    async def call(self, body: str, namespace: str = "", timeout: float = 5) -> Any:
        ack_id = await self.emit(body, namespace)
        assert ack_id is not None
        return await asyncio.wait_for(self.acks[ack_id], timeout)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    if message.type is aiohttp.WSMsgType.CLOSE:
                        self.close_code = int(message.data)
                    break
                text = message.data
                if text == "2":
                    if self.answer_pings:
                        await self.ws.send_str("3")
                elif text.startswith("43") and text[2:3].isdigit():  # an ack on "/"
                    digits = len(text) - len(text[2:].lstrip("0123456789"))
                    ack_id, data = int(text[2:digits]), json.loads(text[digits:])
                    future = self.acks.get(ack_id)
                    if future is not None and not future.done():
                        future.set_result(data[0] if data else None)
                elif text.startswith("4"):
                    self.texts.append(text)
        except (aiohttp.ClientError, ConnectionError, OSError):
            pass
        finally:
            self.closed_at = time.monotonic()
            if self.close_code is None and self.ws.close_code is not None:
                self.close_code = self.ws.close_code
            for future in self.acks.values():
                if not future.done():
                    future.set_exception(ConnectionError("closed"))

    async def wait_closed(self, timeout: float) -> float | None:
        """Seconds the socket lasted, once the server has closed it (None: it has not)."""
        if self._reader is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._reader), timeout)
            except TimeoutError:
                return None
        return None if self.closed_at is None else self.closed_at - self.opened

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.ws.close()
        await self.http.close()


async def retrieve(futures: list[asyncio.Future[Any]], timeout: float) -> list[Any]:
    """Each future's result (or exception), waiting at most ``timeout`` in all."""
    if futures:
        await asyncio.wait(futures, timeout=timeout)
    results = []
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            results.append(future.result())
        else:
            if not future.done():
                future.cancel()
            results.append(None)
    return results


def event(name: str, payload: Any = None) -> str:
    return json.dumps([name] if payload is None else [name, payload], separators=(",", ":"))


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


# ---- attacks ---------------------------------------------------------------------------


async def event_flood(plan: Plan, report: Report) -> None:
    """``plan.rate`` set_media events a second from a real socket.io client that has a
    seat; disconnected, it connects again, joins again and goes on, until the duration
    is up. Each connection's outcome: events sent, acks by code, whether and when the
    server disconnected it."""
    deadline = time.monotonic() + plan.duration
    while time.monotonic() < deadline:
        outcome = await _flood_once(plan, deadline)
        report.connections += 1
        if "refused" in outcome:
            report.outcomes.append(outcome)
            await asyncio.sleep(0.25)
            continue
        report.sent_events += outcome["sent"]
        for code, count in outcome["acks"].items():
            report.acks[code] = report.acks.get(code, 0) + count
        report.outcomes.append(outcome)


async def _flood_once(plan: Plan, deadline: float) -> dict[str, Any]:
    client = socketio.AsyncClient(reconnection=False)
    dropped = asyncio.Event()
    acks: dict[str, int] = {}

    def disconnected(*_: Any) -> None:
        dropped.set()

    def acked(result: Any) -> None:
        code = "ok" if result.get("ok") else result["error"]["code"]
        acks[code] = acks.get(code, 0) + 1

    refusal: dict[str, Any] = {}

    def refused(data: Any = None) -> None:
        refusal.update(data if isinstance(data, dict) else {"message": data})

    client.on("disconnect", disconnected)
    client.on("connect_error", refused)
    try:
        await client.connect(
            plan.url, transports=["websocket"], headers={"Cookie": plan.cookie}, wait_timeout=10
        )
    except socketio.exceptions.ConnectionError:
        await client.disconnect()
        details = refusal.get("data")  # ConnectionRefusedError's {"code": ...}
        return {"refused": details.get("code", "?") if isinstance(details, dict) else "?"}
    try:
        joined = await client.call("join", {"room_code": plan.room_code}, timeout=10)
        sent, started = 0, time.monotonic()
        while not dropped.is_set() and time.monotonic() < deadline:
            due = int((time.monotonic() - started) * plan.rate) + 1
            while sent < due and client.connected:
                await client.emit("set_media", {"audio_on": sent % 2 == 0}, callback=acked)
                sent += 1
            await asyncio.sleep(0.002)
        seconds = time.monotonic() - started
        await asyncio.sleep(0.1)  # the acks still on their way
        by_server = dropped.is_set()
    finally:
        if client.connected:
            await client.disconnect()
    return {
        "joined": bool(joined.get("ok")),
        "sent": sent,
        "acks": acks,
        "disconnected_by_server": by_server,
        "seconds": round(seconds, 3),
    }


async def oversized(plan: Plan, report: Report) -> None:
    """Messages just above the application's limit (each gets an error ack), above
    engine.io's frame limit, 10 MB, and 10 MB compressed to a few kilobytes by
    permessage-deflate (each closes the websocket), over and over."""
    sizes = [
        ("above_app_limit", plan.app_limit + 10, 0),
        ("above_engine_limit", plan.engine_limit + 1024, 0),
        ("10MB", 10 * MB, 0),
        ("10MB_deflated", 10 * MB, 15),
    ]
    deadline = time.monotonic() + plan.duration
    while time.monotonic() < deadline:
        for name, size, compress in sizes:
            socket = await RawSocket.open(plan.url, plan.cookie, compress=compress)
            report.connections += 1
            outcome: dict[str, Any] = {"kind": name, "bytes": size}
            try:
                assert (await socket.connect()).startswith("40{")
                body = event("join", {"room_code": "x" * size})
                report.sent_bytes += len(body)
                try:
                    outcome["ack"] = await socket.call(body, timeout=plan.wait)
                except (ConnectionError, TimeoutError) as exc:
                    outcome["ack"] = type(exc).__name__
                if name == "above_app_limit":
                    outcome["still_connected"] = socket.closed_at is None
                else:
                    outcome["lasted"] = await socket.wait_closed(plan.wait)
                    outcome["close_code"] = socket.close_code
            finally:
                await socket.close()
            report.outcomes.append(outcome)


async def deep_nesting(plan: Plan, report: Report) -> None:
    """Events nested 100,000 levels deep (each gets an error ack; the connection is
    dropped as malformed), and an engine.io message that is 100,000 levels of JSON and
    no socket.io packet (the websocket is closed), over and over."""
    deadline = time.monotonic() + plan.duration
    while time.monotonic() < deadline:
        socket = await RawSocket.open(plan.url, plan.cookie)
        report.connections += 1
        outcome: dict[str, Any] = {"kind": "socketio", "acks": []}
        try:
            assert (await socket.connect()).startswith("40{")
            for _ in range(20):
                body = '["join",{"room_code":' + nested(100_000) + "}]"
                report.sent_events += 1
                try:
                    ack = await socket.call(body, timeout=plan.wait)
                except (ConnectionError, TimeoutError) as exc:
                    outcome["acks"].append(type(exc).__name__)
                    break
                report.ack(ack)
                outcome["acks"].append(ack["error"]["code"] if not ack["ok"] else "ok")
            outcome["lasted"] = await socket.wait_closed(plan.wait)
        finally:
            await socket.close()
        report.outcomes.append(outcome)

        socket = await RawSocket.open(plan.url, plan.cookie)
        report.connections += 1
        try:
            assert (await socket.connect()).startswith("40{")
            await socket.send_text("4" + nested(100_000))
            report.sent_frames += 1
            lasted = await socket.wait_closed(plan.wait)
            report.outcomes.append({"kind": "engineio", "lasted": lasted})
        finally:
            await socket.close()


async def binary(plan: Plan, report: Report) -> None:
    """A binary event announcing 9,999,999,999 attachments, then 200 KiB binary frames
    as fast as the socket takes them (at most 100 per connection): python-socketio
    would keep every one. Over and over."""
    chunk = os.urandom(200 * 1024)
    deadline = time.monotonic() + plan.duration
    while time.monotonic() < deadline:
        socket = await RawSocket.open(plan.url, plan.cookie)
        report.connections += 1
        outcome: dict[str, Any] = {"frames": 0}
        try:
            assert (await socket.connect()).startswith("40{")
            header = event("set_media", {"_placeholder": True, "num": 0})
            ack_id = socket._next_id
            socket._next_id += 1
            socket.acks[ack_id] = asyncio.get_running_loop().create_future()
            await socket.send_text(f"459999999999-{ack_id}{header}")
            for _ in range(100):
                if socket.closed_at is not None:
                    break
                try:
                    await socket.ws.send_bytes(chunk)
                except (ConnectionError, aiohttp.ClientError):
                    break
                outcome["frames"] += 1
                report.sent_frames += 1
                report.sent_bytes += len(chunk)
                await asyncio.sleep(0)
            (outcome["header_ack"],) = await retrieve([socket.acks[ack_id]], plan.wait)
            outcome["lasted"] = await socket.wait_closed(plan.wait)
        finally:
            await socket.close()
        report.outcomes.append(outcome)


async def frame_flood(plan: Plan, report: Report) -> None:
    """Frames that never reach the application's message limit — acks for calls the
    server never made — as fast as the socket takes them (at most 10,000 per
    connection), over and over."""
    deadline = time.monotonic() + plan.duration
    while time.monotonic() < deadline:
        socket = await RawSocket.open(plan.url, plan.cookie)
        report.connections += 1
        outcome: dict[str, Any] = {"frames": 0}
        try:
            assert (await socket.connect()).startswith("40{")
            for i in range(10_000):
                if socket.closed_at is not None:
                    break
                try:
                    await socket.send_text(f"43{i}[]")
                except (ConnectionError, aiohttp.ClientError):
                    break
                outcome["frames"] += 1
                report.sent_frames += 1
                if i % 50 == 0:
                    await asyncio.sleep(0)
            outcome["lasted"] = await socket.wait_closed(plan.wait)
        finally:
            await socket.close()
        report.outcomes.append(outcome)


async def namespaces(plan: Plan, report: Report) -> None:
    """Connects to a namespace the server does not have, before and after connecting
    the default one, and events sent there, over and over."""
    deadline = time.monotonic() + plan.duration
    while time.monotonic() < deadline:
        socket = await RawSocket.open(plan.url, plan.cookie)
        report.connections += 1
        try:
            await socket.send_text("40/admin,")
            report.outcomes.append(
                {"kind": "before_default", "lasted": await socket.wait_closed(plan.wait)}
            )
        finally:
            await socket.close()

        socket = await RawSocket.open(plan.url, plan.cookie)
        report.connections += 1
        outcome: dict[str, Any] = {"kind": "after_default", "acks": []}
        try:
            assert (await socket.connect()).startswith("40{")
            outcome["connect"] = await socket.connect("/admin")
            for i in range(20):
                try:
                    ack = await socket.call(event("set_media", {"audio_on": i % 2 == 0}), "/admin")
                except (ConnectionError, TimeoutError) as exc:
                    outcome["acks"].append(type(exc).__name__)
                    break
                report.ack(ack)
                outcome["acks"].append(ack["error"]["code"] if not ack["ok"] else "ok")
            outcome["lasted"] = await socket.wait_closed(plan.wait)
        finally:
            await socket.close()
        report.outcomes.append(outcome)


async def half_open(plan: Plan, report: Report) -> None:
    """``plan.connections`` of each, all at once, each left as it is until the server
    closes it (or ``plan.wait`` passes): a TCP connection that never sends a request; a
    websocket that never speaks engine.io (not even a pong); one that answers pings but
    never connects socket.io; one whose socket.io connect was refused (no cookie) and
    goes on answering pings."""

    async def tcp_silent() -> dict[str, Any]:
        host, port = plan.url.removeprefix("http://").split(":")
        opened = time.monotonic()
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            async with asyncio.timeout(plan.wait):
                await reader.read()  # b"" once the server closes it
            return {"kind": "tcp_silent", "lasted": time.monotonic() - opened}
        except TimeoutError:
            return {"kind": "tcp_silent", "lasted": None}
        finally:
            writer.close()

    async def websocket(kind: str) -> dict[str, Any]:
        socket = await RawSocket.open(plan.url, "" if kind == "refused" else plan.cookie)
        socket.answer_pings = kind != "ws_silent"
        try:
            if kind == "refused":
                answer = await socket.connect()
                assert answer.startswith("44"), answer
            return {"kind": kind, "lasted": await socket.wait_closed(plan.wait)}
        finally:
            await socket.close()

    kinds: list[Callable[[], Awaitable[dict[str, Any]]]] = [tcp_silent]
    kinds += [lambda k=k: websocket(k) for k in ("ws_silent", "eio_no_namespace", "refused")]  # type: ignore[misc]
    jobs = [kind() for kind in kinds for _ in range(plan.connections)]
    report.connections = len(jobs)
    report.outcomes.extend(await asyncio.gather(*jobs))


async def slowloris(plan: Plan, report: Report) -> None:
    """``plan.connections`` of each, all at once, sending one byte every 100 ms: an HTTP
    request head; a form's body (its head complete); a websocket frame on a connected
    socket.io connection (its frame header complete). Each until the server closes it
    or answers (or ``plan.wait`` passes)."""
    host, port = plan.url.removeprefix("http://").split(":")

    async def trickle(kind: str, head: bytes, body: bytes) -> dict[str, Any]:
        reader, writer = await asyncio.open_connection(host, int(port))
        opened = time.monotonic()
        outcome: dict[str, Any] = {"kind": kind, "trickled": 0}
        try:
            writer.write(head)
            await writer.drain()
            if kind == "ws_frame":
                await _websocket_established(reader, writer)
                opened = time.monotonic()
            answer = asyncio.create_task(
                _close_frame(reader) if kind == "ws_frame" else reader.read(65536)
            )
            async with asyncio.timeout(plan.wait):
                for byte in body:
                    if answer.done():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    outcome["trickled"] += 1
                    await asyncio.wait([answer], timeout=0.1)
                data = await answer
            outcome["lasted"] = time.monotonic() - opened
            outcome["answer"] = data[:12].decode("latin-1") if kind != "ws_frame" else ""
        except TimeoutError:
            outcome["lasted"] = None
        except (ConnectionError, OSError):
            outcome["lasted"] = time.monotonic() - opened
        finally:
            writer.close()
        return outcome

    cookie = plan.cookie.encode()
    request_head = (
        b"GET /healthz HTTP/1.1\r\nHost: " + host.encode() + b"\r\nUser-Agent: slow\r\n"
        b"Accept: */*\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    )
    form = b"username=someone&password=" + b"p" * 400
    form_head = (
        b"POST /login HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n"
    )
    key = base64.b64encode(os.urandom(16))
    upgrade = (
        b"GET " + SOCKET_PATH.encode() + b" HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nCookie: " + cookie + b"\r\n\r\n"
    )
    # A masked text frame announcing 600 bytes, then its payload a byte at a time.
    payload = ("42" + event("set_media", {"audio_on": True, "pad": "x" * 560})).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    frame_head = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + mask

    jobs = []
    for _ in range(plan.connections):
        jobs.append(trickle("http_head", b"", request_head))
        jobs.append(trickle("http_body", form_head, form))
        jobs.append(trickle("ws_frame", upgrade, frame_head + masked))
    report.connections = len(jobs)
    report.outcomes.extend(await asyncio.gather(*jobs))


async def _websocket_established(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Read the 101 answer and engine.io's open packet; connect socket.io (masked "40")
    and read its answer."""
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:40]
        await _read_frame(reader)  # engine.io open
        mask = os.urandom(4)
        writer.write(bytes([0x81, 0x82]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"40")))
        await writer.drain()
        answer = await _read_frame(reader)
        assert answer.startswith(b"40{"), answer


async def _close_frame(reader: asyncio.StreamReader) -> bytes:
    """Read the server's frames (pings go unanswered) until its close frame, or EOF."""
    try:
        while True:
            opcode, payload = await _read_opcode_frame(reader)
            if opcode == 0x8:
                return payload
    except asyncio.IncompleteReadError:
        return b""


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    return (await _read_opcode_frame(reader))[1]


async def _read_opcode_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


ATTACKS: dict[str, Callable[[Plan, Report], Awaitable[None]]] = {
    "event_flood": event_flood,
    "oversized": oversized,
    "deep_nesting": deep_nesting,
    "binary": binary,
    "frame_flood": frame_flood,
    "namespaces": namespaces,
    "half_open": half_open,
    "slowloris": slowloris,
}


async def run(plan: Plan) -> Report:
    report = Report(plan.attack, start=time.monotonic())
    await ATTACKS[plan.attack](plan, report)
    report.end = time.monotonic()
    return report


if __name__ == "__main__":
    finished = asyncio.run(run(Plan(**json.loads(sys.stdin.read()))))
    print(json.dumps(asdict(finished)))
