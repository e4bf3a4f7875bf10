/**
 * Who is speaking, from the audio statistics the browser already keeps.
 *
 * A few times a second (one timer, nothing per frame) we read `getStats()`: each
 * `inbound-rtp` audio report of the subscribe connection (its `mid` names the slot, the
 * `slots` event the participant feeding it) and the `media-source` audio report of our
 * own publish connection. The browser counts the decoded (or captured) audio's energy
 * (`totalAudioEnergy`, over `totalSamplesDuration`): their growth between two readings
 * gives the level over that time, without sampling the audio ourselves.
 *
 * Someone is speaking when the level over the last second or so is above a threshold,
 * and stays so for a short hold after it drops (the mark does not flicker between
 * words). Muted people, or people a clinician turned off, are never speaking.
 */

/** How often the statistics are read. */
const POLL_MS = 400;
/** The level is averaged over this many readings (about 0.8 s). */
const WINDOW_READINGS = 2;
/** RMS level (0..1, of the decoded audio's per-10-ms peaks) that counts as speech. */
const SPEAKING_LEVEL = 0.035;
/** After the level drops, the mark stays this long (no flicker between words). */
const HOLD_MS = 1_200;

/** The connection we receive the others' audio on, and who feeds each audio m-line. */
export interface Receiving {
  pc: RTCPeerConnection;
  /** The participant feeding the audio m-line `mid` (or the track `trackId`); null: nobody. */
  participantOf(mid: string | undefined, trackId: string | undefined): string | null;
}

/** Our own microphone: the connection that sends it, and who we are. */
export interface Sending {
  pc: RTCPeerConnection;
  participantId: string;
}

export interface SpeakingSources {
  receiving(): Receiving | null;
  sending(): Sending | null;
  /** Whether `participantId` may be heard at all (microphone on, not turned off). */
  audible(participantId: string): boolean;
}

/** The growth of one audio source's energy counters between readings. */
class Meter {
  private energy = 0;
  private duration = 0;
  private readonly recent: Array<{ energy: number; duration: number }> = [];

  constructor(public participantId: string) {}

  /** A new reading of the cumulative counters; returns the level over the window. */
  read(energy: number, duration: number): number {
    if (duration < this.duration || energy < this.energy) this.recent.length = 0;
    else this.recent.push({ energy: energy - this.energy, duration: duration - this.duration });
    this.energy = energy;
    this.duration = duration;
    while (this.recent.length > WINDOW_READINGS) this.recent.shift();
    let sumEnergy = 0;
    let sumDuration = 0;
    for (const step of this.recent) {
      sumEnergy += step.energy;
      sumDuration += step.duration;
    }
    return sumDuration > 0 ? Math.sqrt(sumEnergy / sumDuration) : 0;
  }
}

/** A raw statistics report: only the fields we read. */
interface AudioReport {
  type?: string;
  kind?: string;
  mid?: string;
  trackIdentifier?: string;
  audioLevel?: number;
  totalAudioEnergy?: number;
  totalSamplesDuration?: number;
}

export class SpeakingDetector {
  private timer: number | undefined;
  private polling = false;
  /** The connections the meters belong to (new connections start new meters). */
  private receivingPc: RTCPeerConnection | null = null;
  private sendingPc: RTCPeerConnection | null = null;
  /** "in:<mid>" or "out" -> its meter. */
  private meters = new Map<string, Meter>();
  /** participant id -> when their level was last above the threshold (speaking now). */
  private loudAt = new Map<string, number>();

  constructor(
    private readonly sources: SpeakingSources,
    private readonly onChange: () => void,
  ) {}

  /** Start reading (idempotent). */
  start(): void {
    if (this.timer !== undefined) return;
    this.timer = window.setInterval(() => void this.poll(), POLL_MS);
  }

  /** Stop reading and forget everyone's level (idempotent). */
  stop(): void {
    if (this.timer !== undefined) window.clearInterval(this.timer);
    this.timer = undefined;
    this.meters.clear();
    this.receivingPc = null;
    this.sendingPc = null;
    if (this.loudAt.size > 0) {
      this.loudAt.clear();
      this.onChange();
    }
  }

  /** Whether `participantId` is speaking (as of the last reading, and audible now). */
  isSpeaking(participantId: string): boolean {
    return this.loudAt.has(participantId) && this.sources.audible(participantId);
  }

  /** Everyone speaking now. */
  speaking(): Set<string> {
    return new Set([...this.loudAt.keys()].filter((id) => this.sources.audible(id)));
  }

  private async poll(): Promise<void> {
    if (this.polling) return; // a slow getStats: skip this turn
    this.polling = true;
    try {
      const levels = new Map<string, number>();
      await this.readReceiving(levels);
      await this.readSending(levels);
      if (this.timer !== undefined) this.update(levels);
    } finally {
      this.polling = false;
    }
  }

  private async readReceiving(levels: Map<string, number>): Promise<void> {
    const receiving = this.sources.receiving();
    if (receiving?.pc !== this.receivingPc) {
      for (const key of [...this.meters.keys()]) if (key !== "out") this.meters.delete(key);
      this.receivingPc = receiving?.pc ?? null;
    }
    if (receiving === null) return;
    const reports = await statsOf(receiving.pc);
    for (const report of reports) {
      if (report.type !== "inbound-rtp" || report.kind !== "audio") continue;
      const id = receiving.participantOf(report.mid, report.trackIdentifier);
      if (id === null) continue;
      const key = `in:${report.mid ?? report.trackIdentifier ?? ""}`;
      levels.set(id, Math.max(levels.get(id) ?? 0, this.measure(key, id, report)));
    }
  }

  private async readSending(levels: Map<string, number>): Promise<void> {
    const sending = this.sources.sending();
    if (sending?.pc !== this.sendingPc) {
      this.meters.delete("out");
      this.sendingPc = sending?.pc ?? null;
    }
    if (sending === null) return;
    const reports = await statsOf(sending.pc);
    for (const report of reports) {
      if (report.type !== "media-source" || report.kind !== "audio") continue;
      levels.set(sending.participantId, this.measure("out", sending.participantId, report));
      break; // one microphone
    }
  }

  /** The level of one source (a meter per source, started afresh for a new feeder). */
  private measure(key: string, participantId: string, report: AudioReport): number {
    const { totalAudioEnergy: energy, totalSamplesDuration: duration } = report;
    if (energy === undefined || duration === undefined) return report.audioLevel ?? 0;
    let meter = this.meters.get(key);
    if (meter === undefined || meter.participantId !== participantId) {
      meter = new Meter(participantId);
      this.meters.set(key, meter);
    }
    return meter.read(energy, duration);
  }

  private update(levels: Map<string, number>): void {
    const now = performance.now();
    const before = this.speaking();
    const next = new Map<string, number>();
    for (const [id, level] of levels) {
      if (!this.sources.audible(id)) continue; // muted: never speaking, starts afresh
      if (level >= SPEAKING_LEVEL) {
        next.set(id, now);
        continue;
      }
      const last = this.loudAt.get(id);
      if (last !== undefined && now - last < HOLD_MS) next.set(id, last);
    }
    this.loudAt = next;
    const after = this.speaking();
    if (after.size !== before.size || [...after].some((id) => !before.has(id))) this.onChange();
  }
}

/** The reports of a connection's statistics (none once it is closed). */
async function statsOf(pc: RTCPeerConnection): Promise<AudioReport[]> {
  if (pc.connectionState === "closed") return [];
  try {
    const stats = await pc.getStats();
    return Array.from(stats.values() as Iterable<AudioReport>);
  } catch {
    return [];
  }
}
