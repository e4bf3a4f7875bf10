"""Reference relay for the SFU benchmark: aiortc's MediaRelay (decode + re-encode).

Not part of Telecircle. Started by ``benchmarks/sfu_bench.py`` as
``.venv/bin/python -m benchmarks.relay_reference --port PORT`` (pinned with taskset) to
show what the encoded-forwarding SFU saves. Signalling is plain JSON over HTTP:

- ``POST /publish {"id", "sdp"}`` -> ``{"sdp"}``: the client offers sendonly audio+video.
- ``POST /subscribe {"id"}`` -> ``{"sdp", "owners": {mid: publisher id}}``: the relay
  offers every other publisher's tracks through ``MediaRelay().subscribe(track)``, which
  decodes each publisher once and encodes once per subscriber.
- ``POST /answer {"id", "sdp"}`` -> ``{}``.
- ``GET /healthz``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from aiohttp import web
from aiortc import RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from benchmarks.synthetic import codec_only, new_pc
from telecircle.media.ice_policy import IcePolicy

STATE: web.AppKey[dict[str, Any]] = web.AppKey("state", dict)


async def publish(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    pc = new_pc()
    tracks: dict[str, Any] = {}
    state["pcs"].append(pc)
    state["tracks"][body["id"]] = tracks

    @pc.on("track")
    def on_track(track: Any) -> None:
        tracks[track.kind] = track

    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
    for transceiver in pc.getTransceivers():
        transceiver.setCodecPreferences(codec_only(transceiver.kind))
    await pc.setLocalDescription(await pc.createAnswer())
    return web.json_response({"sdp": pc.localDescription.sdp})


async def subscribe(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await request.json()
    relay: MediaRelay = state["relay"]
    pc = new_pc()
    state["pcs"].append(pc)
    state["subscribers"][body["id"]] = pc
    owners: dict[Any, str] = {}
    for owner, tracks in state["tracks"].items():
        if owner == body["id"]:
            continue
        for kind in ("audio", "video"):
            if kind in tracks:
                transceiver = pc.addTransceiver(relay.subscribe(tracks[kind]), direction="sendonly")
                transceiver.setCodecPreferences(codec_only(kind))
                owners[transceiver] = owner
    await pc.setLocalDescription(await pc.createOffer())
    mids = {str(t.mid): o for t, o in owners.items()}
    return web.json_response({"sdp": pc.localDescription.sdp, "owners": mids})


async def answer(request: web.Request) -> web.Response:
    body = await request.json()
    pc = request.app[STATE]["subscribers"][body["id"]]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
    return web.json_response({})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def close_all(app: web.Application) -> None:
    for pc in app[STATE]["pcs"]:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await pc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    IcePolicy(("127.0.0.1",), 2.0, 10.0).install()
    app = web.Application()
    app[STATE] = {"relay": MediaRelay(), "pcs": [], "tracks": {}, "subscribers": {}}
    app.router.add_post("/publish", publish)
    app.router.add_post("/subscribe", subscribe)
    app.router.add_post("/answer", answer)
    app.router.add_get("/healthz", healthz)
    app.on_shutdown.append(close_all)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
