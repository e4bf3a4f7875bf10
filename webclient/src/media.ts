/**
 * Local camera/microphone and the two peer connections to the SFU.
 *
 * The server (aiortc) does no trickle ICE: every SDP sent carries its candidates, so we
 * wait for ICE gathering to complete before sending a description. aiortc has no ICE
 * restart either: recovering from a dead path means new peer connections.
 */
import type { SlotMids, SubscribeOffer } from "./generated/protocol";

const ICE_GATHERING_TIMEOUT_MS = 10_000;

/** Ask for camera and microphone. Rejects with the browser's DOMException. */
export function getLocalMedia(): Promise<MediaStream> {
  return navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 30 } },
  });
}

export function stopStream(stream: MediaStream | null): void {
  for (const track of stream?.getTracks() ?? []) track.stop();
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

/** Send-only connection carrying our microphone and camera. */
export class PublishConnection {
  readonly pc = new RTCPeerConnection({ iceServers: [] });

  constructor(stream: MediaStream) {
    for (const track of [...stream.getAudioTracks(), ...stream.getVideoTracks()]) {
      this.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
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
 */
export class SubscribeConnection {
  readonly pc = new RTCPeerConnection({ iceServers: [] });
  /** slot index -> stream of that slot's audio and video tracks */
  readonly slotStreams = new Map<number, MediaStream>();

  /** Apply the server's offer and return our complete answer (with candidates). */
  async answer(offer: SubscribeOffer): Promise<string> {
    await this.pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    const trackByMid = new Map<string, MediaStreamTrack>();
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.mid !== null) trackByMid.set(transceiver.mid, transceiver.receiver.track);
    }
    for (const slot of offer.slots) this.addSlot(slot, trackByMid);
    await this.pc.setLocalDescription(await this.pc.createAnswer());
    await iceGatheringComplete(this.pc);
    return localSdp(this.pc);
  }

  private addSlot(slot: SlotMids, trackByMid: Map<string, MediaStreamTrack>): void {
    const tracks = [trackByMid.get(slot.audio_mid), trackByMid.get(slot.video_mid)].filter(
      (track): track is MediaStreamTrack => track !== undefined,
    );
    this.slotStreams.set(slot.index, new MediaStream(tracks));
  }

  close(): void {
    this.pc.close();
  }
}
