/**
 * The two peer connections to the SFU (publish and subscribe).
 *
 * The server (aiortc) does no trickle ICE: every SDP sent carries its candidates, so we
 * wait for ICE gathering to complete before sending a description. aiortc has no ICE
 * restart either: recovering from a dead path means new peer connections.
 *
 * Both connections use the ICE servers the server hands out with each join (TURN relays
 * with short-lived credentials, `JoinResult.ice_servers`): a browser that cannot reach
 * the server's media ports directly (a strict NAT, a firewall that lets only the relay
 * through) connects through a relay. Without any, the server's candidates are tried
 * directly.
 */
import type { IceServer, SlotMids, SubscribeOffer } from "./generated/protocol";

const ICE_GATHERING_TIMEOUT_MS = 10_000;

/** The peer connection configuration for the server's ICE servers (none: direct only). */
export function rtcConfiguration(iceServers: readonly IceServer[] = []): RTCConfiguration {
  return {
    iceServers: iceServers.map(
      (server): RTCIceServer => ({
        urls: [...server.urls],
        username: server.username,
        credential: server.credential,
      }),
    ),
  };
}

/** Resolve when ICE gathering is complete (or after a timeout, with what we have). */
function iceGatheringComplete(pc: RTCPeerConnection): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = (): void => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function localSdp(pc: RTCPeerConnection): string {
  const sdp = pc.localDescription?.sdp;
  if (!sdp) throw new Error("No local description");
  return sdp;
}

/**
 * Send-only connection carrying our microphone and camera. It always offers one audio
 * and one video sender, with or without a track: a device that becomes available later
 * (or a different device) is swapped in with `replaceTrack`, without renegotiating.
 *
 * A clinician's connection offers a third m-line from the start, a second video: the
 * shared screen (the server takes the second video m-line as the screen). It sends
 * nothing until sharing starts, and sharing starts and stops with `replaceTrack` too.
 */
export class PublishConnection {
  readonly pc: RTCPeerConnection;
  private readonly audio: RTCRtpSender;
  private readonly video: RTCRtpSender;
  private readonly screen: RTCRtpSender | null;

  /** `iceServers`: from the latest join result (the relays this seat may use). */
  constructor(stream: MediaStream, withScreen: boolean, iceServers: readonly IceServer[] = []) {
    this.pc = new RTCPeerConnection(rtcConfiguration(iceServers));
    const [audioTrack] = stream.getAudioTracks();
    const [videoTrack] = stream.getVideoTracks();
    const send = (kind: "audio" | "video", track: MediaStreamTrack | undefined): RTCRtpSender =>
      this.pc.addTransceiver(track ?? kind, { direction: "sendonly", streams: [stream] }).sender;
    this.audio = send("audio", audioTrack);
    this.video = send("video", videoTrack);
    this.screen = withScreen
      ? this.pc.addTransceiver("video", { direction: "sendonly" }).sender
      : null;
  }

  /** Send the tracks of `stream` (a missing kind sends nothing). */
  async useStream(stream: MediaStream): Promise<void> {
    await this.audio.replaceTrack(stream.getAudioTracks()[0] ?? null);
    await this.video.replaceTrack(stream.getVideoTracks()[0] ?? null);
  }

  /** Send `track` as the shared screen (null: send nothing). Clinicians only. */
  async useScreen(track: MediaStreamTrack | null): Promise<void> {
    if (this.screen === null) throw new Error("This connection cannot share a screen.");
    await this.screen.replaceTrack(track);
  }

  /** Our complete offer (with candidates). */
  async createOffer(): Promise<string> {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await iceGatheringComplete(this.pc);
    return localSdp(this.pc);
  }

  async acceptAnswer(sdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: "answer", sdp });
  }

  close(): void {
    this.pc.close();
  }
}

/**
 * Receive-only connection offered by the server with a fixed set of slots; each slot is
 * one audio and one video m-line. The server says which participant feeds which slot.
 * After the slots, one video m-line carries the screen shared in our place, if any.
 */
export class SubscribeConnection {
  readonly pc: RTCPeerConnection;
  /** slot index -> stream of that slot's audio and video tracks */
  readonly slotStreams = new Map<number, MediaStream>();
  /** The shared screen's m-line (whoever shares in our place feeds it; null: none yet). */
  screenStream: MediaStream | null = null;
  /** audio m-line mid, and its track's id -> slot index (who is speaking, speaking.ts). */
  private readonly audioSlots = new Map<string, number>();

  /** `iceServers`: from the latest join result (the relays this seat may use). */
  constructor(iceServers: readonly IceServer[] = []) {
    this.pc = new RTCPeerConnection(rtcConfiguration(iceServers));
  }

  /** Apply the server's offer and return our complete answer (with candidates). */
  async answer(offer: SubscribeOffer): Promise<string> {
    await this.pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    const trackByMid = new Map<string, MediaStreamTrack>();
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.mid !== null) trackByMid.set(transceiver.mid, transceiver.receiver.track);
    }
    for (const slot of offer.slots) this.addSlot(slot, trackByMid);
    const screen = trackByMid.get(offer.screen_mid);
    this.screenStream = screen === undefined ? null : new MediaStream([screen]);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await iceGatheringComplete(this.pc);
    return localSdp(this.pc);
  }

  private addSlot(slot: SlotMids, trackByMid: Map<string, MediaStreamTrack>): void {
    const tracks = [trackByMid.get(slot.audio_mid), trackByMid.get(slot.video_mid)].filter(
      (track): track is MediaStreamTrack => track !== undefined,
    );
    this.slotStreams.set(slot.index, new MediaStream(tracks));
    this.audioSlots.set(`mid:${slot.audio_mid}`, slot.index);
    const audio = trackByMid.get(slot.audio_mid);
    if (audio !== undefined) this.audioSlots.set(`track:${audio.id}`, slot.index);
  }

  /** The slot whose audio arrives on m-line `mid` (or as track `trackId`), if any. */
  audioSlotOf(mid: string | undefined, trackId: string | undefined): number | undefined {
    return (
      (mid === undefined ? undefined : this.audioSlots.get(`mid:${mid}`)) ??
      (trackId === undefined ? undefined : this.audioSlots.get(`track:${trackId}`))
    );
  }

  close(): void {
    this.pc.close();
  }
}
