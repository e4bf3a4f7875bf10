/**
 * A countdown run on this page's own clock: the server says how much time is left when
 * it sends an event (clocks differ between machines, so no end time is sent), and the
 * page counts down from the moment it received it.
 */

const TICK_MS = 250;

/** "04:05" (padded minutes) or "4:05" for a number of seconds (never below zero). */
export function clockText(seconds: number, padMinutes = true): string {
  const whole = Math.max(0, Math.ceil(seconds));
  const minutes = Math.floor(whole / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return `${padMinutes ? String(minutes).padStart(2, "0") : String(minutes)}:${rest}`;
}

/** "1 minute", "3 minutes", "40 seconds": a time left, roughly, in words. */
export function durationText(seconds: number): string {
  const whole = Math.max(0, Math.ceil(seconds));
  if (whole >= 60) {
    const minutes = Math.round(whole / 60);
    return `${minutes} minute${minutes === 1 ? "" : "s"}`;
  }
  return `${whole} second${whole === 1 ? "" : "s"}`;
}

/** "1 minute left", "40 seconds left" (the warning's words). */
export function timeLeftText(seconds: number): string {
  return `${durationText(seconds)} left`;
}

export class Countdown {
  private endsAt: number | null = null;
  private ticker: number | undefined;

  /** `onTick` gets the seconds left (at most four times a second while running). */
  constructor(private readonly onTick: (secondsLeft: number) => void) {}

  /** Count down from `seconds` left now; null stops the countdown. */
  set(seconds: number | null): void {
    if (seconds === null) {
      this.stop();
      return;
    }
    this.endsAt = performance.now() + seconds * 1000;
    if (this.ticker === undefined) {
      this.ticker = window.setInterval(() => this.tick(), TICK_MS);
    }
    this.tick();
  }

  /** Seconds left now (0 when stopped or run out). */
  secondsLeft(): number {
    return this.endsAt === null ? 0 : Math.max(0, (this.endsAt - performance.now()) / 1000);
  }

  get running(): boolean {
    return this.endsAt !== null;
  }

  stop(): void {
    if (this.ticker !== undefined) window.clearInterval(this.ticker);
    this.ticker = undefined;
    this.endsAt = null;
  }

  private tick(): void {
    // Past zero it stays at zero: the server's next event says what happens then.
    this.onTick(this.secondsLeft());
  }
}
