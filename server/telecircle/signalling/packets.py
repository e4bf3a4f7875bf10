"""The socket.io packet screen: what python-socketio would mishandle never reaches it.

python-socketio 5.18 decodes every packet a client sends (``socketio.packet.Packet``)
and, left to itself:

- buffers the binary attachments a packet announces, up to 9,999,999,999 of them, each
  as large as engine.io allows, for as long as the client keeps sending them: memory
  without bound on one connection;
- lets a decoding error (invalid JSON, JSON nested past the interpreter's recursion
  limit, a stray binary frame, an unknown packet type) escape to engine.io, which logs
  a traceback and sends nothing back, outside every per-connection limit;
- drops events and acks sent to a namespace the client has not connected, silently and
  outside the rate limit.

The application sends and accepts JSON objects on the default namespace only. Through
the server's ``serializer`` option (a public seam), every such packet becomes a refusal
instead: an event named :data:`REFUSED_EVENT` on the default namespace, with the
packet's ack id when it had one, which the signalling server answers with an error ack
and counts as a malformed message like any other. Nothing is buffered.
"""

from __future__ import annotations

import json
from typing import Any, Final

import socketio

# No client can send a packet that decodes to this name by accident; one that sends it
# on purpose is refused like the packets it stands for.
REFUSED_EVENT: Final = "\x00refused"

# Why a packet was refused, as the refusal event's argument.
BINARY = "binary"
TOO_DEEP = "too_deep"
NOT_JSON = "not_json"
NAMESPACE = "namespace"
PACKET_TYPE = "packet_type"
REFUSALS: Final = {
    BINARY: "Binary data is not accepted.",
    TOO_DEEP: "The message is nested too deeply.",
    NOT_JSON: "The message is not valid JSON.",
    NAMESPACE: "Unknown namespace.",
    PACKET_TYPE: "Unknown packet.",
}

# Once strings are cut out, JSON's nesting is its brackets: everything else JSON allows
# outside strings (Python's json also reads Infinity and NaN) is deleted, and "{}"
# becomes "[]" (C-speed ``bytes.translate``).
_CURLY_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_NESTING = b" \t\r\n,:0123456789+-.eEtrufalsnINiy"
_ACCEPTED_TYPES = (
    socketio.packet.CONNECT,
    socketio.packet.DISCONNECT,
    socketio.packet.EVENT,
    socketio.packet.ACK,
)


def nested_deeper_than(text: str, max_depth: int) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than ``max_depth`` deep.

    Never recursive, and in C-speed bytes operations only (a few milliseconds for the
    largest frame engine.io accepts): strings are cut out and what is left is reduced
    to its brackets; then each of ``max_depth`` rounds removes the innermost pairs.
    Text that is not JSON may be answered either way; parsing it fails anyway."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    # Escapes first (an escaped backslash, then an escaped quote), so that every quote
    # left opens or closes a string: every other piece between quotes is outside one.
    raw = text.encode("utf-8", "surrogatepass").replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(raw.split(b'"')[::2]).translate(_CURLY_AS_SQUARE, _NOT_NESTING)
    if b"[" * (max_depth + 1) in brackets[: 4 * max_depth]:
        return True  # the plain attack ("[[[[..."), seen at once
    for _ in range(max_depth):
        reduced = brackets.replace(b"[]", b"")
        if len(reduced) == len(brackets):
            break  # nothing left to remove: no nesting (or something that is not JSON)
        brackets = reduced
    # Each round took one level off every branch: what is left was deeper.
    return b"[" in brackets


class DepthLimitedJson:
    """The ``json`` of the screened packets: refuses deep nesting before parsing it."""

    def __init__(self, max_depth: int) -> None:
        self._max_depth = max_depth

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, **kwargs)

    def loads(self, text: str, **kwargs: Any) -> Any:
        if nested_deeper_than(text, self._max_depth):
            raise _TooDeepError
        return json.loads(text, **kwargs)


class _TooDeepError(ValueError):
    pass


def screened_packet_class(max_depth: int) -> type[Any]:
    """A ``socketio.packet.Packet`` whose decoding never raises and never buffers: see
    the module docstring. Pass it as the server's ``serializer``."""

    class ScreenedPacket(socketio.packet.Packet):  # type: ignore[misc]
        json = DepthLimitedJson(max_depth)

        def decode(self, encoded_packet: Any) -> int:
            if not isinstance(encoded_packet, str):
                # A binary frame (an attachment that was never announced, or one we
                # refused to wait for), or whatever else engine.io hands over.
                return self._refuse(BINARY)
            try:
                attachments: int = super().decode(encoded_packet) or 0
            except _TooDeepError:
                return self._refuse(TOO_DEEP)
            except (ValueError, TypeError, RecursionError):
                return self._refuse(NOT_JSON)
            if attachments or self.packet_type in (
                socketio.packet.BINARY_EVENT,
                socketio.packet.BINARY_ACK,
            ):
                return self._refuse(BINARY)
            if self.packet_type not in _ACCEPTED_TYPES:
                return self._refuse(PACKET_TYPE)
            # A connect to another namespace is left to python-socketio, which refuses
            # it (CONNECT_ERROR) without calling the application; anything else sent
            # there would be dropped unseen.
            if self.namespace not in (None, "/") and self.packet_type != socketio.packet.CONNECT:
                return self._refuse(NAMESPACE)
            return 0

        def _refuse(self, reason: str) -> int:
            self.packet_type = socketio.packet.EVENT
            self.namespace = None
            self.data = [REFUSED_EVENT, reason]
            # The ack id, when decoding got that far: the refusal is answered.
            packet_id: Any = getattr(self, "id", None)
            self.id = packet_id if isinstance(packet_id, int) else None
            self.attachments: list[bytes] = []
            return 0

    return ScreenedPacket
