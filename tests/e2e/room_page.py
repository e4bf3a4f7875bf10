"""Driving Telecircle's pages in headless Chromium: the pre-join page, the call page
(patient's waiting room, clinician's lobby panel and facilitator console, the grid and
its per-tile controls, a patient's own signals), and fake-camera files.

Chromium's fake camera shows the same picture in every browser, so each browser gets
its own solid-colour Y4M file; a receiver then proves, by colour, whose video it decodes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from playwright.async_api import Browser, Locator, Page, Playwright, async_playwright

if TYPE_CHECKING:
    from playwright._impl._api_structures import SetCookieParam

T = TypeVar("T")

RGB = tuple[int, int, int]
RED: RGB = (255, 0, 0)
GREEN: RGB = (0, 255, 0)
BLUE: RGB = (0, 0, 255)
YELLOW: RGB = (255, 255, 0)

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


def write_y4m(
    path: Path,
    rgb: RGB,
    width: int = 320,
    height: int = 240,
    frames: int = 20,
    noise: int = 0,
) -> Path:
    """A solid-colour 4:2:0 Y4M clip (Chromium loops it as the fake camera). ``noise``
    scatters each luma sample by up to that much, differently in every frame: the
    encoder then spends all the bitrate it is allowed (a flat colour costs nothing)."""
    r, g, b = (c / 255 for c in rgb)
    # BT.601 limited range, which is how Chromium converts I420 back to RGB.
    y = round(16 + 65.481 * r + 128.553 * g + 24.966 * b)
    u = round(128 - 37.797 * r - 74.203 * g + 112.0 * b)
    v = round(128 + 112.0 * r - 93.786 * g - 18.214 * b)
    chroma = (width // 2) * (height // 2)
    rng = np.random.default_rng(list(rgb))
    header = f"YUV4MPEG2 W{width} H{height} F15:1 Ip A1:1 C420jpeg\n".encode()
    clip = [header]
    for _ in range(frames):
        if noise:
            scatter = rng.integers(-noise, noise + 1, size=width * height)
            luma = np.clip(y + scatter, 16, 235).astype(np.uint8).tobytes()
        else:
            luma = bytes([y]) * (width * height)
        clip.append(b"FRAME\n" + luma + bytes([u]) * chroma + bytes([v]) * chroma)
    path.write_bytes(b"".join(clip))
    return path


async def launch(
    playwright: Playwright, chromium: Path, camera_file: Path, args: list[str] | None = None
) -> Browser:
    """One browser process per participant: the fake camera file is per process.
    ``args`` replaces the default Chromium flags (e.g. to leave out the fake
    permission prompt)."""
    return await playwright.chromium.launch(
        executable_path=str(chromium),
        headless=True,
        args=[*(args or CHROMIUM_ARGS), f"--use-file-for-fake-video-capture={camera_file}"],
    )


# Between two probes of a wait. A wait that is not met at once ends on average half an
# interval after its condition is (the browser tests make hundreds of such waits); a
# probe is one read of the page, a few milliseconds.
POLL_INTERVAL_S = 0.1


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL_S,
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

# Test-only: every screen the call page shows, in order (#app's data-state values).
RECORD_STATES_JS = """
(() => {
  const states = [];
  window.__telecircleTestStates = states;
  document.addEventListener('DOMContentLoaded', () => {
    const app = document.getElementById('app');
    if (!app) return;
    const note = () => {
      const state = app.dataset.state;
      if (states[states.length - 1] !== state) states.push(state);
    };
    note();
    new MutationObserver(note).observe(app, { attributes: true, attributeFilter: ['data-state'] });
  });
})();
"""

# Inbound stats of a tile's track of one kind: packets received, and decoded audio energy
# (the fake microphone beeps, so energy grows only if real audio was decoded) or frames
# decoded; null without such a track.
_TILE_INBOUND_JS = """
async ([participantId, kind]) => {
  const tile = document.querySelector(`#tiles .tile[data-participant-id="${participantId}"]`);
  const video = tile && tile.querySelector('video');
  const stream = video && video.srcObject;
  const track = stream && (kind === 'audio' ? stream.getAudioTracks() : stream.getVideoTracks())[0];
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
      if (report.type === 'inbound-rtp' && report.kind === kind) {
        return kind === 'audio'
          ? { packets: report.packetsReceived || 0, energy: report.totalAudioEnergy || 0 }
          : { packets: report.packetsReceived || 0, frames: report.framesDecoded || 0 };
      }
    }
  }
  return null;
}
"""

# What this page sends of one kind (its publish connection): RTP packets sent, or null.
_OUTBOUND_JS = """
async (kind) => {
  for (const pc of window.__telecircleTestPeers || []) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    for (const report of stats.values()) {
      if (report.type === 'outbound-rtp' && report.kind === kind) {
        return report.packetsSent || 0;
      }
    }
  }
  return null;
}
"""

# Average colour of a video element's picture, or null until a frame has been decoded.
_VIDEO_COLOUR_JS = """
(selector) => {
  const video = document.querySelector(selector);
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
    """The expected primary dominates clearly (tolerant of the YUV and codec round trip);
    a colour that is not a primary (e.g. yellow) must be near on every channel."""
    if colour is None or len(colour) != 3:
        return False
    if sorted(expected) != [0, 0, 255]:
        return all(abs(c - e) <= 70 for c, e in zip(colour, expected, strict=True))
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

    async def enter_as_clinician(self, url: str, expect: str = "connected") -> None:
        """Open the call page as a signed-in clinician (straight into the session)."""
        await self.page.goto(url)
        await self.wait_state(expect)

    async def open_invite(self, url: str, screenshots: Path | None = None) -> None:
        """Open an invite link and continue: the server swaps it for a cookie and
        shows /join. (Opening the link only asks to continue, so a link preview that
        fetches it does not use it up.)"""
        await self.page.goto(url)
        if screenshots is not None:
            await self.screenshot(screenshots, "invite")
        async with self.page.expect_navigation(url="**/join", timeout=30_000):
            await self.page.click("#continue-invite")

    async def wait_preview(self, state: str = "ok", timeout: float = 30) -> None:
        """Wait for the pre-join page's device check to reach ``state``."""
        await eventually(
            lambda: self.page.get_attribute("section.preview", "data-state"),
            lambda value: value == state,
            timeout,
            f"{self.name}: pre-join preview {state}",
        )

    async def fill_prejoin(
        self, location: str = "At home", contact: str = "Sam, +44 20 7946 0000"
    ) -> None:
        """Fill the pre-join form and continue to the waiting room."""
        await self.page.fill("#display-name", self.name)
        await self.page.check("#accept-agreement")
        await self.page.fill("#location", location)
        await self.page.fill("#emergency-contact", contact)
        await self.page.click("#continue-button")
        await self.page.wait_for_url("**/session", timeout=30_000)

    async def enter_as_patient(self, invite_url: str, expect: str = "lobby") -> None:
        """Invite link → pre-join page → waiting room."""
        await self.open_invite(invite_url)
        await self.fill_prejoin()
        await self.wait_state(expect)

    # ---- the clinician's lobby panel -------------------------------------------------

    async def lobby_names(self) -> list[str]:
        names: list[str] = await self.page.eval_on_selector_all(
            "#lobby-list .lobby-entry .lobby-name", "(els) => els.map((e) => e.textContent)"
        )
        return names

    async def wait_waiting(self, names: set[str], timeout: float = 30) -> None:
        await eventually(
            self.lobby_names,
            lambda current: set(current) == names,
            timeout,
            f"{self.name}: waiting room showing {sorted(names)}",
        )

    def _entry(self, name: str) -> Locator:
        names = self.page.locator(".lobby-name", has_text=re.compile(f"^{re.escape(name)}$"))
        return self.page.locator("#lobby-list .lobby-entry").filter(has=names)

    async def admit(self, name: str) -> None:
        await self.wait_waiting_includes(name)
        await self._entry(name).locator(".lobby-admit").click()

    async def deny(self, name: str, message: str) -> None:
        await self.wait_waiting_includes(name)
        entry = self._entry(name)
        await entry.locator(".lobby-deny").click()
        await entry.locator(".lobby-deny-message").fill(message)
        await entry.locator(".lobby-deny-confirm").click()

    async def wait_waiting_includes(self, name: str, timeout: float = 30) -> None:
        await eventually(
            self.lobby_names, lambda names: name in names, timeout, f"{self.name}: {name} waiting"
        )

    async def entry_error(self, name: str, timeout: float = 15) -> str:
        error = self._entry(name).locator(".lobby-entry-error")
        await error.wait_for(state="visible", timeout=timeout * 1000)
        return (await error.text_content() or "").strip()

    async def knocks(self) -> int:
        return int(await self.page.get_attribute("body", "data-knocks") or "0")

    async def badge(self) -> str | None:
        """The waiting-room badge's text, or None while it is hidden."""
        if not await self.page.is_visible("#lobby-badge"):
            return None
        return (await self.page.text_content("#lobby-badge") or "").strip()

    async def state_history(self) -> list[str]:
        """The screens this page has shown since it loaded, in order."""
        states: list[str] = await self.page.evaluate("window.__telecircleTestStates || []")
        return states

    async def wait_state_seen(self, state: str, since: int, timeout: float = 30) -> None:
        """Wait until the page has shown ``state`` after the first ``since`` screens of
        its history (a screen shown too briefly for polling still counts)."""
        await eventually(
            self.state_history,
            lambda history: state in history[since:],
            timeout,
            f"{self.name}: state {state} shown",
        )

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

    async def video_colour(self, selector: str) -> list[int] | None:
        """Average colour of the picture in the <video> at ``selector`` (None: none yet)."""
        result: list[int] | None = await self.page.evaluate(_VIDEO_COLOUR_JS, selector)
        return result

    async def tile_colour(self, participant_id: str) -> list[int] | None:
        tile = f'#tiles .tile[data-participant-id="{participant_id}"]'
        return await self.video_colour(f"{tile} video")

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
        result: dict[str, float] | None = await self.page.evaluate(
            _TILE_INBOUND_JS, [participant_id, "audio"]
        )
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

    async def tile_video(self, participant_id: str) -> dict[str, float] | None:
        """Inbound video of a tile: ``packets`` received and ``frames`` decoded."""
        result: dict[str, float] | None = await self.page.evaluate(
            _TILE_INBOUND_JS, [participant_id, "video"]
        )
        return result

    async def packets_sent(self, kind: str) -> int | None:
        """RTP packets this page has sent of ``kind`` ("audio" / "video")."""
        result: int | None = await self.page.evaluate(_OUTBOUND_JS, kind)
        return result

    async def remote_id(self, name: str) -> str:
        """The participant id of ``name``'s tile on this page (which must be shown)."""
        tile = await self.tile_of(name)
        assert tile is not None, f"{self.name} has no tile for {name}"
        return tile.participant_id

    # ---- the facilitator's controls ---------------------------------------------------

    def tile(self, name: str) -> Locator:
        """``name``'s tile (not our own)."""
        names = self.page.locator(".tile-name", has_text=re.compile(f"^{re.escape(name)}$"))
        return self.page.locator('#tiles .tile[data-self="false"]').filter(has=names)

    async def tile_control(self, name: str, control: str) -> None:
        """Press a control on ``name``'s tile: ``force-audio``, ``force-video``,
        ``lower-hand``, ``to-lobby``, ``remove``, ``remove-confirm``..."""
        await self.tile(name).locator(f".tile-{control}").click()

    async def tile_indicator_shown(self, name: str, indicator: str) -> bool:
        """Whether ``name``'s tile shows ``.indicator-{indicator}`` (on this page)."""
        return await self.tile(name).locator(f".indicator-{indicator}").is_visible()

    async def wait_tile_indicator(
        self, name: str, indicator: str, shown: bool = True, timeout: float = 15
    ) -> None:
        await eventually(
            lambda: self.tile_indicator_shown(name, indicator),
            lambda visible: visible == shown,
            timeout,
            f"{self.name}: {name}'s tile {'showing' if shown else 'without'} {indicator}",
        )

    async def _list_names(self, selector: str) -> list[str]:
        names: list[str] = await self.page.eval_on_selector_all(
            selector, "(els) => els.map((e) => e.textContent)"
        )
        return names

    async def hand_names(self) -> list[str]:
        """The console's raised hands, in order of raising."""
        return await self._list_names("#hands-list .hand-entry .hand-entry-name")

    async def moment_names(self) -> list[str]:
        """The console's private "needs a moment" list."""
        return await self._list_names("#moments-list .moment-entry .moment-entry-name")

    async def wait_hands(self, names: list[str], timeout: float = 15) -> None:
        await eventually(
            self.hand_names, lambda now: now == names, timeout, f"{self.name}: hands {names}"
        )

    async def wait_moments(self, names: list[str], timeout: float = 15) -> None:
        await eventually(
            self.moment_names, lambda now: now == names, timeout, f"{self.name}: moments {names}"
        )

    async def console_action(self, entry: str, name: str) -> None:
        """Press the button of ``name``'s entry in the console list ``entry``
        (``hand-entry`` or ``moment-entry``)."""
        names = self.page.locator(f".{entry}-name", has_text=re.compile(f"^{re.escape(name)}$"))
        await (
            self.page.locator(f"#console-panel .{entry}")
            .filter(has=names)
            .locator("button")
            .click()
        )

    # ---- one's own buttons ------------------------------------------------------------

    async def button_state(self, selector: str) -> dict[str, Any]:
        """Text, ``aria-pressed`` and ``disabled`` of a button."""
        state: dict[str, Any] = await self.page.eval_on_selector(
            selector,
            "(b) => ({text: b.textContent.trim(), pressed: b.getAttribute('aria-pressed'),"
            " disabled: b.disabled})",
        )
        return state

    async def wait_button(
        self,
        selector: str,
        accept: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 15,
    ) -> dict[str, Any]:
        return await eventually(
            lambda: self.button_state(selector), accept, timeout, f"{self.name}: {what}"
        )

    async def screenshot(self, directory: Path, label: str) -> None:
        safe = "".join(c if c.isalnum() else "-" for c in f"{label}-{self.name}")
        await self.page.screenshot(path=str(directory / f"{safe}.png"), full_page=True)


class Browsers:
    """One browser process per participant (the fake camera file is per process);
    closes what is left at the end."""

    def __init__(self, chromium: Path, camera_dir: Path, stack: AsyncExitStack) -> None:
        self.chromium = chromium
        self.camera_dir = camera_dir
        self.stack = stack
        self.playwright: Playwright | None = None
        self.browsers: list[Browser] = []

    async def launch(
        self, name: str, colour: RGB, args: list[str] | None = None, noise: int = 0
    ) -> Browser:
        if self.playwright is None:
            self.playwright = await self.stack.enter_async_context(async_playwright())
        camera = write_y4m(self.camera_dir / f"{name.lower()}.y4m", colour, noise=noise)
        browser = await launch(self.playwright, self.chromium, camera, args)
        self.browsers.append(browser)
        return browser

    async def open(
        self,
        name: str,
        colour: RGB,
        cookies: list[SetCookieParam] | None = None,
        args: list[str] | None = None,
        noise: int = 0,
    ) -> tuple[Browser, RoomPage]:
        """A browser with a page for ``name`` (with ``cookies``, e.g. a clinician's
        sign-in), instrumented to record its peer connections and websockets; its camera
        as :func:`write_y4m` makes it."""
        browser = await self.launch(name, colour, args, noise)
        context = await browser.new_context(viewport={"width": 1100, "height": 760})
        if cookies:
            await context.add_cookies(cookies)
        page = await context.new_page()
        await page.add_init_script(RECORD_PEER_CONNECTIONS_JS)
        await page.add_init_script(RECORD_STATES_JS)
        return browser, RoomPage(page, name)

    async def close_all(self) -> None:
        for browser in self.browsers:
            if browser.is_connected():
                await browser.close()


def session_cookie(base_url: str, value: str) -> SetCookieParam:
    """A clinician's sign-in cookie for a browser context."""
    return {"name": "tc_session", "value": value, "url": base_url}


# A tile's inbound counters, per receiving track: {kind: [track id, count]} with the
# video frames decoded and the audio packets received (a track the SFU feeds anew, on
# another slot, counts from its own start).
_TILE_COUNTERS_JS = """
async (participantId) => {
  const tile = document.querySelector(`#tiles .tile[data-participant-id="${participantId}"]`);
  const stream = tile && tile.querySelector('video') && tile.querySelector('video').srcObject;
  const result = {};
  if (!stream) return result;
  for (const track of stream.getTracks()) {
    for (const pc of window.__telecircleTestPeers || []) {
      if (pc.connectionState === 'closed') continue;
      let stats;
      try {
        stats = await pc.getStats(track);
      } catch (error) {
        continue;
      }
      for (const report of stats.values()) {
        if (report.type === 'inbound-rtp' && report.kind === track.kind) {
          const count = track.kind === 'video' ? report.framesDecoded : report.packetsReceived;
          result[track.kind] = [track.id, count || 0];
        }
      }
    }
  }
  return result;
}
"""

Counters = dict[str, list[Any]]


async def inbound(page: RoomPage, pid: str) -> Counters:
    counters: Counters = await page.page.evaluate(_TILE_COUNTERS_JS, pid)
    return counters


def grown(now: Counters, before: Counters, kind: str, by: int) -> bool:
    """Whether ``kind``'s counter grew by ``by`` since ``before`` (on the same track; a
    new track counts from zero)."""
    if kind not in now:
        return False
    track, count = now[kind]
    old_track, old_count = before.get(kind, (None, 0))
    return int(count) >= (int(old_count) if track == old_track else 0) + by
