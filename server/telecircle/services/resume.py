"""Sessions that outlive a server restart.

Every change to a live room saves a snapshot of it with its events (one transaction);
a heartbeat keeps the snapshots' ``saved_at`` current. On a graceful stop, everyone is
marked away and the session stays open; on start, an open session whose snapshot is
recent enough (``resume_window``) is restored: seats are held for the reconnect window
as after any dropped connection, and the running pair work or segment resumes with the
time that was left when the old process stopped (a crash counts from the last
heartbeat, so at most one heartbeat of time is lost).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from telecircle.domain.activities import shift_timers
from telecircle.domain.events import ParticipantAway
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import RoomState, TimerLimits
from telecircle.storage.snapshot_codec import (
    LiveSnapshot,
    SeatOwner,
    decode_snapshot,
    encode_snapshot,
)
from telecircle.storage.stores import Snapshot


@dataclass(frozen=True, slots=True)
class ResumePolicy:
    """Whether sessions survive a restart, and for how long a stopped server may stay
    down before its sessions are ended instead (seconds)."""

    enabled: bool = True
    window: float = 600.0
    # How often the saved_at of live sessions is refreshed (seconds).
    heartbeat: float = 5.0


def take_snapshot(
    state: RoomState,
    key_of: dict[ParticipantId, str],
    credential_of: dict[ParticipantId, str],
    denied: set[str],
    now: float,
) -> Snapshot:
    owners = {
        pid: SeatOwner(key, credential_of.get(pid, ""))
        for pid, key in key_of.items()
        if state.find(pid) is not None
    }
    body = encode_snapshot(LiveSnapshot(state, owners, frozenset(denied)))
    return Snapshot(body, now)


def restored_state(
    snapshot: Snapshot, limits: TimerLimits, now: float
) -> tuple[LiveSnapshot, list[ParticipantAway]]:
    """The snapshot's room as it resumes at ``now``: timers moved on by the time the
    server was down, nobody connected yet (everyone is away since ``now``); and the
    ParticipantAway events of those who were connected when it was saved (after a crash,
    nothing recorded their going).

    Raises SnapshotError for a snapshot that cannot be read."""
    live = decode_snapshot(snapshot.body, limits)
    away = [ParticipantAway(p.id, now) for p in live.state.participants if not p.away]
    state = shift_timers(live.state, max(0.0, now - snapshot.saved_at))
    state = replace(
        state,
        participants=tuple(replace(p, away_since=now) for p in state.participants),
    )
    return replace(live, state=state), away
