/**
 * The soft knock a clinician hears when someone arrives in the waiting room: two short,
 * low, quiet thumps made with the Web Audio API (nothing is downloaded).
 */

const THUMP_SECONDS = 0.12;
const GAP_SECONDS = 0.18;
const PEAK_GAIN = 0.18;

export class Knocker {
  private context: AudioContext | null = null;

  constructor() {
    // Browsers start audio only after the user has interacted with the page: resume the
    // context at the first interaction, so later knocks can be heard.
    const unlock = (): void => {
      void this.ensureContext()
        ?.resume()
        .catch(() => undefined);
    };
    for (const type of ["pointerdown", "keydown"]) {
      window.addEventListener(type, unlock, { once: true, capture: true });
    }
  }

  /** Play the knock. Returns the audio context's state ("running": audible; otherwise
   * the browser does not play audio yet, or there is no Web Audio). */
  knock(): string {
    const context = this.ensureContext();
    if (context === null) return "unavailable";
    // A context the browser has not allowed to start yet stays silent; the badge still
    // shows the arrival.
    if (context.state === "suspended") void context.resume().catch(() => undefined);
    const start = context.currentTime + 0.02;
    this.thump(context, start);
    this.thump(context, start + GAP_SECONDS);
    return context.state;
  }

  private ensureContext(): AudioContext | null {
    if (this.context === null) {
      try {
        this.context = new AudioContext();
      } catch {
        return null; // no Web Audio: the badge still shows the arrival
      }
    }
    return this.context;
  }

  /** One thump: a low sine whose pitch drops, with a fast attack and short decay. */
  private thump(context: AudioContext, at: number): void {
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.type = "sine";
    oscillator.frequency.setValueAtTime(140, at);
    oscillator.frequency.exponentialRampToValueAtTime(60, at + THUMP_SECONDS);
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(PEAK_GAIN, at + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + THUMP_SECONDS);
    oscillator.connect(gain).connect(context.destination);
    oscillator.start(at);
    oscillator.stop(at + THUMP_SECONDS + 0.02);
  }
}
