"""A mute is routed before it is persisted (the SFU stops at once); if persisting
fails, the routing is put back and the mute is refused as a whole."""

from __future__ import annotations

from typing import Any

import pytest

from telecircle.domain.ids import ParticipantId, RoomCode
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.services import room_engine as rooms_module
from telecircle.web.keys import ROOMS
from tests.conftest import RunningServer
from tests.signalling.client import Client


async def test_a_mute_that_cannot_be_recorded_is_undone(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = await server.create_room()
    therapist = await Client().connect(server.url, await server.clinician_cookie(code))
    patient = await Client().connect(server.url, await server.patient_cookie(code))
    try:
        assert (await therapist.call("join", {"room_code": code}))["ok"]
        seat = (await patient.call("join", {"room_code": code}))["data"]
        await therapist.call("admit", {"participant_id": seat["participant_id"]})
        live = server.app[ROOMS].live_room(RoomCode(code))
        assert live is not None
        track = TrackRef(ParticipantId(seat["participant_id"]), TrackKind.AUDIO)
        routed: list[frozenset[str]] = []
        original_set = live.media.set_audiences

        def record_routing(audiences: Any) -> None:
            routed.append(audiences[track])
            original_set(audiences)

        monkeypatch.setattr(live.media, "set_audiences", record_routing)

        async def broken_store(*args: object, **kwargs: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(rooms_module.stores, "record_events", broken_store)
        ack = await therapist.call(
            "force_media", {"participant_id": seat["participant_id"], "audio_off": True}
        )
        assert not ack["ok"]
        # Routed away at once, then put back when the write failed.
        assert routed[0] == frozenset() and routed[-1] != frozenset()
        participant = live.state.find(track.owner)
        assert participant is not None and not participant.audio_forced_off
    finally:
        await patient.close()
        await therapist.close()
