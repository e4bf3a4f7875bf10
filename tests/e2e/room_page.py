"""Driving the Telecircle room page in headless Chromium, and fake-camera files.

Chromium's fake camera shows the same picture in every browser, so each browser gets
its own solid-colour Y4M file; a receiver then proves, by colour, whose video it decodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from playwright.async_api import Browser, Page, Playwright

T = TypeVar("T")

RGB = tuple[int, int, int]
RED: RGB = (255, 0, 0)
GREEN: RGB = (0, 255, 0)
BLUE: RGB = (0, 0, 255)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]


def write_y4m(path: Path, rgb: RGB, width: int = 320, height: int = 240, frames: int = 20) -> Path:
    """A solid-colour 4:2:0 Y4M clip (Chromium loops it as the fake camera)."""
    r, g, b = (c / 255 for c in rgb)
    # BT.601 limited range, which is how Chromium converts I420 back to RGB.
    y = round(16 + 65.481 * r + 128.553 * g + 24.966 * b)
    u = round(128 - 37.797 * r - 74.203 * g + 112.0 * b)
    v = round(128 + 112.0 * r - 93.786 * g - 18.214 * b)
    chroma = (width // 2) * (height // 2)
    frame = b"FRAME\n" + bytes([y]) * (width * height) + bytes([u]) * chroma + bytes([v]) * chroma
    header = f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + frame * frames)
    return path


async def launch(playwright: Playwright, chromium: Path, camera_file: Path) -> Browser:
    """One browser process per participant: the fake camera file is per process."""
    return await playwright.chromium.launch(
        executable_path=str(chromium),
        headless=True,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera_file}"],
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> T:
    """Poll `probe` until `accept` holds; fail after `timeout` seconds with the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class Tile:
    participant_id: str
    name: str
    is_self: bool
    video_on: bool
    audio_on: bool
    connected: bool
    camera_off_shown: bool


_TILES_JS = """
() => Array.from(document.querySelectorAll('#tiles .tile')).map((tile) => {
  const indicator = tile.querySelector('.indicator-camera-off');
  return {
    participant_id: tile.dataset.participantId,
    name: tile.querySelector('.tile-name').textContent,
    is_self: tile.dataset.self === 'true',
    video_on: tile.dataset.videoOn === 'true',
    audio_on: tile.dataset.audioOn === 'true',
    connected: tile.dataset.connected === 'true',
    camera_off_shown: !!indicator && !indicator.hidden && indicator.offsetParent !== null,
  };
})
"""

# Test-only instrumentation, installed before the page's own scripts: remember every
# peer connection the page makes so the test can read its inbound audio statistics.
RECORD_PEER_CONNECTIONS_JS = """
(() => {
  const Original = window.RTCPeerConnection;
  const made = [];
  window.__telecircleTestPeers = made;
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    made.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  // Websockets too, so a test can cut the signalling connection as a network drop would.
  const OriginalSocket = window.WebSocket;
  const sockets = [];
  window.__telecircleTestSockets = sockets;
  window.WebSocket = function (...args) {
    const socket = new OriginalSocket(...args);
    sockets.push(socket);
    return socket;
  };
  window.WebSocket.prototype = OriginalSocket.prototype;
  Object.assign(window.WebSocket, {
    CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3,
  });
})();
"""

# Inbound audio of a tile: packets received and decoded audio energy (the fake
# microphone beeps, so energy grows only if real audio was decoded), or null.
_TILE_AUDIO_JS = """
async (participantId) => {
  const tile = document.querySelector(`#tiles .tile[data-participant-id="${participantId}"]`);
  const video = tile && tile.querySelector('video');
  const stream = video && video.srcObject;
  const track = stream && stream.getAudioTracks()[0];
  if (!track) return null;
  for (const pc of window.__telecircleTestPeers || []) {
    if (pc.connectionState === 'closed') continue;
    let stats;
    try {
      stats = await pc.getStats(track);
    } catch (error) {
      continue;  // this connection does not carry the track
    }
    for (const report of stats.values()) {
      if (report.type === 'inbound-rtp' && report.kind === 'audio') {
        return { packets: report.packetsReceived || 0, energy: report.totalAudioEnergy || 0 };
      }
    }
  }
  return null;
}
"""

# Average colour of a tile's decoded video, or null until a frame has been decoded.
_TILE_COLOUR_JS = """
(participantId) => {
  const tile = document.querySelector(`#tiles .tile[data-participant-id="${participantId}"]`);
  const video = tile && tile.querySelector('video');
  if (!video || video.readyState < 2 || video.videoWidth === 0) return null;
  const canvas = document.createElement('canvas');
  canvas.width = 32;
  canvas.height = 24;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) {
    sum[0] += data[i]; sum[1] += data[i + 1]; sum[2] += data[i + 2];
  }
  const n = data.length / 4;
  return sum.map((s) => Math.round(s / n));
}
"""


def looks_like(colour: list[int] | None, expected: RGB) -> bool:
    """The expected primary dominates clearly (tolerant of the YUV and codec round trip)."""
    if colour is None or len(colour) != 3:
        return False
    channel = expected.index(255)
    strong = colour[channel]
    others = [c for i, c in enumerate(colour) if i != channel]
    return strong >= 120 and all(strong - other >= 70 for other in others)


class RoomPage:
    """One participant's page."""

    def __init__(self, page: Page, name: str) -> None:
        self.page = page
        self.name = name

    async def state(self) -> str | None:
        return await self.page.get_attribute("#app", "data-state")

    async def wait_state(self, state: str, timeout: float = 30) -> None:
        await eventually(self.state, lambda s: s == state, timeout, f"{self.name}: state {state}")

    async def join(self, url: str, expect: str = "connected") -> None:
        await self.page.goto(url)
        await self.wait_state("prejoin")
        await self.page.fill("#display-name", self.name)
        await self.page.wait_for_selector("#join-button:not([disabled])", timeout=30_000)
        await self.page.click("#join-button")
        await self.wait_state(expect)

    async def tiles(self) -> list[Tile]:
        rows: list[dict[str, Any]] = await self.page.evaluate(_TILES_JS)
        return [Tile(**row) for row in rows]

    async def tile_of(self, name: str) -> Tile | None:
        return next((t for t in await self.tiles() if t.name == name and not t.is_self), None)

    async def wait_remote_names(self, names: set[str], timeout: float = 30) -> list[Tile]:
        async def probe() -> list[Tile]:
            return await self.tiles()

        def accept(tiles: list[Tile]) -> bool:
            remote = {t.name for t in tiles if not t.is_self}
            return len(tiles) == len(names) + 1 and remote == names

        return await eventually(probe, accept, timeout, f"{self.name}: tiles of {sorted(names)}")

    async def tile_colour(self, participant_id: str) -> list[int] | None:
        result: list[int] | None = await self.page.evaluate(_TILE_COLOUR_JS, participant_id)
        return result

    async def wait_colour(self, name: str, expected: RGB, timeout: float = 40) -> list[int] | None:
        tile = await self.tile_of(name)
        assert tile is not None, f"{self.name} has no tile for {name}"
        pid = tile.participant_id
        return await eventually(
            lambda: self.tile_colour(pid),
            lambda colour: looks_like(colour, expected),
            timeout,
            f"{self.name}: {name}'s tile showing {expected}",
        )

    async def tile_audio(self, participant_id: str) -> dict[str, float] | None:
        result: dict[str, float] | None = await self.page.evaluate(_TILE_AUDIO_JS, participant_id)
        return result

    async def wait_hears(self, name: str, timeout: float = 30) -> dict[str, float] | None:
        """Wait until this page has received and decoded audible audio from ``name``."""
        tile = await self.tile_of(name)
        assert tile is not None, f"{self.name} has no tile for {name}"
        pid = tile.participant_id
        return await eventually(
            lambda: self.tile_audio(pid),
            lambda audio: audio is not None and audio["packets"] > 20 and audio["energy"] > 0,
            timeout,
            f"{self.name}: hearing {name}",
        )

    async def screenshot(self, directory: Path, label: str) -> None:
        safe = "".join(c if c.isalnum() else "-" for c in f"{label}-{self.name}")
        await self.page.screenshot(path=str(directory / f"{safe}.png"), full_page=True)
