"""End-to-end: one participant's network path is cut for 5 s and comes back.

Cy's Chromium runs in a network namespace this module creates (tests/e2e/netns.py),
joined to the host by a veth pair; the server listens on the host end's address and
gathers its ICE candidates there. Alice (the therapist) and Bob run on the host. After
all three see and hear each other, Cy's path is cut for 5 s, two ways: her link goes
down (her machine notices), or every packet between her and the host is dropped with no
link changing state (nobody is told). Either way every datagram of her media is lost,
and her websocket is aborted inside the namespace, so no close frame (nor reset) ever
reaches the server, which finds the socket dead by its pings (shortened here). Then the
path comes back.

What must hold: Cy's page rebuilds everything by itself and comes back into the same
seat (same participant id, no waiting room); two-way media resumes (Alice and Bob decode
new frames and hear new audio from Cy, and Cy from them, the right colours); Alice and
Bob never leave the call, and never see Cy leave or join (her tile stays throughout, no
knock). aiortc has no ICE restart: the media comes back on new peer connections.
The recovery times after the path returns are printed (never asserted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, Site, browser_args, server_on_host_link
from tests.e2e.netns import PathCutLab
from tests.e2e.room_page import (
    BLUE,
    GREEN,
    RED,
    RGB,
    Browsers,
    Counters,
    RoomPage,
    eventually,
    grown,
    inbound,
    session_cookie,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

CUT_S = 5.0
# Short engine.io pings: the server finds a dead socket within about 3 s.
PING_INTERVAL_S, PING_TIMEOUT_S = 1.0, 2.0
# The seat is held well beyond the cut and the client's reconnect back-off (<= 5 s).
RECONNECT_GRACE_S = 60
RECOVERY_TIMEOUT_S = 60.0
FRAMES_AFTER = 30  # new frames decoded (the fake camera runs at 15 fps)
PACKETS_AFTER = 40  # new audio packets

# Test-only: each set of tiles (participant ids) the grid shows, whenever it changes.
RECORD_TILE_SETS_JS = """
(() => {
  const sets = [];
  window.__pathCutTileSets = sets;
  document.addEventListener('DOMContentLoaded', () => {
    const grid = document.getElementById('tiles');
    if (!grid) return;
    const note = () => {
      const ids = Array.from(grid.querySelectorAll('.tile'))
        .map((tile) => tile.dataset.participantId).sort().join(',');
      if (sets[sets.length - 1] !== ids) sets.push(ids);
    };
    note();
    new MutationObserver(note).observe(grid, { childList: true });
  });
})();
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lab: PathCutLab) -> Iterator[Server]:
    """The server on the veth's host address (overrides conftest's, which is on
    127.0.0.1): reachable from the host and from inside the namespace."""
    environment = {
        "TELECIRCLE_SOCKET_PING_INTERVAL": str(PING_INTERVAL_S),
        "TELECIRCLE_SOCKET_PING_TIMEOUT": str(PING_TIMEOUT_S),
        "TELECIRCLE_RECONNECT_GRACE": str(RECONNECT_GRACE_S),
    }
    with server_on_host_link(tmp_path_factory, environment) as up:
        yield up


async def tile_sets(page: RoomPage) -> list[set[str]]:
    rows: list[str] = await page.page.evaluate("window.__pathCutTileSets || []")
    return [set(filter(None, row.split(","))) for row in rows]


async def wait_new_frames(
    page: RoomPage, sender: str, timeout: float, baseline: Counters | None = None
) -> float:
    """Until ``page`` decodes a frame of ``sender`` beyond ``baseline`` (default: what it
    has decoded now); returns the loop time it was seen."""
    pid = await page.remote_id(sender)
    before = baseline if baseline is not None else await inbound(page, pid)
    await eventually(
        lambda: inbound(page, pid),
        lambda now: grown(now, before, "video", 1),
        timeout,
        f"{page.name}: a new frame from {sender}",
        interval=0.1,
    )
    return asyncio.get_running_loop().time()


async def wait_fresh_media(page: RoomPage, name: str, colour: RGB, before: Counters) -> None:
    """Until ``page`` decodes many new frames of ``name``, in ``colour``, and receives
    many new audio packets from them."""
    pid = await page.remote_id(name)
    await eventually(
        lambda: inbound(page, pid),
        lambda now: (
            grown(now, before, "video", FRAMES_AFTER) and grown(now, before, "audio", PACKETS_AFTER)
        ),
        RECOVERY_TIMEOUT_S,
        f"{page.name}: new frames and audio from {name}",
    )
    await page.wait_colour(name, colour, timeout=RECOVERY_TIMEOUT_S)


@pytest.mark.parametrize("silent", [False, True], ids=["link-down", "silent-drop"])
async def test_a_cut_path_comes_back_into_the_same_seat_with_media_both_ways(
    site: Site,
    lab: PathCutLab,
    browsers: Browsers,
    tmp_path: Path,
    artifacts_dir: Path,
    silent: bool,
) -> None:
    base = site.server.base_url
    port = int(base.rsplit(":", 1)[1])
    args = browser_args(base)
    room_id = await asyncio.to_thread(site.therapist.create_room, "Cut path group", 3)

    _, alice = await browsers.open(
        "Alice", RED, cookies=[session_cookie(base, site.therapist.session_cookie())], args=args
    )
    await alice.page.add_init_script(RECORD_TILE_SETS_JS)
    await alice.enter_as_clinician(f"{base}/room/{room_id}")
    patients: dict[str, RoomPage] = {}
    async with AsyncExitStack() as stack:
        # Cy's browser runs inside the namespace (the wrapper is its "Chromium").
        inside = Browsers(lab.wrapper, tmp_path, stack)
        try:
            for name, colour, pool in (("Bob", GREEN, browsers), ("Cy", BLUE, inside)):
                invite = await asyncio.to_thread(site.therapist.invite, room_id, name)
                _, page = await pool.open(name, colour, args=args)
                await page.page.add_init_script(RECORD_TILE_SETS_JS)
                await page.enter_as_patient(invite.url)
                patients[name] = page
            await alice.wait_waiting({"Bob", "Cy"})
            await alice.page.click("#admit-all-button")
            await run_cut(lab, port, silent, alice, patients["Bob"], patients["Cy"], artifacts_dir)
        finally:
            await inside.close_all()


async def run_cut(
    lab: PathCutLab,
    port: int,
    silent: bool,
    alice: RoomPage,
    bob: RoomPage,
    cy: RoomPage,
    artifacts: Path,
) -> None:
    colours = {"Alice": RED, "Bob": GREEN, "Cy": BLUE}
    pages = {"Alice": alice, "Bob": bob, "Cy": cy}
    for name, page in pages.items():
        await page.wait_state("connected")
        await page.wait_remote_names(set(colours) - {name})
    for name, page in pages.items():
        for other in set(colours) - {name}:
            await page.wait_colour(other, colours[other])
            await page.wait_hears(other)
    cy_id = await alice.remote_id("Cy")
    assert await bob.remote_id("Cy") == cy_id
    knocks = await alice.knocks()
    history = {name: len(await page.state_history()) for name, page in pages.items()}

    # What each page had received from the others just before Cy's path is cut (her
    # page's receivers will be new ones, counting from zero).
    before = {
        (viewer, sender): await inbound(pages[viewer], await pages[viewer].remote_id(sender))
        for viewer in pages
        for sender in pages
        if viewer != sender
    }

    loop = asyncio.get_running_loop()
    cut_at = loop.time()
    lab.cut(silent)
    lab.kill_connections(port)
    await cy.wait_state_seen("reconnecting", since=history["Cy"], timeout=CUT_S + 5)
    # Alice's and Bob's pages see Cy as reconnecting (her seat held), not gone.
    for page in (alice, bob):
        await eventually(
            lambda p=page: p.tile_of("Cy"),
            lambda tile: tile is not None and not tile.connected,
            CUT_S + 5,
            f"{page.name}: Cy reconnecting",
        )
    # Cy's picture has stopped on their pages by now: count what comes after this.
    for viewer in ("Alice", "Bob"):
        before[viewer, "Cy"] = await inbound(pages[viewer], cy_id)
    # Alice and Bob go on seeing each other while Cy is cut off.
    for viewer, other in (("Alice", "Bob"), ("Bob", "Alice")):
        await wait_new_frames(pages[viewer], other, CUT_S)
    await asyncio.sleep(max(0.0, cut_at + CUT_S - loop.time()))
    lab.restore()
    restored_at = loop.time()

    # Every direction to and from Cy, watched at once: when its first new frame decodes.
    directions = [(viewer, "Cy") for viewer in ("Alice", "Bob")]
    directions += [("Cy", other) for other in ("Alice", "Bob")]

    async def seated() -> float:
        await cy.wait_state("connected", timeout=RECOVERY_TIMEOUT_S)
        return loop.time()

    firsts = await asyncio.gather(
        seated(),
        *(
            wait_new_frames(pages[viewer], sender, RECOVERY_TIMEOUT_S, before[viewer, sender])
            for viewer, sender in directions
        ),
    )
    # Then plenty of fresh frames and audio, and the right pictures, every way.
    for viewer, sender in directions:
        await wait_fresh_media(pages[viewer], sender, colours[sender], before[viewer, sender])
    print(
        f"path cut {CUT_S:.0f} s ({'all dropped' if silent else 'link down'}, websocket "
        "aborted); after the path came back "
        f"Cy was in her seat again by {firsts[0] - restored_at:.1f} s; first new frame:"
    )
    for (viewer, sender), first_at in zip(directions, firsts[1:], strict=True):
        print(f"  {sender} -> {viewer}: {first_at - restored_at:.1f} s")

    # The same seat: the same participant, never through the waiting room.
    assert await alice.remote_id("Cy") == cy_id
    assert await bob.remote_id("Cy") == cy_id
    cy_history = (await cy.state_history())[history["Cy"] :]
    assert "lobby" not in cy_history and cy_history[-1] == "connected", cy_history
    # The others never left the call, and never saw Cy leave, come back or knock.
    for name in ("Alice", "Bob"):
        assert (await pages[name].state_history())[history[name] :] == [], name
        sets = await tile_sets(pages[name])
        everyone = sets[-1]
        assert len(everyone) == 3 and cy_id in everyone, sets
        first = sets.index(everyone)
        assert all(ids == everyone for ids in sets[first:]), (name, sets)
    assert await alice.knocks() == knocks
    for name in ("Alice", "Bob"):
        tile = await pages[name].tile_of("Cy")
        assert tile is not None and tile.connected
    label = "after-silent-path-cut" if silent else "after-path-cut"
    await alice.screenshot(artifacts, label)
    await cy.screenshot(artifacts, label)
