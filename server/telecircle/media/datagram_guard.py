"""What a hostile datagram at an ICE port may not do: the checks :mod:`ice_policy` installs.

Each check names the upstream behaviour (aioice 0.13.0, aiortc 1.16.0, pylibsrtp 1.0)
it defends against; tests/media/test_hostile_*.py fire real datagrams at a live
session to prove it, and tests/media/test_aiortc_seams.py fails if the upstream code
these checks mirror changes.

1. :func:`could_be_media`: aioice hands every datagram that is not STUN, from any
   source, to aiortc, and two kinds kill aiortc 1.16's DTLS transport (which ends the
   peer connection): an empty one (``RTCDtlsTransport._recv_next`` reads ``data[0]``)
   and an SRTP/SRTCP-looking one longer than 1500 bytes (pylibsrtp's ``Session``
   copies packets into a fixed 1500-byte buffer and raises ``ValueError("packet is too
   long")``, which ``_recv_next`` does not catch: only ``pylibsrtp.Error`` is). UDP
   carries up to 65,507 bytes, fragmented, so one such datagram from anywhere on the
   internet would eject a participant.
2. :func:`strict_stun_parser`: aioice 0.13's ``stun.parse_message`` raises
   ``struct.error`` (not the ``ValueError`` its callers catch) for an attribute of the
   wrong length, such as a 3-byte PRIORITY. The exception escapes
   ``StunProtocol.datagram_received`` into the event loop, which logs an error with a
   traceback for every such datagram: a flood of them floods the log.
3. :func:`off_nominated_path`: aioice 0.13 answers an authenticated binding request
   from any address and, even after ICE has completed, learns that address as a
   peer-reflexive candidate and starts a check towards it; a successful check there
   becomes the nominated pair (at once when aioice is controlling, which uses
   aggressive nomination; on the peer's USE-CANDIDATE when controlled), and all media
   is then sent to that address. STUN integrity does not cover the source address, so
   whoever captures one of the participant's binding requests can replay it from their
   own address and, relaying the resulting checks to the participant, take its media
   path (a test proves this against the upstream code). Even without a relay, every
   replay from a new address costs a candidate, a pair and a check task that sends
   that address up to 7 requests. Once a component has a nominated pair, requests from
   anywhere else are therefore dropped unanswered. Telecircle gives up nothing it uses:
   aiortc has no ICE restart, so a participant whose address changes (a new network, a
   NAT rebinding) loses consent and is set up again with a new peer connection, as any
   lost path is; a browser that tries another candidate pair while its nominated one
   works gets no answer there and stays where it is.
4. :func:`from_checked_source`: aioice 0.13 hands every non-STUN datagram to aiortc
   whatever its source (only STUN requests are checked, and only by integrity), and
   queues it in ``Connection._queue``, which has no bound and which nobody reads until
   ICE has completed and DTLS starts. So anyone who finds a port could (a) fill that
   queue during a connection's setup (hundreds of MB in seconds from one source), and
   (b) abort the DTLS handshake with one forged plaintext alert (OpenSSL acts on an
   epoch-0 fatal alert during the handshake), which blocks every join and every
   reconnection. Non-STUN datagrams are therefore taken only from the nominated pair of
   their component once it has one, and before that only from an address the
   connection pairs with on that socket (one the client's SDP named and the policy
   allowed, or one learned from an authenticated check). And the queue is bounded
   (:data:`MAX_QUEUED_DATAGRAMS`): even the peer itself cannot grow it without end.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Any

# aiortc's demultiplexer (RTCDtlsTransport._recv_next, RFC 7983 first-byte ranges); every
# other first byte is ignored there.
DTLS_FIRST_BYTES = range(20, 64)
RTP_FIRST_BYTES = range(128, 192)
# The smallest record that can be valid: a DTLS record header is 13 bytes (the shortest
# real record, a plaintext alert, is 15); an RTP header is 12 bytes, an RTCP packet at
# least 8, and SRTP/SRTCP (all aiortc ever accepts) add an authentication tag of at
# least 10 bytes, SRTCP also a 4-byte index: 22 bytes at the least. 12 keeps every one.
MIN_DTLS_RECORD = 13
MIN_RTP_PACKET = 12
# pylibsrtp 1.0's Session buffer (``ffi.new("char[]", 1500)``): unprotect() raises a
# ValueError for anything longer. aiortc's own senders never exceed it (protect() uses
# the same buffer, less room for the tag), nor do browsers (RTP stays under the MTU).
MAX_SRTP_PACKET = 1500
# DTLS records from browsers and aiortc fit the path MTU too (handshakes are fragmented).
MAX_DTLS_RECORD = 1500
# RFC 7983: a first byte of 0-3 is STUN; anything else is for aiortc's demultiplexer.
STUN_FIRST_BYTES = range(0, 4)
# Datagrams queued for aiortc before it reads them: a few DTLS handshake flights while
# ICE completes; once DTLS runs it reads each as it comes.
MAX_QUEUED_DATAGRAMS = 256


def could_be_media(data: bytes) -> bool:
    """Whether aiortc could use this non-STUN datagram (DTLS, SRTP or SRTCP).

    False for an empty datagram, for a first byte aiortc ignores anyway, for anything
    shorter than the smallest valid record of its kind, and for anything longer than a
    path MTU (an SRTP/SRTCP-looking one that long would kill aiortc's SRTP session).
    Other junk is left to aiortc, which discards it safely (OpenSSL drops bad DTLS
    records, libsrtp refuses bad SRTP).
    """
    if not data:
        return False
    first = data[0]
    if first in DTLS_FIRST_BYTES:
        return MIN_DTLS_RECORD <= len(data) <= MAX_DTLS_RECORD
    if first in RTP_FIRST_BYTES:
        return MIN_RTP_PACKET <= len(data) <= MAX_SRTP_PACKET
    return False


def strict_stun_parser(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """Wrap aioice's ``stun.parse_message``: malformed input raises ValueError only.

    aioice then treats the datagram as it does any other that is not STUN (it goes to
    ``Connection.data_received``, where :func:`could_be_media` drops it).
    """

    @functools.wraps(parse)
    def parse_message(data: bytes) -> Any:
        try:
            return parse(data)
        except struct.error as exc:
            raise ValueError("STUN attribute has an invalid length") from exc

    return parse_message


def off_nominated_path(connection: Any, addr: tuple[str, int], protocol: Any) -> bool:
    """Whether ``addr`` (arriving on ``protocol``) is not the nominated pair of a component
    that has one. False while that component is still being connected (ICE may then
    learn addresses), and for the nominated peer itself (same address, same socket)."""
    nominated = connection._nominated.get(protocol.local_candidate.component)
    if nominated is None:
        return False
    return not (nominated.remote_addr == addr and nominated.protocol is protocol)


def from_checked_source(connection: Any, addr: tuple[str, int], protocol: Any) -> bool:
    """Whether a non-STUN datagram from ``addr`` (arriving on ``protocol``) may reach
    aiortc: once the component has a nominated pair, only from that pair (same address,
    same socket); before that, only from the remote address of a pair on that socket."""
    nominated = connection._nominated.get(protocol.local_candidate.component)
    if nominated is not None:
        return bool(nominated.remote_addr == addr and nominated.protocol is protocol)
    return any(
        pair.protocol is protocol and pair.remote_addr == addr for pair in connection._check_list
    )
