/**
 * Where this participant is, as every page shows it (the server's `activity` event):
 * a banner in a pair ("Pair work — you are with Bob") or a one-to-one segment, the hold
 * screen, the countdown of the running pair work or segment with its warning near the
 * end, and a clinician's message to the pairs.
 *
 * The countdown runs on this page's clock from the time left when the event arrived.
 * The ticking clocks are not live regions (they would be read out every second): a
 * hidden announcer says each change of place once, the warning is an alert, and a
 * message to the pairs is a status.
 */
import type { ActivityEvent, PairsMessageEvent, TimerView } from "./generated/protocol";
import { clockText, Countdown, durationText, timeLeftText } from "./countdown";
import { byId } from "./dom";
import { joinNames, type NameBook } from "./names";
import type { Role } from "./ui";

/**
 * Whose tiles to show beside our own: null shows everyone in the session (no activity
 * known yet, or on hold: the hold screen says why nobody's picture comes, and the tiles
 * below it say who is there, without pictures).
 */
export function tilesShown(activity: ActivityEvent | null): Set<string> | null {
  if (activity === null || activity.place.spot === "hold") return null;
  return new Set(activity.with_ids);
}

/** The words of the countdown's label. */
function timerLabel(timer: TimerView): string {
  return timer.activity === "pairs" ? "Pair work ends in" : "The one-to-one ends in";
}

/** A short key for a place and the activity around it (a change is announced). */
function placeKey(activity: ActivityEvent): string {
  const { spot, pair } = activity.place;
  return `${spot}:${pair ?? ""}:${activity.timer?.activity ?? ""}`;
}

export class ActivityDisplay {
  private readonly app = byId("app", HTMLElement);
  private readonly banner = byId("place-banner", HTMLElement);
  private readonly timerBox = byId("activity-timer", HTMLElement);
  private readonly timerLabel = byId("activity-timer-label", HTMLElement);
  private readonly timerClock = byId("activity-countdown", HTMLElement);
  private readonly warning = byId("timer-warning", HTMLElement);
  private readonly holdScreen = byId("hold-screen", HTMLElement);
  private readonly segmentHold = byId("segment-hold", HTMLElement);
  private readonly holdCountdown = byId("hold-countdown", HTMLElement);
  private readonly holdNotice = byId("hold-notice", HTMLElement);
  private readonly announcer = byId("activity-announcer", HTMLElement);
  private readonly message = byId("pairs-message", HTMLElement);
  private readonly messageFrom = byId("pairs-message-from", HTMLElement);
  private readonly messageText = byId("pairs-message-text", HTMLElement);
  private readonly messageDismiss = byId("pairs-message-dismiss", HTMLButtonElement);
  private readonly countdown = new Countdown((left) => this.showTimeLeft(left));
  private activity: ActivityEvent | null = null;

  constructor(
    private readonly role: Role,
    private readonly names: NameBook,
  ) {
    this.messageDismiss.addEventListener("click", () => this.hideMessage());
    this.reset();
  }

  /** The server's latest `activity` event for us. */
  update(activity: ActivityEvent): void {
    const before = this.activity;
    this.activity = activity;
    this.showPlace();
    this.showTimer(before);
    if (before === null || placeKey(before) !== placeKey(activity)) this.announce(before);
    // A message to the pairs is about the pair work: gone with it.
    if (activity.timer?.activity !== "pairs") this.hideMessage();
  }

  /** Names changed (a roster): the banner says them again, without announcing. */
  refreshNames(): void {
    if (this.activity !== null) this.showPlace();
  }

  /** A clinician's message to every pair. */
  showMessage(event: PairsMessageEvent): void {
    this.messageFrom.textContent = event.from_name ? `${event.from_name}:` : "Message:";
    this.messageText.textContent = event.text;
    this.message.hidden = false;
    this.app.dataset["pairsMessage"] = "shown";
  }

  /** Out of the session, or back in the waiting room: no place, no timer. */
  reset(): void {
    this.activity = null;
    this.countdown.stop();
    this.banner.hidden = true;
    this.timerBox.hidden = true;
    this.warning.hidden = true;
    this.holdScreen.hidden = true;
    this.hideMessage();
    this.app.dataset["place"] = "none";
    this.app.dataset["hold"] = "false";
    this.app.dataset["timer"] = "none";
    this.app.dataset["warned"] = "false";
    delete this.app.dataset["pair"];
  }

  private hideMessage(): void {
    this.message.hidden = true;
    this.app.dataset["pairsMessage"] = "none";
  }

  private showPlace(): void {
    const activity = this.activity;
    if (activity === null) return;
    const { spot, pair } = activity.place;
    this.app.dataset["place"] = spot;
    if (pair === null) delete this.app.dataset["pair"];
    else this.app.dataset["pair"] = String(pair + 1);

    const hold = spot === "hold";
    const segmentHold = hold && activity.timer?.activity === "segment";
    this.app.dataset["hold"] = String(hold);
    this.holdScreen.hidden = !hold;
    this.holdScreen.dataset["reason"] = segmentHold ? "segment" : "no_clinician";
    this.segmentHold.hidden = !segmentHold;
    this.holdNotice.hidden = !hold || segmentHold;

    const text = this.bannerText(activity);
    this.banner.hidden = text === null;
    this.banner.textContent = text ?? "";
  }

  private bannerText(activity: ActivityEvent): string | null {
    const { spot, pair } = activity.place;
    const others = joinNames(this.names.all(activity.with_ids));
    const timer = activity.timer?.activity;
    switch (spot) {
      case "pair":
        return this.role === "clinician"
          ? `Visiting pair ${(pair ?? 0) + 1} — with ${others}`
          : `Pair work — you are with ${others}`;
      case "segment":
        return `One-to-one with ${others}`;
      case "plenary":
        if (timer === "pairs") {
          return this.role === "clinician"
            ? "Pair work is running. You are in the main room."
            : "The others are working in pairs; you stay with the group.";
        }
        if (timer === "segment" && this.role === "patient") {
          return "Your therapist is working with one person; the group carries on together.";
        }
        return null;
      default:
        return null;
    }
  }

  private showTimer(before: ActivityEvent | null): void {
    const timer = this.activity?.timer ?? null;
    this.app.dataset["timer"] = timer?.activity ?? "none";
    this.app.dataset["warned"] = String(timer?.warned ?? false);
    this.timerBox.hidden = timer === null;
    this.countdown.set(timer?.remaining_seconds ?? null);
    if (timer === null) {
      this.warning.hidden = true;
      return;
    }
    this.timerLabel.textContent = timerLabel(timer);
    // The warning's words are fixed when it comes (the clock beside it keeps ticking).
    const wasWarned = before?.timer?.activity === timer.activity && before.timer.warned;
    if (timer.warned && !wasWarned) {
      const what = timer.activity === "pairs" ? "Pair work" : "One-to-one";
      this.warning.textContent = `${what}: ${timeLeftText(timer.remaining_seconds)}`;
    }
    this.warning.hidden = !timer.warned;
  }

  private showTimeLeft(seconds: number): void {
    this.timerClock.textContent = clockText(seconds);
    this.timerClock.setAttribute("datetime", `PT${Math.ceil(seconds)}S`);
    this.holdCountdown.textContent = clockText(seconds, false);
  }

  /** Say a change of place once, for screen readers. */
  private announce(before: ActivityEvent | null): void {
    const activity = this.activity;
    if (activity === null) return;
    const timer = activity.timer;
    const parts: string[] = [];
    if (activity.place.spot === "hold") {
      parts.push(
        timer?.activity === "segment"
          ? "You are on hold: your therapist is working with one person. The group " +
              `continues in about ${durationText(timer.remaining_seconds)}.`
          : "You are on hold until a clinician is back.",
      );
    } else {
      const banner = this.bannerText(activity);
      if (banner !== null) parts.push(banner);
      else if (before !== null && timer === null) parts.push("Back with the whole group.");
    }
    if (timer !== null && before?.timer?.activity !== timer.activity) {
      parts.push(`${timerLabel(timer)} ${durationText(timer.remaining_seconds)}.`);
    }
    this.announcer.textContent = parts.join(" ");
  }
}
