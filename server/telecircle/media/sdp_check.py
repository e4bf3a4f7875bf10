"""Validation of client SDP before aiortc sees it: refuse early, explain safely."""

from __future__ import annotations

from aiortc import sdp

from telecircle.media.errors import MediaError

SUPPORTED_CODEC = {"audio": "audio/opus", "video": "video/vp8"}
SENDING = ("sendonly", "sendrecv")
RECEIVING = ("recvonly", "sendrecv")


def _parse(text: str) -> sdp.SessionDescription:
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises assorted errors on garbage
        raise MediaError("invalid_sdp", "The session description could not be read.") from exc
    if not description.media:
        raise MediaError("invalid_sdp", "The session description has no media.")
    return description


def check_publish_offer(text: str, max_mlines: int) -> list[str]:
    """Check a publish offer; returns the kind of each m-line in order.

    Every m-line must be audio or video, sent by the client (sendonly/sendrecv) and
    offer the supported codec of its kind (opus, VP8).
    """
    description = _parse(text)
    if len(description.media) > max_mlines:
        raise MediaError("invalid_sdp", "The offer has too many media sections.")
    kinds = []
    for media in description.media:
        if media.kind not in SUPPORTED_CODEC:
            raise MediaError("invalid_sdp", "Only audio and video can be published.")
        if media.direction not in SENDING:
            raise MediaError("invalid_sdp", "A publish offer must send its media.")
        wanted = SUPPORTED_CODEC[media.kind]
        if not any(codec.mimeType.lower() == wanted for codec in media.rtp.codecs):
            raise MediaError("invalid_sdp", "The offer has no supported codec (opus, VP8).")
        kinds.append(media.kind)
    return kinds


def check_subscribe_answer(text: str, expected_mlines: int) -> None:
    """Check a subscribe answer: one receiving m-line for each offered one."""
    description = _parse(text)
    if len(description.media) != expected_mlines:
        raise MediaError("invalid_sdp", "The answer does not match the offer.")
    for media in description.media:
        if media.direction not in RECEIVING:
            raise MediaError("invalid_sdp", "A subscribe answer must receive its media.")
