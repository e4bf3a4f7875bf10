"""Storage errors: raised by the stores when a request cannot be carried out.

Every store function that raises one of these has changed nothing: its transaction was
rolled back. Messages carry ids only, never names or other personal information.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of the storage layer's own errors."""


class DatabaseSetupError(StorageError):
    """The database cannot be opened with the guarantees the server needs (e.g. WAL)."""


class RoomNotFound(StorageError):
    """No room has the given id."""


class DuplicateRoomCode(StorageError):
    """Another room already uses the given code."""


class SessionNotFound(StorageError):
    """No session has the given id."""


class SessionNotOpen(StorageError):
    """The session has ended: nothing more may be recorded on it."""


class InconsistentEvents(StorageError):
    """The events contradict what is stored (e.g. a leave without a matching join)."""
