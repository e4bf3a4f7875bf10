"""The media plane on a public network: UDP port range, announced address, session cap.

The announced-address proof builds its own network: a "client" namespace behind a "nat"
namespace that maps an announced address 1:1 to the server's interface address (a veth
in this process's namespace), forwarding only the media port range, as a cloud VM's NAT
and firewall would. Real aiortc peers run in the client namespace, in a child process
running this module (``python -m tests.media.test_ice_network``), and reach the SFU only
through the announced address. Needs root and nftables (apt-get install nftables).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from telecircle.domain.ids import ParticipantId
from telecircle.media.errors import MediaConfigError, MediaError
from telecircle.media.ice_network import (
    ANNOUNCED_SETTING,
    PortRange,
    resolve_announced_address,
)
from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings
from telecircle.media.sfu import Sfu
from telecircle.services.ports import ReceiveSlot

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, encode_media, wait_until

pytestmark = [pytest.mark.media, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Ports the kernel does not hand out on its own (below the ephemeral range).
RANGE_FLOOR, RANGE_CEILING = 20000, 30000
# Documentation address (TEST-NET-3): announced, never reachable.
PUBLIC = "203.0.113.7"


# ---- helpers ----------------------------------------------------------------------------


def free_port_range(size: int) -> PortRange:
    """A range of ``size`` UDP ports nobody uses right now (tried on every address)."""
    for _ in range(50):
        low = random.randrange(RANGE_FLOOR, RANGE_CEILING - size)
        probes: list[socket.socket] = []
        try:
            for port in range(low, low + size):
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind(("0.0.0.0", port))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return PortRange(low, low + size - 1)
    raise RuntimeError("no free port range found")


def udp_ports_in_use(ports: PortRange) -> list[int]:
    """The UDP ports of ``ports`` bound by anyone in this network namespace."""
    found = []
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            next(lines)
            for line in lines:
                port = int(line.split()[1].rsplit(":", 1)[1], 16)
                if ports.low <= port <= ports.high:
                    found.append(port)
    return sorted(found)


def candidates(sdp: str) -> list[tuple[str, int]]:
    """(address, port) of each ``a=candidate`` line."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            found.append((fields[4], int(fields[5])))
    return found


def connection_lines(sdp: str) -> set[str]:
    return {line.split()[-1] for line in sdp.splitlines() if line.startswith("c=IN ")}


@contextlib.contextmanager
def held_ports(address: str, ports: list[int]) -> Iterator[list[socket.socket]]:
    """UDP sockets bound to ``ports`` (someone else using part of the range)."""
    held: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(sock)
            sock.bind((address, port))
        yield held
    finally:
        for sock in held:
            sock.close()


async def open_sfu(settings: MediaSettings) -> Sfu:
    sfu = Sfu(settings)
    await sfu.start()
    return sfu


# ---- the UDP port range ---------------------------------------------------------------


async def test_every_media_socket_comes_from_the_port_range(
    media_library: list[EncodedMedia],
) -> None:
    ports = free_port_range(16)
    sfu = await open_sfu(
        MediaSettings(
            keyframe_request_interval=0.2, ice_port_min=ports.low, ice_port_max=ports.high
        )
    )
    events = RoomEvents()
    room = sfu.room("range", on_slots=events.on_slots, on_path_lost=events.on_path_lost)
    alice = SyntheticPeer("alice", media_library[0])
    bob = SyntheticPeer("bob", media_library[1])
    peers = [alice, bob]
    try:
        for peer in peers:
            await peer.publish(room)
            await peer.subscribe(room, slot_count=2)
        room.set_audiences(everyone_sees_everyone([alice.pid, bob.pid]))

        def delivered() -> bool:
            for viewer, owner in ((alice, bob), (bob, alice)):
                if viewer.pid not in events.slots:
                    return False
                audio_mid, video_mid = viewer.mids_of(events.slots[viewer.pid], owner.pid)
                got = viewer.received.packets
                if got[audio_mid] < 5 or got[video_mid] < 10:
                    return False
            return True

        await wait_until(delivered)
        for peer in peers:
            assert peer.publish_pc is not None and peer.subscribe_pc is not None
            # What the server told each peer: its answer and its offer.
            for pc in (peer.publish_pc, peer.subscribe_pc):
                server_candidates = candidates(pc.remoteDescription.sdp)
                assert server_candidates
                assert all(ports.low <= port <= ports.high for _, port in server_candidates)
        # The peers in this process share the seam: 4 connections on each side.
        assert len(udp_ports_in_use(ports)) == 8
    finally:
        for peer in peers:
            await peer.close()
        await sfu.close()
    await wait_until(lambda: not udp_ports_in_use(ports), timeout=5)


async def test_a_full_port_range_refuses_the_negotiation_and_leaks_nothing(
    media_library: list[EncodedMedia], caplog: pytest.LogCaptureFixture
) -> None:
    ports = free_port_range(3)
    sfu = await open_sfu(MediaSettings(ice_port_min=ports.low, ice_port_max=ports.high))
    events = RoomEvents()
    room = sfu.room("full", on_slots=events.on_slots, on_path_lost=events.on_path_lost)
    caplog.set_level(logging.INFO, logger="telecircle")
    peer = SyntheticPeer("carol", media_library[2])
    with held_ports("127.0.0.1", [ports.low, ports.low + 1]):
        try:
            # One port left: the first subscribe offer gets it, the next finds none.
            offer, _, _ = await room.subscribe(ParticipantId("alice"), 1)
            assert set(candidates(offer)) == {("127.0.0.1", ports.high)}
            with pytest.raises(MediaError) as refused:
                await room.subscribe(ParticipantId("bob"), 1)
            assert refused.value.code == "ports_exhausted"
            assert "no free media ports" in refused.value.message
            assert sfu.counts().peer_connections == 1
            # The port comes back when its connection goes; a publishing peer (in this
            # process, so through the same seam) takes it for its offer, and the server
            # has none left for its answer.
            await room.remove(ParticipantId("alice"))
            await wait_until(lambda: len(udp_ports_in_use(ports)) == 2, timeout=5)
            with pytest.raises(MediaError) as refused:
                await peer.publish(room)
            assert refused.value.code == "ports_exhausted"
            assert sfu.counts().peer_connections == 0
            assert len(udp_ports_in_use(ports)) == 3  # ours two, the peer's one
        finally:
            await peer.close()
            await sfu.close()
        await wait_until(lambda: len(udp_ports_in_use(ports)) == 2, timeout=5)
    assert sfu.counts() == type(sfu.counts())()
    exhausted = [
        r.getMessage() for r in caplog.records if "media.ports_exhausted" in r.getMessage()
    ]
    assert len(exhausted) == 2
    assert all("127.0.0.1" not in line for line in exhausted)


def test_the_port_range_comes_from_the_settings_and_must_hold_the_sessions(
    tmp_path: Path,
) -> None:
    from telecircle.config import ConfigError, load_settings

    settings = load_settings(
        data_dir=tmp_path,
        ice_port_min=40000,
        ice_port_max=40999,
        max_live_sessions=5,
        ice_announced_address=PUBLIC,
    )
    media = MediaSettings.from_settings(settings)
    assert media.ice_ports == PortRange(40000, 40999)
    assert (media.ice_announced_address, media.max_live_sessions) == (PUBLIC, 5)
    assert MediaSettings.from_settings(load_settings(data_dir=tmp_path)).ice_ports is None
    # Too small for the sessions it must carry: refused, naming the settings.
    with pytest.raises(ConfigError, match="TELECIRCLE_ICE_PORT_MIN"):
        load_settings(data_dir=tmp_path, ice_port_min=40000, ice_port_max=40010)


# ---- the announced address --------------------------------------------------------------


async def test_candidates_announce_the_public_address_not_the_interface_address() -> None:
    sfu = await open_sfu(MediaSettings(ice_announced_address=PUBLIC))
    room = sfu.room("announce", on_slots=RoomEvents().on_slots, on_path_lost=lambda _: None)
    try:
        offer, _, _ = await room.subscribe(ParticipantId("alice"), 2)
        assert candidates(offer)
        assert {host for host, _ in candidates(offer)} == {PUBLIC}
        assert connection_lines(offer) == {PUBLIC}
        assert "127.0.0.1" not in offer
        # The socket stays on the interface address: that is where the port is bound.
        port = candidates(offer)[0][1]
        with pytest.raises(OSError), held_ports("127.0.0.1", [port]):
            pass
        assert sfu.announced_address == PUBLIC
    finally:
        await sfu.close()


async def test_an_announced_address_that_cannot_stand_for_the_host_addresses_is_refused() -> None:
    with pytest.raises(MediaConfigError, match=ANNOUNCED_SETTING):
        Sfu(
            MediaSettings(
                ice_host_addresses=("127.0.0.1", "10.9.9.9"), ice_announced_address=PUBLIC
            )
        )
    with pytest.raises(MediaConfigError, match=ANNOUNCED_SETTING):
        Sfu(MediaSettings(ice_announced_address="2001:db8::7"))  # no IPv6 host address
    with pytest.raises(MediaConfigError, match=ANNOUNCED_SETTING):
        await resolve_announced_address("127.0.0.2", ("127.0.0.1",))


async def test_an_announced_name_that_does_not_resolve_stops_the_media_plane() -> None:
    sfu = Sfu(MediaSettings(ice_announced_address="no-such-host.invalid"))
    with pytest.raises(MediaConfigError) as refused:
        await sfu.start()
    assert ANNOUNCED_SETTING in refused.value.message
    assert "does not resolve" in refused.value.message
    with pytest.raises(MediaConfigError):
        sfu.install()  # a name is only ever used resolved
    await sfu.close()


def test_serve_refuses_to_start_with_an_announced_name_that_does_not_resolve(
    tmp_path: Path,
) -> None:
    """Through the command line: the message names the setting, the exit code is 2."""
    env = {
        **os.environ,
        "TELECIRCLE_DATA_DIR": str(tmp_path / "data"),
        "TELECIRCLE_PORT": str(free_port_range(1).low),
        "TELECIRCLE_ICE_ANNOUNCED_ADDRESS": "no-such-host.invalid",
    }
    done = subprocess.run(
        [PYTHON, "-m", "telecircle.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Telecircle did not start" in done.stderr
    assert ANNOUNCED_SETTING in done.stderr


# ---- the cap on sessions at once ------------------------------------------------------


async def test_the_sfu_refuses_a_room_beyond_max_live_sessions() -> None:
    sfu = Sfu(MediaSettings(max_live_sessions=2))
    sfu.install()
    events = RoomEvents()

    def room(key: str, beyond_limit: bool = False) -> MediaRoom:
        return sfu.room(
            key,
            on_slots=events.on_slots,
            on_path_lost=events.on_path_lost,
            beyond_limit=beyond_limit,
        )

    try:
        first, second = room("a"), room("b")
        assert room("a") is first  # the open room of a key is no new room
        with pytest.raises(MediaError) as refused:
            room("c")
        assert refused.value.code == "server_full"
        assert "as many sessions" in refused.value.message
        await first.close()
        third = room("c")
        assert sfu.open_rooms() == 2
        with pytest.raises(MediaError):
            room("a")  # closed: reopening it is a new room, and there is no place
        resumed = room("d", beyond_limit=True)
        assert sfu.open_rooms() == 3
        assert {second.key, third.key, resumed.key} == {"b", "c", "d"}
    finally:
        await sfu.close()
    assert sfu.counts().rooms == 0


async def test_a_therapist_beyond_max_live_sessions_is_told_the_server_is_full(
    tmp_path: Path,
) -> None:
    from tests.conftest import start_server
    from tests.signalling.client import Client

    server = await start_server(tmp_path, max_live_sessions=1)
    clients: list[Client] = []
    try:
        codes = [await server.create_room("Group A"), await server.create_room("Group B")]
        for code in codes:
            clients.append(await Client().connect(server.url, await server.owner_cookie(code)))
        first = await clients[0].call("join", {"room_code": codes[0]})
        assert first["ok"], first
        refused = await clients[1].call("join", {"room_code": codes[1]})
        assert refused == {
            "ok": False,
            "error": {"code": "server_full", "message": refused["error"]["message"]},
        }
        assert "as many sessions" in refused["error"]["message"]
        # When the first session ends, the second can start.
        ended = await clients[0].call("end_session", {})
        assert ended["ok"], ended

        async def second_joins() -> bool:
            ack = await clients[1].call("join", {"room_code": codes[1]})
            return bool(ack["ok"])

        await wait_for_async(second_joins)
    finally:
        for client in clients:
            if client.sio.connected:
                await client.close()
        await server.runner.cleanup()


async def wait_for_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.2)


# ---- through a 1:1 NAT in network namespaces ------------------------------------------


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class NatNetwork:
    """root (server) --veth-- nat namespace (1:1 NAT + firewall) --veth-- client namespace
    (whose own firewall lets in only answers to what it sent, as a home router does)."""

    tag: str
    server: str  # the server's interface address, in this process's namespace
    announced: str  # the public address the NAT maps to it
    client: str  # the client's address
    ports: PortRange

    @property
    def nat_ns(self) -> str:
        return f"tcn{self.tag}n"

    @property
    def client_ns(self) -> str:
        return f"tcn{self.tag}c"

    def in_client(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *command]


def _subnet_free(octet: int) -> bool:
    used = (
        subprocess.run(
            ["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
        ).stdout
        + subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    )
    return f"198.18.{octet}." not in used and f"198.19.{octet}." not in used


@pytest.fixture
def nat_network() -> Iterator[NatNetwork]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 not installed: apt-get install iproute2")
    if shutil.which("nft") is None:
        pytest.skip("nftables not installed: apt-get install nftables")
    octet = next((o for o in random.sample(range(100, 250), 150) if _subnet_free(o)), None)
    assert octet is not None, "no free 198.18.x.0/24 test subnet"
    tag = f"{os.getpid() % 10000}{octet}"
    net = NatNetwork(
        tag=tag,
        server=f"198.18.{octet}.1",
        announced=f"198.19.{octet}.1",
        client=f"198.18.{octet}.6",
        ports=free_port_range(24),
    )
    nat_ns, client_ns = net.nat_ns, net.client_ns
    root_if, nat_in, nat_out, client_if = f"tcn{tag}r", f"tcn{tag}a", f"tcn{tag}b", f"tcn{tag}k"
    nat_inside, nat_outside = f"198.18.{octet}.2", f"198.18.{octet}.5"
    ruleset = f"""
table ip telecircle_nat {{
    chain pre {{
        type nat hook prerouting priority dstnat;
        iifname "{nat_out}" ip daddr {net.announced} udp dport {net.ports.low}-{net.ports.high} \
dnat to {net.server}
    }}
    chain post {{
        type nat hook postrouting priority srcnat;
        oifname "{nat_out}" ip saddr {net.server} snat to {net.announced}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        iifname "{nat_in}" accept
        iifname "{nat_out}" ct state established accept
        iifname "{nat_out}" ct status dnat accept
    }}
}}
"""
    home_ruleset = f"""
table inet telecircle_home {{
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{client_if}" ct state new drop
    }}
}}
"""
    try:
        run("ip", "netns", "add", nat_ns)
        run("ip", "netns", "add", client_ns)
        run("ip", "link", "add", root_if, "type", "veth", "peer", "name", nat_in)
        run("ip", "link", "set", nat_in, "netns", nat_ns)
        run("ip", "addr", "add", f"{net.server}/30", "dev", root_if)
        run("ip", "link", "set", root_if, "up")
        run("ip", "route", "add", f"198.18.{octet}.4/30", "via", nat_inside, "dev", root_if)
        run("ip", "-n", nat_ns, "link", "add", nat_out, "type", "veth", "peer", "name", client_if)
        run("ip", "-n", nat_ns, "link", "set", client_if, "netns", client_ns)
        run("ip", "-n", nat_ns, "addr", "add", f"{nat_inside}/30", "dev", nat_in)
        run("ip", "-n", nat_ns, "addr", "add", f"{nat_outside}/30", "dev", nat_out)
        for link in ("lo", nat_in, nat_out):
            run("ip", "-n", nat_ns, "link", "set", link, "up")
        run("ip", "netns", "exec", nat_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        subprocess.run(
            ["ip", "netns", "exec", nat_ns, "nft", "-f", "-"],
            input=ruleset.encode(),
            check=True,
            capture_output=True,
            timeout=30,
        )
        run("ip", "-n", client_ns, "addr", "add", f"{net.client}/30", "dev", client_if)
        for link in ("lo", client_if):
            run("ip", "-n", client_ns, "link", "set", link, "up")
        run("ip", "-n", client_ns, "route", "add", "default", "via", nat_outside)
        # The client's own home router: nothing unsolicited comes in, so the server's
        # checks reach it only once it has sent to the address it was told.
        subprocess.run(
            ["ip", "netns", "exec", client_ns, "nft", "-f", "-"],
            input=home_ruleset.encode(),
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield net
    finally:
        subprocess.run(["ip", "link", "del", root_if], capture_output=True, timeout=30)
        for ns in (client_ns, nat_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(Path("/etc/netns") / client_ns, ignore_errors=True)


class RemoteParticipants:
    """The child process with two participants in the client namespace; this side
    answers their requests with the real room (see :func:`_remote_participants`)."""

    def __init__(self, process: asyncio.subprocess.Process, room: MediaRoom) -> None:
        self.process = process
        self.room = room
        self.mids: dict[ParticipantId, dict[int, tuple[str, str]]] = {}

    async def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    raise EOFError("the participants' process ended")
                if line.startswith(b"{"):
                    message: dict[str, Any] = json.loads(line)
                    return message

    def _write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def serve_until_ready(self) -> None:
        while True:
            request = await self._read()
            op, pid = request["op"], ParticipantId(request.get("pid", ""))
            if op == "ready":
                return
            if op == "publish":
                self._write({"sdp": await self.room.publish(pid, request["sdp"])})
            elif op == "subscribe":
                offer, slots, screen_mid = await self.room.subscribe(pid, request["slots"])
                self.mids[pid] = {s.index: (s.audio_mid, s.video_mid) for s in slots}
                self._write(
                    {
                        "sdp": offer,
                        "slots": [[s.index, s.audio_mid, s.video_mid] for s in slots],
                        "screen_mid": screen_mid,
                    }
                )
            elif op == "answer":
                await self.room.accept_subscribe_answer(pid, request["sdp"])
                self._write({})
            else:
                raise AssertionError(request)

    async def report(self) -> dict[str, Any]:
        self._write({"op": "report"})
        report = await self._read()
        assert report["op"] == "report"
        return cast(dict[str, Any], report["peers"])

    async def finish(self) -> None:
        with contextlib.suppress(Exception):
            self._write({"op": "quit"})
        try:
            async with asyncio.timeout(20):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def test_a_peer_connects_through_the_announced_address(nat_network: NatNetwork) -> None:
    net = nat_network
    sfu = await open_sfu(
        MediaSettings(
            ice_host_addresses=(net.server,),
            ice_announced_address=net.announced,
            ice_port_min=net.ports.low,
            ice_port_max=net.ports.high,
            keyframe_request_interval=0.2,
        )
    )
    events = RoomEvents()
    room = sfu.room("nat", on_slots=events.on_slots, on_path_lost=events.on_path_lost)
    process = await asyncio.create_subprocess_exec(
        *net.in_client(PYTHON, "-m", "tests.media.test_ice_network", "participants"),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    remote = RemoteParticipants(process, room)
    alice, bob = ParticipantId("alice"), ParticipantId("bob")
    try:
        await remote.serve_until_ready()
        room.set_audiences(everyone_sees_everyone([alice, bob]))

        def mids(viewer: ParticipantId, owner: ParticipantId) -> tuple[str, str]:
            index = next(i for i, pid in events.slots[viewer] if pid == owner)
            return remote.mids[viewer][index]

        async def delivered() -> bool:
            if alice not in events.slots or bob not in events.slots:
                return False
            report = await remote.report()
            for viewer, owner in ((alice, bob), (bob, alice)):
                audio_mid, video_mid = mids(viewer, owner)
                packets = report[viewer]["packets"]
                if packets.get(audio_mid, 0) < 5 or packets.get(video_mid, 0) < 10:
                    return False
            return True

        await wait_for_async(delivered, timeout=60)
        report = await remote.report()
        for pid in (alice, bob):
            # Each of the client's four connections runs to the announced address, on a
            # port of the range, and never saw the server's interface address.
            paths = report[pid]["paths"]
            assert len(paths) == 2
            for host, port in paths:
                assert host == net.announced
                assert net.ports.low <= port <= net.ports.high
            assert net.server not in report[pid]["sdp"]
            assert net.announced in report[pid]["sdp"]
    finally:
        await remote.finish()
        await room.close()
        await sfu.close()
    assert process.returncode == 0
    assert sfu.counts().peer_connections == 0


async def test_an_announced_name_is_resolved_when_the_media_plane_starts(
    nat_network: NatNetwork,
) -> None:
    """In the client namespace, whose /etc/hosts (ip netns exec's /etc/netns/NS/hosts)
    names the announced address: the SFU resolves it at start and announces the IP."""
    net = nat_network
    hosts = Path("/etc/netns") / net.client_ns
    hosts.mkdir(parents=True)
    (hosts / "hosts").write_text(f"127.0.0.1 localhost\n{net.announced} media.telecircle.test\n")
    script = f"""
import asyncio
from telecircle.domain.ids import ParticipantId
from telecircle.media.settings import MediaSettings
from telecircle.media.sfu import Sfu

async def main():
    sfu = Sfu(MediaSettings(ice_host_addresses=({net.client!r},),
                            ice_announced_address="media.telecircle.test"))
    await sfu.start()
    room = sfu.room("r", on_slots=lambda *a: None, on_path_lost=lambda p: None)
    offer, _, _ = await room.subscribe(ParticipantId("p"), 1)
    print(sfu.announced_address)
    print(offer)
    await sfu.close()

asyncio.run(main())
"""
    done = await asyncio.to_thread(
        subprocess.run,
        net.in_client(PYTHON, "-c", script),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    resolved, _, offer = done.stdout.partition("\n")
    assert resolved == net.announced
    assert {host for host, _ in candidates(offer)} == {net.announced}
    assert net.client not in offer


# ---- the child process: two participants in the client namespace ----------------------


class _RemoteRoom:
    """Stands in for the MediaRoom in the child: each call goes to the test process."""

    def __init__(self, call: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        self._call = call

    async def publish(self, pid: ParticipantId, offer_sdp: str) -> str:
        reply = await self._call({"op": "publish", "pid": pid, "sdp": offer_sdp})
        return str(reply["sdp"])

    async def subscribe(
        self, pid: ParticipantId, slot_count: int
    ) -> tuple[str, list[ReceiveSlot], str]:
        reply = await self._call({"op": "subscribe", "pid": pid, "slots": slot_count})
        slots = [ReceiveSlot(index=i, audio_mid=a, video_mid=v) for i, a, v in reply["slots"]]
        return str(reply["sdp"]), slots, str(reply["screen_mid"])

    async def accept_subscribe_answer(self, pid: ParticipantId, answer_sdp: str) -> None:
        await self._call({"op": "answer", "pid": pid, "sdp": answer_sdp})


def _peer_report(peer: SyntheticPeer) -> dict[str, Any]:
    paths = []
    sdp = ""
    for pc in (peer.publish_pc, peer.subscribe_pc):
        assert pc is not None
        sdp += pc.remoteDescription.sdp
        # aioice's connection under the first transceiver (bundled: the only one).
        ice = pc.getTransceivers()[0].receiver.transport.transport._connection
        paths.extend(list(pair.remote_addr) for pair in ice._nominated.values())
    return {"packets": dict(peer.received.packets), "paths": paths, "sdp": sdp}


async def _remote_participants() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def send(message: dict[str, Any]) -> None:
        print(json.dumps(message), flush=True)

    async def call(message: dict[str, Any]) -> dict[str, Any]:
        send(message)
        reply: dict[str, Any] = json.loads(await reader.readline())
        return reply

    room = cast(MediaRoom, _RemoteRoom(call))
    peers = [SyntheticPeer("alice", encode_media(0)), SyntheticPeer("bob", encode_media(1))]
    try:
        for peer in peers:
            await peer.publish(room)
            await peer.subscribe(room, 2)
        send({"op": "ready"})
        while line := await reader.readline():
            if json.loads(line)["op"] == "quit":
                break
            send({"op": "report", "peers": {peer.pid: _peer_report(peer) for peer in peers}})
    finally:
        for peer in peers:
            await peer.close()


if __name__ == "__main__" and sys.argv[1:] == ["participants"]:
    asyncio.run(_remote_participants())
