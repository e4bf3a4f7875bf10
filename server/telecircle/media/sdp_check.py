"""Validation of client SDP before aiortc sees it: refuse early, explain safely.

aiortc 1.16's parser (``aiortc.sdp.SessionDescription.parse``) validates some of its
input with ``assert`` statements (payload types in range and not reserved, the shape of
m-lines and candidates), which vanish under ``python -O``; the rest it takes as given
and acts on later, away from the request: a fingerprint that cannot match fails the
DTLS handshake after the offer was answered (and an offer without one trips another
``assert`` inside the connect task, leaving the connection half-started). Everything
that matters is therefore checked here, with explicit code, before aiortc sees the SDP.

ICE candidates get a policy of their own (:class:`CandidatePolicy`): aioice 0.13 sends
connectivity checks to every candidate address a client names — 0.0.0.0 (which Linux
delivers to the server itself), broadcast and multicast addresses, addresses on the
server's own private network, its loopback services — and resolves ``.local`` names by
multicast DNS (a multicast socket and up to a second's wait inside the offer). An SDP
with a candidate no peer can have (see :func:`bogus`) is refused. A candidate the server
could not reach from the addresses it gathers on is removed from the SDP, not refused:
browsers list every interface they have (and mDNS names in place of private addresses),
and the client still connects through its own checks to the server's candidates
(peer-reflexive), which is how a browser behind NAT connects to the server anyway.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from aiortc import RTCIceCandidate, rtp, sdp
from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS

from telecircle.media.errors import MediaError

SUPPORTED_CODEC = {"audio": "audio/opus", "video": "video/vp8"}
SENDING = ("sendonly", "sendrecv")
RECEIVING = ("recvonly", "sendrecv")

# RTP payload types are 7 bits; aiortc also refuses those that collide with RTCP packet
# types when muxed (rtp.FORBIDDEN_PAYLOAD_TYPES) — with an assert.
MAX_PAYLOAD_TYPE = 127
# RFC 8839: ice-ufrag is 4 to 256 ice-chars, ice-pwd 22 to 256.
ICE_UFRAG = re.compile(r"[A-Za-z0-9+/]{4,256}")
ICE_PWD = re.compile(r"[A-Za-z0-9+/]{22,256}")
# A mid is echoed in our answer and in RTP header extensions: short and printable.
MID = re.compile(r"[!-~]{1,32}")
# Each digest aiortc can check (X509_DIGEST_ALGORITHMS): its bytes as colon-separated hex
# pairs (RFC 8122).
FINGERPRINT_VALUE = {
    algorithm: re.compile("[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){" + str(size - 1) + "}")
    for algorithm, size in (("sha-256", 32), ("sha-384", 48), ("sha-512", 64))
}
CANDIDATE_LINE = "a=candidate:"
END_OF_CANDIDATES = "a=end-of-candidates"
# The candidates aioice can use with our UDP host candidates (component 1: RTCP is muxed).
USABLE_TYPES = ("host", "srflx", "relay")
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")

Scope = Literal["loopback", "private", "global"]
# Which remote scopes a socket bound to a host address of each scope can reach.
REACHES: dict[Scope, tuple[Scope, ...]] = {
    "loopback": ("loopback",),
    "private": ("private", "global"),
    "global": ("global",),
}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def bogus(address: Address) -> bool:
    """An address no peer can have: unspecified, multicast, IPv4 broadcast and the rest of
    240.0.0.0/4, "this network" (0.0.0.0/8)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        return True
    return isinstance(address, ipaddress.IPv4Address) and (
        address.is_reserved or address in THIS_NETWORK
    )


def address_scope(address: Address) -> Scope | None:
    """Where an address lives; None for addresses nobody should be sent checks at
    (unspecified, "this network", broadcast and other reserved ranges, multicast,
    link-local)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast or address.is_link_local:
        return None
    if address.is_loopback:
        return "loopback"
    if address.is_reserved or address in THIS_NETWORK:
        return None
    return "global" if address.is_global else "private"


class CandidatePolicy:
    """Which remote candidates the SFU may send connectivity checks to.

    A candidate must name an IP address (not a host name or an mDNS ``.local`` name) of
    the same family as one of the host addresses the SFU gathers on, and in a scope a
    socket bound there can reach: loopback only from loopback, private and global from a
    private address, global from a global one. At most ``max_per_mline`` candidate lines
    per media section (each is a check the server would send, up to a port scan).
    """

    def __init__(self, host_addresses: tuple[str, ...], max_per_mline: int) -> None:
        self.max_per_mline = max_per_mline
        allowed: set[tuple[int, Scope]] = set()
        for text in host_addresses:
            host = ipaddress.ip_address(text)
            scope = address_scope(host)
            if scope is not None:
                allowed.update((host.version, reached) for reached in REACHES[scope])
        self._allowed = frozenset(allowed)

    @staticmethod
    def bogus(host: str) -> bool:
        try:
            return bogus(ipaddress.ip_address(host))
        except ValueError:
            return False  # a name: not an address at all

    def reachable(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False  # a host name, an mDNS name, an address with a zone
        # The family is the address's own (aioice pairs by it), the scope that of an
        # IPv4-mapped address's IPv4 address.
        scope = address_scope(address)
        return scope is not None and (address.version, scope) in self._allowed

    def usable(self, candidate: RTCIceCandidate) -> bool:
        return (
            candidate.component == 1
            and candidate.protocol.lower() == "udp"
            and candidate.type in USABLE_TYPES
            and self.reachable(candidate.ip)
        )


@dataclass(frozen=True, slots=True)
class CheckedSdp:
    """A session description that passed the checks.

    ``sdp`` is what aiortc may be given: the client's text without the candidates the
    policy removed (``dropped`` of them). ``kinds`` is the kind of each m-line in order.
    """

    sdp: str
    kinds: list[str]
    dropped: int


def _refuse(message: str) -> MediaError:
    return MediaError("invalid_sdp", message)


def _filter_candidates(text: str, policy: CandidatePolicy) -> tuple[str, int]:
    """Remove the candidates outside the policy; refuse unreadable, bogus or too many."""
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    dropped = remaining = in_section = 0
    for line in lines:
        if line.startswith("m="):
            in_section = 0
        if not line.startswith(CANDIDATE_LINE):
            kept.append(line)
            continue
        in_section += 1
        if in_section > policy.max_per_mline:
            raise _refuse("The session description has too many ICE candidates.")
        try:
            candidate = sdp.candidate_from_sdp(line.strip()[len(CANDIDATE_LINE) :])
        except (ValueError, IndexError) as exc:
            raise _refuse("An ICE candidate could not be read.") from exc
        if not 0 < candidate.port < 65536 or len(candidate.foundation) > 32:
            raise _refuse("An ICE candidate could not be read.")
        if policy.bogus(candidate.ip):
            raise _refuse("An ICE candidate names an address no peer can have.")
        if policy.usable(candidate):
            kept.append(line)
            remaining += 1
        else:
            dropped += 1
    if dropped and not remaining:
        # aioice 0.13 fails ICE at once when end-of-candidates leaves it no pair, before
        # the client's own checks (peer-reflexive candidates) can arrive.
        kept = [line for line in kept if not line.startswith(END_OF_CANDIDATES)]
    return "".join(kept), dropped


def _parse(text: str, max_mlines: int) -> sdp.SessionDescription:
    # Counted before parsing: no work for an absurd number of sections.
    mlines = sum(1 for line in text.splitlines() if line.startswith("m="))
    if mlines == 0:
        raise _refuse("The session description has no media.")
    if mlines > max_mlines:
        raise _refuse("The session description has too many media sections.")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises assorted errors on garbage
        raise _refuse("The session description could not be read.") from exc
    if len(description.media) != mlines:
        raise _refuse("The session description could not be read.")
    return description


def _check_transport(media: sdp.MediaDescription) -> None:
    """ICE credentials and DTLS fingerprints: what aiortc would otherwise trip over only
    once the connection starts (see the module docstring)."""
    ice = media.ice
    if ice is None or not (
        ice.usernameFragment
        and ice.password
        and ICE_UFRAG.fullmatch(ice.usernameFragment)
        and ICE_PWD.fullmatch(ice.password)
    ):
        raise _refuse("The session description has missing or malformed ICE credentials.")
    if media.dtls is None:
        raise _refuse("The session description has no DTLS setup.")
    supported = 0
    for fingerprint in media.dtls.fingerprints:
        algorithm = fingerprint.algorithm.lower()
        if algorithm not in X509_DIGEST_ALGORITHMS:
            continue  # aiortc ignores digests it cannot compute; so do we
        supported += 1
        pattern = FINGERPRINT_VALUE.get(algorithm)
        if pattern is None or not pattern.fullmatch(fingerprint.value):
            raise _refuse("The session description has a malformed DTLS fingerprint.")
    if not supported:
        raise _refuse("The session description has no usable DTLS fingerprint.")


def _check_media(media: sdp.MediaDescription, mids: set[str]) -> None:
    if media.kind not in SUPPORTED_CODEC:
        raise _refuse("Only audio and video media are supported.")
    mid = media.rtp.muxId
    if not MID.fullmatch(mid) or mid in mids:
        raise _refuse("Each media section needs its own short mid.")
    mids.add(mid)
    payload_types = [*media.fmt, *(codec.payloadType for codec in media.rtp.codecs)]
    for payload_type in payload_types:
        if (
            not isinstance(payload_type, int)
            or not 0 <= payload_type <= MAX_PAYLOAD_TYPE
            or payload_type in rtp.FORBIDDEN_PAYLOAD_TYPES
        ):
            raise _refuse("The session description has an invalid payload type.")
    _check_transport(media)


def _check(
    text: str, max_mlines: int, policy: CandidatePolicy
) -> tuple[CheckedSdp, sdp.SessionDescription]:
    description = _parse(text, max_mlines)
    mids: set[str] = set()
    for media in description.media:
        _check_media(media, mids)
    filtered, dropped = _filter_candidates(text, policy)
    kinds = [media.kind for media in description.media]
    return CheckedSdp(filtered, kinds, dropped), description


def check_publish_offer(text: str, max_mlines: int, policy: CandidatePolicy) -> CheckedSdp:
    """Check a publish offer.

    Every m-line must be audio or video, sent by the client (sendonly/sendrecv), offer
    the supported codec of its kind (opus, VP8), and carry well-formed transport
    parameters; candidates outside ``policy`` are removed. Raises MediaError
    ``invalid_sdp`` otherwise.
    """
    checked, description = _check(text, max_mlines, policy)
    for media in description.media:
        if media.direction not in SENDING:
            raise _refuse("A publish offer must send its media.")
        wanted = SUPPORTED_CODEC[media.kind]
        if not any(codec.mimeType.lower() == wanted for codec in media.rtp.codecs):
            raise _refuse("The offer has no supported codec (opus, VP8).")
    return checked


def check_subscribe_answer(text: str, expected_mlines: int, policy: CandidatePolicy) -> CheckedSdp:
    """Check a subscribe answer: one receiving m-line for each offered one, well-formed
    transport parameters; candidates outside ``policy`` are removed. Raises MediaError
    ``invalid_sdp`` otherwise."""
    checked, description = _check(text, expected_mlines, policy)
    if len(description.media) != expected_mlines:
        raise _refuse("The answer does not match the offer.")
    for media in description.media:
        if media.direction not in RECEIVING:
            raise _refuse("A subscribe answer must receive its media.")
    return checked
