"""End-to-end: who is speaking, on the tiles and in the facilitator console.

Chromium's fake microphone (``--use-fake-device-for-media-stream``) beeps twice a second
at full scale: that is "speaking" as far as the pages can tell. The page reads the level
from its connections' audio statistics (the decoded audio's energy), so a mark on a
remote tile means loud audio from that person arrived and was decoded.

The therapist (Alice) and Bob have the beeping microphone; Carol's plays a WAV of quiet
room noise (``--use-file-for-fake-audio-capture``, written by the test): her microphone
is on and her audio arrives, but she is never "speaking". Bob's tile on Alice's and
Carol's pages gets the speaking ring and "speaking" in its accessible name (no live
region), Bob's row in Alice's "Where everyone is" says "speaking", and his own tile
does too (his microphone's level). Alice mutes Bob (the control on his tile): the mark
leaves his tile everywhere and his console row, and stays away through a settle window
in which Carol is never marked either, while Alice, still beeping, is.

Waits are bounded polls; the settle window is a window (asyncio.sleep), never timed.
"""

from __future__ import annotations

import asyncio
import random
import wave
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Site
from tests.e2e.group import admitted_patients, therapist_in_new_room
from tests.e2e.room_page import (
    BLUE,
    CHROMIUM_ARGS,
    GREEN,
    Browsers,
    RoomPage,
    eventually,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# How long the mark must stay away after the mute (several of the page's readings and
# well past its hold time), sampled this often.
SETTLE_S = 4.0
SAMPLE_S = 0.25
# Generous on a loaded machine: the first mark needs decoded audio for about a second.
SPEAKING_TIMEOUT_S = 30.0

# Each tile of the grid: its name, own or not, the speaking data attribute, the text of
# the visually hidden part of its accessible name, whether the ring is drawn, and
# whether anything around the tile is a live region (it must not be).
_SPEAKING_TILES_JS = """
() => Array.from(document.querySelectorAll('#tiles .tile')).map((tile) => {
  const media = tile.querySelector('.tile-media');
  const hidden = tile.querySelector('.tile-speaking');
  const labelledBy = (tile.getAttribute('aria-labelledby') || '').split(/\\s+/);
  const label = labelledBy
    .map((id) => document.getElementById(id))
    .map((el) => (el ? el.textContent : ''))
    .join('');
  return {
    id: tile.dataset.participantId,
    name: tile.querySelector('.tile-name').textContent,
    self: tile.dataset.self === 'true',
    speaking: tile.dataset.speaking === 'true',
    hidden_text: hidden ? hidden.textContent : null,
    label,
    ring: media ? getComputedStyle(media).boxShadow !== 'none' : false,
    live: !!tile.closest('[aria-live]') || !!tile.querySelector('[aria-live]'),
  };
})
"""

# The console's "Where everyone is" rows: name, the speaking attribute, whether the word
# "speaking" is shown.
_PLACES_JS = """
() => Array.from(document.querySelectorAll('#places-list .place-entry')).map((row) => {
  const mark = row.querySelector('.place-entry-speaking');
  return {
    name: row.querySelector('.place-entry-name').textContent,
    speaking: row.dataset.speaking === 'true',
    shown: !!mark && !mark.hidden && mark.offsetParent !== null,
    text: row.innerText,
  };
})
"""

# Diagnostics for a failure: the decoded audio counters of each inbound audio stream.
_AUDIO_STATS_JS = """
async () => {
  const out = [];
  for (const pc of window.__telecircleTestPeers || []) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    for (const r of stats.values()) {
      if ((r.type === 'inbound-rtp' || r.type === 'media-source') && r.kind === 'audio') {
        out.push({type: r.type, mid: r.mid, level: r.audioLevel,
                  energy: r.totalAudioEnergy, duration: r.totalSamplesDuration});
      }
    }
  }
  return out;
}
"""

Row = dict[str, Any]

# Carol's microphone: noise at about -40 dBFS, far below speech (and the beep).
QUIET_AMPLITUDE = 0.01
SAMPLE_RATE = 48_000


def write_quiet_wav(path: Path, seconds: float = 2.0) -> Path:
    """A mono 16-bit WAV of quiet noise (Chromium loops it as the fake microphone)."""
    noise = random.Random(7)  # the same noise every run
    peak = round(QUIET_AMPLITUDE * 32767)
    samples = bytearray()
    for _ in range(round(seconds * SAMPLE_RATE)):
        samples += noise.randint(-peak, peak).to_bytes(2, "little", signed=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(bytes(samples))
    return path


async def tiles(page: RoomPage) -> list[Row]:
    rows: list[Row] = await page.page.evaluate(_SPEAKING_TILES_JS)
    return rows


async def tile(page: RoomPage, name: str, own: bool = False) -> Row | None:
    return next(
        (t for t in await tiles(page) if t["name"].startswith(name) and t["self"] == own), None
    )


async def place_row(page: RoomPage, name: str) -> Row | None:
    rows: list[Row] = await page.page.evaluate(_PLACES_JS)
    return next((r for r in rows if r["name"] == name), None)


def marked(row: Row | None) -> bool:
    """The tile shows the mark in every way: attribute, ring, accessible name."""
    return (
        row is not None
        and row["speaking"]
        and row["ring"]
        and row["hidden_text"] == ", speaking"
        and row["label"].endswith(", speaking")
    )


def unmarked(row: Row | None) -> bool:
    return (
        row is not None
        and not row["speaking"]
        and not row["ring"]
        and row["hidden_text"] == ""
        and not row["label"].endswith("speaking")
    )


async def wait_tile(page: RoomPage, name: str, speaking: bool, own: bool = False) -> Row | None:
    async def probe() -> Row | None:
        return await tile(page, name, own)

    try:
        return await eventually(
            probe,
            marked if speaking else unmarked,
            SPEAKING_TIMEOUT_S,
            f"{page.name}: {name}'s {'own ' if own else ''}tile "
            f"{'speaking' if speaking else 'not speaking'}",
        )
    except AssertionError as error:
        stats = await page.page.evaluate(_AUDIO_STATS_JS)
        raise AssertionError(f"{error}; audio stats: {stats}") from error


async def wait_place(page: RoomPage, name: str, speaking: bool) -> Row | None:
    async def probe() -> Row | None:
        return await place_row(page, name)

    def accept(row: Row | None) -> bool:
        return row is not None and row["speaking"] == speaking and row["shown"] == speaking

    return await eventually(
        probe, accept, SPEAKING_TIMEOUT_S, f"{page.name}: console row {name} speaking={speaking}"
    )


async def wait_receiving(page: RoomPage, name: str) -> None:
    """Wait until ``page`` receives ``name``'s audio packets (loud or not)."""
    pid = await page.remote_id(name)

    async def probe() -> dict[str, float] | None:
        return await page.tile_audio(pid)

    await eventually(
        probe,
        lambda audio: audio is not None and audio["packets"] > 20,
        SPEAKING_TIMEOUT_S,
        f"{page.name}: receiving {name}'s audio",
    )


async def test_speaking_marks_follow_the_microphone(
    site: Site, browsers: Browsers, artifacts_dir: Path, tmp_path: Path
) -> None:
    room_id, alice = await therapist_in_new_room(site, browsers, "Speaking group")
    quiet = write_quiet_wav(tmp_path / "quiet.wav")
    microphones = {
        "Bob": None,  # the fake device's beep
        "Carol": [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={quiet}"],
    }
    patients = await admitted_patients(
        site, browsers, room_id, alice, {"Bob": GREEN, "Carol": BLUE}, microphones
    )
    bob, carol = patients["Bob"], patients["Carol"]
    pages = {"Alice": alice, "Bob": bob, "Carol": carol}
    for name, page in pages.items():
        await page.wait_state("connected")
        await page.wait_remote_names(set(pages) - {name})

    # ---- Bob's microphone is on: the others see him speaking, and so does he ----------
    for page in (alice, carol):
        await page.wait_hears("Bob")
        row = await wait_tile(page, "Bob", speaking=True)
        assert row is not None and not row["live"], f"{page.name}: {row}"
    await wait_place(alice, "Bob", speaking=True)
    await wait_tile(bob, "Bob", speaking=True, own=True)
    await alice.screenshot(artifacts_dir, "speaking-bob")
    # Carol's microphone is on and her (quiet) audio arrives.
    for page in (alice, bob):
        await wait_receiving(page, "Carol")

    # ---- Alice mutes Bob: the mark goes, and stays gone ---------------------------------
    await alice.tile_control("Bob", "force-audio")
    for page in (alice, carol):
        await page.wait_tile_indicator("Bob", "forced-mute")
        await wait_tile(page, "Bob", speaking=False)
    await wait_tile(bob, "Bob", speaking=False, own=True)
    await wait_place(alice, "Bob", speaking=False)

    # A settle window, sampled (not timed): Bob muted and Carol quiet are never marked;
    # Alice, beeping, is (the marks still work).
    alice_marked: set[str] = set()
    for _ in range(round(SETTLE_S / SAMPLE_S)):
        for page in (alice, carol):
            row = await tile(page, "Bob")
            assert unmarked(row), f"{page.name}: Bob marked speaking while muted: {row}"
        for page in (alice, bob):
            row = await tile(page, "Carol")
            assert unmarked(row), f"{page.name}: Carol marked speaking, quiet: {row}"
        for name in ("Bob", "Carol"):
            place = await place_row(alice, name)
            assert place is not None and not place["speaking"] and not place["shown"], place
            own = await tile(pages[name], name, own=True)
            assert unmarked(own), f"{name}'s own tile marked speaking: {own}"
        for page in (bob, carol):
            if marked(await tile(page, "Alice")):
                alice_marked.add(page.name)
        await asyncio.sleep(SAMPLE_S)
    await alice.screenshot(artifacts_dir, "speaking-bob-muted")
    for page in (bob, carol):
        if page.name not in alice_marked:
            await wait_tile(page, "Alice", speaking=True)
