"""A patient's network that reaches only a TURN relay, and a real coturn to relay through.

The "patient" namespace is joined to this host by a veth pair and has nothing else: the
host end's address (``HOST_ADDRESS``) is where coturn listens and where the web server
answers (signalling must reach the page); the server's media (ICE) lives on this host's
127.0.0.1, which a process inside the namespace cannot reach at all (its loopback is its
own). coturn relays from 127.0.0.1 (``allow-loopback-peers``, test-only), so the one path
between the patient's browser and the server's media ports is the relay.

coturn runs as a subprocess of the test (``turnserver -c FILE``) with a configuration the
test writes from the production sample, deploy/coturn/turnserver.conf (the TURN REST
scheme with the secret Telecircle gets, TURN over TLS, only Telecircle's server as a
peer): this test's addresses, ports, secret and a fresh self-signed certificate in
place of the sample's, its database and pid file in the test's folder.

Names and addresses are fixed (not those of tests/e2e/netns.py), so a run that crashed
leaves nothing the next run does not remove first. Needs root, iproute2 and Debian's
``coturn``: :func:`unavailable` says why not.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import struct
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from tests.certs import new_key, write_certificate, write_key
from tests.coturn import start_turnserver, stop_turnserver
from tests.e2e.netns import NamespaceLab, Veth, namespaces_refused

NAMESPACE = "telecircle-turn"
HOST_LINK, NS_LINK = "tcturn0", "tcturn1"
HOST_ADDRESS, NS_ADDRESS = "10.77.9.1", "10.77.9.2"
PREFIX = 24
SUBNET = f"10.77.9.0/{PREFIX}"
TURN_PORT = 3478
# TURN over TLS (443 in production; any port will do on the test's own address).
TURNS_PORT = 5349
SAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "coturn" / "turnserver.conf"
# Relay ports on 127.0.0.1, above Linux's ephemeral range (32768-60999): no clash with
# the server's own ICE sockets there.
RELAY_PORTS = (61000, 61199)
REALM = "telecircle.test"

# STUN (RFC 5389): a Binding request, and the magic cookie every message carries.
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_MAGIC_COOKIE = 0x2112A442


def unavailable() -> str | None:
    """Why this machine cannot run the relay test, or None if it can."""
    if shutil.which("turnserver") is None:
        return "coturn is not installed: apt-get install coturn"
    if os.geteuid() != 0:
        return "a patient network that reaches only the relay needs root (namespaces, veth)"
    if shutil.which("ip") is None:
        return "a patient network needs iproute2's `ip`: apt-get install iproute2"
    return namespaces_refused(NAMESPACE)


class PatientNetwork(NamespaceLab):
    """The namespace, the veth pair, and a Chromium wrapper that runs inside."""

    def __init__(self, chromium: Path, workdir: Path) -> None:
        veth = Veth(NAMESPACE, HOST_LINK, NS_LINK, HOST_ADDRESS, NS_ADDRESS, PREFIX)
        super().__init__(veth, chromium, workdir / "chromium-in-patient-network")


def coturn_config(sample: str, workdir: Path, secret: str, cert: Path, key: Path) -> str:
    """The production sample (deploy/coturn/turnserver.conf) made to run here: this
    test's addresses, ports, secret and certificate, the relay's one allowed peer on
    127.0.0.1 (the server's media here; loopback peers are allowed for that alone), its
    files in ``workdir``, its log on stdout. Every other line is the sample's own."""
    low, high = RELAY_PORTS
    replace: dict[str, str | None] = {
        "listening-ip": HOST_ADDRESS,
        "relay-ip": "127.0.0.1",
        "listening-port": str(TURN_PORT),
        "tls-listening-port": str(TURNS_PORT),
        "min-port": str(low),
        "max-port": str(high),
        "static-auth-secret": secret,
        "realm": REALM,
        "server-name": REALM,
        "cert": str(cert),
        "pkey": str(key),
        "allowed-peer-ip": "127.0.0.1",
        "syslog": None,
    }
    lines: list[str] = []
    seen: set[str] = set()
    for raw in sample.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        if name in replace:
            seen.add(name)
            if replace[name] is None:
                continue
            value = str(replace[name])
        lines.append(f"{name}={value}" if value else name)
    missing = set(replace) - seen
    if missing:
        raise AssertionError(f"the coturn sample no longer sets {sorted(missing)}")
    lines += [
        # The server's media is on this host's loopback here (never in production).
        "allow-loopback-peers",
        f"userdb={workdir / 'turndb'}",
        f"pidfile={workdir / 'turnserver.pid'}",
        "log-file=stdout",
        "simple-log",
    ]
    return "\n".join(lines) + "\n"


def write_turn_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``HOST_ADDRESS`` (TURN over TLS), and its key."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, REALM)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST_ADDRESS))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return (
        write_certificate(workdir / "turn-cert.pem", certificate),
        write_key(workdir / "turn-key.pem", key),
    )


class Coturn:
    """A real coturn on ``HOST_ADDRESS``: TURN on ``TURN_PORT`` (UDP and TCP), TURN over
    TLS on ``TURNS_PORT``, relaying from 127.0.0.1 to 127.0.0.1 only."""

    def __init__(self, workdir: Path, secret: str) -> None:
        self.workdir = workdir
        self.config = workdir / "turnserver.conf"
        self.log = workdir / "turnserver.log"
        self.secret = secret
        self.cert = workdir / "turn-cert.pem"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:{HOST_ADDRESS}:{TURN_PORT}?transport=udp"

    def start(self) -> None:
        self.cert, key = write_turn_certificate(self.workdir)
        sample = SAMPLE_CONFIG.read_text(encoding="utf-8")
        self.config.write_text(coturn_config(sample, self.workdir, self.secret, self.cert, key))
        self.config.chmod(0o600)  # it holds the shared secret
        self.process = start_turnserver(
            self.config,
            self.log,
            lambda: stun_binding_answered((HOST_ADDRESS, TURN_PORT), timeout=0.5),
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_turnserver(process)


def stun_binding_answered(address: tuple[str, int], timeout: float) -> bool:
    """Whether a STUN server at ``address`` answers one Binding request within ``timeout``."""
    transaction = secrets.token_bytes(12)
    request = struct.pack("!HHI", STUN_BINDING_REQUEST, 0, STUN_MAGIC_COOKIE) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(request, address)
            answer = sock.recv(2048)
        except OSError:  # refused (not listening yet) or timed out
            return False
    if len(answer) < 20:
        return False
    kind, _, cookie = struct.unpack("!HHI", answer[:8])
    return (
        kind == STUN_BINDING_SUCCESS
        and cookie == STUN_MAGIC_COOKIE
        and answer[8:20] == (transaction)
    )
