"""Domain errors: each carries a stable machine code and a message safe to show a user."""

from __future__ import annotations

from telecircle.errors import TelecircleError


class DomainError(TelecircleError):
    """A command was refused by the rules. ``code`` is stable; ``message`` is for people."""

    code = "domain_error"
    http_status = 409


class RoomFull(DomainError):
    code = "room_full"
    http_status = 409


class NotInRoom(DomainError):
    code = "not_in_room"


class AlreadyInRoom(DomainError):
    code = "already_in_room"


class InvalidCommand(DomainError):
    code = "invalid_command"
    http_status = 422


class LobbyFull(DomainError):
    code = "lobby_full"
    http_status = 409


class NotAllowed(DomainError):
    """The sender's role does not allow this command."""

    code = "not_allowed"
    http_status = 403


class NotWaiting(DomainError):
    code = "not_waiting"


class SessionLocked(DomainError):
    code = "session_locked"


class ActivityConflict(DomainError):
    """Pair work or a segment is (or is not) running, so this cannot be done now."""

    code = "activity_conflict"
