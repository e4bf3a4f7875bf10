"""Bad SDP is refused with MediaError("invalid_sdp") and leaves no peer connection behind."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from aiortc import RTCRtpSender

from telecircle.domain.ids import ParticipantId
from telecircle.media.connection import new_peer_connection
from telecircle.media.errors import MediaError
from telecircle.media.room import MediaRoom
from telecircle.media.sfu import Sfu

from .peer import EncodedMedia, SyntheticPeer

PID = ParticipantId("p")


async def client_offer(
    kinds: list[str], direction: str = "sendonly", video_codec: str = "video/VP8"
) -> str:
    pc = new_peer_connection()
    try:
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction=direction)
            if kind == "video":
                codecs = RTCRtpSender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in codecs if c.mimeType == video_codec])
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def drop_lines(prefix: str) -> Callable[[str], str]:
    return lambda sdp: "".join(
        line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix)
    )


@pytest.mark.parametrize(
    "case",
    ["garbage", "empty_session", "recvonly", "h264_only", "five_mlines", "no_ice", "truncated"],
)
async def test_invalid_publish_offer_is_refused(sfu: Sfu, room: MediaRoom, case: str) -> None:
    if case == "garbage":
        sdp = "\x00\xffnot an sdp at all\r\nm=\r\n"
    elif case == "empty_session":
        sdp = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    elif case == "recvonly":
        sdp = await client_offer(["audio", "video"], direction="recvonly")
    elif case == "h264_only":
        sdp = await client_offer(["video"], video_codec="video/H264")
    elif case == "five_mlines":
        sdp = await client_offer(["audio", "video", "video", "video", "video"])
    elif case == "no_ice":
        sdp = drop_lines("a=ice-")(await client_offer(["audio", "video"]))
    else:
        good = await client_offer(["audio", "video"])
        sdp = good[: re.search("m=video", good).start() + 12]  # type: ignore[union-attr]
    with pytest.raises(MediaError) as caught:
        await room.publish(PID, sdp)
    assert caught.value.code == "invalid_sdp"
    counts = sfu.counts()
    assert (counts.peer_connections, counts.publishers) == (0, 0)


async def test_invalid_subscribe_answer_closes_the_offer(
    sfu: Sfu, room: MediaRoom, media_library: list[EncodedMedia]
) -> None:
    _, mids, screen_mid = await room.subscribe(PID, slot_count=2)
    assert [(m.index, m.audio_mid, m.video_mid) for m in mids] == [(0, "0", "1"), (1, "2", "3")]
    assert screen_mid == "4"
    assert sfu.counts().peer_connections == 1
    with pytest.raises(MediaError) as caught:
        await room.accept_subscribe_answer(PID, "v=0\r\nnonsense")
    assert caught.value.code == "invalid_sdp"
    counts = sfu.counts()
    assert (counts.peer_connections, counts.subscribers, counts.tasks) == (0, 0, 0)
    with pytest.raises(MediaError) as caught:
        await room.accept_subscribe_answer(PID, "v=0\r\n")
    assert caught.value.code == "not_subscribed"

    # A well-formed answer that does not match the offer (another PC's answer).
    peer = SyntheticPeer("other", media_library[0])
    try:
        await room.subscribe(PID, slot_count=2)
        await peer.subscribe(room, slot_count=1)  # answers its own 1-slot offer
        answer = peer.subscribe_pc.localDescription.sdp  # type: ignore[union-attr]
        with pytest.raises(MediaError):
            await room.accept_subscribe_answer(PID, answer)
    finally:
        await peer.close()
        await room.remove(peer.pid)
    assert sfu.counts().peer_connections == 0


async def test_out_of_range_slot_count(sfu: Sfu, room: MediaRoom) -> None:
    for slot_count in (0, -1, 1000):
        with pytest.raises(MediaError) as caught:
            await room.subscribe(PID, slot_count)
        assert caught.value.code == "invalid_request"
    assert sfu.counts().peer_connections == 0


async def test_closed_room_refuses(sfu: Sfu, room: MediaRoom) -> None:
    await room.close()
    await room.close()
    with pytest.raises(MediaError) as caught:
        await room.subscribe(PID, 1)
    assert caught.value.code == "media_closed"
    assert sfu.counts().rooms == 0
