"""Hostile datagrams for a live session's ICE ports, and a bounded flooder that sends them.

The flooder runs in its own process (an attacker does not share the server's event
loop): ``python -m tests.media.hostile_udp`` reads a :class:`Plan` as JSON on stdin,
sends each phase's datagrams round-robin to every target from several loopback source
addresses at the planned rate, and prints one JSON line per phase: when it ran (on
``time.monotonic()``, the clock of the test's event loop), how many datagrams and bytes
it sent, and how many datagrams came back to its sockets. Every loop is bounded by the
phase's duration and datagram count.

Every datagram comes from a seeded ``random.Random``: a run is reproduced by its seed.
"""

from __future__ import annotations

import itertools
import json
import random
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from aioice import stun

# Sources other than any participant's address: the whole of 127/8 is loopback on Linux.
ATTACK_SOURCES = ("127.0.0.2", "127.0.0.3", "127.0.0.1")
# Every length 0..1500, then datagrams no MTU-sized path carries but fragmented UDP does.
MAX_LENGTH = 1500
OVERSIZE_LENGTHS = (1501, 1600, 2048, 4096, 9000, 65507)
TICK = 0.005
MAX_PER_TICK = 400

COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_INDICATION = 0x0011
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
ALLOCATE_REQUEST = 0x0003
# STUN attribute types (RFC 8489, RFC 8445).
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A
KNOWN_ATTRIBUTES = (
    USERNAME,
    MESSAGE_INTEGRITY,
    ERROR_CODE,
    XOR_MAPPED_ADDRESS,
    PRIORITY,
    USE_CANDIDATE,
    FINGERPRINT,
    ICE_CONTROLLED,
    ICE_CONTROLLING,
    0x0001,
    0x000C,
    0x0013,
    0x0014,
    0x0015,
    0x8022,
)


@dataclass(frozen=True)
class Target:
    """One server ICE port, and what a binding request to it must carry to be accepted
    (``username`` is "server ufrag:peer ufrag"; the password is never known here)."""

    port: int
    username: str


@dataclass(frozen=True)
class Phase:
    name: str
    duration: float
    # Stop once every target's generator has yielded this many datagrams (0: no bound
    # other than the duration).
    per_target: int = 0


@dataclass(frozen=True)
class Plan:
    seed: int
    rate: float
    targets: tuple[Target, ...]
    phases: tuple[Phase, ...]
    # Real media SSRCs (publishers'), so some SRTP junk carries a known stream's SSRC.
    ssrcs: tuple[int, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(
            seed=raw["seed"],
            rate=raw["rate"],
            targets=tuple(Target(**t) for t in raw["targets"]),
            phases=tuple(Phase(**p) for p in raw["phases"]),
            ssrcs=tuple(raw["ssrcs"]),
        )


@dataclass
class PhaseReport:
    name: str
    start: float
    end: float
    sent: int
    sent_bytes: int
    # Datagrams the attacker's sockets received back, by kind (first byte, RFC 7983).
    replies: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / max(self.end - self.start, 1e-9)


# ---- datagram generators --------------------------------------------------------------

Datagrams = Iterator[bytes]


def random_lengths(rng: random.Random) -> Datagrams:
    """Every length 0..1500 (then the oversize ones), random content; the first byte
    cycles through STUN, DTLS, RTP/RTCP and any value so every length hits every parser."""
    first_bytes: tuple[Callable[[], int], ...] = (
        lambda: rng.randrange(256),
        lambda: rng.randrange(0, 4),
        lambda: rng.randrange(20, 64),
        lambda: rng.randrange(128, 192),
    )
    for length in itertools.chain(range(MAX_LENGTH + 1), OVERSIZE_LENGTHS):
        data = bytearray(rng.randbytes(length))
        if data:
            data[0] = first_bytes[length % len(first_bytes)]()
        yield bytes(data)


def stun_attribute(kind: int, value: bytes, declared: int | None = None) -> bytes:
    length = len(value) if declared is None else declared
    return struct.pack("!HH", kind, length) + value + bytes(-len(value) % 4)


def stun_raw(
    message_type: int, transaction_id: bytes, body: bytes, declared: int | None = None
) -> bytes:
    length = len(body) if declared is None else declared
    return struct.pack("!HHI12s", message_type, length, COOKIE, transaction_id) + body


def binding_request(rng: random.Random, username: str) -> stun.Message:
    """A request as the participant's agent would build it (it nominates, as a
    controlling agent does), before the integrity the attacker cannot compute."""
    message = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.REQUEST,
        transaction_id=rng.randbytes(12),
    )
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = rng.getrandbits(32)
    if rng.random() < 0.5:
        message.attributes["ICE-CONTROLLING"] = rng.getrandbits(64)
        message.attributes["USE-CANDIDATE"] = None
    else:
        message.attributes["ICE-CONTROLLED"] = rng.getrandbits(64)
    return message


def forged_stun(rng: random.Random, target: Target, source_port: int) -> Datagrams:
    """Binding requests that must be refused, and responses nobody asked for."""
    local, _, remote = target.username.partition(":")

    def no_integrity() -> bytes:
        message = binding_request(rng, target.username)
        message.add_fingerprint()
        return bytes(message)

    def wrong_integrity() -> bytes:
        message = binding_request(rng, target.username)
        message.add_message_integrity(rng.randbytes(22))
        return bytes(message)

    def wrong_username() -> bytes:
        name = rng.choice(
            (f"{remote}:{local}", f"{local}:x{remote}", f"{local}{remote}", rng.randbytes(8).hex())
        )
        message = binding_request(rng, name)
        message.add_message_integrity(rng.randbytes(22))
        return bytes(message)

    def wrong_fingerprint() -> bytes:
        message = binding_request(rng, target.username)
        message.add_message_integrity(rng.randbytes(22))
        data = bytearray(bytes(message))
        data[-1] ^= 0x5A
        return bytes(data)

    def integrity_of_wrong_length() -> bytes:
        body = stun_attribute(USERNAME, target.username.encode()) + stun_attribute(
            MESSAGE_INTEGRITY, rng.randbytes(rng.choice((0, 3, 19, 21, 64)))
        )
        return stun_raw(BINDING_REQUEST, rng.randbytes(12), body)

    def huge_attribute_length() -> bytes:
        kind = rng.choice((USERNAME, PRIORITY, MESSAGE_INTEGRITY, XOR_MAPPED_ADDRESS, 0x7777))
        body = stun_attribute(kind, rng.randbytes(rng.randrange(0, 64)), declared=0xFFFF)
        return stun_raw(BINDING_REQUEST, rng.randbytes(12), body)

    def inconsistent_header_length() -> bytes:
        message = binding_request(rng, target.username)
        message.add_message_integrity(rng.randbytes(22))
        data = bytes(message)
        declared = rng.choice((0, 4, len(data) - 24, len(data) - 16, 0xFFFF))
        return data[:2] + struct.pack("!H", declared) + data[4:]

    def attribute_of_wrong_size() -> bytes:
        kind, value = rng.choice(
            (
                (PRIORITY, b"abc"),
                (ICE_CONTROLLING, b"abcd"),
                (ICE_CONTROLLED, bytes(9)),
                (FINGERPRINT, b"\x01\x02"),
                (XOR_MAPPED_ADDRESS, b"\x00\x09" + bytes(6)),
                (XOR_MAPPED_ADDRESS, b"\x00"),
                (ERROR_CODE, b"\x00\x00\x04\x01\xff\xfe"),
                (USERNAME, b"\xff\xfe\xfd"),
                (USE_CANDIDATE, rng.randbytes(8)),
                (0x000C, b""),
            )
        )
        body = stun_attribute(USERNAME, target.username.encode()) + stun_attribute(kind, value)
        return stun_raw(BINDING_REQUEST, rng.randbytes(12), body)

    def truncated_header() -> bytes:
        message = binding_request(rng, target.username)
        message.add_message_integrity(rng.randbytes(22))
        data = bytes(message)
        return data[: rng.randrange(1, 20)] if rng.random() < 0.5 else data[: rng.randrange(20, 40)]

    def success_for_unknown_transaction() -> bytes:
        message = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=rng.randbytes(12),
        )
        message.attributes["XOR-MAPPED-ADDRESS"] = (rng.choice(ATTACK_SOURCES), source_port)
        if rng.random() < 0.5:
            message.add_message_integrity(rng.randbytes(22))
        else:
            message.add_fingerprint()
        return bytes(message)

    def error_for_unknown_transaction() -> bytes:
        message = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.ERROR,
            transaction_id=rng.randbytes(12),
        )
        message.attributes["ERROR-CODE"] = rng.choice(
            ((487, "Role Conflict"), (401, "Unauthenticated"), (400, "Bad Request"))
        )
        message.add_fingerprint()
        return bytes(message)

    def other_method_or_class() -> bytes:
        kind = rng.choice((ALLOCATE_REQUEST, BINDING_INDICATION, 0x0FFF, 0x0002, 0x0111))
        body = stun_attribute(USERNAME, target.username.encode())
        return stun_raw(kind, rng.randbytes(12), body)

    def random_attributes() -> bytes:
        body = b"".join(
            stun_attribute(
                rng.choice(KNOWN_ATTRIBUTES) if rng.random() < 0.7 else rng.getrandbits(16),
                rng.randbytes(rng.randrange(0, 40)),
            )
            for _ in range(rng.randrange(1, 12))
        )
        return stun_raw(rng.choice((BINDING_REQUEST, BINDING_SUCCESS)), rng.randbytes(12), body)

    kinds = (
        no_integrity,
        wrong_integrity,
        wrong_username,
        wrong_fingerprint,
        integrity_of_wrong_length,
        huge_attribute_length,
        inconsistent_header_length,
        attribute_of_wrong_size,
        truncated_header,
        success_for_unknown_transaction,
        error_for_unknown_transaction,
        other_method_or_class,
        random_attributes,
    )
    for kind in itertools.cycle(kinds):
        yield kind()


def dtls_record(
    rng: random.Random,
    content_type: int,
    epoch: int,
    body: bytes,
    declared: int | None = None,
    version: int = 0xFEFD,
) -> bytes:
    length = len(body) if declared is None else declared
    sequence = rng.getrandbits(48).to_bytes(6, "big")
    return (
        struct.pack("!BHH", content_type, version, epoch)
        + sequence
        + struct.pack("!H", length)
        + body
    )


def dtls_junk(rng: random.Random) -> Datagrams:
    """Records that look like DTLS: every content type, bad lengths and epochs, alerts,
    handshakes and ciphertext nobody holds keys for, DTLS 1.3 headers, oversize ones."""

    def random_record() -> bytes:
        body = rng.randbytes(rng.randrange(0, 1400))
        declared = rng.choice((None, 0, 0xFFFF, len(body) + 1, max(len(body) - 1, 0)))
        version = rng.choice((0xFEFD, 0xFEFF, 0x0303, rng.getrandbits(16)))
        epoch = rng.choice((0, 1, 2, 0xFFFF, rng.getrandbits(16)))
        return dtls_record(rng, rng.randrange(20, 24), epoch, body, declared, version)

    def alert() -> bytes:
        level, description = rng.choice(((1, 0), (2, 0), (2, 10), (2, 20), (2, 40), (2, 80)))
        return dtls_record(rng, 21, rng.choice((0, 1, 2)), bytes((level, description)))

    def handshake() -> bytes:
        # A handshake header (type, length, message_seq, fragment offset and length)
        # with whatever lengths, e.g. a ClientHello restarting the connection.
        body_length = rng.randrange(0, 300)
        header = (
            bytes((rng.choice((1, 2, 11, 14, 16, 20)),))
            + rng.choice((body_length, 0xFFFFFF, 0)).to_bytes(3, "big")
            + struct.pack("!H", rng.getrandbits(16))
            + rng.choice((0, 0xFFFFFF, rng.getrandbits(24))).to_bytes(3, "big")
            + rng.choice((body_length, 0xFFFFFF)).to_bytes(3, "big")
        )
        return dtls_record(rng, 22, rng.choice((0, 1, 2)), header + rng.randbytes(body_length))

    def change_cipher_spec() -> bytes:
        return dtls_record(rng, 20, rng.choice((0, 1)), b"\x01")

    def application_data() -> bytes:
        # Ciphertext in the live epoch: fails OpenSSL's record MAC/AEAD check.
        return dtls_record(rng, 23, 1, rng.randbytes(rng.randrange(1, 1400)))

    def dtls13_unified_header() -> bytes:
        return bytes((rng.randrange(0x20, 0x40),)) + rng.randbytes(rng.randrange(12, 1200))

    def coalesced() -> bytes:
        return b"".join(
            rng.choice((alert, change_cipher_spec, handshake, application_data))()
            for _ in range(rng.randrange(2, 6))
        )

    def header_only() -> bytes:
        return dtls_record(rng, rng.randrange(20, 24), rng.choice((0, 1)), b"", rng.getrandbits(16))

    def other_first_byte() -> bytes:
        return bytes((rng.randrange(24, 64),)) + rng.randbytes(rng.randrange(12, 1400))

    def oversize() -> bytes:
        length = rng.choice(OVERSIZE_LENGTHS)
        return dtls_record(rng, rng.randrange(20, 24), 1, rng.randbytes(length - 13))

    kinds = (
        random_record,
        alert,
        handshake,
        change_cipher_spec,
        application_data,
        dtls13_unified_header,
        coalesced,
        header_only,
        other_first_byte,
        oversize,
    )
    for kind in itertools.cycle(kinds):
        yield kind()


def rtp_header(
    rng: random.Random,
    *,
    ssrc: int,
    csrc_count: int = 0,
    extension: bool = False,
    padding: bool = False,
    payload_type: int | None = None,
) -> bytes:
    first = 0x80 | (0x20 if padding else 0) | (0x10 if extension else 0) | csrc_count
    pt = rng.randrange(128) if payload_type is None else payload_type
    return struct.pack(
        "!BBHII", first, pt, rng.getrandbits(16), rng.getrandbits(32), ssrc & 0xFFFFFFFF
    )


def rtp_junk(rng: random.Random, ssrcs: tuple[int, ...]) -> Datagrams:
    """Packets that look like SRTP/SRTCP: random and real SSRCs, bad authentication tags,
    truncated headers, CSRC count 15 without CSRCs, extensions and padding past the end,
    RTCP with absurd lengths, oversize ones."""

    def some_ssrc() -> int:
        if ssrcs and rng.random() < 0.5:
            return rng.choice(ssrcs)
        return rng.getrandbits(32)

    def tag() -> bytes:
        return rng.randbytes(rng.choice((4, 10, 16)))

    def bad_auth_tag() -> bytes:
        pt = rng.choice((96, 97, 100, 111, rng.randrange(128)))
        payload = rng.randbytes(rng.randrange(0, 1200))
        return rtp_header(rng, ssrc=some_ssrc(), payload_type=pt) + payload + tag()

    def truncated() -> bytes:
        header = rtp_header(rng, ssrc=some_ssrc(), csrc_count=rng.randrange(16))
        return header[: rng.randrange(12, 16)] + rng.randbytes(rng.randrange(0, 4))

    def csrcs_missing() -> bytes:
        return rtp_header(rng, ssrc=some_ssrc(), csrc_count=15) + rng.randbytes(
            rng.randrange(0, 48)
        )

    def extension_past_end() -> bytes:
        extension = struct.pack("!HH", rng.choice((0xBEDE, 0x1000, rng.getrandbits(16))), 0xFFFF)
        header = rtp_header(rng, ssrc=some_ssrc(), extension=True)
        return header + extension + rng.randbytes(rng.randrange(0, 40))

    def padding_past_end() -> bytes:
        header = rtp_header(rng, ssrc=some_ssrc(), padding=True)
        return header + rng.randbytes(rng.randrange(0, 20)) + b"\xff"

    def rtcp_absurd_length() -> bytes:
        count = rng.randrange(32)
        packet_type = rng.randrange(192, 224)
        length = rng.choice((0, 1, 0xFFFF, rng.getrandbits(16)))
        packet = struct.pack("!BBHI", 0x80 | count, packet_type, length, some_ssrc())
        body = rng.randbytes(rng.randrange(0, 200))
        index = struct.pack("!I", 0x80000000 | rng.getrandbits(31))  # SRTCP E flag + index
        return packet + body + index + tag()

    def rtcp_compound() -> bytes:
        parts = []
        for _ in range(rng.randrange(2, 6)):
            packet_type = rng.choice((200, 201, 202, 203, 204, 205, 206, 207))
            length = rng.randrange(0, 12)
            parts.append(
                struct.pack("!BBHI", 0x80 | rng.randrange(32), packet_type, length, some_ssrc())
                + rng.randbytes(4 * max(length - 1, 0))
            )
        return b"".join(parts) + struct.pack("!I", 0x80000000 | rng.getrandbits(31)) + tag()

    def oversize() -> bytes:
        length = rng.choice(OVERSIZE_LENGTHS)
        header = rtp_header(rng, ssrc=some_ssrc())
        return header + rng.randbytes(length - len(header))

    kinds = (
        bad_auth_tag,
        truncated,
        csrcs_missing,
        extension_past_end,
        padding_past_end,
        rtcp_absurd_length,
        rtcp_compound,
        oversize,
    )
    for kind in itertools.cycle(kinds):
        yield kind()


def generators(phase: str, rng: random.Random, plan: Plan, source_port: int) -> list[Datagrams]:
    """One datagram stream per target for ``phase``."""
    if phase == "random":
        return [random_lengths(rng) for _ in plan.targets]
    if phase == "stun":
        return [forged_stun(rng, target, source_port) for target in plan.targets]
    if phase == "dtls":
        return [dtls_junk(rng) for _ in plan.targets]
    if phase == "rtp":
        return [rtp_junk(rng, plan.ssrcs) for _ in plan.targets]
    raise ValueError(f"unknown phase {phase}")


# ---- the flooder -----------------------------------------------------------------------


def reply_kind(data: bytes) -> str:
    if not data:
        return "empty"
    first = data[0]
    if first < 4:
        return "stun"
    if 20 <= first < 64:
        return "dtls"
    if 128 <= first < 192:
        return "rtp"
    return "other"


def drain(sockets: list[socket.socket], replies: dict[str, int]) -> None:
    for sock in sockets:
        for _ in range(MAX_PER_TICK):
            try:
                data = sock.recv(65535)
            except OSError:  # nothing more to read (or an ICMP error): next socket
                break
            kind = reply_kind(data)
            replies[kind] = replies.get(kind, 0) + 1


def run_phase(
    phase: Phase, plan: Plan, rng: random.Random, sockets: list[socket.socket]
) -> PhaseReport:
    streams = generators(phase.name, rng, plan, sockets[0].getsockname()[1])
    addresses = [("127.0.0.1", target.port) for target in plan.targets]
    limit = phase.per_target * len(addresses) if phase.per_target else sys.maxsize
    report = PhaseReport(phase.name, time.monotonic(), 0.0, 0, 0)
    deadline = report.start + phase.duration
    turn = 0
    while report.sent < limit:
        now = time.monotonic()
        if now >= deadline:
            break
        due = min(int((now - report.start) * plan.rate) - report.sent, MAX_PER_TICK)
        for _ in range(max(due, 0)):
            if report.sent >= limit:
                break
            index = turn % len(addresses)
            data = next(streams[index])
            sock = sockets[turn % len(sockets)]
            turn += 1
            try:
                sock.sendto(data, addresses[index])
            except OSError:
                continue  # e.g. ECONNREFUSED from an earlier ICMP error: keep going
            report.sent += 1
            report.sent_bytes += len(data)
        drain(sockets, report.replies)
        time.sleep(TICK)
    report.end = time.monotonic()
    drain(sockets, report.replies)
    return report


def flood(plan: Plan) -> list[PhaseReport]:
    rng = random.Random(plan.seed)
    sockets = []
    try:
        for address in ATTACK_SOURCES:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.bind((address, 0))
            sock.setblocking(False)
            sockets.append(sock)
        reports = []
        for phase in plan.phases:
            report = run_phase(phase, plan, rng, sockets)
            print(json.dumps({**asdict(report), "rate": report.rate}), flush=True)
            reports.append(report)
        return reports
    finally:
        for sock in sockets:
            sock.close()


def main() -> None:
    flood(Plan.from_json(sys.stdin.read()))


if __name__ == "__main__":
    main()
