"""Creating, watching and closing one aiortc peer connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.rtcrtpsender import RTCRtpSender

logger = logging.getLogger(__name__)

LOST_STATES = ("failed", "closed")
# The name aiortc's own methods call the connect task by (``self.__connect()``).
CONNECT_METHOD = "_RTCPeerConnection__connect"


class GuardedPeerConnection(RTCPeerConnection):
    """An RTCPeerConnection whose connect task ends cleanly when close() overtakes it.

    aiortc 1.16 starts its connect task (``__connect``) with ``asyncio.ensure_future``,
    keeps no reference to it, and checks for a closed connection only as it begins. When
    the connection is closed while the task is part-way (a participant leaving,
    renegotiating or dropping within a second of joining):

    - the task may go on to start a sender or receiver that close() has already stopped;
      their RTP/RTCP tasks then run for good, and keep the whole connection alive;
    - or it raises (``RTCIceTransport.start``: InvalidStateError "RTCIceTransport is
      closed" for the next transceiver), and asyncio logs "Task exception was never
      retrieved" at ERROR with a traceback, once per such connection, the traceback
      keeping the closed connection alive for as long as the log record lives.

    So once close() has begun (it sets the signalling state first), whatever the task
    trips over is moot, and everything it started is stopped again when it ends.
    Exceptions before close() are raised as before. tests/media/test_invalid_sdp.py
    checks the behaviour and tests/media/test_aiortc_seams.py the name.
    """

    async def _RTCPeerConnection__connect(self) -> None:  # noqa: N802 - aiortc's mangled name
        try:
            await getattr(super(), CONNECT_METHOD)()
        except Exception:
            if self.signalingState != "closed":
                raise
        if self.signalingState == "closed":
            for transceiver in self.getTransceivers():
                await transceiver.stop()


def new_peer_connection() -> RTCPeerConnection:
    # No STUN server: aiortc's default would contact a public one. Host candidates come
    # from the ICE policy; TURN/announced addresses are a later addition.
    # MAX_BUNDLE: with aiortc's default (BALANCED) the second transceiver of a kind stays
    # on a per-kind transport that bundling then stops, so slots after the first never
    # start. Browsers always bundle.
    return GuardedPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


def codec_preferences(kind: str) -> list[RTCRtpCodecCapability]:
    """Only opus (audio) or only VP8 (video), without RTX: packets are forwarded as-is."""
    wanted = "audio/opus" if kind == "audio" else "video/vp8"
    return [
        codec
        for codec in RTCRtpSender.getCapabilities(kind).codecs
        if codec.mimeType.lower() == wanted
    ]


class Connection:
    """One peer connection and the callback for its unexpected loss.

    ``on_lost`` runs at most once, when the connection turns failed/closed while
    :meth:`close` was not called, or when it has not connected ``connect_timeout``
    seconds after its first offer/answer exchange (:meth:`negotiated`). aioice 0.13
    fails a connection only once the client has signalled the end of its candidates and
    every check failed; a client that names no reachable candidate and never sends a
    check of its own keeps its connection (a UDP socket, and aioice polling every
    20 ms) waiting for good, so the deadline is kept here.
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        on_lost: Callable[[], None],
        close_timeout: float,
        connect_timeout: float,
    ) -> None:
        self.pc = pc
        self._close_timeout = close_timeout
        self.closing = False
        self._on_lost: Callable[[], None] | None = on_lost
        self._connect_timeout = connect_timeout
        self._connect_deadline: asyncio.TimerHandle | None = None
        self._deadline_started = False
        pc.on("connectionstatechange", self._state_changed)

    def negotiated(self) -> None:
        """The offer/answer exchange succeeded: from now the connection has
        ``connect_timeout`` seconds to connect (counted once, from the first exchange)."""
        if self._deadline_started or self.closing or self.pc.connectionState == "connected":
            return
        self._deadline_started = True
        self._connect_deadline = asyncio.get_running_loop().call_later(
            self._connect_timeout, self._connect_overdue
        )

    def _state_changed(self) -> None:
        if self.pc.connectionState == "connected":
            self._cancel_deadline()
        if self.closing or self.pc.connectionState not in LOST_STATES:
            return
        self._lost("media.connection_lost")

    def _connect_overdue(self) -> None:
        self._connect_deadline = None
        if not self.closing and self.pc.connectionState != "connected":
            self._lost("media.connect_timeout")

    def _lost(self, event: str) -> None:
        self._cancel_deadline()
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            logger.info(
                "%s state=%s ice=%s", event, self.pc.connectionState, self.pc.iceConnectionState
            )
            on_lost()

    def _cancel_deadline(self) -> None:
        if self._connect_deadline is not None:
            self._connect_deadline.cancel()
            self._connect_deadline = None

    async def close(self) -> None:
        """Close the peer connection; idempotent; gives up (with a log) after the timeout."""
        self.closing = True
        self._on_lost = None
        self._cancel_deadline()
        try:
            async with asyncio.timeout(self._close_timeout):
                await self.pc.close()
                # aiortc 1.16: the connect task that setRemoteDescription starts checks
                # for a closed connection only when it begins; if close() runs while it
                # is part-way through the transceivers, it can start a sender or
                # receiver that close() has already stopped (their tasks would run on
                # for good). Those it has started by now are stopped here; those it
                # starts later, by GuardedPeerConnection when the task ends.
                for transceiver in self.pc.getTransceivers():
                    await transceiver.stop()
        except TimeoutError:
            logger.warning("media.pc_close_timeout")
