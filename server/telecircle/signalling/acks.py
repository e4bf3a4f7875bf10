"""Ack envelopes and the signalling error codes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

# Errors the signalling layer itself produces (domain and media errors carry their own codes).
UNKNOWN_EVENT = "unknown_event"
INVALID_MESSAGE = "invalid_message"
MESSAGE_TOO_LARGE = "message_too_large"
RATE_LIMITED = "rate_limited"
NOT_JOINED = "not_joined"
ALREADY_JOINED = "already_joined"
INTERNAL_ERROR = "internal_error"
NOT_ALLOWED = "not_allowed"


def ok(data: BaseModel) -> dict[str, Any]:
    return {"ok": True, "data": data.model_dump(mode="json")}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}
