"""The media plane: an SFU that forwards encoded RTP packets between aiortc peers.

The rest of the server uses :class:`telecircle.media.sfu.Sfu` and
:class:`telecircle.media.room.MediaRoom` only; every other module is an implementation
detail. Media is never decoded or re-encoded here.
"""
