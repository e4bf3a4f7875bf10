"""Bad SDP, straight to the media room and through the real signalling server: refused
(MediaError / error ack "invalid_sdp") without leaving a peer connection behind; ICE
candidates outside the policy never reach aioice; checks that hold under python -O; the
aiortc connect-task guard; renegotiation storms with bounded resources."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aioice.ice
import pytest
import socketio
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.exceptions import InvalidStateError

from telecircle.domain.ids import ParticipantId
from telecircle.media.connection import CONNECT_METHOD, new_peer_connection
from telecircle.media.errors import MediaError
from telecircle.media.room import MediaRoom
from telecircle.media.sdp_check import CandidatePolicy
from telecircle.media.sfu import Sfu
from tests.conftest import SFU, RunningServer, start_server
from tests.integration.footprint import Footprint, footprint, open_fds
from tests.integration.peers import receives_video
from tests.integration.signalled_room import join_with_media
from tests.signalling.client import Client

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until

# Tasks that come and go by themselves (socket reads, pings, timers).
TASK_SLACK = 8

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


# ---- every other kind of bad SDP ------------------------------------------------------

Edit = Callable[[str], str]


def sub(pattern: str, replacement: str, count: int = 0) -> Edit:
    return lambda sdp: re.sub(pattern, replacement, sdp, count=count, flags=re.M)


def candidate_line(
    host: str, port: int, *, component: int = 1, protocol: str = "udp", kind: str = "host"
) -> str:
    return f"a=candidate:9{port} {component} {protocol} 2130706431 {host} {port} typ {kind}\r\n"


def add_candidates(lines: list[str], count: int = 1) -> Edit:
    """Add ``lines`` after the first candidate of the first ``count`` media sections."""
    return lambda sdp: re.sub(
        r"^(a=candidate:[^\r\n]*\r\n)",
        lambda m: m.group(1) + "".join(lines),
        sdp,
        count=count,
        flags=re.M,
    )


def many_mlines(count: int) -> Edit:
    """Repeat the video section until the offer has ``count`` sections (each its own mid)."""

    def edit(sdp: str) -> str:
        head, video = sdp[: sdp.index("m=video")], sdp[sdp.index("m=video") :]
        copies = [re.sub(r"^a=mid:\S+", f"a=mid:v{i}", video, flags=re.M) for i in range(count)]
        return head + "".join(copies)

    return edit


def fingerprint(algorithm: str, size: int, byte: str = "AB") -> str:
    return f"a=fingerprint:{algorithm} {':'.join([byte] * size)}"


BAD_OFFERS: dict[str, Edit] = {
    "unknown_codecs_only": sub(r"^a=rtpmap:(\d+) (opus|VP8)/", r"a=rtpmap:\1 X-UNKNOWN/"),
    "mlines_100": many_mlines(100),
    "mlines_1000": many_mlines(1000),
    # aiortc's parser checks these two with assert (gone under python -O).
    "payload_type_300": sub(r"^(m=video \d+ \S+) 97", r"\1 300"),
    "payload_type_reserved_for_rtcp": sub(r"^(m=video \d+ \S+) 97", r"\1 74"),
    "no_fingerprint": drop_lines("a=fingerprint:"),
    "malformed_fingerprint": sub(r"^a=fingerprint:sha-256 \S+", fingerprint("sha-256", 32, "ZZ")),
    "short_fingerprint": sub(r"^a=fingerprint:sha-256 \S+", fingerprint("sha-256", 31)),
    "fingerprint_without_value": sub(r"^a=fingerprint:sha-256 \S+", "a=fingerprint:sha-256"),
    "unknown_fingerprint_algorithm_only": lambda sdp: sub(
        r"^a=setup:", fingerprint("md5", 16) + "\r\na=setup:"
    )(drop_lines("a=fingerprint:")(sdp)),
    "no_dtls_setup": drop_lines("a=setup:"),
    "short_ice_ufrag": sub(r"^a=ice-ufrag:\S+", "a=ice-ufrag:ab"),
    "ice_pwd_with_bad_characters": sub(r"^a=ice-pwd:\S+", "a=ice-pwd:" + "p@ss:word!" * 3),
    "no_mid": drop_lines("a=mid:"),
    "duplicate_mid": sub(r"^a=mid:1", "a=mid:0"),
    "too_many_candidates": add_candidates(
        [candidate_line("127.0.0.1", 20000 + i) for i in range(40)]
    ),
    "unreadable_candidate": add_candidates(["a=candidate:1 1 udp 1 127.0.0.1\r\n"]),
    "candidate_port_zero": add_candidates([candidate_line("127.0.0.1", 0)]),
    "candidate_port_too_big": add_candidates([candidate_line("127.0.0.1", 70000)]),
    # Addresses no peer can have (refused, where unreachable ones are only removed).
    "candidate_unspecified": add_candidates([candidate_line("0.0.0.0", 40001)]),
    "candidate_ipv6_unspecified": add_candidates([candidate_line("::", 40001)]),
    "candidate_this_network": add_candidates([candidate_line("0.1.2.3", 40001)]),
    "candidate_broadcast": add_candidates([candidate_line("255.255.255.255", 40001)]),
    "candidate_reserved": add_candidates([candidate_line("240.0.0.1", 40001)]),
    "candidate_multicast": add_candidates([candidate_line("224.0.0.251", 40001)]),
    "candidate_ipv6_multicast": add_candidates([candidate_line("ff02::fb", 40001)]),
}


@pytest.fixture
async def good_offer() -> str:
    return await client_offer(["audio", "video"])


@pytest.mark.parametrize("case", sorted(BAD_OFFERS))
async def test_bad_offer_is_refused(sfu: Sfu, room: MediaRoom, good_offer: str, case: str) -> None:
    with pytest.raises(MediaError) as caught:
        await room.publish(PID, BAD_OFFERS[case](good_offer))
    assert caught.value.code == "invalid_sdp"
    assert "\n" not in caught.value.message and "127.0.0.1" not in caught.value.message
    counts = sfu.counts()
    assert (counts.peer_connections, counts.publishers, counts.tasks) == (0, 0, 0)


@pytest.mark.parametrize("steps", [1, 2, 3])
async def test_cancelled_negotiation_leaves_no_connection(
    sfu: Sfu, room: MediaRoom, good_offer: str, steps: int
) -> None:
    """The caller's task cancelled part-way through the offer/answer exchange (a server
    shutting down, say): the connection it made is closed all the same."""
    task = asyncio.get_running_loop().create_task(room.publish(PID, good_offer))
    for _ in range(steps):
        await asyncio.sleep(0)  # into the exchange, at its first awaits
    assert sfu.counts().peer_connections == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: sfu.counts().peer_connections == 0, timeout=5)
    assert sfu.counts().publishers == 0


async def test_data_channel_only_offer_is_refused(sfu: Sfu, room: MediaRoom) -> None:
    pc = new_peer_connection()
    try:
        pc.createDataChannel("chat")
        await pc.setLocalDescription(await pc.createOffer())
        offer = str(pc.localDescription.sdp)
    finally:
        await pc.close()
    with pytest.raises(MediaError) as caught:
        await room.publish(PID, offer)
    assert caught.value.code == "invalid_sdp"
    assert sfu.counts().peer_connections == 0


async def test_checks_do_not_rely_on_assert(good_offer: str) -> None:
    """Under python -O aiortc's parser accepts what its asserts refused; ours still refuse."""
    cases = ["payload_type_300", "payload_type_reserved_for_rtcp", "no_fingerprint"]
    script = (
        "import json, sys\n"
        "from aiortc import sdp\n"
        "from telecircle.media.errors import MediaError\n"
        "from telecircle.media.sdp_check import CandidatePolicy, check_publish_offer\n"
        "if __debug__: sys.exit('not running under -O')\n"
        "codes = []\n"
        "for text in json.load(sys.stdin):\n"
        "    sdp.SessionDescription.parse(text)  # no assert any more: aiortc takes it\n"
        "    try:\n"
        "        check_publish_offer(text, 4, CandidatePolicy(('127.0.0.1',), 32))\n"
        "        codes.append('accepted')\n"
        "    except MediaError as exc:\n"
        "        codes.append(exc.code)\n"
        "print(json.dumps(codes))\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-O",
        "-c",
        script,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    offers = json.dumps([BAD_OFFERS[case](good_offer) for case in cases]).encode()
    out, err = await asyncio.wait_for(process.communicate(offers), timeout=60)
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == ["invalid_sdp"] * len(cases)


# ---- candidates outside the policy ------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "address", "reachable"),
    [
        (("127.0.0.1",), "127.0.0.1", True),
        (("127.0.0.1",), "127.0.0.2", True),
        (("127.0.0.1",), "10.0.0.1", False),
        (("127.0.0.1",), "8.8.8.8", False),
        (("127.0.0.1",), "::1", False),
        (("127.0.0.1",), "0.0.0.0", False),
        (("127.0.0.1",), "255.255.255.255", False),
        (("127.0.0.1",), "d3adb33f-0000-4000-8000-000000000000.local", False),
        (("127.0.0.1",), "example.com", False),
        (("10.0.0.5",), "10.0.0.1", True),
        (("10.0.0.5",), "192.168.1.2", True),
        (("10.0.0.5",), "8.8.8.8", True),
        (("10.0.0.5",), "127.0.0.1", False),
        (("10.0.0.5",), "169.254.1.1", False),
        (("10.0.0.5",), "224.0.0.251", False),
        (("10.0.0.5",), "0.1.2.3", False),
        (("10.0.0.5",), "240.0.0.1", False),
        (("10.0.0.5",), "::ffff:10.0.0.1", False),
        (("8.8.8.8",), "1.1.1.1", True),
        (("8.8.8.8",), "10.0.0.1", False),
        (("8.8.8.8",), "100.64.0.1", False),
        (("8.8.8.8", "2001:4860::1"), "2606:4700::1111", True),
        (("8.8.8.8", "2001:4860::1"), "fe80::1", False),
        (("8.8.8.8", "2001:4860::1"), "fc00::1", False),
        (("::1",), "::1", True),
        (("::1",), "127.0.0.1", False),
    ],
)
def test_candidate_policy(hosts: tuple[str, ...], address: str, reachable: bool) -> None:
    assert CandidatePolicy(hosts, 32).reachable(address) is reachable


# The host addresses of the tests' SFU are 127.0.0.1 only: all of these are outside.
OUTSIDE_POLICY = [
    candidate_line("10.0.0.1", 40001),
    candidate_line("8.8.8.8", 40002),
    candidate_line("192.168.1.20", 40003),
    candidate_line("::1", 40004),
    candidate_line("2001:4860::1", 40005),
    candidate_line("169.254.1.1", 40006),
    candidate_line("fe80::1", 40007),
    candidate_line("example.com", 40008),
    candidate_line("d3adb33f-0000-4000-8000-000000000000.local", 40009),
    candidate_line("::ffff:127.0.0.1", 40010),
    # Loopback, but nothing our UDP host candidates can pair with.
    candidate_line("127.0.0.1", 40011, protocol="tcp"),
    candidate_line("127.0.0.1", 40012, component=2),
    candidate_line("127.0.0.1", 40013, kind="prflx"),
]


class EditedOffers:
    """The room, with each publish offer edited on its way in (as a hostile client would)."""

    def __init__(self, room: MediaRoom, edit: Edit) -> None:
        self._room = room
        self._edit = edit

    async def publish(self, pid: ParticipantId, offer_sdp: str) -> str:
        return await self._room.publish(pid, self._edit(offer_sdp))


def server_remote_candidates(room: MediaRoom, pid: ParticipantId) -> list[Any]:
    pc = room._publishers[pid].connection.pc
    return [
        candidate
        for transceiver in pc.getTransceivers()
        for candidate in transceiver.receiver.transport.transport.getRemoteCandidates()
    ]


async def publish_edited_and_watch(
    room: MediaRoom, peer: SyntheticPeer, watcher: SyntheticPeer, edit: Edit
) -> None:
    """Publish ``peer`` with its offer edited; the watcher must receive its video."""
    await watcher.subscribe(room, slot_count=1)
    await peer.publish(EditedOffers(room, edit))  # type: ignore[arg-type]
    room.set_audiences(everyone_sees_everyone([watcher.pid, peer.pid]))
    _, video_mid = watcher.slot_mids[0]
    await wait_until(lambda: watcher.received.packets[video_mid] >= 5)


def mdns_started() -> bool:
    return getattr(aioice.ice._mdns, "protocol", None) is not None


async def test_candidates_outside_the_policy_are_never_checked(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    peer = SyntheticPeer("odd", media_library[1])
    watcher = SyntheticPeer("watcher", media_library[2])
    try:
        await publish_edited_and_watch(room, peer, watcher, add_candidates(OUTSIDE_POLICY, count=2))
        # Only the peer's real loopback candidate reached aioice (and only it, or the
        # peer-reflexive address of its checks, is where checks go).
        remote = server_remote_candidates(room, peer.pid)
        assert remote and {(c.ip, c.protocol, c.component) for c in remote} == {
            ("127.0.0.1", "udp", 1)
        }
        assert not {c.port for c in remote} & set(range(40001, 40014))
        assert not mdns_started()
        assert events.lost == []
    finally:
        await peer.close()
        await watcher.close()
        await room.close()


async def test_only_candidates_outside_the_policy_still_connect(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    """A browser behind NAT (or hiding its addresses behind mDNS names) names nothing the
    server can reach; its own checks to the server's candidate still connect it."""
    peer = SyntheticPeer("hidden", media_library[3])
    watcher = SyntheticPeer("watcher", media_library[4])
    only_outside = sub(
        r"^a=candidate:[^\r\n]*\r\n",
        candidate_line("d3adb33f-0000-4000-8000-000000000000.local", 40020)
        + candidate_line("10.0.0.1", 40021),
    )
    try:
        await publish_edited_and_watch(room, peer, watcher, only_outside)
        remote = server_remote_candidates(room, peer.pid)
        assert {(c.ip, c.type) for c in remote} == {("127.0.0.1", "prflx")}
        assert not mdns_started()
        assert events.lost == []
    finally:
        await peer.close()
        await watcher.close()
        await room.close()


async def test_guarded_connect_task_ends_quietly_once_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What aiortc 1.16's connect task trips over once close() has begun is swallowed,
    and whatever it started is stopped again; before close() errors go on as before.
    (The churn test, tests/integration/test_churn.py, met both for real: unretrieved
    InvalidStateError "RTCIceTransport is closed", and receivers started after close.)"""

    async def trips(self: RTCPeerConnection) -> None:
        raise InvalidStateError("RTCIceTransport is closed")

    monkeypatch.setattr(RTCPeerConnection, CONNECT_METHOD, trips)
    pc = new_peer_connection()
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")
    with pytest.raises(InvalidStateError):
        await getattr(pc, CONNECT_METHOD)()

    await pc.close()
    stopped: list[str] = []
    for transceiver in pc.getTransceivers():

        async def stop(kind: str = transceiver.kind) -> None:
            stopped.append(kind)

        transceiver.stop = stop
    await getattr(pc, CONNECT_METHOD)()
    assert stopped == ["audio", "video"]


# ---- through the real signalling server -------------------------------------------------

# Signalling rate limits out of the way (the frame limits sit above the message limits).
UNTHROTTLED: dict[str, Any] = {
    "messages_per_second": 10_000.0,
    "message_burst": 10_000,
    "socket_frames_per_second": 20_000.0,
    "socket_frame_burst": 20_000,
}


def compact_mlines(count: int) -> Edit:
    """``count`` minimal audio sections: 1000 of them still fit in a signalling message."""

    def edit(sdp: str) -> str:
        head = sdp[: sdp.index("m=audio")]
        return head + "".join(f"m=audio 9 UDP/TLS/RTP/SAVPF 96\na=mid:{i}\n" for i in range(count))

    return edit


# What a hostile client sends as its publish offer, and the error code of the ack.
SIGNALLED_OFFERS: dict[str, tuple[Edit, str]] = {
    "no_media": (lambda sdp: sdp[: sdp.index("m=audio")], "invalid_sdp"),
    "mlines_1000_compact": (compact_mlines(1000), "invalid_sdp"),
    # 100 full sections exceed the message limit before any SDP is read.
    "mlines_100": (BAD_OFFERS["mlines_100"], "message_too_large"),
    "outside_policy_only": (
        sub(r"^a=candidate:[^\r\n]*\r\n", candidate_line("10.0.0.1", 40030), count=0),
        "ok",
    ),
    **{
        case: (edit, "invalid_sdp")
        for case, edit in BAD_OFFERS.items()
        if case not in ("mlines_100", "mlines_1000")
    },
}
# And as its answer to the server's subscribe offer.
SIGNALLED_ANSWERS: dict[str, Edit] = {
    "no_fingerprint": BAD_OFFERS["no_fingerprint"],
    "malformed_fingerprint": BAD_OFFERS["malformed_fingerprint"],
    "short_ice_ufrag": BAD_OFFERS["short_ice_ufrag"],
    "too_many_candidates": BAD_OFFERS["too_many_candidates"],
    "unreadable_candidate": BAD_OFFERS["unreadable_candidate"],
    "payload_type_300": sub(r"^(m=video \d+ \S+) \d+", r"\1 300"),
    "sending_instead_of_receiving": sub(r"^a=recvonly", "a=sendonly"),
    "one_section_missing": lambda sdp: sdp[: sdp.rindex("m=")],
}


async def client_answer(offer: str) -> str:
    pc = new_peer_connection()
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def settle(server: RunningServer, before: Footprint) -> Footprint:
    """Wait (bounded) until the process holds no more than ``before`` did."""

    def back() -> bool:
        counts = server.app[SFU].counts()
        return (
            counts.peer_connections <= before.media.peer_connections
            and len(asyncio.all_tasks()) <= before.tasks + TASK_SLACK
            and open_fds() <= before.fds
        )

    await wait_until(back, timeout=20)
    # Closed connections' last tasks end within a few event-loop turns (one ICE pacing
    # step): then nothing refers to them any more.
    await wait_until(lambda: footprint(server).peer_connections <= before.peer_connections, 10, 0.2)
    return footprint(server)


def total_video(peer: SyntheticPeer) -> int:
    return sum(len(packets) for packets in peer.received.video_log.values())


async def test_bad_sdp_through_signalling_gets_error_acks(tmp_path: Path) -> None:
    # Rate limits out of the way: each message must reach the SDP checks.
    server = await start_server(tmp_path, **UNTHROTTLED)
    try:
        code = await server.create_room(limit=3)
        watcher_client, watcher = await join_with_media(server, code, "Watcher", 0)
        sender = await Client().connect(server.url, await server.clinician_cookie(code, "Bad"))
        joined = await sender.call("join", {"room_code": code})
        assert joined["ok"], joined
        good = await client_offer(["audio", "video"])
        await asyncio.sleep(0.5)
        before = footprint(server)

        acks: dict[str, str] = {}
        for case, (edit, _) in SIGNALLED_OFFERS.items():
            ack = await sender.call("publish", {"sdp": edit(good)})
            acks[case] = "ok" if ack["ok"] else ack["error"]["code"]
        for case, edit in SIGNALLED_ANSWERS.items():
            offer = await sender.call("subscribe")
            assert offer["ok"], offer
            ack = await sender.call(
                "subscribe_answer", {"sdp": edit(await client_answer(offer["data"]["sdp"]))}
            )
            acks[f"answer_{case}"] = "ok" if ack["ok"] else ack["error"]["code"]
        expected = {case: code for case, (_, code) in SIGNALLED_OFFERS.items()}
        expected |= {f"answer_{case}": "invalid_sdp" for case in SIGNALLED_ANSWERS}
        assert acks == expected
        assert sender.sio.connected

        # Nothing left behind: only the one publish connection the policy case opened
        # (its candidates were removed; it waits for the client's own checks).
        await wait_until(lambda: server.app[SFU].counts().peer_connections == 3)
        assert (await sender.call("leave"))["ok"]
        after = await settle(server, before)
        print(f"\nbad SDP ({len(acks)} messages): before {before.line()}\n  after {after.line()}")
        assert after.media == before.media
        assert after.peer_connections == before.peer_connections

        # The session is unharmed: the watcher still gets media from a newcomer.
        newcomer_client, newcomer = await join_with_media(server, code, "Newcomer", 3)
        seen = total_video(watcher)
        await wait_until(lambda: total_video(watcher) >= seen + 5)
        for client, peer in ((newcomer_client, newcomer), (watcher_client, watcher)):
            await client.call("leave")
            await client.close()
            await peer.close()
        await sender.close()
    finally:
        await server.runner.cleanup()


# ---- renegotiation storms -------------------------------------------------------------

STORM = 200


class Peaks:
    """Samples the SFU's peer connections and the process's descriptors and tasks while
    something runs (every 10 ms), keeping the highest of each."""

    def __init__(self, server: RunningServer) -> None:
        self._sfu = server.app[SFU]
        self.peer_connections = self.fds = self.tasks = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peer_connections = max(self.peer_connections, self._sfu.counts().peer_connections)
            self.fds = max(self.fds, open_fds())
            self.tasks = max(self.tasks, len(asyncio.all_tasks()))
            await asyncio.sleep(0.01)

    def __enter__(self) -> Peaks:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def storm_room(
    tmp_path: Path, **overrides: Any
) -> tuple[RunningServer, str, list[tuple[Client, SyntheticPeer]]]:
    """A server and a room where a watcher and a bystander publish and subscribe."""
    server = await start_server(tmp_path, **overrides)
    code = await server.create_room(limit=3)
    people = [
        await join_with_media(server, code, "Watcher", 0),
        await join_with_media(server, code, "Bystander", 2),
    ]
    return server, code, people


async def storm(
    client: Client, offer: str, concurrently: bool, timeout: float = 60
) -> Counter[str]:
    """STORM renegotiations on one connection, alternately publish and subscribe; counts
    the acks by outcome ("no_ack": the connection was closed before it was answered)."""

    async def one(n: int) -> str:
        try:
            if n % 2:
                ack = await client.call("subscribe", timeout=timeout)
            else:
                ack = await client.call("publish", {"sdp": offer}, timeout=timeout)
        except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
            return "no_ack"
        return "ok" if ack["ok"] else str(ack["error"]["code"])

    if concurrently:
        outcomes = await asyncio.gather(*(one(n) for n in range(STORM)))
    else:
        outcomes = [await one(n) for n in range(STORM)]
    return Counter(outcomes)


@pytest.mark.parametrize("concurrently", [False, True], ids=["in_a_row", "all_at_once"])
async def test_renegotiation_storm_keeps_resources_bounded(
    tmp_path: Path, concurrently: bool
) -> None:
    """With the rate limit raised out of the way, every renegotiation reaches the SFU:
    each replaces the connection before, so the SFU never holds more than one extra
    connection, and the others in the room keep receiving each other throughout."""
    server, code, people = await storm_room(tmp_path, **UNTHROTTLED)
    (watcher_client, watcher), (_, bystander) = people
    try:
        stormer = await Client().connect(server.url, await server.clinician_cookie(code, "Storm"))
        assert (await stormer.call("join", {"room_code": code}))["ok"]
        offer = await client_offer(["audio", "video"])
        await asyncio.sleep(0.5)
        before = footprint(server)
        await receives_video(watcher_client, watcher, bystander.pid)
        seen = total_video(watcher)

        started = time.perf_counter()
        with Peaks(server) as peaks:
            outcomes = await storm(stormer, offer, concurrently)
        elapsed = time.perf_counter() - started
        during = total_video(watcher) - seen

        assert outcomes == Counter({"ok": STORM})
        # The watcher and the bystander kept their connections and their media.
        assert during > 0
        await receives_video(watcher_client, watcher, bystander.pid)
        # One publish and one (unanswered) subscribe connection of the stormer's remain.
        assert server.app[SFU].counts().peer_connections == before.media.peer_connections + 2
        assert (await stormer.call("leave"))["ok"]
        await stormer.close()
        after = await settle(server, before)
        print(
            f"\nstorm of {STORM} renegotiations ({'all at once' if concurrently else 'in a row'})"
            f" in {elapsed:.1f} s: peak SFU connections {peaks.peer_connections} (before "
            f"{before.media.peer_connections}), peak fds {peaks.fds} (before {before.fds}), "
            f"peak tasks {peaks.tasks} (before {before.tasks}); watcher got {during} video "
            f"packets during it\n  before {before.line()}\n  after  {after.line()}"
        )
        # The replaced connection closes before the storm's next step: one extra at most
        # besides the stormer's current two.
        assert peaks.peer_connections <= before.media.peer_connections + 3
        assert after.media == before.media
        assert after.peer_connections == before.peer_connections
        assert after.fds <= before.fds
    finally:
        for client, peer in people:
            await client.close()
            await peer.close()
        await server.runner.cleanup()


async def test_renegotiation_storm_at_the_default_limits_is_cut_short(tmp_path: Path) -> None:
    """At the default rate limit a storm fired at once is refused past the burst, and the
    connection is closed (its seat ended) before it can do more."""
    server, code, people = await storm_room(tmp_path)
    (watcher_client, watcher), (_, bystander) = people
    try:
        stormer = await Client().connect(server.url, await server.clinician_cookie(code, "Storm"))
        joined = await stormer.call("join", {"room_code": code})
        assert joined["ok"]
        offer = await client_offer(["audio", "video"])
        await asyncio.sleep(0.5)
        before = footprint(server)
        with Peaks(server) as peaks:
            outcomes = await storm(stormer, offer, concurrently=True, timeout=5)
        await wait_until(lambda: not stormer.sio.connected)
        settings = server.settings
        print(
            f"\nstorm of {STORM} at the default limits: acks {dict(outcomes)}, peak SFU "
            f"connections {peaks.peer_connections} (before {before.media.peer_connections})"
        )
        assert outcomes["ok"] <= settings.message_burst + 5
        assert outcomes["rate_limited"] >= settings.rate_limit_strikes
        # The rest: refused once the seat had ended, or never answered (closed first).
        assert set(outcomes) <= {"ok", "rate_limited", "not_joined", "no_ack"}
        roster = watcher_client.last("roster")
        assert joined["data"]["participant_id"] not in {p["id"] for p in roster["participants"]}
        after = await settle(server, before)
        assert after.media == before.media
        await receives_video(watcher_client, watcher, bystander.pid)
    finally:
        for client, peer in people:
            await client.close()
            await peer.close()
        await server.runner.cleanup()
