"""Notes through real socket.io clients and the real server: a clinician saves and
lists their own notes; limits and bad input get error acks that never echo the text;
patients and other clinicians never reach a note; nothing of a note is logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from telecircle.web.keys import NOTES
from tests.conftest import RunningServer, start_server
from tests.signalling.client import Client
from tests.signalling.test_controls import Session, open_session

SECRET = "Ann talked about her brother again qv3"


def save(session_id: str, text: str, *, note: str = "note-0001", n: int = 1) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "note_id": note,
        "save_id": f"save-{n:04d}",
        "text": text,
        "topic": "family",
    }


async def _panel(client: Client) -> dict[str, Any]:
    ack = await client.call("list_notes", {})
    assert ack["ok"], ack
    data: dict[str, Any] = ack["data"]
    return data


async def test_a_clinician_saves_versions_and_lists_them(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = await open_session(server)
    try:
        panel = await _panel(s.therapist)
        assert panel["notes"] == []
        assert panel["max_chars"] == server.settings.note_max_chars
        assert panel["session_started_at"] <= panel["server_time"]
        session_id = panel["session_id"]
        first = await s.therapist.call("save_note", {**save(session_id, "draft")})
        assert first == {
            "ok": True,
            "data": {"note_id": "note-0001", "version": 1, "saved_at": first["data"]["saved_at"]},
        }
        tagged = {**save(session_id, SECRET, n=2), "participant_ids": [s.ann_id]}
        assert (await s.therapist.call("save_note", tagged))["data"]["version"] == 2
        # The same save again (a lost acknowledgement): the same answer, nothing new.
        assert (await s.therapist.call("save_note", tagged))["data"]["version"] == 2
        [note] = (await _panel(s.therapist))["notes"]
        assert note["text"] == SECRET and note["version"] == 2
        assert note["topic"] == "family" and note["participant_ids"] == [s.ann_id]
        assert note["unreadable"] is None
        assert SECRET not in caplog.text and "family" not in caplog.text
    finally:
        await _close(s)


async def test_limits_and_bad_input_get_error_acks_without_the_text(
    server: RunningServer,
) -> None:
    s = await open_session(server)
    try:
        session_id = (await _panel(s.therapist))["session_id"]
        limit = server.settings.note_max_chars
        too_long = await s.therapist.call("save_note", save(session_id, "wombat" * limit))
        assert too_long["ok"] is False
        assert too_long["error"]["code"] in ("note_too_long", "invalid_message")
        assert "wombat" not in str(too_long)
        just_over = await s.therapist.call("save_note", save(session_id, "w" * (limit + 1)))
        assert just_over["error"]["code"] == "note_too_long"
        assert str(limit) in just_over["error"]["message"]
        bad_id = await s.therapist.call("save_note", {**save(session_id, "x"), "note_id": "../a"})
        assert bad_id["error"]["code"] == "invalid_message"
        other = await s.therapist.call("save_note", save("s_elsewhere", "wombat"))
        assert other["error"]["code"] == "note_not_found"
        stranger = await s.therapist.call(
            "save_note", {**save(session_id, "x"), "participant_ids": ["p_stranger"]}
        )
        assert stranger["error"]["code"] == "invalid_note"
        assert (await _panel(s.therapist))["notes"] == []
    finally:
        await _close(s)


async def test_patients_never_reach_notes(server: RunningServer) -> None:
    s = await open_session(server)
    try:
        session_id = (await _panel(s.therapist))["session_id"]
        assert (await s.therapist.call("save_note", save(session_id, SECRET)))["ok"]
        for event, payload in (("list_notes", {}), ("save_note", save(session_id, "mine"))):
            ack = await s.ann.call(event, payload)
            assert ack["ok"] is False and ack["error"]["code"] == "not_allowed"
            assert SECRET not in str(ack)
        assert SECRET not in str(s.ann.events)
    finally:
        await _close(s)


async def test_a_co_facilitator_writes_their_own_notes(server: RunningServer) -> None:
    s = await open_session(server)
    co = await Client().connect(server.url, await server.clinician_cookie(s.code, "Dr Co"))
    try:
        assert (await co.call("join", {"room_code": s.code}))["ok"]
        session_id = (await _panel(s.therapist))["session_id"]
        assert (await s.therapist.call("save_note", save(session_id, SECRET)))["ok"]
        assert (await _panel(co))["notes"] == []  # not the therapist's
        taken = await co.call("save_note", save(session_id, "not mine", n=9))
        assert taken["error"]["code"] == "note_not_found"  # another's note id
        assert (await co.call("save_note", save(session_id, "mine", note="note-co-01")))["ok"]
        assert [n["text"] for n in (await _panel(co))["notes"]] == ["mine"]
        assert [n["text"] for n in (await _panel(s.therapist))["notes"]] == [SECRET]
        assert server.app[NOTES].limits.max_chars == server.settings.note_max_chars
    finally:
        await co.close()
        await _close(s)


async def _close(s: Session) -> None:
    for client in (s.therapist, s.ann, s.bo):
        await client.close()


async def test_the_limits_are_the_settings(tmp_path: Path) -> None:
    server = await start_server(
        tmp_path,
        note_max_chars=100,
        note_max_versions=10,
        note_max_per_author=2,
        note_topic_max_chars=5,
        note_max_tags=1,
    )
    s = await open_session(server)
    try:
        panel = await _panel(s.therapist)
        assert (panel["max_chars"], panel["max_versions"]) == (100, 10)
        sid = panel["session_id"]

        async def code(payload: dict[str, Any]) -> str:
            ack = await s.therapist.call("save_note", payload)
            return "ok" if ack["ok"] else str(ack["error"]["code"])

        assert await code(save(sid, "x" * 101)) == "note_too_long"
        assert await code({**save(sid, "x"), "topic": "abcdef"}) == "topic_too_long"
        two_tags = {**save(sid, "x"), "topic": "", "participant_ids": [s.ann_id, s.bo_id]}
        assert await code(two_tags) == "too_many_tags"
        for n in range(10):
            assert await code({**save(sid, "x" * 100, n=n), "topic": "fam"}) == "ok"
        assert await code({**save(sid, "x", n=10), "topic": ""}) == "too_many_versions"
        assert await code({**save(sid, "x", note="note-0002"), "topic": ""}) == "ok"
        assert await code({**save(sid, "x", note="note-0003"), "topic": ""}) == "too_many_notes"
    finally:
        await _close(s)
        await server.runner.cleanup()


async def test_a_clinician_without_a_seat_saves_into_an_ended_session(
    server: RunningServer,
) -> None:
    s = await open_session(server)
    session_id = (await _panel(s.therapist))["session_id"]
    assert (await s.therapist.call("save_note", save(session_id, "before the end")))["ok"]
    assert (await s.therapist.call("end_session", {}))["ok"]
    await _close(s)
    # The page's drafts, sent afterwards from a fresh connection that joins nothing.
    later = await Client().connect(server.url, await server.owner_cookie(s.code))
    patient = await Client().connect(server.url, await server.patient_cookie(s.code, "Cy"))
    try:
        ack = await later.call("save_note", save(session_id, "as it ended", n=2))
        assert ack["ok"] and ack["data"]["version"] == 2, ack
        refused = await patient.call("save_note", save(session_id, "not mine", n=3))
        assert refused["error"]["code"] == "not_allowed"
        assert (await later.call("list_notes", {}))["error"]["code"] == "not_joined"
    finally:
        await later.close()
        await patient.close()
