"""The media plane's own view of the server settings."""

from __future__ import annotations

from dataclasses import dataclass

from telecircle.config import Settings
from telecircle.domain.bandwidth import DEFAULT_BANDWIDTH_POLICY, BandwidthPolicy
from telecircle.media.ice_network import PortRange
from telecircle.media.lost_packets import DEFAULT_NACK_POLICY, NackPolicy


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """Everything the SFU needs to know, frozen at construction.

    Tests build it directly to use values the public settings refuse (for example a
    tiny ``subscriber_queue_packets`` to provoke drops).
    """

    ice_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    ice_consent_interval: float = 2.0
    ice_consent_timeout: float = 10.0
    # The public address host candidates carry instead of the interface address (an IP
    # address or a DNS name, resolved once when the SFU starts); empty: none.
    ice_announced_address: str = ""
    # The UDP port range of the host sockets (both included); 0, 0: ports the system picks.
    ice_port_min: int = 0
    ice_port_max: int = 0
    # Media rooms open at once; Sfu.room() refuses one more (MediaError ``server_full``).
    max_live_sessions: int = 20
    subscriber_queue_packets: int = 512
    keyframe_request_interval: float = 0.5
    # Asking publishers again for lost video packets (aiortc asks once per gap).
    nack: NackPolicy = DEFAULT_NACK_POLICY
    # When a weak subscriber's videos pause and come back (see domain/bandwidth.py).
    bandwidth: BandwidthPolicy = DEFAULT_BANDWIDTH_POLICY
    # Outgoing packets kept per slot for answering a subscriber's NACKs.
    history_packets: int = 512
    # A browser's publish offer has one audio and one video m-line; a few more are
    # tolerated (only the first of each kind is forwarded), more is refused.
    max_publish_mlines: int = 4
    # ICE candidate lines per media section of a client's SDP: a browser lists one or two
    # per interface and address family (UDP and TCP); each usable one is a check the
    # server sends, so this bounds what one SDP can make it send.
    max_candidates_per_mline: int = 32
    max_slots: int = 32
    # Bound on one offer/answer exchange and on closing one peer connection.
    negotiation_timeout: float = 15.0
    close_timeout: float = 5.0
    # A peer connection not connected this long after it was made is given up as lost.
    connect_timeout: float = 30.0

    @property
    def ice_ports(self) -> PortRange | None:
        """The configured port range, or None for ports the system picks."""
        if self.ice_port_min == 0 and self.ice_port_max == 0:
            return None
        return PortRange(self.ice_port_min, self.ice_port_max)

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaSettings:
        return cls(
            ice_host_addresses=tuple(settings.ice_host_addresses),
            ice_consent_interval=settings.ice_consent_interval,
            ice_consent_timeout=settings.ice_consent_timeout,
            ice_announced_address=settings.ice_announced_address,
            ice_port_min=settings.ice_port_min,
            ice_port_max=settings.ice_port_max,
            max_live_sessions=settings.max_live_sessions,
            subscriber_queue_packets=settings.subscriber_queue_packets,
            keyframe_request_interval=settings.keyframe_request_interval,
            connect_timeout=settings.ice_connect_timeout,
            bandwidth=BandwidthPolicy(
                headroom=settings.weak_video_headroom,
                pause_below=settings.weak_video_pause_below,
                loss_limit=settings.weak_video_loss,
                hold=settings.weak_video_hold,
                probe_after=settings.weak_video_probe_after,
                probe_max=settings.weak_video_probe_max,
            ),
            nack=NackPolicy(
                settings.nack_retry_interval, settings.nack_max_tries, settings.nack_max_missing
            ),
        )
