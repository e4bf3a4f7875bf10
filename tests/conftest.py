"""Shared fixtures: a real Telecircle server on a loopback port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from telecircle.config import Settings, load_settings
from telecircle.domain.ids import new_room_code
from telecircle.storage import stores
from telecircle.storage.database import Database
from telecircle.web.app import create_app
from telecircle.web.keys import DATABASE, ROOMS, SFU, SIGNALLING


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    app: web.Application
    runner: web.AppRunner
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def database(self) -> Database:
        return self.app[DATABASE]

    async def create_room(self, name: str = "Test group", limit: int = 10) -> str:
        room = await stores.create_room(self.database, name, limit, new_room_code())
        return room.code


async def start_server(tmp_path: Path, **overrides: Any) -> RunningServer:
    # The collector tuning is process-wide: tests start many servers in one process.
    options: dict[str, Any] = {"tune_garbage_collector": False, **overrides}
    settings = load_settings(data_dir=tmp_path / "data", port=free_port(), **options)
    app = create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    return RunningServer(app, runner, settings)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path)
    yield running
    await running.runner.cleanup()


__all__ = ["ROOMS", "SFU", "SIGNALLING", "RunningServer", "free_port", "start_server"]
