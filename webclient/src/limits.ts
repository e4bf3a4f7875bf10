/**
 * The room's timer limits (the join answer's `policy.timers`) in the facilitator's forms:
 * each length field's range and default in minutes, a hint that says the range, and how
 * much one "Extend" adds. The server checks the limits in any case; the forms only help
 * to stay within them.
 */

/** The usual "Extend" (where the room allows that much at a time). */
export const EXTEND_SECONDS = 5 * 60;

/** Seconds as minutes for a number field or a hint: "15", "0.5", "2.25". */
export function minutesValue(seconds: number): string {
  return String(Math.round((seconds / 60) * 100) / 100);
}

/** "Between 10 and 20 minutes." */
export function rangeText(minSeconds: number, maxSeconds: number): string {
  return `Between ${minutesValue(minSeconds)} and ${minutesValue(maxSeconds)} minutes.`;
}

/** How much one "Extend" adds: 5 minutes, or the most the room allows at a time. */
export function extendSeconds(extensionMaxSeconds: number): number {
  return Math.max(1, Math.min(EXTEND_SECONDS, Math.floor(extensionMaxSeconds)));
}

/** The words of an "Extend" button: "Extend 5 min". */
export function extendText(seconds: number): string {
  return `Extend ${minutesValue(seconds)} min`;
}

/**
 * Give a minutes field its range and, the first time (`initial`), its starting value:
 * `defaultSeconds`, or what it holds already brought within the range. Later calls (a
 * reconnect) keep what the facilitator typed.
 */
export function limitMinutes(
  input: HTMLInputElement,
  minSeconds: number,
  maxSeconds: number,
  initial: boolean,
  defaultSeconds: number | null = null,
): void {
  input.min = minutesValue(minSeconds);
  input.max = minutesValue(maxSeconds);
  if (!initial) return;
  if (defaultSeconds !== null) {
    input.value = minutesValue(defaultSeconds);
    return;
  }
  const minutes = Number(input.value);
  if (!Number.isFinite(minutes) || minutes * 60 < minSeconds || minutes * 60 > maxSeconds) {
    input.value = minutesValue(minSeconds);
  }
}
