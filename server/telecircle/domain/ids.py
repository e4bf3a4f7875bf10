"""Identifier types.

A participant id names a person's seat in a session and outlives their connections; a
connection id names one socket and dies with it.
"""

from __future__ import annotations

import secrets
from typing import NewType

RoomId = NewType("RoomId", str)
RoomCode = NewType("RoomCode", str)
SessionId = NewType("SessionId", str)
ParticipantId = NewType("ParticipantId", str)
ConnectionId = NewType("ConnectionId", str)

# 16 bytes of randomness: room codes appear in join URLs and must not be guessable.
ROOM_CODE_BYTES = 16


def new_room_code() -> RoomCode:
    """A fresh unguessable room code (URL-safe, 22 characters)."""
    return RoomCode(secrets.token_urlsafe(ROOM_CODE_BYTES))


def new_participant_id() -> ParticipantId:
    return ParticipantId("p_" + secrets.token_hex(8))
