"""What each step of the forwarding hot path costs on its own, in CPU µs per call.

Run from the repository root::

    taskset -c 1 .venv/bin/python -m benchmarks.hot_path [--calls 20000]

Each step is the server's own code on real data, timed in a loop in one process (CPU
time, so waiting for the core does not count): per incoming packet, what the publisher
side does (SRTP unprotect, header parse, receiver statistics, REMB estimator, loss
bookkeeping, VP8 descriptor); per forwarded packet, what each subscriber costs (rewrite,
header write, SRTP protect, one UDP send of a 1.2 KB datagram to a socket on loopback).
The sum is a floor for ``sfu_bench``'s "CPU µs per forwarded packet": that figure also
carries the event loop, the receive system calls, RTCP, timers and a busier cache.
Prints a table; never fails on a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import StreamStatistics
from pylibsrtp import Policy, Session

from telecircle.domain.bandwidth import RateMeter
from telecircle.media.aiortc_tap import abs_send_time
from telecircle.media.lost_packets import NackPolicy
from telecircle.media.rewrite import StreamRewriter
from telecircle.media.rtp_in import parse_rtp
from telecircle.media.rtp_out import ExtensionIds, OutgoingStream
from telecircle.media.send_path import SrtpProtect
from telecircle.media.vp8 import parse_vp8

PAYLOAD_BYTES = 1100
IDS = ExtensionIds(mid=1, abs_send_time=3, audio_level=5)
KEY = bytes(range(30))


def cost(calls: int, step: Callable[[], Any]) -> float:
    """CPU µs per call of ``step``."""
    start = time.process_time()
    for _ in range(calls):
        step()
    return 1e6 * (time.process_time() - start) / calls


def packets(count: int) -> list[bytes]:
    """``count`` consecutive video packets of one stream, as a publisher sends them."""
    stream = OutgoingStream(96, 0x1234, "1", IDS)
    payload = bytes((0x90, 0x80, 0x80, 0x01)) + os.urandom(PAYLOAD_BYTES)
    return [
        stream.packet(int(seq % 3 == 2), seq & 0xFFFF, 3000 * (seq // 3), seq * 97, None, payload)
        for seq in range(count)
    ]


async def measure(calls: int) -> list[tuple[str, str, float]]:
    rows: list[tuple[str, str, float]] = []
    plain = packets(calls)
    protect = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    protected = [protect.protect(p) for p in plain]
    unprotect = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    incoming = iter(protected)
    rows.append(("in", "SRTP unprotect", cost(calls, lambda: unprotect.unprotect(next(incoming)))))
    raw = iter(plain)
    rows.append(("in", "header parse (rtp_in)", cost(calls, lambda: parse_rtp(next(raw), IDS))))
    parsed = [parse_rtp(p, IDS) for p in plain]
    each: Iterator[Any] = iter(parsed)
    statistics = StreamStatistics(90_000)
    rows.append(("in", "receiver statistics", cost(calls, lambda: statistics.add(next(each)))))
    estimator = RemoteBitrateEstimator()
    each = iter(enumerate(parsed))

    def estimate() -> None:
        i, packet = next(each)
        estimator.add(
            abs_send_time=packet.abs_send_time,
            arrival_time_ms=i // 3,
            payload_size=len(packet.payload),
            ssrc=packet.ssrc,
        )

    rows.append(("in", "REMB estimator", cost(calls, estimate)))
    lost = NackPolicy().tracker()
    each = iter(parsed)
    rows.append(
        (
            "in",
            "loss bookkeeping",
            cost(calls, lambda: lost.received(1, next(each).sequence_number, 1.0)),
        )
    )
    payload = parsed[0].payload
    rows.append(("in", "VP8 descriptor", cost(calls, lambda: parse_vp8(payload))))
    meter = RateMeter()
    rows.append(("in", "rate meter", cost(calls, lambda: meter.add(1100, 1.0))))

    rewriter = StreamRewriter(90_000)
    each = iter(parsed)
    rows.append(
        (
            "out",
            "rewrite seq/timestamp",
            cost(calls, lambda: rewriter.map(next(each).sequence_number, 0, 1.0)),
        )
    )
    writer = OutgoingStream(96, 0x5678, "7", IDS)
    now = time.time()
    rows.append(
        ("out", "send time + abs-send-time", cost(calls, lambda: abs_send_time(time.time())))
    )
    rows.append(
        (
            "out",
            "header write (rtp_out)",
            cost(calls, lambda: writer.packet(0, 1, 2, 3, None, payload)),
        )
    )
    lean = SrtpProtect(Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND)))
    outgoing = iter([writer.packet(0, seq & 0xFFFF, 2, 3, None, payload) for seq in range(calls)])
    # libsrtp refuses to protect the same sequence number twice: a new packet each call.
    rows.append(("out", "SRTP protect (SrtpProtect)", cost(calls, lambda: lean(next(outgoing)))))
    out = writer.packet(0, 1, 2, abs_send_time(now), None, payload)

    loop = asyncio.get_running_loop()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    address = sink.getsockname()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    datagram = protect.protect(out)
    sent = [0]

    def send() -> None:
        transport.sendto(datagram, address)
        sent[0] += 1
        if sent[0] % 32 == 0:  # the sink drains now and then (its cost included)
            try:
                while True:
                    sink.recv(2048)
            except BlockingIOError:
                pass

    rows.append(("out", "UDP send 1.2 KB (asyncio)", cost(calls, send)))
    transport.close()
    sink.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    rows = asyncio.run(measure(args.calls))
    print(f"{'side':<5} {'step':<30} {'µs/call':>8}")
    for side, step, micros in rows:
        print(f"{side:<5} {step:<30} {micros:>8.2f}")
    incoming = sum(m for side, _, m in rows if side == "in")
    outgoing = sum(m for side, _, m in rows if side == "out")
    print(f"\nper incoming packet {incoming:.1f} µs; per forwarded packet {outgoing:.1f} µs")
    print(
        f"one room of 10 (9 receivers each): {outgoing + incoming / 9:.1f} µs per forwarded packet"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
