/**
 * A microphone level meter: the loudness of a stream's audio shown in a <meter>, read
 * with an AnalyserNode (nothing is recorded or sent anywhere).
 */

/** RMS amplitude that fills the meter: speech at a normal distance reaches about 0.1. */
const FULL_SCALE_RMS = 0.25;

export class LevelMeter {
  private context: AudioContext | null = null;
  private source: MediaStreamAudioSourceNode | null = null;
  private analyser: AnalyserNode | null = null;
  private samples = new Float32Array(0);
  private frame: number | undefined;

  constructor(private readonly meter: HTMLMeterElement) {
    // Browsers start audio only after the user has interacted with the page.
    const unlock = (): void => void this.context?.resume().catch(() => undefined);
    for (const type of ["pointerdown", "keydown"]) {
      window.addEventListener(type, unlock, { capture: true });
    }
  }

  /** Measure the audio of `stream` (no audio track: the meter rests at zero). */
  attach(stream: MediaStream): void {
    this.detach();
    if (stream.getAudioTracks().length === 0) return;
    try {
      this.context ??= new AudioContext();
    } catch {
      return; // no Web Audio: no meter, the rest of the page works
    }
    void this.context.resume().catch(() => undefined);
    this.source = this.context.createMediaStreamSource(stream);
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 1024;
    this.samples = new Float32Array(this.analyser.fftSize);
    // Not connected to the speakers: measured, never played back (no echo).
    this.source.connect(this.analyser);
    this.tick();
  }

  detach(): void {
    if (this.frame !== undefined) window.cancelAnimationFrame(this.frame);
    this.frame = undefined;
    this.source?.disconnect();
    this.source = null;
    this.analyser = null;
    this.meter.value = 0;
  }

  private tick(): void {
    const analyser = this.analyser;
    if (analyser === null) return;
    analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const sample of this.samples) sum += sample * sample;
    const rms = Math.sqrt(sum / this.samples.length);
    // Fall slowly, rise at once: easier to read than the raw value.
    const level = Math.min(1, rms / FULL_SCALE_RMS);
    this.meter.value = Math.max(level, this.meter.value * 0.85);
    this.frame = window.requestAnimationFrame(() => this.tick());
  }
}
