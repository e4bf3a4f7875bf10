"""End-to-end: a patient who cannot reach the server's media ports joins through TURN.

Cy's Chromium runs in a network namespace this module creates (tests/e2e/turn_lab.py)
that reaches only the host end of a veth pair, where a real coturn listens (started
here, with the TURN REST scheme and the secret the server is given) and where the web
server answers (signalling). The server's media (ICE) is on this host's 127.0.0.1,
which the namespace cannot reach: the relay is Cy's only path to it. Alice, the
therapist, and Bob, another patient, run on the host.

What must hold: the server hands each browser short-lived TURN credentials with its
join; Cy's page connects both of its peer connections through the relay (the selected
candidate pair's local candidate is a relay candidate in Chromium's getStats, and no
direct pair ever works) and media flows both ways (Alice sees and hears Cy, Cy sees and
hears Alice, by colour and decoded audio; Bob, on the host too, likewise). And coturn
refuses credentials that are expired, made with the wrong secret, or moved to another
participant (an Allocate with aioice's TURN client gets 401), while fresh ones allocate.

coturn runs with deploy/coturn/turnserver.conf, the production sample (this test's
addresses, ports, secret and certificate in place of the sample's): TURN over TLS
allocates with the same credentials, and the relay reaches Telecircle's media address
and nothing else (403 for any other peer).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aioice import stun
from aioice.turn import TurnTransport, create_turn_endpoint

from telecircle.services.turn import TurnCredentialIssuer, TurnCredentials
from tests.e2e.conftest import CHROMIUM, Server, Site, running_server
from tests.e2e.room_page import (
    BLUE,
    CHROMIUM_ARGS,
    GREEN,
    RED,
    Browsers,
    eventually,
    session_cookie,
)
from tests.e2e.turn_lab import (
    HOST_ADDRESS,
    SUBNET,
    TURN_PORT,
    TURNS_PORT,
    Coturn,
    PatientNetwork,
    unavailable,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

ALLOCATE_TIMEOUT_S = 10.0
RELAY_TIMEOUT_S = 40.0

# Each live peer connection of the page: its state, the selected candidate pair (local
# and remote candidate, bytes each way), and every candidate pair that ever carried
# anything (a check answered, nominated, or bytes received).
_PATHS_JS = """
async () => {
  const result = [];
  for (const pc of window.__telecircleTestPeers || []) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    const byId = new Map();
    stats.forEach((report) => byId.set(report.id, report));
    const candidate = (id) => {
      const c = byId.get(id);
      return c ? { type: c.candidateType, address: c.address, port: c.port } : null;
    };
    let selected = null;
    const used = [];
    for (const report of stats.values()) {
      if (report.type === 'transport' && report.selectedCandidatePairId) {
        selected = byId.get(report.selectedCandidatePairId) || null;
      }
      if (report.type === 'candidate-pair' && (report.state === 'succeeded' || report.nominated
          || report.responsesReceived > 0 || report.bytesReceived > 0)) {
        used.push({ local: candidate(report.localCandidateId),
                    remote: candidate(report.remoteCandidateId) });
      }
    }
    result.push({
      state: pc.connectionState,
      local: selected ? candidate(selected.localCandidateId) : null,
      remote: selected ? candidate(selected.remoteCandidateId) : null,
      bytesSent: selected ? selected.bytesSent || 0 : 0,
      bytesReceived: selected ? selected.bytesReceived || 0 : 0,
      used,
    });
  }
  return result;
}
"""


# The TURN URLs each of the page's peer connections was configured with.
_ICE_SERVERS_JS = """
() => (window.__telecircleTestPeers || []).map(
  (pc) => pc.getConfiguration().iceServers.flatMap((server) => [].concat(server.urls)))
"""


@pytest.fixture(scope="module")
def turn_secret() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def network(
    tmp_path_factory: pytest.TempPathFactory, turn_secret: str
) -> Iterator[tuple[PatientNetwork, Coturn]]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("turn")
    # (The browser test needs Chromium and skips without it; the relay tests do not.)
    patient_network = PatientNetwork(CHROMIUM, workdir)
    coturn = Coturn(workdir, turn_secret)
    try:
        patient_network.create()
        coturn.start()
        yield patient_network, coturn
    finally:
        coturn.stop()
        patient_network.remove()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    network: tuple[PatientNetwork, Coturn],
    turn_secret: str,
) -> Iterator[Server]:
    """The server's web side on the veth's host address (reachable from the patient's
    network, for signalling), its media on 127.0.0.1 (not), TURN configured."""
    _, coturn = network
    environment = {
        "TELECIRCLE_ICE_HOST_ADDRESSES": "127.0.0.1",
        "TELECIRCLE_TURN_URLS": coturn.url,
        "TELECIRCLE_TURN_SECRET": turn_secret,
    }
    with running_server(
        tmp_path_factory.mktemp("telecircle-data"), HOST_ADDRESS, environment
    ) as up:
        yield up


def browser_args(base_url: str, loopback: bool = True) -> list[str]:
    """Chromium's flags for a page of ``base_url``. ``loopback=False``: as a patient's
    browser at home, which gathers no candidates on its loopback interface (with the
    flag, it would also try the relay from 127.0.0.1, which cannot reach it, and wait
    for that allocation to time out before gathering completes)."""
    # http://10.77.9.1 is not a secure context as 127.0.0.1 is: camera and microphone
    # need one.
    args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={base_url}"]
    return args if loopback else [a for a in args if a != "--allow-loopback-in-peer-connection"]


def relayed_both_ways(paths: list[dict[str, Any]]) -> bool:
    """Both peer connections (publish, subscribe) connected over a relay candidate, the
    publish one sending and the subscribe one receiving."""
    if len(paths) != 2 or any(p["state"] != "connected" for p in paths):
        return False
    if any(p["local"] is None or p["local"]["type"] != "relay" for p in paths):
        return False
    publish, subscribe = paths
    return publish["bytesSent"] > 0 and subscribe["bytesReceived"] > 0


async def test_a_patient_who_reaches_only_the_relay_has_two_way_media_through_it(
    site: Site,
    network: tuple[PatientNetwork, Coturn],
    browsers: Browsers,
    tmp_path: Path,
    artifacts_dir: Path,
) -> None:
    patient_network, coturn = network
    base = site.server.base_url
    args = browser_args(base)
    # The patient's network has no way to the server's media address (127.0.0.1 there is
    # its own loopback) and no route anywhere but the veth's subnet.
    probe = patient_network.run_inside("ip", "route", "get", "127.0.0.1")
    assert probe.stdout.startswith("local 127.0.0.1 dev lo"), probe
    routes = patient_network.run_inside("ip", "-4", "route", "show")
    assert [line.split()[0] for line in routes.stdout.splitlines()] == [SUBNET], routes.stdout

    room_id = await asyncio.to_thread(site.therapist.create_room, "Relay group", 3)
    _, alice = await browsers.open(
        "Alice", RED, cookies=[session_cookie(base, site.therapist.session_cookie())], args=args
    )
    await alice.enter_as_clinician(f"{base}/room/{room_id}")
    async with AsyncExitStack() as stack:
        # Cy's browser runs inside the patient's network (the wrapper is its "Chromium").
        inside = Browsers(patient_network.wrapper, tmp_path, stack)
        try:
            pages = {"Alice": alice}
            for name, colour, pool, flags in (
                ("Bob", GREEN, browsers, args),
                ("Cy", BLUE, inside, browser_args(base, loopback=False)),
            ):
                invite = await asyncio.to_thread(site.therapist.invite, room_id, name)
                _, pages[name] = await pool.open(name, colour, args=flags)
                await pages[name].enter_as_patient(invite.url)
            await alice.wait_waiting({"Bob", "Cy"})
            await alice.page.click("#admit-all-button")
            cy = pages["Cy"]
            # The page builds its peer connections with the relay the join handed it.
            configured: list[list[str]] = await eventually(
                lambda: cy.page.evaluate(_ICE_SERVERS_JS),
                lambda urls: len(urls) > 0,
                RELAY_TIMEOUT_S,
                "Cy: a peer connection",
            )
            assert all(coturn.url in urls for urls in configured), (
                "the page's peer connections do not use the TURN server from the join result",
                configured,
            )

            # Two-way media between Cy and each of the others, by colour and decoded audio.
            colours = {"Alice": RED, "Bob": GREEN, "Cy": BLUE}
            for name, page in pages.items():
                await page.wait_state("connected", timeout=RELAY_TIMEOUT_S)
                await page.wait_remote_names(set(colours) - {name}, timeout=RELAY_TIMEOUT_S)
            for viewer, sender in (("Alice", "Cy"), ("Bob", "Cy"), ("Cy", "Alice"), ("Cy", "Bob")):
                await pages[viewer].wait_colour(sender, colours[sender], timeout=RELAY_TIMEOUT_S)
                await pages[viewer].wait_hears(sender, timeout=RELAY_TIMEOUT_S)

            # Both of Cy's connections go through the relay; no direct pair ever worked.
            paths: list[dict[str, Any]] = await eventually(
                lambda: cy.page.evaluate(_PATHS_JS),
                relayed_both_ways,
                RELAY_TIMEOUT_S,
                "Cy: both connections relayed, media both ways",
            )
            for path in paths:
                assert path["remote"]["address"] == "127.0.0.1", path
                assert path["used"], path
                assert all(pair["local"]["type"] == "relay" for pair in path["used"]), path
            print("Cy's selected paths:", [(p["local"], p["remote"]) for p in paths])
            await alice.screenshot(artifacts_dir, "turn-relay")
            await cy.screenshot(artifacts_dir, "turn-relay")
        finally:
            await inside.close_all()


class _Peer(asyncio.DatagramProtocol):
    """The application side of a TURN allocation: what arrives through it, and the errors
    of sending through it (a refused peer)."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.errors: asyncio.Queue[Exception] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.put_nowait(exc)


async def allocate(
    credentials: TurnCredentials, tls: ssl.SSLContext | None = None
) -> tuple[TurnTransport, _Peer]:
    """Allocate a relay on the test's coturn with ``credentials``: over UDP, or over TLS
    with ``tls``. Raises stun.TransactionFailed when refused."""
    transport, peer = await asyncio.wait_for(
        create_turn_endpoint(
            _Peer,
            server_addr=(HOST_ADDRESS, TURNS_PORT if tls else TURN_PORT),
            username=credentials.username,
            password=credentials.password,
            ssl=tls,
            transport="tcp" if tls else "udp",
        ),
        ALLOCATE_TIMEOUT_S,
    )
    return transport, peer


class _At:
    def __init__(self, when: float) -> None:
        self.when = when

    def now(self) -> float:
        return self.when


def error_code(error: BaseException) -> int | None:
    if not isinstance(error, stun.TransactionFailed):
        return None
    code = error.response.attributes.get("ERROR-CODE")
    return None if code is None else int(code[0])


async def assert_refused(credentials: TurnCredentials, what: str) -> None:
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(credentials)
    assert error_code(refused.value) == 401, what


async def test_expired_or_wrong_turn_credentials_are_refused(
    network: tuple[PatientNetwork, Coturn], turn_secret: str
) -> None:
    _, coturn = network
    urls = (coturn.url,)
    now = time.time()
    fresh = TurnCredentialIssuer(urls, turn_secret, 600, _At(now)).issue("p_0011223344556677")

    # Fresh credentials made with the shared secret allocate a relay.
    transport, _ = await allocate(fresh)
    assert transport.get_extra_info("sockname")[0] == "127.0.0.1"
    transport.close()

    # Expired: made with the right secret, but their time has passed.
    expired = TurnCredentialIssuer(urls, turn_secret, 600, _At(now - 3600)).issue("p_0011")
    assert expired.expires_at < now
    await assert_refused(expired, "expired")
    # Made with another secret (a guess, or a server whose secret was changed).
    wrong = TurnCredentialIssuer(urls, secrets.token_hex(32), 600, _At(now)).issue("p_0011")
    await assert_refused(wrong, "wrong secret")
    # One participant's password under another participant's name, or a later expiry.
    expiry, _ = fresh.username.split(":")
    for username in (f"{expiry}:p_8899aabbccddeeff", f"{int(expiry) + 86_400}:p_0011223344556677"):
        moved = TurnCredentials(urls, username, fresh.password, int(username.split(":")[0]))
        await assert_refused(moved, f"moved to {username}")


async def test_the_sample_configuration_relays_over_tls_and_only_to_telecircle(
    network: tuple[PatientNetwork, Coturn], turn_secret: str
) -> None:
    """coturn run with deploy/coturn/turnserver.conf: TURN over TLS allocates with the
    same short-lived credentials, and the relay reaches Telecircle's media address (here
    127.0.0.1) and nothing else."""
    _, coturn = network
    issuer = TurnCredentialIssuer((coturn.url,), turn_secret, 600, _At(time.time()))
    tls = ssl.create_default_context(cafile=str(coturn.cert))

    loop = asyncio.get_running_loop()
    server_side = _Peer()
    media, _ = await loop.create_datagram_endpoint(lambda: server_side, local_addr=("127.0.0.1", 0))
    media_address = media.get_extra_info("sockname")
    try:
        for label, context in (("udp", None), ("tls", tls)):
            transport, peer = await allocate(issuer.issue("p_0011223344556677"), context)
            try:
                relayed = transport.get_extra_info("sockname")
                # To Telecircle's media address, and back: relayed both ways.
                transport.sendto(b"hello " + label.encode(), media_address)
                data, source = await asyncio.wait_for(server_side.received.get(), 10)
                assert data == b"hello " + label.encode() and source == relayed, label
                media.sendto(b"welcome", relayed)
                data, source = await asyncio.wait_for(peer.received.get(), 10)
                assert data == b"welcome" and source == media_address, label
                # Anywhere else (here: coturn's own listening address) is forbidden.
                transport.sendto(b"elsewhere", (HOST_ADDRESS, TURN_PORT))
                refused = await asyncio.wait_for(peer.errors.get(), 10)
                assert error_code(refused) == 403, (label, refused)
            finally:
                transport.close()
    finally:
        media.close()
