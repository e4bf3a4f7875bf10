"""Fails loudly if an aiortc/aioice internal the SFU relies on changes.

media/aiortc_tap.py and media/ice_policy.py name every private attribute they touch;
this checks each still exists with the expected shape. If this fails after an upgrade,
re-read those modules against the new aiortc/aioice source before changing the pins.
"""

from __future__ import annotations

import inspect
import re
import struct

import aioice
import aioice.ice
import aioice.stun
import aiortc
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection, rtcrtpreceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from telecircle.media import aiortc_tap, datagram_guard, ice_network, ice_policy, send_path
from telecircle.media.connection import CONNECT_METHOD, GuardedPeerConnection, new_peer_connection
from telecircle.media.settings import MediaSettings
from telecircle.media.sfu import Sfu


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"


async def test_receiver_and_sender_internals_exist() -> None:
    pc = new_peer_connection()
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        for name in aiortc_tap.RECEIVER_NAMES:
            assert hasattr(transceiver.receiver, name), name
        for name in aiortc_tap.SENDER_NAMES:
            assert hasattr(transceiver.sender, name), name
        assert hasattr(transceiver, "_codecs")
        # The fast send path does what _send_rtp does, with the same internals.
        dtls = transceiver.sender.transport
        for name in (send_path.DTLS_STATE, send_path.DTLS_TX_SRTP):
            assert hasattr(dtls, name), name
        connection = getattr(dtls.transport, send_path.ICE_CONNECTION)
        assert isinstance(connection, aioice.ice.Connection)
        assert getattr(connection, send_path.ICE_NOMINATED) == {}
        send_rtp = inspect.getsource(RTCDtlsTransport._send_rtp)
        assert "self._state != State.CONNECTED" in send_rtp
        assert "data = self._tx_srtp.protect(data)" in send_rtp
        assert "await self.transport._send(data)" in send_rtp
        assert "self._send = self._connection.send" in inspect.getsource(RTCIceTransport)
        assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)
        assert "active_pair = self._nominated.get(component)" in inspect.getsource(
            aioice.ice.Connection.sendto
        )
        assert "self.transport.sendto(data, addr)" in inspect.getsource(
            aioice.ice.StunProtocol.send_data
        )
        # The decoder thread reads the queue with a bare get() and stops on None.
        worker = inspect.getsource(rtcrtpreceiver.decoder_worker)
        assert "input_q.get()" in worker and "if task is None" in worker
        # The DTLS transport calls the receiver's handler through the instance attribute.
        assert "receiver._handle_rtp_packet(packet, arrival_time_ms=" in inspect.getsource(
            RTCDtlsTransport
        )
        # aiortc starts senders through sender.send(parameters), and keyframe requests
        # end in _send_keyframe (which the SFU's senders never use).
        assert list(inspect.signature(RTCRtpSender.send).parameters) == ["self", "parameters"]
        assert hasattr(RTCRtpSender, "_send_keyframe")
        assert hasattr(RTCRtpReceiver, "_send_rtcp_pli")
    finally:
        await pc.close()


async def test_the_fast_receive_path_internals_exist() -> None:
    """take_rtp, route_rtp and ReceiverPath stand in for aiortc's receive path with the
    same internals: the SRTP session and router of the DTLS transport, the receiver's
    statistics, REMB estimator and RTCP SSRC, and the aioice entry for non-STUN data."""
    pc = new_peer_connection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        dtls = receiver.transport
        assert getattr(dtls, aiortc_tap.DTLS_RX_SRTP) is None  # set once DTLS is up
        router = getattr(dtls, aiortc_tap.DTLS_ROUTER)
        assert router.ssrc_table == {} and router.mid_table == {}
        assert inspect.iscoroutinefunction(getattr(dtls, aiortc_tap.DTLS_HANDLE_RTP))
        connection = getattr(dtls.transport, send_path.ICE_CONNECTION)
        assert callable(getattr(type(connection), aiortc_tap.ICE_DATA_RECEIVED))
        assert getattr(receiver, aiortc_tap.RECEIVER_REMOTE_STREAMS) == {}
        assert isinstance(getattr(receiver, aiortc_tap.RECEIVER_RTCP_SSRC), int)
        assert getattr(receiver, aiortc_tap.RECEIVER_BITRATE_ESTIMATOR) is not None
    finally:
        await pc.close()
    # What the fast path replaces, line for line.
    recv_source = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "data = self._rx_srtp.unprotect(data)" in recv_source
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in recv_source
    handle_source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    for line in (
        "self.__remote_bitrate_estimator.add(",
        "fci=pack_remb_fci(*remb)",
        "self.__remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)",
        "self.__remote_streams[packet.ssrc].add(packet)",
    ):
        assert line in handle_source, line
    # The statistics read only these two fields of a packet.
    statistics_source = inspect.getsource(rtcrtpreceiver.StreamStatistics.add)
    fields = set(re.findall(r"packet\.(\w+)", statistics_source))
    assert fields == {"sequence_number", "timestamp"}
    # The RTCP loop reports what those statistics hold, from the receiver's RTCP SSRC.
    rtcp_source = inspect.getsource(RTCRtpReceiver._run_rtcp)
    assert "for ssrc, stream in self.__remote_streams.items():" in rtcp_source


def test_guarded_connect_seam() -> None:
    """GuardedPeerConnection overrides aiortc's connect task by its mangled name."""
    assert inspect.iscoroutinefunction(vars(RTCPeerConnection).get(CONNECT_METHOD))
    assert (
        vars(GuardedPeerConnection)[CONNECT_METHOD] is not vars(RTCPeerConnection)[CONNECT_METHOD]
    )


def test_neutralised_decoder_queue_contract() -> None:
    queue = aiortc_tap.DiscardingDecoderQueue()
    queue.put(("codec", "frame"))  # discarded
    queue.put(None)
    queue.get()  # returns at once once None was put


def test_aioice_seams_install_and_uninstall() -> None:
    assert hasattr(aioice.ice, ice_policy.HOST_ADDRESSES_FUNCTION)
    assert hasattr(aioice.ice.Connection, ice_policy.CONSENT_METHOD)
    init_source = inspect.getsource(aioice.ice.Connection.__init__)
    for name in ice_policy.CONNECTION_INTERNALS:
        assert f"self.{name}" in init_source or hasattr(aioice.ice.Connection, name), name
    # Our consent loop mirrors aioice's: a check is a STUN request on each nominated pair.
    consent_source = inspect.getsource(aioice.ice.Connection.query_consent)
    assert "build_request(pair, nominate=False)" in consent_source
    assert "pair.protocol.request(" in consent_source
    assert "retransmissions" in inspect.signature(aioice.ice.StunProtocol.request).parameters
    # Every non-STUN datagram goes through Connection.data_received(data, component), which
    # only queues it for aiortc's RTCDtlsTransport (our filter sits in between).
    assert list(inspect.signature(aioice.ice.Connection.data_received).parameters) == [
        "self",
        "data",
        "component",
    ]
    # Our gate replaces StunProtocol.datagram_received for non-STUN datagrams and does
    # what it does with them, through the same attributes; pairs carry the names it reads.
    datagram_source = inspect.getsource(aioice.ice.StunProtocol.datagram_received)
    assert "addr = (addr[0], addr[1])" in datagram_source
    assert "self.receiver.data_received(data, self.local_candidate.component)" in datagram_source
    protocol_source = inspect.getsource(aioice.ice.StunProtocol)
    for name in ice_policy.STUN_PROTOCOL_INTERNALS:
        assert f"self.{name}" in protocol_source or f"{name}:" in protocol_source, name
    assert {"protocol", "remote_addr"} <= set(dir(aioice.ice.CandidatePair)) | set(
        inspect.signature(aioice.ice.CandidatePair.__init__).parameters
    )
    assert "self._queue.put_nowait((data, component))" in inspect.getsource(
        aioice.ice.Connection.data_received
    )
    # Incoming STUN requests reach Connection.request_received(message, addr, protocol),
    # which authenticates them with these names (our consent hook re-checks the same way).
    assert list(inspect.signature(aioice.ice.Connection.request_received).parameters) == [
        "self",
        "message",
        "addr",
        "protocol",
    ]
    request_source = inspect.getsource(aioice.ice.Connection.request_received)
    assert 'self._valid_username(message.attributes["USERNAME"])' in request_source
    assert 'check_message_integrity(self.local_password.encode("utf8"))' in request_source
    # The demultiplexer the filter mirrors (first-byte ranges) and the crash it prevents.
    recv_source = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "first_byte = data[0]" in recv_source
    assert "first_byte > 19 and first_byte < 64" in recv_source
    assert "first_byte > 127 and first_byte < 192" in recv_source

    original_hosts = aioice.ice.get_host_addresses
    original_consent = aioice.ice.Connection.query_consent
    original_data_received = aioice.ice.Connection.data_received
    original_request_received = aioice.ice.Connection.request_received
    original_parser = aioice.stun.parse_message
    original_datagram_received = aioice.ice.StunProtocol.datagram_received
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)

    sfu = Sfu(
        MediaSettings(
            ice_host_addresses=("127.0.0.1",), ice_consent_interval=1.5, ice_consent_timeout=3
        )
    )
    sfu.install()
    sfu.install()  # idempotent
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(False, True) == []
    assert aioice.ice.Connection.query_consent is not original_consent
    assert getattr(aioice.ice.Connection, ice_policy.DATA_RECEIVED_METHOD) is not (
        original_data_received
    )
    assert aioice.stun.parse_message is not original_parser
    assert aioice.ice.StunProtocol.datagram_received is not original_datagram_received
    # Tests reach aioice's own handler from under the wrapper (test_hostile_hijack.py).
    assert aioice.ice.Connection.request_received.__wrapped__ is original_request_received

    sfu._ice.uninstall()
    sfu._ice.uninstall()
    assert aioice.ice.get_host_addresses is original_hosts
    assert aioice.ice.Connection.query_consent is original_consent
    assert aioice.ice.Connection.data_received is original_data_received
    assert aioice.ice.Connection.request_received is original_request_received
    assert aioice.stun.parse_message is original_parser
    assert aioice.ice.StunProtocol.datagram_received is original_datagram_received


def test_stun_parser_seam() -> None:
    """aioice calls the parser through the module and catches only ValueError from it;
    the parser raises struct.error for an attribute of the wrong size (strict_stun_parser
    turns that into ValueError)."""
    assert hasattr(aioice.stun, ice_policy.STUN_PARSER_FUNCTION)
    datagram_source = inspect.getsource(aioice.ice.StunProtocol.datagram_received)
    assert "message = stun.parse_message(data)" in datagram_source
    assert "except ValueError:" in datagram_source
    body = struct.pack("!HH", 0x0024, 3) + b"abc\x00"  # PRIORITY, 3 bytes
    malformed = struct.pack("!HHI12s", 0x0001, len(body), aioice.stun.COOKIE, bytes(12)) + body
    with pytest.raises(struct.error):
        inspect.unwrap(aioice.stun.parse_message)(malformed)
    assert not issubclass(struct.error, ValueError)


def test_srtp_buffer_seam() -> None:
    """pylibsrtp's Session refuses packets over its fixed buffer with a ValueError that
    aiortc's receive loop does not catch (could_be_media keeps them away)."""
    limit = datagram_guard.MAX_SRTP_PACKET
    session = pylibsrtp.Session()
    with pytest.raises(pylibsrtp.Error):
        session.unprotect(b"\x80" + bytes(limit - 1))  # no stream: refused, caught by aiortc
    with pytest.raises(ValueError, match="too long"):
        session.unprotect(b"\x80" + bytes(limit))
    with pytest.raises(ValueError, match="too long"):
        session.unprotect_rtcp(b"\x81\xc9" + bytes(limit - 1))
    assert not issubclass(pylibsrtp.Error, ValueError)
    recv_source = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "except pylibsrtp.Error" in recv_source
    assert "except ValueError" not in recv_source and "except Exception" not in recv_source


def test_nominated_path_seam() -> None:
    """What off_nominated_path relies on: requests reach request_received with their
    source address and socket; the nominated pair of each component alone decides where
    data is sent; a pair knows its socket and remote address."""
    datagram_source = inspect.getsource(aioice.ice.StunProtocol.datagram_received)
    assert "self.receiver.request_received(message, addr, self)" in datagram_source
    assert "addr = (addr[0], addr[1])" in datagram_source
    assert "self._nominated[pair.component] = pair" in inspect.getsource(
        aioice.ice.Connection.check_complete
    )
    sendto_source = inspect.getsource(aioice.ice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto_source
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto_source
    pair_init = inspect.getsource(aioice.ice.CandidatePair.__init__)
    assert "self.protocol = protocol" in pair_init
    assert isinstance(aioice.ice.CandidatePair.remote_addr, property)
    assert "local_candidate" in aioice.ice.StunProtocol.__annotations__
    # After ICE completes, an authenticated request from a new address is still learned
    # and checked (the behaviour the guard stops).
    assert "self.check_incoming(message, addr, protocol)" in inspect.getsource(
        aioice.ice.Connection.request_received
    )


def test_component_candidates_seam() -> None:
    """What media/ice_network.py replaces: aioice binds each host socket on an ephemeral
    port, enlarges its receive buffer, makes a host candidate of the socket's own
    address, then adds STUN/TURN candidates only with a STUN/TURN server (the server has
    neither); gather_candidates calls it by keyword for each component."""
    method = getattr(aioice.ice.Connection, ice_network.COMPONENT_CANDIDATES_METHOD)
    assert inspect.iscoroutinefunction(method)
    parameters = inspect.signature(method).parameters
    assert tuple(parameters) == ice_network.COMPONENT_CANDIDATES_PARAMETERS
    source = inspect.getsource(method)
    for fragment in (
        "lambda: StunProtocol(self), local_addr=(address, 0)",
        "socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE",
        'candidate_foundation("host", "udp", candidate_address[0])',
        'priority=candidate_priority(component, "host")',
        "protocol.local_candidate = Candidate(",
        "self._protocols += host_protocols",
        "if self.stun_server:",
        "if self.turn_server:",
        "return candidates",
    ):
        assert fragment in source, fragment
    assert (
        "self.get_component_candidates(component=component, addresses=addresses)"
        in inspect.getsource(aioice.ice.Connection.gather_candidates)
    )
    init_source = inspect.getsource(aioice.ice.Connection.__init__)
    for name in ("stun_server", "turn_server", "_protocols"):
        assert f"self.{name}" in init_source, name
    assert "local_candidate" in aioice.ice.StunProtocol.__annotations__

    # Installed only with a port range or an announced address, and put back after.
    plain = Sfu(MediaSettings())
    plain.install()
    assert getattr(aioice.ice.Connection, ice_network.COMPONENT_CANDIDATES_METHOD) is method
    plain._ice.uninstall()
    ranged = Sfu(MediaSettings(ice_port_min=40000, ice_port_max=40100))
    ranged.install()
    assert getattr(aioice.ice.Connection, ice_network.COMPONENT_CANDIDATES_METHOD) is not method
    ranged._ice.uninstall()
    assert getattr(aioice.ice.Connection, ice_network.COMPONENT_CANDIDATES_METHOD) is method


def test_the_lean_protect_is_pylibsrtp_protect() -> None:
    """SrtpProtect does what pylibsrtp 1.0's Session.protect does, with its internals,
    and gives the same bytes (libsrtp's output for a packet depends only on the key,
    the packet and the per-SSRC index, the same in two sessions made alike)."""
    process = inspect.getsource(pylibsrtp.Session._Session__process)  # type: ignore[attr-defined]
    for line in (
        'len_p = ffi.new("int *")',
        "self._buffer[0 : len(data)] = data",
        "_srtp_assert(func(self._srtp[0], self._cdata, len_p))",
        "return self._buffer[0 : len_p[0]]",
    ):
        assert line in process, line
    assert "SRTP_MAX_TRAILER_LEN" in inspect.getsource(pylibsrtp.Session.protect)
    key = bytes(range(30))
    ours = send_path.SrtpProtect(
        pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    )
    theirs = pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    )
    for seq in range(5):
        packet = bytes((0x80, 96, 0, seq)) + bytes(8) + bytes(range(200))
        assert ours(packet) == theirs.protect(packet)
    with pytest.raises(ConnectionError):
        ours(bytes((0x80, 96, 0, 9)) + bytes(1400))  # no room for the tag
