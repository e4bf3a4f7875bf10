"""Domain errors: each carries a stable machine code and a message safe to show a user."""

from __future__ import annotations


class DomainError(Exception):
    """A command was refused by the rules. ``code`` is stable; ``message`` is for people."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RoomFull(DomainError):
    code = "room_full"


class NotInRoom(DomainError):
    code = "not_in_room"


class AlreadyInRoom(DomainError):
    code = "already_in_room"


class InvalidCommand(DomainError):
    code = "invalid_command"
