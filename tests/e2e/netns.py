"""A network namespace joined to this host by a veth pair, for one browser whose path
a test cuts and restores.

The namespace side (``NS_ADDRESS``) is the participant's network; the host side
(``HOST_ADDRESS``) is where the server listens and gathers ICE candidates. Chromium
runs inside through a wrapper executable (``ip netns exec NAMESPACE chromium "$@"``)
that Playwright launches like Chromium itself.

Names are fixed, so a run that crashed leaves nothing the next run does not remove
first (:meth:`NamespaceLab.create`). Needs root and ``ip netns``; :func:`unavailable`
says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "telecircle-cut"
HOST_LINK, NS_LINK = "tccut0", "tccut1"
HOST_ADDRESS, NS_ADDRESS = "10.77.7.1", "10.77.7.2"
PREFIX = 24
COMMAND_TIMEOUT_S = 10


def _run(command: list[str], namespace: str | None, check: bool) -> None:
    if namespace is not None:
        command = ["ip", "netns", "exec", namespace, *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> None:
    _run(["ip", *args], namespace, check)


def namespaces_refused(namespace: str) -> str | None:
    """Why ``ip netns add`` fails here (tried with a probe named after ``namespace``),
    or None if it works."""
    probe = f"{namespace}-probe"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        return f"`ip netns add` failed here: {error}"
    _ip("netns", "del", probe, check=False)
    return None


def unavailable() -> str | None:
    """Why this machine cannot run the namespace tests, or None if it can."""
    if os.geteuid() != 0:
        return "cutting a browser's network needs root (network namespaces, veth)"
    for tool in ("ip", "ss", "tc"):
        if shutil.which(tool) is None:
            return f"cutting a browser's network needs iproute2's `{tool}`"
    return namespaces_refused(NAMESPACE)


@dataclass(frozen=True)
class Veth:
    """A namespace's name, its veth pair's two ends and their addresses."""

    namespace: str
    host_link: str
    ns_link: str
    host_address: str
    ns_address: str
    prefix: int = PREFIX


class NamespaceLab:
    """A namespace joined to the host by a veth pair (nothing else), and a wrapper
    executable that runs Chromium inside it."""

    def __init__(self, veth: Veth, chromium: Path, wrapper: Path) -> None:
        self.veth = veth
        self.chromium = chromium
        self.wrapper = wrapper

    def create(self) -> None:
        self.remove()  # whatever a crashed run left behind
        v = self.veth
        _ip("netns", "add", v.namespace)
        _ip("link", "add", v.host_link, "type", "veth", "peer", "name", v.ns_link)
        _ip("link", "set", v.ns_link, "netns", v.namespace)
        _ip("addr", "add", f"{v.host_address}/{v.prefix}", "dev", v.host_link)
        _ip("link", "set", v.host_link, "up")
        _ip("addr", "add", f"{v.ns_address}/{v.prefix}", "dev", v.ns_link, namespace=v.namespace)
        _ip("link", "set", v.ns_link, "up", namespace=v.namespace)
        _ip("link", "set", "lo", "up", namespace=v.namespace)
        self.wrapper.write_text(
            f'#!/bin/sh\nexec ip netns exec {v.namespace} "{self.chromium}" "$@"\n'
        )
        self.wrapper.chmod(0o755)

    def remove(self) -> None:
        """Remove the namespace and the veth pair (either may be missing)."""
        # Deleting the host end deletes its peer; deleting the namespace deletes the
        # peer too if it is still inside.
        _ip("link", "del", self.veth.host_link, check=False)
        _ip("netns", "del", self.veth.namespace, check=False)

    def run_inside(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run ``command`` inside the namespace (bounded)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.veth.namespace, *command],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )


class PathCutLab(NamespaceLab):
    """The namespace, the veth pair and the Chromium wrapper, and the cuts."""

    def __init__(self, chromium: Path, workdir: Path) -> None:
        veth = Veth(NAMESPACE, HOST_LINK, NS_LINK, HOST_ADDRESS, NS_ADDRESS)
        super().__init__(veth, chromium, workdir / "chromium-in-namespace")

    def cut(self, silent: bool = False) -> None:
        """Nothing passes between the namespace and the host any more.

        By default the participant's link goes down (its Wi-Fi is gone: the browser's
        machine notices). ``silent``: every packet is dropped in both directions and no
        link changes state (a path that dies somewhere in between: nobody is told), by
        a blackhole queueing discipline on both ends of the veth pair.
        """
        if silent:
            _run(["tc", "qdisc", "replace", "dev", HOST_LINK, "root", "blackhole"], None, True)
            _run(["tc", "qdisc", "replace", "dev", NS_LINK, "root", "blackhole"], NAMESPACE, True)
        else:
            _ip("link", "set", NS_LINK, "down", namespace=NAMESPACE)

    def throttle_inbound(self, rate: str, latency: str = "300ms") -> None:
        """What reaches the namespace passes a bottleneck of ``rate`` (tc syntax, e.g.
        ``200kbit``) with a queue of ``latency``, as on a weak mobile link; what leaves
        it is untouched. :meth:`restore` lifts it."""
        _run(
            [
                "tc", "qdisc", "replace", "dev", HOST_LINK, "root", "tbf",
                "rate", rate, "burst", "16kb", "latency", latency,
            ],
            None,
            True,
        )  # fmt: skip

    def kill_connections(self, port: int) -> None:
        """Abort the namespace's TCP connections to the server's ``port`` (the browser's
        websocket): with the path cut, no close frame and no reset reach the server."""
        # (ss also tries sockets of other kinds, which the kernel refuses: not checked.)
        _run(["ss", "-K", "dst", HOST_ADDRESS, "dport", "=", str(port)], NAMESPACE, False)

    def restore(self) -> None:
        """Undo either kind of cut, or a throttle."""
        _run(["tc", "qdisc", "del", "dev", HOST_LINK, "root"], None, False)
        _run(["tc", "qdisc", "del", "dev", NS_LINK, "root"], NAMESPACE, False)
        _ip("link", "set", NS_LINK, "up", namespace=NAMESPACE)
