"""The facilitator's mute and camera-off, enforced by the SFU: real server, real aiortc
peers (two clinicians and two patients admitted from the lobby).

What "stopped" means here, for a track of owner O (see :meth:`Group.silence`): from the
moment the control's ack reaches the clinician, the server sends no further packet of
that track to anyone — counted at the server's send side, per subscriber slot (the SFU's
own sender bookkeeping: each packet it sends on a slot's sender bumps that sender's RTP
packet count) — and every receiver, once the packets already on the wire have arrived,
receives none over a window in which O keeps sending; for audio (never retransmitted)
each receiver has received no more than the server had sent it when the ack came back.
Waits are bounded and end by themselves; no assertion is on wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from telecircle.domain.ids import ParticipantId, RoomCode
from telecircle.domain.model import TrackKind
from telecircle.media.room import MediaRoom
from telecircle.storage import stores
from tests.conftest import ROOMS, RunningServer
from tests.integration.signalled_room import SignalledRoom, join_with_media
from tests.media.peer import SyntheticPeer, encode_media, wait_until
from tests.signalling.client import Client

pytestmark = [pytest.mark.media, pytest.mark.timeout(240)]

AUDIO, VIDEO = TrackKind.AUDIO, TrackKind.VIDEO
Track = tuple[ParticipantId, TrackKind]
Counts = dict[ParticipantId, int]
# Packets the owner sends during the watch window (audio: 60 ms frames; video: 10 fps).
WINDOW_PACKETS = {AUDIO: 25, VIDEO: 15}
# Receivers count as settled (nothing more on the wire) after this long without a packet.
QUIET_S = 0.4
FLOW_TIMEOUT = 30.0


@dataclass
class Member:
    name: str
    client: Client
    peer: SyntheticPeer

    @property
    def pid(self) -> ParticipantId:
        return self.peer.pid

    def sent(self, kind: TrackKind) -> int:
        """Packets this member's own publisher has handed to aiortc so far."""
        track = self.peer.audio_track if kind is AUDIO else self.peer.video_track
        assert track is not None
        return track.sent

    async def call(self, event: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.client.call(event, {} if data is None else data)


@dataclass
class Group:
    """Everyone in one session, with counters of what flows from whom to whom."""

    server: RunningServer
    code: str
    clinicians: list[Member]
    patients: list[Member]

    @property
    def members(self) -> list[Member]:
        return [*self.clinicians, *self.patients]

    def receivers(self, owner: ParticipantId) -> list[Member]:
        return [m for m in self.members if m.pid != owner]

    # ---- at the receivers -------------------------------------------------------------

    @staticmethod
    def mid_at(receiver: Member, owner: ParticipantId, kind: TrackKind) -> str | None:
        """The mid that carries ``owner``'s ``kind`` to ``receiver`` (its slots event)."""
        slots = (receiver.client.last("slots") or {}).get("slots", [])
        for slot in slots:
            if slot["participant_id"] == owner:
                audio_mid, video_mid = receiver.peer.slot_mids[slot["index"]]
                return audio_mid if kind is AUDIO else video_mid
        return None

    def received(self, track: Track) -> Counts:
        """Per receiver, the packets of ``track`` it has received (0 before it has a slot)."""
        owner, kind = track
        counts: Counts = {}
        for receiver in self.receivers(owner):
            mid = self.mid_at(receiver, owner, kind)
            counts[receiver.pid] = 0 if mid is None else receiver.peer.received.packets[mid]
        return counts

    # ---- at the server's send side ------------------------------------------------------

    def server_sent(self, track: Track) -> Counts:
        """Per receiver, the packets the SFU has sent it on ``track``'s slot sender.

        There is no public per-track counter in the SFU; this reads each subscriber
        slot's count of the packets the SFU sent there
        (aiortc_tap.SlotSenderTap.packets_sent; NACK resends are not counted).
        """
        owner, kind = track
        live = self.server.app[ROOMS].live_room(RoomCode(self.code))
        assert live is not None
        media = live.media
        assert isinstance(media, MediaRoom)
        counts: Counts = {}
        for receiver in self.receivers(owner):
            subscriber = media._subscribers[receiver.pid]
            index = subscriber.table.index_of(owner)
            assert index is not None, "the owner keeps their slot while one kind flows"
            tap = subscriber.slots[index][0 if kind is AUDIO else 1].tap
            assert tap is not None
            counts[receiver.pid] = tap.packets_sent
        return counts

    # ---- waiting and checking ---------------------------------------------------------

    async def flowing(self) -> None:
        """Until everyone receives both kinds from everyone else."""
        tracks = [(m.pid, kind) for m in self.members for kind in TrackKind]
        await wait_until(
            lambda: all(min(self.received(t).values()) >= 3 for t in tracks),
            timeout=FLOW_TIMEOUT,
        )

    async def flows(self, tracks: Iterable[Track], packets: int = 3) -> None:
        """Until every receiver has ``packets`` more of each track than now."""
        start = {t: self.received(t) for t in tracks}
        await wait_until(
            lambda: all(
                self.received(t)[r] >= n + packets
                for t, counts in start.items()
                for r, n in counts.items()
            ),
            timeout=FLOW_TIMEOUT,
        )

    def silence(self, stopped: list[Track]) -> Silence:
        """Take the counts at the ack of a control that stops ``stopped``: call it
        straight after the ack arrives, then :meth:`Silence.confirm`."""
        return Silence(self, stopped, {t: self.server_sent(t) for t in stopped})

    async def close(self) -> None:
        for member in self.members:
            await member.client.close()
            await member.peer.close()


@dataclass
class Silence:
    """Tracks a control has just stopped, with the server's send counts at its ack."""

    group: Group
    stopped: list[Track]
    server_at_ack: dict[Track, Counts]

    async def confirm(self, flowing: Iterable[Track] = ()) -> None:
        """Nothing more of the stopped tracks reaches anyone while their owners keep
        sending, and every ``flowing`` track keeps reaching every receiver."""
        group = self.group
        # Packets sent before the ack may still be on their way: wait until the
        # receivers have gone quiet (bounded: a track that never stops fails here).
        try:
            await settle(lambda: {t: group.received(t) for t in self.stopped})
        except TimeoutError:
            raise AssertionError(f"{self.stopped} kept reaching receivers after the ack") from None
        baseline = {t: group.received(t) for t in self.stopped}
        owners = {m.pid: m for m in group.members}
        sent = {(o, k): owners[o].sent(k) for o, k in self.stopped}
        # The window: until every owner has sent a good run more of the stopped kind,
        # and the tracks that should flow have kept flowing at every receiver.
        watch_sending = wait_until(
            lambda: all(owners[o].sent(k) >= n + WINDOW_PACKETS[k] for (o, k), n in sent.items()),
            timeout=FLOW_TIMEOUT,
        )
        await asyncio.gather(watch_sending, group.flows(flowing))
        for track in self.stopped:
            assert group.received(track) == baseline[track], f"{track} reached a receiver"
            assert group.server_sent(track) == self.server_at_ack[track], (
                f"the server sent {track} after the ack"
            )
            if track[1] is AUDIO:
                for receiver, count in baseline[track].items():
                    assert count <= self.server_at_ack[track][receiver]


async def settle(read: Callable[[], object], timeout: float = 10.0) -> None:
    """Until ``read()`` has not changed for QUIET_S; TimeoutError after ``timeout``."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        last, since = read(), loop.time()
        while loop.time() - since < QUIET_S:
            await asyncio.sleep(0.05)
            now = read()
            if now != last:
                last, since = now, loop.time()


async def admitted_with_media(
    server: RunningServer, code: str, admitter: Client, name: str, colour: int
) -> Member:
    """A patient who knocks, is admitted by ``admitter``, then publishes and subscribes."""
    client = await Client().connect(server.url, await server.patient_cookie(code, name))
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"] and ack["data"]["place"] == "lobby", ack
    pid = ack["data"]["participant_id"]
    assert (await admitter.call("admit", {"participant_id": pid}))["ok"]
    await client.wait_for(lambda: client.last("admitted") is not None)
    peer = SyntheticPeer(pid, encode_media(colour, frames=10))
    room = SignalledRoom(client)
    await peer.publish(room)  # type: ignore[arg-type]
    await peer.subscribe(room, 0)  # type: ignore[arg-type]
    return Member(name, client, peer)


async def open_group(server: RunningServer, *, patients_may_unmute: bool = True) -> Group:
    """Two clinicians, then two patients let in from the lobby; media flowing."""
    code = await server.create_room(limit=4)
    if not patients_may_unmute:  # the room's policy, set before its session opens
        room = await stores.get_room_by_code(server.database, RoomCode(code))
        assert room is not None
        await stores.update_room(
            server.database,
            room.id,
            name=room.name,
            participant_limit=room.participant_limit,
            recording_consent_required=room.recording_consent_required,
            notes_retention_days=room.notes_retention_days,
            patients_may_unmute=False,
        )
    clinicians = [
        Member(name, *await join_with_media(server, code, name, colour))
        for name, colour in (("Dr C", 0), ("Dr D", 1))
    ]
    lead = clinicians[0].client
    patients = [
        await admitted_with_media(server, code, lead, name, colour)
        for name, colour in (("Pat", 2), ("Sam", 3))
    ]
    group = Group(server, code, clinicians, patients)
    await group.flowing()
    return group


def roster_entry(member: Member, pid: ParticipantId) -> dict[str, Any]:
    roster = member.client.last("roster") or {"participants": []}
    return next((p for p in roster["participants"] if p["id"] == pid), {})


async def test_a_forced_mute_stops_the_patients_audio_at_the_server_and_every_receiver(
    server: RunningServer,
) -> None:
    group = await open_group(server)
    try:
        lead, co = group.clinicians
        pat, sam = group.patients
        # Refusals first: a patient cannot mute anyone, a clinician not another one.
        refused = await sam.call("force_media", {"participant_id": pat.pid, "audio_off": True})
        assert refused["error"]["code"] == "not_allowed"
        refused = await co.call("force_media", {"participant_id": lead.pid, "audio_off": True})
        assert refused["error"]["code"] == "not_allowed"
        await group.flows([(pat.pid, AUDIO), (lead.pid, AUDIO)])

        ack = await lead.call("force_media", {"participant_id": pat.pid, "audio_off": True})
        assert ack["ok"], ack
        silence = group.silence([(pat.pid, AUDIO)])
        await silence.confirm(flowing=[(pat.pid, VIDEO), (sam.pid, AUDIO), (lead.pid, AUDIO)])
        # Her browser is told (it shows "muted by the facilitator").
        await pat.client.wait_for(lambda: roster_entry(pat, pat.pid).get("audio_forced_off"))

        ack = await lead.call("force_media", {"participant_id": pat.pid, "audio_off": False})
        assert ack["ok"], ack
        # Let speak: she may unmute now, but nothing goes live until she does.
        still = group.silence([(pat.pid, AUDIO)])
        await still.confirm(flowing=[(pat.pid, VIDEO)])
        assert (await pat.call("set_media", {"audio_on": True}))["ok"]
        await group.flows([(pat.pid, AUDIO), (pat.pid, VIDEO)])
    finally:
        await group.close()


async def test_mute_all_silences_every_patient_and_no_clinician(server: RunningServer) -> None:
    group = await open_group(server)
    try:
        co = group.clinicians[1]
        refused = await group.patients[0].call("mute_all")
        assert refused["error"]["code"] == "not_allowed"

        ack = await co.call("mute_all")
        assert ack["ok"], ack
        silence = group.silence([(p.pid, AUDIO) for p in group.patients])
        await silence.confirm(
            flowing=[
                *((c.pid, AUDIO) for c in group.clinicians),
                *((p.pid, VIDEO) for p in group.patients),
            ]
        )
    finally:
        await group.close()


async def test_camera_off_stops_the_patients_video_and_keeps_their_audio(
    server: RunningServer,
) -> None:
    group = await open_group(server)
    try:
        lead = group.clinicians[0]
        pat = group.patients[0]
        ack = await lead.call("force_media", {"participant_id": pat.pid, "video_off": True})
        assert ack["ok"], ack
        silence = group.silence([(pat.pid, VIDEO)])
        await silence.confirm(flowing=[(pat.pid, AUDIO)])

        ack = await lead.call("force_media", {"participant_id": pat.pid, "video_off": False})
        assert ack["ok"], ack
        assert (await pat.call("set_media", {"video_on": True}))["ok"]  # her choice
        await group.flows([(pat.pid, VIDEO)])  # from a keyframe the server asked for
    finally:
        await group.close()


@pytest.mark.parametrize("patients_may_unmute", [False, True])
async def test_the_rooms_policy_decides_whether_a_muted_patient_may_unmute(
    server: RunningServer, patients_may_unmute: bool
) -> None:
    group = await open_group(server, patients_may_unmute=patients_may_unmute)
    try:
        lead = group.clinicians[0]
        pat = group.patients[0]
        ack = await lead.call("force_media", {"participant_id": pat.pid, "audio_off": True})
        assert ack["ok"], ack
        silence = group.silence([(pat.pid, AUDIO)])
        own = await pat.call("set_media", {"audio_on": True})
        if patients_may_unmute:
            assert own["ok"], own
            await group.flows([(pat.pid, AUDIO)])
        else:
            assert own["error"]["code"] == "not_allowed"
            await silence.confirm(flowing=[(pat.pid, VIDEO)])
            # Muting herself is always allowed, and changes nothing of the above.
            assert (await pat.call("set_media", {"audio_on": False}))["ok"]
    finally:
        await group.close()
