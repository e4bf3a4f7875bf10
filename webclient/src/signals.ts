/**
 * A patient's own signals in the call's toolbar: "Raise hand" / "Lower hand", and the
 * private "I need a moment" (only the clinicians learn of it; the button says so).
 *
 * The hand's state is the server's (the roster says whose hand is up, and a clinician
 * may lower it); the moment's is known only to the clinicians and to this page: the join
 * answer and the "moment" event (sent to this page alone) say it.
 */
import { byId, errorText } from "./dom";

/** What the buttons ask the session to do; each rejects with a user-readable error. */
export interface SignalActions {
  raiseHand(raised: boolean): Promise<void>;
  needMoment(needed: boolean): Promise<void>;
}

export class PatientSignals {
  private readonly handButton = byId("hand-toggle", HTMLButtonElement);
  private readonly momentButton = byId("moment-toggle", HTMLButtonElement);
  private readonly momentNote = byId("moment-note", HTMLElement);
  private readonly error = byId("signal-error", HTMLElement);
  private handRaised = false;
  private momentNeeded = false;
  private enabled = false;
  private pending = false;

  constructor(private readonly actions: SignalActions) {
    this.handButton.hidden = false;
    this.momentButton.hidden = false;
    this.handButton.addEventListener("click", () => {
      const raised = !this.handRaised;
      void this.send(async () => {
        await this.actions.raiseHand(raised);
        this.handRaised = raised;
      });
    });
    this.momentButton.addEventListener("click", () => {
      const needed = !this.momentNeeded;
      void this.send(async () => {
        await this.actions.needMoment(needed);
        this.momentNeeded = needed;
      });
    });
    this.render();
  }

  /** The buttons work only while we are connected in the session. */
  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.render();
  }

  /** Our hand as the server has it (a clinician may have lowered it). */
  setHandRaised(raised: boolean): void {
    this.handRaised = raised;
    this.render();
  }

  /** Our moment as the server has it (a clinician may have cleared it). */
  setMomentNeeded(needed: boolean): void {
    this.momentNeeded = needed;
    this.render();
  }

  /** Back in the waiting room (or out of the session): the server cleared both. */
  reset(): void {
    this.handRaised = false;
    this.momentNeeded = false;
    this.error.hidden = true;
    this.render();
  }

  private async send(work: () => Promise<void>): Promise<void> {
    this.pending = true;
    this.error.hidden = true;
    this.render();
    try {
      await work();
    } catch (error) {
      this.error.textContent = errorText(error);
      this.error.hidden = false;
    } finally {
      this.pending = false;
      this.render();
    }
  }

  private render(): void {
    const disabled = !this.enabled || this.pending;
    this.handButton.disabled = disabled;
    this.handButton.textContent = this.handRaised ? "Lower hand" : "Raise hand";
    this.handButton.setAttribute("aria-pressed", String(this.handRaised));
    this.momentButton.disabled = disabled;
    this.momentButton.setAttribute("aria-pressed", String(this.momentNeeded));
    this.momentNote.textContent = this.momentNeeded
      ? "The clinicians know. Press again when you are okay."
      : "Only the clinicians see this";
  }
}
