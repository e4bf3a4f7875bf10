"""Pure parts of the media plane: slot allocation, RTP rewriting, VP8 descriptors."""

from __future__ import annotations

import itertools

from telecircle.domain.ids import ParticipantId
from telecircle.media.rewrite import PictureIdRewriter, StreamRewriter
from telecircle.media.slots import SlotTable
from telecircle.media.vp8 import parse_vp8, read_picture_id

A, B, C, D = (ParticipantId(x) for x in "abcd")


def test_slots_are_stable_and_reused() -> None:
    table = SlotTable(2)
    changed, overflow = table.update([B, A])
    assert table.assignments() == [(0, A), (1, B)] and changed == {0, 1} and not overflow
    changed, overflow = table.update([B, C, D])
    assert table.assignments() == [(0, C), (1, B)]  # B keeps its slot; A's goes to C
    assert changed == {0} and overflow == [D]
    assert table.update([B, C]) == (set(), [])
    table.update([])
    assert table.assignments() == [(0, None), (1, None)]


def test_stream_rewriter_continues_across_sources() -> None:
    rewriter = StreamRewriter(90_000)
    first = [
        rewriter.map(seq, 1000 + 3000 * i, 10.0 + i / 30) for i, seq in enumerate((65534, 65535, 0))
    ]
    seqs = [m[0] for m in first if m]
    assert [(b - a) % 65536 for a, b in itertools.pairwise(seqs)] == [1, 1]
    rewriter.rebase()
    switched = rewriter.map(500, 77, 11.0)
    assert switched is not None and (switched[0] - seqs[-1]) % 65536 == 1
    assert 0 < (switched[1] - first[-1][1]) % (1 << 32) < 90_000  # type: ignore[index]
    assert rewriter.map(400, 70, 11.0) is None  # older than the switch: dropped
    assert rewriter.map(503, 80, 11.1) is not None
    late = rewriter.map(502, 80, 11.1)  # reordered, after the switch: kept
    assert late is not None and late[0] == (switched[0] + 2) % 65536


def vp8_payload(picture_id: int, keyframe: bool, start: bool = True) -> bytes:
    first = 0x80 | (0x10 if start else 0)
    return bytes(
        [first, 0x80, 0x80 | (picture_id >> 8), picture_id & 0xFF, 0x00 if keyframe else 0x01, 0xAA]
    )


def test_vp8_descriptor() -> None:
    info = parse_vp8(vp8_payload(1234, keyframe=True))
    assert info is not None and info.keyframe
    assert read_picture_id(vp8_payload(1234, True), info) == 1234
    delta = parse_vp8(vp8_payload(5, keyframe=False))
    assert delta is not None and not delta.keyframe
    middle = parse_vp8(vp8_payload(5, keyframe=True, start=False))
    assert middle is not None and not middle.keyframe
    for bad in (b"", b"\x80", b"\x80\x80", b"\x80\x80\x80"):
        assert parse_vp8(bad) is None or not parse_vp8(bad).keyframe  # type: ignore[union-attr]


def test_picture_ids_continue_after_switch() -> None:
    pictures = PictureIdRewriter()
    out = []
    for pid in (100, 101):
        payload = vp8_payload(pid, keyframe=pid == 100)
        out.append(pictures.map(payload, parse_vp8(payload)))  # type: ignore[arg-type]
    pictures.rebase()
    for pid in (32767, 0):
        payload = vp8_payload(pid, keyframe=pid == 32767)
        out.append(pictures.map(payload, parse_vp8(payload)))  # type: ignore[arg-type]
    ids = [read_picture_id(p, parse_vp8(p)) for p in out]  # type: ignore[arg-type]
    assert ids == [100, 101, 102, 103]
