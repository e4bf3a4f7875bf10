"""A real socket.io test client that records server events."""

from __future__ import annotations

import asyncio
from typing import Any

import socketio


class Client:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

        @self.sio.on("*")
        async def record(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self.changed.set()

    async def connect(self, url: str, cookie: str | None = None) -> Client:
        """Connect as whoever ``cookie`` (a Cookie header value) says."""
        headers = {} if cookie is None else {"Cookie": cookie}
        await self.sio.connect(url, transports=["websocket"], wait_timeout=10, headers=headers)
        return self

    async def call(self, event: str, data: Any = None, timeout: float = 10) -> dict[str, Any]:
        args = () if data is None else (data,)
        result: dict[str, Any] = await self.sio.call(event, *args, timeout=timeout)
        return result

    def last(self, event: str) -> Any:
        for name, data in reversed(self.events):
            if name == event:
                return data
        return None

    async def wait_for(self, predicate: Any, timeout: float = 10) -> None:
        async def poll() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(poll(), timeout)

    async def close(self) -> None:
        await self.sio.disconnect()
