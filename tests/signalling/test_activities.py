"""Pair work and segments through real socket.io clients and the real server, with
short timers: what each participant is told of their place, the countdown, the warning,
the automatic return, messages to the pairs, the audit log, and who may do what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from telecircle.storage import audit_store
from tests.conftest import RunningServer, start_server
from tests.signalling.client import Client


@dataclass
class Group:
    code: str
    therapist: Client
    patients: list[Client]
    ids: list[str]
    therapist_id: str

    @property
    def everyone(self) -> list[Client]:
        return [self.therapist, *self.patients]


async def _enter(server: RunningServer, cookie: str, code: str) -> tuple[Client, str]:
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    return client, str(ack["data"]["participant_id"])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    # Timers short enough for a test: pairs from 2 s, segments 2-20 s, warned 1 s before.
    running = await start_server(
        tmp_path,
        pairs_min_seconds=2,
        segment_min_seconds=2,
        segment_default_seconds=3,
        timer_warning_seconds=1,
        pairs_message_max_chars=40,
    )
    yield running
    await running.runner.cleanup()


@pytest.fixture
async def g(server: RunningServer) -> AsyncIterator[Group]:
    code = await server.create_room()
    therapist, therapist_id = await _enter(server, await server.owner_cookie(code), code)
    patients, ids = [], []
    for name in ("Ann", "Bo", "Cy"):
        client, pid = await _enter(server, await server.patient_cookie(code, name), code)
        patients.append(client)
        ids.append(pid)
    assert (await therapist.call("admit_all", {}))["ok"]
    for patient in patients:
        await patient.wait_for(lambda p=patient: p.last("activity") is not None)  # type: ignore[misc]
    group = Group(code, therapist, patients, ids, therapist_id)
    yield group
    for client in group.everyone:
        await client.close()


def place(client: Client) -> dict[str, Any]:
    return dict(client.last("activity")["place"])


async def test_random_pairs_make_a_trio_count_down_warn_and_return(g: Group) -> None:
    ack = await g.therapist.call("start_pairs", {"duration_seconds": 3, "groups": None})
    assert ack["ok"], ack
    for patient in g.patients:
        await patient.wait_for(lambda p=patient: place(p)["spot"] == "pair")  # type: ignore[misc]
    # Three patients: one trio, and each of them is with the other two.
    for patient, pid in zip(g.patients, g.ids, strict=True):
        activity = patient.last("activity")
        assert sorted(activity["with_ids"]) == sorted(set(g.ids) - {pid})
        assert activity["timer"]["activity"] == "pairs"
        assert 0 < activity["timer"]["remaining_seconds"] <= 3
        assert activity["facilitator"] is None  # patients do not get the overview
    overview = g.therapist.last("activity")["facilitator"]
    assert [sorted(group) for group in overview["pairs"]] == [sorted(g.ids)]
    assert place(g.therapist) == {"spot": "plenary", "pair": None}
    # The server's timer warns, then ends the pair work by itself.
    await g.patients[0].wait_for(lambda: g.patients[0].last("activity")["timer"]["warned"])
    await g.patients[0].wait_for(lambda: g.patients[0].last("activity")["timer"] is None)
    for client in g.everyone:
        await client.wait_for(lambda c=client: place(c)["spot"] == "plenary")  # type: ignore[misc]


async def test_pairs_by_hand_visits_and_messages(server: RunningServer, g: Group) -> None:
    ann, bo, _ = g.ids
    ack = await g.therapist.call("start_pairs", {"duration_seconds": 60, "groups": [[ann, bo]]})
    assert ack["ok"], ack
    await g.patients[0].wait_for(lambda: place(g.patients[0]) == {"spot": "pair", "pair": 0})
    # Cy, left out of the pairs, stays in the plenary with the therapist.
    await g.patients[2].wait_for(
        lambda: sorted(g.patients[2].last("activity")["with_ids"]) == [g.therapist_id]
    )
    assert (await g.therapist.call("visit_pair", {"group": 0}))["ok"]
    await g.patients[0].wait_for(
        lambda: sorted(g.patients[0].last("activity")["with_ids"]) == sorted([bo, g.therapist_id])
    )
    # With nobody leading the plenary, Cy is on hold.
    await g.patients[2].wait_for(lambda: place(g.patients[2])["spot"] == "hold")
    assert (await g.therapist.call("message_pairs", {"text": "Two minutes left"}))["ok"]
    for client in (g.patients[0], g.patients[1], g.therapist):
        await client.wait_for(lambda c=client: c.last("pairs_message") is not None)  # type: ignore[misc]
        assert client.last("pairs_message")["text"] == "Two minutes left"
    assert g.patients[2].last("pairs_message") is None  # not in a pair
    too_long = await g.therapist.call("message_pairs", {"text": "x" * 41})
    assert too_long["error"]["code"] == "invalid_command"
    assert "x" * 41 not in too_long["error"]["message"]  # the error does not echo input
    assert (await g.therapist.call("extend", {"seconds": 60}))["ok"]
    assert (await g.therapist.call("end_pairs", {}))["ok"]
    await g.patients[0].wait_for(lambda: place(g.patients[0])["spot"] == "plenary")
    audited = await audit_store.list_entries(server.database, offset=0, limit=50)
    actions = {e.action for e in audited.entries}
    assert {"start_pairs", "visit_pair", "message_pairs", "extend", "end_pairs"} <= actions


async def test_a_segment_queue_runs_by_itself_and_the_others_wait(g: Group) -> None:
    ann, bo, _ = g.ids
    ack = await g.therapist.call(
        "start_segment", {"participant_ids": [ann, bo], "others": "hold", "duration_seconds": 2}
    )
    assert ack["ok"], ack
    await g.patients[0].wait_for(lambda: place(g.patients[0])["spot"] == "segment")
    assert g.patients[0].last("activity")["with_ids"] == [g.therapist_id]
    await g.patients[2].wait_for(lambda: place(g.patients[2])["spot"] == "hold")
    assert g.patients[2].last("activity")["timer"]["activity"] == "segment"
    segment = g.therapist.last("activity")["facilitator"]["segment"]
    assert (segment["participant_id"], segment["queue"], segment["done"]) == (ann, [bo], [])
    # Ann's time runs out: Bo is next, by himself.
    await g.patients[1].wait_for(lambda: place(g.patients[1])["spot"] == "segment")
    await g.therapist.wait_for(
        lambda: (g.therapist.last("activity")["facilitator"]["segment"] or {}).get("done") == [ann]
    )
    await g.patients[0].wait_for(lambda: place(g.patients[0])["spot"] == "hold")
    # Then the run ends and everyone is back together.
    for client in g.everyone:
        await client.wait_for(lambda c=client: place(c)["spot"] == "plenary")  # type: ignore[misc]


async def test_segment_bounds_and_conflicts_are_clear_errors(g: Group) -> None:
    ann, bo, _ = g.ids
    too_long = await g.therapist.call(
        "start_segment", {"participant_ids": [ann], "others": "hold", "duration_seconds": 21 * 60}
    )
    assert too_long["error"]["code"] == "invalid_command"
    assert "between" in too_long["error"]["message"]
    assert (
        await g.therapist.call("start_segment", {"participant_ids": [ann], "others": "plenary"})
    )["ok"]
    busy = await g.therapist.call("start_pairs", {"duration_seconds": 60, "groups": None})
    assert busy["error"]["code"] == "activity_conflict"
    assert (await g.therapist.call("queue_segment", {"participant_id": bo}))["ok"]
    assert (await g.therapist.call("next_segment", {}))["ok"]
    await g.patients[1].wait_for(lambda: place(g.patients[1])["spot"] == "segment")
    assert (await g.therapist.call("end_segment", {}))["ok"]
    await g.patients[1].wait_for(lambda: place(g.patients[1])["spot"] == "plenary")
    nothing = await g.therapist.call("end_segment", {})
    assert nothing["error"]["code"] == "activity_conflict"


async def test_patients_cannot_run_pairs_or_segments(g: Group) -> None:
    bo = g.ids[1]
    for event, payload in (
        ("start_pairs", {"duration_seconds": 60, "groups": None}),
        ("visit_pair", {"group": 0}),
        ("message_pairs", {"text": "hi"}),
        ("end_pairs", {}),
        ("extend", {"seconds": 60}),
        ("start_segment", {"participant_ids": [bo], "others": "plenary"}),
        ("queue_segment", {"participant_id": bo}),
        ("next_segment", {}),
        ("end_segment", {}),
    ):
        ack = await g.patients[0].call(event, payload)
        assert ack["error"]["code"] == "not_allowed", (event, ack)
    assert place(g.patients[0])["spot"] == "plenary"


async def test_a_clinician_shares_their_screen(g: Group) -> None:
    subscribed = await g.patients[0].call("subscribe", {})
    assert subscribed["ok"] and subscribed["data"]["screen_mid"], subscribed
    assert (await g.therapist.call("share_screen", {"on": True}))["ok"]

    def sharing(client: Client) -> bool:
        roster = client.last("roster")
        return roster is not None and any(
            p["screen_on"] and p["id"] == g.therapist_id for p in roster["participants"]
        )

    for patient in g.patients:
        await patient.wait_for(lambda p=patient: sharing(p))  # type: ignore[misc]
    refused = await g.patients[0].call("share_screen", {"on": True})
    assert refused["error"]["code"] == "not_allowed"
    assert (await g.therapist.call("share_screen", {"on": False}))["ok"]
    await g.patients[0].wait_for(lambda: not sharing(g.patients[0]))
