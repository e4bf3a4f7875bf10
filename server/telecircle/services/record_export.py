"""Exports of a session record: JSON (everything on the record, notes included) and
HL7 FHIR R4B (who attended the group and when).

The FHIR export is a ``collection`` Bundle: one Encounter for the group session and one
per attending patient, ``partOf`` the group's, each with its attendance (``period`` from
first join to last leave, ``length`` the minutes attended, and every join-to-leave
interval in ``statusHistory``). Clinicians are the group Encounter's participants.
Billing codes stay out of it: they are suggestions for the clinician, not a claim.

A patient is one Encounter however many seats (participant ids) they had in the session
(left and came back, reconnected too late, another device): its ``identifier`` lists
every one of those seat ids (system ``urn:telecircle:participant``, in the order taken),
and its resource id and ``subject.identifier`` come from the first, so an export made
later in the session keeps the same ids. The seat ids are the ones the record and the
JSON export use; the person key behind the grouping (an account, invite or pass id) is
not exported.
Everything is validated by the ``fhir.resources`` R4B models before it is returned.

Both are CPU work on a whole record: callers run them off the event loop
(``asyncio.to_thread``).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from telecircle.services.feedback import SessionFeedback
from telecircle.services.session_record import Attendee, SessionRecord

JSON_FORMAT = "telecircle.session-record/1"
FHIR_VERSION = "4.3.0"  # R4B
# Deterministic resource ids: the same session exports to the same Bundle entries.
_NAMESPACE = uuid.UUID("6d0c2f4e-5a71-4f35-9a55-9b0c3f1d7e21")
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_SESSION_SYSTEM = "urn:telecircle:session"
_PARTICIPANT_SYSTEM = "urn:telecircle:participant"


def record_json(
    record: SessionRecord, exported_at: float, feedback: SessionFeedback | None = None
) -> bytes:
    """The whole record, and the patients' feedback, as JSON (UTF-8)."""
    document = {
        "format": JSON_FORMAT,
        "exported_at": _iso(exported_at),
        "record": dataclasses.asdict(record),
        "feedback": None if feedback is None else dataclasses.asdict(feedback),
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")


def record_fhir(
    record: SessionRecord, exported_at: float, feedback: SessionFeedback | None = None
) -> bytes:
    """The attendance as a FHIR R4B Bundle (JSON, UTF-8), validated. (Feedback is not
    part of it: a questionnaire response would need the form as a FHIR Questionnaire.)"""
    group_url = _urn(record.session_id)
    entries = [{"fullUrl": group_url, "resource": _group_encounter(record)}]
    for attendee in record.attendees:
        if attendee.role == "patient":
            entries.append(
                {
                    "fullUrl": _urn(f"{record.session_id}/{attendee.participant_id}"),
                    "resource": _patient_encounter(record, attendee, group_url),
                }
            )
    bundle = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "id": _id(record.session_id),
            "meta": {"tag": [{"system": "urn:telecircle", "code": "session-record"}]},
            "type": "collection",
            "timestamp": _iso(exported_at),
            "entry": entries,
        }
    )
    return bundle.model_dump_json(exclude_none=True).encode("utf-8")


def _group_encounter(record: SessionRecord) -> dict[str, Any]:
    clinicians = [a for a in record.attendees if a.role == "clinician"]
    return {
        "resourceType": "Encounter",
        "id": _id(record.session_id),
        "identifier": [{"system": _SESSION_SYSTEM, "value": record.session_id}],
        "status": "in-progress" if record.is_open else "finished",
        "class": {"system": _ACT_CODE, "code": "VR", "display": "virtual"},
        "serviceType": {"text": "Group psychotherapy (telehealth)"},
        "period": _period(record.started_at, record.ended_at),
        "participant": [
            {
                "type": [
                    {
                        "coding": [
                            {"system": _PARTICIPATION, "code": "PART", "display": "Participation"}
                        ]
                    }
                ],
                "individual": {"display": clinician.name},
                **_attendance_period(clinician),
            }
            for clinician in clinicians
        ],
        "location": [{"location": {"display": record.room_name}}],
    }


def _patient_encounter(record: SessionRecord, attendee: Attendee, group_url: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": _id(f"{record.session_id}-{attendee.participant_id}"),
        "identifier": [
            {"system": _PARTICIPANT_SYSTEM, "value": seat} for seat in attendee.participant_ids
        ],
        "status": "in-progress" if attendee.present_now else "finished",
        "class": {"system": _ACT_CODE, "code": "VR", "display": "virtual"},
        "subject": {
            "display": attendee.name,
            "identifier": {"system": _PARTICIPANT_SYSTEM, "value": attendee.participant_id},
        },
        "partOf": {"reference": group_url},
        **_attendance_period(attendee),
        "length": {
            "value": attendee.minutes,
            "unit": "min",
            "system": "http://unitsofmeasure.org",
            "code": "min",
        },
        "statusHistory": [
            {
                "status": "in-progress",
                "period": _period(span.joined.at, None if span.left is None else span.left.at),
            }
            for span in attendee.spans
        ],
    }


def _attendance_period(attendee: Attendee) -> dict[str, dict[str, str]]:
    """``{"period": ...}`` from first join to last leave (nothing without a span)."""
    if not attendee.spans:
        return {}
    first, last = attendee.spans[0], attendee.spans[-1]
    return {"period": _period(first.joined.at, None if last.left is None else last.left.at)}


def _period(start: float, end: float | None) -> dict[str, str]:
    period = {"start": _iso(start)}
    if end is not None:
        period["end"] = _iso(end)
    return period


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")


def _id(text: str) -> str:
    # FHIR ids allow letters, digits, '-' and '.', up to 64 characters.
    return str(uuid.uuid5(_NAMESPACE, text))


def _urn(text: str) -> str:
    return f"urn:uuid:{_id(text)}"
