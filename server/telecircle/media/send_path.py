"""The forwarding hot path's way out: SRTP protect and one ``sendto``, with no awaits.

What aiortc's ``RTCDtlsTransport._send_rtp`` does for a packet (protect with the DTLS
transport's outgoing SRTP session, then aioice's ``Connection.sendto`` →
``StunProtocol.send_data`` on the nominated pair), reached directly: the server's own
candidates are host candidates (it uses no TURN), whose protocol sends with one
``sendto``. :class:`SendPath` looks the pair, socket and session up once per connection
and checks per packet only that they still hold; its protect is pylibsrtp's
``Session.protect`` without the per-call allocation (pylibsrtp 1.0.0 is pinned).

tests/media/test_aiortc_seams.py checks every aiortc, aioice and pylibsrtp name used here.
"""

from __future__ import annotations

from typing import Any

from aioice.ice import StunProtocol
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp import SRTP_MAX_TRAILER_LEN, Session
from pylibsrtp._binding import ffi, lib

# The DTLS transport's state and outgoing SRTP session, the ICE transport's aioice
# connection and its nominated pairs (component 1 carries everything).
DTLS_STATE = "_state"
DTLS_TX_SRTP = "_tx_srtp"
ICE_CONNECTION = "_connection"
ICE_NOMINATED = "_nominated"
# pylibsrtp 1.0's Session: the libsrtp session pointer and its 1500-byte work buffer
# (the C array and a buffer view on it), which protect() copies each packet into.
SRTP_SESSION_POINTER = "_srtp"
SRTP_WORK_ARRAY = "_cdata"
SRTP_WORK_BUFFER = "_buffer"


class SrtpProtect:
    """``Session.protect`` for one session, as pylibsrtp does it (copy into the
    session's work buffer, ``srtp_protect``, copy out) with the length cell allocated
    once instead of per packet. Shares the buffer with the session's own calls, which
    run in the same thread and never interleave with this one."""

    __slots__ = ("_array", "_buffer", "_length", "_limit", "_pointer", "_session")

    def __init__(self, session: Session) -> None:
        self._session = session  # keeps the libsrtp session alive
        self._pointer = getattr(session, SRTP_SESSION_POINTER)[0]
        self._array = getattr(session, SRTP_WORK_ARRAY)
        self._buffer = getattr(session, SRTP_WORK_BUFFER)
        self._length = ffi.new("int *")
        self._limit = len(self._array) - SRTP_MAX_TRAILER_LEN

    def __call__(self, packet: bytes) -> bytes:
        """The protected packet; ConnectionError if libsrtp refuses (a packet too long,
        or the session's key used up)."""
        size = len(packet)
        if size > self._limit:
            raise ConnectionError("packet too long to protect")
        self._buffer[0:size] = packet
        self._length[0] = size
        if lib.srtp_protect(self._pointer, self._array, self._length) != lib.srtp_err_status_ok:
            raise ConnectionError("SRTP protect failed")
        protected: bytes = self._buffer[0 : self._length[0]]
        return protected


def _nominated(dtls: RTCDtlsTransport) -> tuple[dict[int, Any], Any, Any]:
    """The connection's nominated pairs, the pair of component 1 and its datagram
    transport. Raises ConnectionError if the path is not up."""
    if getattr(dtls, DTLS_STATE) is not DtlsState.CONNECTED:
        raise ConnectionError("not connected")
    nominated = getattr(getattr(dtls.transport, ICE_CONNECTION), ICE_NOMINATED)
    pair = nominated.get(1)
    if pair is None:
        raise ConnectionError("no nominated pair")
    protocol = pair.protocol
    if type(protocol) is not StunProtocol:
        raise ConnectionError("a relayed server candidate is not supported")
    transport = protocol.transport
    if transport is None or transport.is_closing():
        raise ConnectionError("socket closed")
    return nominated, pair, transport


class SendPath:
    """One connection's nominated socket, remote address and SRTP session, looked up
    once; :meth:`current` says whether they still hold."""

    __slots__ = ("_dtls", "_nominated", "_pair", "_session", "addr", "protect", "transport")

    def __init__(self, dtls: RTCDtlsTransport) -> None:
        """Raises ConnectionError if the path is not up."""
        self._nominated, self._pair, self.transport = _nominated(dtls)
        self._dtls = dtls
        self._session = getattr(dtls, DTLS_TX_SRTP)
        self.addr: tuple[str, int] = self._pair.remote_addr
        self.protect = SrtpProtect(self._session)

    def current(self) -> bool:
        """Still connected, on the same pair, with the same session, the socket open."""
        dtls = self._dtls
        return (
            getattr(dtls, DTLS_STATE) is DtlsState.CONNECTED
            and self._nominated.get(1) is self._pair
            and getattr(dtls, DTLS_TX_SRTP) is self._session
            and not self.transport.is_closing()
        )

    def send_rtp(self, data: bytes, buffer_limit: int) -> bool:
        """Protect and send at once; False, and nothing sent, while the socket holds more
        than ``buffer_limit`` bytes unsent (asyncio keeps what the kernel refuses)."""
        transport = self.transport
        if transport.get_write_buffer_size() > buffer_limit:
            return False
        transport.sendto(self.protect(data), self.addr)
        return True


def send_rtp_now(dtls: RTCDtlsTransport, data: bytes, buffer_limit: int) -> bool:
    """Protect and send one RTP packet at once, the path looked up for it alone; False,
    and nothing sent, while the socket holds more than ``buffer_limit`` bytes unsent.
    Raises ConnectionError if the path is not up."""
    _, pair, transport = _nominated(dtls)
    if transport.get_write_buffer_size() > buffer_limit:
        return False
    transport.sendto(getattr(dtls, DTLS_TX_SRTP).protect(data), pair.remote_addr)
    return True


def send_rtcp_now(dtls: RTCDtlsTransport, data: bytes) -> None:
    """What ``_send_rtp`` does for an RTCP packet (SRTCP protect, one ``sendto``).
    Raises ConnectionError if the path is not up."""
    _, pair, transport = _nominated(dtls)
    transport.sendto(getattr(dtls, DTLS_TX_SRTP).protect_rtcp(data), pair.remote_addr)
