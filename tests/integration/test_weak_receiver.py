"""A receiver on a weak link loses video, never audio, and gets it back by itself.

Three participants through the real server: Ann and Ben publish video of about
340 kbit/s each (and Opus); Weak is behind a relay whose downlink (server to Weak) is
then throttled to 150 kbit/s with a 0.3 s queue, as a phone on a poor signal. Weak's
receivers (aiortc's, which send REMB and receiver reports as a browser does) tell the
server; the server pauses Ann's and Ben's video for Weak alone and says so to Weak's
client (``video_paused``); Weak keeps hearing both; Ann and Ben keep seeing each other at
the full frame rate. With the throttle lifted, the paused videos are tried again and come
back (with keyframes: Weak decodes both again), and the client hears that none is paused.

The server's weak-video timers are shortened (settings), so the whole story takes
seconds; the windows below compare counts, never durations.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.integration.lossy_relay import CLEAN, Impairment, LossyRelay
from tests.integration.lossy_session import Member, join
from tests.media.peer import encode_media, wait_until

pytestmark = [pytest.mark.media, pytest.mark.timeout(240)]

WEAK_TIMERS = {"weak_video_hold": 1.0, "weak_video_probe_after": 4.0, "weak_video_probe_max": 8.0}
THROTTLE = Impairment(rate_bps=150_000, queue_s=0.3)
# A settle window: long enough for ~17 audio packets and ~10 frames per stream.
WINDOW_S = 2.0
# Packets or frames already in flight when a window opens or closes.
IN_FLIGHT = 4


def paused_for(member: Member) -> set[str] | None:
    event = member.client.last("video_paused")
    return None if event is None else set(event["participant_ids"])


def audio_from(receiver: Member, owner: Member) -> int:
    for slot in (receiver.client.last("slots") or {}).get("slots", []):
        if slot["participant_id"] == owner.peer.pid:
            return int(receiver.peer.received.packets[receiver.peer.slot_mids[slot["index"]][0]])
    return 0


def audio_sent(member: Member) -> int:
    assert member.peer.audio_track is not None
    return member.peer.audio_track.sent


async def counts(members: list[Member]) -> dict[str, Any]:
    ann, ben, weak = members
    return {
        "ann_to_ben": ben.frames_from(ann),
        "ben_to_ann": ann.frames_from(ben),
        "ann_to_weak": weak.frames_from(ann),
        "ben_to_weak": weak.frames_from(ben),
        "ann_sent": ann.sent_frames(),
        "ben_sent": ben.sent_frames(),
        "audio_to_weak": (audio_from(weak, ann), audio_from(weak, ben)),
        "audio_sent": (audio_sent(ann), audio_sent(ben)),
    }


async def test_a_throttled_receiver_keeps_audio_and_gets_its_video_back(tmp_path: Path) -> None:
    server = await start_server(tmp_path, **WEAK_TIMERS)
    relay = LossyRelay(seed=8)
    members: list[Member] = []
    try:
        code = await server.create_room()
        heavy = [encode_media(colour, noise=40, bit_rate=300_000) for colour in (0, 1)]
        ann = await join(server, code, "Ann", 0, media=heavy[0])
        ben = await join(server, code, "Ben", 1, media=heavy[1])
        weak = await join(server, code, "Weak", 2, relay=relay)
        members += [ann, ben, weak]
        await wait_until(
            lambda: all(weak.decoded_from(o) > 5 and o.decoded_from(weak) > 5 for o in (ann, ben)),
            timeout=30,
        )
        assert paused_for(weak) is None, "nothing paused on a clean link"

        relay.impair(upstream=CLEAN, downstream=THROTTLE)
        await weak.client.wait_for(lambda: paused_for(weak) == {ann.peer.pid, ben.peer.pid}, 30)
        for member in (ann, ben):
            assert paused_for(member) is None, "only the weak receiver's video is paused"

        await asyncio.sleep(WINDOW_S / 2)  # what was queued at the bottleneck drains
        before = await counts(members)
        await asyncio.sleep(WINDOW_S)
        after = await counts(members)
        # Weak gets no video from the two paused...
        assert after["ann_to_weak"] - before["ann_to_weak"] <= IN_FLIGHT, (before, after)
        assert after["ben_to_weak"] - before["ben_to_weak"] <= IN_FLIGHT, (before, after)
        # ...but hears both, packet for packet...
        for index in (0, 1):
            heard = after["audio_to_weak"][index] - before["audio_to_weak"][index]
            spoken = after["audio_sent"][index] - before["audio_sent"][index]
            assert heard >= spoken - IN_FLIGHT, (index, before, after)
        # ...and Ann and Ben see each other at the full frame rate.
        for sender, pair in (("ann_sent", "ann_to_ben"), ("ben_sent", "ben_to_ann")):
            sent = after[sender] - before[sender]
            assert sent >= 10
            assert after[pair] - before[pair] >= sent - IN_FLIGHT, (pair, before, after)

        relay.impair(upstream=CLEAN, downstream=CLEAN)
        await weak.client.wait_for(lambda: paused_for(weak) == set(), 40)
        decoded = {o.name: weak.decoded_from(o) for o in (ann, ben)}
        await wait_until(
            lambda: all(weak.decoded_from(o) > decoded[o.name] + 5 for o in (ann, ben)),
            timeout=30,
        )
        for owner in (ann, ben):
            colours = weak.decoded_colours(owner)
            assert colours.most_common(1)[0][0] == owner.colour, colours
    finally:
        for member in members:
            await member.peer.close()
            await member.client.close()
        relay.close()
        await server.runner.cleanup()
