/**
 * The facilitator's "Segments" panel (clinicians only): one-to-one time with one patient
 * after another while the others wait on a hold screen or carry on together.
 *
 * Before: whom first, whom after (the queue), the length in minutes (filled in with the
 * room's standard length, from the join answer's limits, with its range; empty: the
 * standard length too), what the others do, "Start segment". While one runs: with whom,
 * the time left, the queue's progress (done / now / next), "Add to queue", "Next
 * person", "Extend 5 min", "End segment". The server checks the limits; its refusals
 * are shown here.
 */
import type {
  FacilitatorView,
  ParticipantView,
  SegmentView,
  TimerLimitsView,
} from "./generated/protocol";
import { clockText, Countdown } from "./countdown";
import { actionRunner, button, byId, make } from "./dom";
import {
  EXTEND_SECONDS,
  extendSeconds,
  extendText,
  limitMinutes,
  minutesValue,
  rangeText,
} from "./limits";
import type { NameBook } from "./names";
import { minutesToSeconds } from "./pairs";

export type OthersDuringSegment = "hold" | "plenary";

/** What the panel asks the session to do; each rejects with a user-readable error. */
export interface SegmentActions {
  /** `durationSeconds` null: the session's standard length. */
  start(
    participantIds: [string, ...string[]],
    others: OthersDuringSegment,
    durationSeconds: number | null,
  ): Promise<void>;
  queue(participantId: string): Promise<void>;
  next(): Promise<void>;
  extend(seconds: number): Promise<void>;
  end(): Promise<void>;
}

export class SegmentsPanel {
  private readonly panel = byId("segments-panel", HTMLElement);
  private readonly setup = byId("segment-setup", HTMLElement);
  private readonly blocked = byId("segment-blocked", HTMLElement);
  private readonly running = byId("segment-running", HTMLElement);
  private readonly person = byId("segment-person", HTMLSelectElement);
  private readonly thenPerson = byId("segment-then-person", HTMLSelectElement);
  private readonly thenAdd = byId("segment-then-add", HTMLButtonElement);
  private readonly thenList = byId("segment-then-list", HTMLOListElement);
  private readonly minutes = byId("segment-minutes", HTMLInputElement);
  private readonly minutesHint = byId("segment-minutes-hint", HTMLElement);
  private readonly startButton = byId("start-segment-button", HTMLButtonElement);
  private readonly current = byId("segment-current", HTMLElement);
  private readonly othersNote = byId("segment-others-note", HTMLElement);
  private readonly clock = byId("segment-countdown", HTMLElement);
  private readonly progress = byId("segment-progress", HTMLOListElement);
  private readonly addPerson = byId("segment-add-person", HTMLSelectElement);
  private readonly queueButton = byId("segment-queue-button", HTMLButtonElement);
  private readonly nextButton = byId("segment-next-button", HTMLButtonElement);
  private readonly extendButton = byId("segment-extend-button", HTMLButtonElement);
  private readonly endButton = byId("segment-end-button", HTMLButtonElement);
  private readonly error = byId("segments-error", HTMLElement);
  private readonly busy = actionRunner(this.panel, this.error);
  private readonly countdown = new Countdown((left) => {
    this.clock.textContent = clockText(left);
  });
  private patients: ParticipantView[] = [];
  /** Who follows the first person, chosen before starting (ids, in order). */
  private then: string[] = [];
  private segment: SegmentView | null = null;
  private pairsRunning = false;
  /** What one "Extend" adds (the room may allow less than the usual 5 minutes). */
  private extendBy = EXTEND_SECONDS;
  private limitsKnown = false;

  constructor(
    private readonly actions: SegmentActions,
    private readonly names: NameBook,
  ) {
    this.startButton.addEventListener("click", () => {
      const first = this.person.value;
      if (!first) {
        this.showError("Choose whom the segment is with.");
        return;
      }
      void this.startWith([first, ...this.then.filter((id) => id !== first)]);
    });
    this.person.addEventListener("change", () => this.render());
    this.thenAdd.addEventListener("click", () => {
      const id = this.thenPerson.value;
      if (id && !this.then.includes(id)) this.then.push(id);
      this.render();
    });
    this.queueButton.addEventListener("click", () => {
      const id = this.addPerson.value;
      if (id) void this.busy(() => this.actions.queue(id));
    });
    this.nextButton.addEventListener("click", () => void this.busy(() => this.actions.next()));
    this.extendButton.addEventListener(
      "click",
      () => void this.busy(() => this.actions.extend(this.extendBy)),
    );
    this.endButton.addEventListener("click", () => void this.busy(() => this.actions.end()));
    this.render();
  }

  setActive(active: boolean): void {
    this.panel.hidden = !active;
    if (!active) this.countdown.stop();
  }

  /** The room's limits: the standard length (filled in), the range, one extension. */
  setLimits(limits: TimerLimitsView): void {
    const { segment_min_seconds: min, segment_max_seconds: max } = limits;
    const standard = limits.segment_default_seconds;
    limitMinutes(this.minutes, min, max, !this.limitsKnown, standard);
    this.limitsKnown = true;
    this.minutesHint.textContent =
      `${rangeText(min, max)} The standard length is ${minutesValue(standard)} minutes ` +
      "(used when this is left empty).";
    this.extendBy = extendSeconds(limits.extension_max_seconds);
    this.extendButton.textContent = extendText(this.extendBy);
  }

  /** The patients in the session (whom a segment can be with). */
  setPatients(patients: ParticipantView[]): void {
    this.patients = patients;
    const present = new Set(patients.map((p) => p.id));
    this.then = this.then.filter((id) => present.has(id));
    this.render();
  }

  /** The server's facilitator view and the running timer, from an `activity` event. */
  update(view: FacilitatorView | null, segmentSecondsLeft: number | null): void {
    const wasRunning = this.segment !== null;
    this.segment = view?.segment ?? null;
    this.pairsRunning = (view?.pairs.length ?? 0) > 0;
    if (this.segment !== null && !wasRunning) this.then = [];
    this.countdown.set(this.segment === null ? null : segmentSecondsLeft);
    this.render();
  }

  /** Whether a segment runs now (someone more is then queued, not started). */
  get isRunning(): boolean {
    return this.segment !== null;
  }

  /** One click from the console: a segment with this person now (as set up here), or
   * a place in the queue of the one running. */
  async startOrQueue(participantId: string): Promise<void> {
    if (this.segment !== null) {
      await this.actions.queue(participantId);
      return;
    }
    const seconds = this.duration();
    if (seconds === undefined) throw new Error("Enter the segment's length in minutes.");
    await this.actions.start([participantId], this.others(), seconds);
  }

  private async startWith(ids: [string, ...string[]]): Promise<void> {
    const seconds = this.duration();
    if (seconds === undefined) {
      this.showError("Enter the length in minutes, or leave it empty for the standard length.");
      this.minutes.focus();
      return;
    }
    await this.busy(() => this.actions.start(ids, this.others(), seconds));
  }

  /** The chosen length: null for the standard one, undefined when it cannot be read. */
  private duration(): number | null | undefined {
    if (this.minutes.value.trim() === "") return null;
    return minutesToSeconds(this.minutes.value) ?? undefined;
  }

  private others(): OthersDuringSegment {
    const chosen = this.panel.querySelector<HTMLInputElement>(
      'input[name="segment-others"]:checked',
    );
    return chosen?.value === "plenary" ? "plenary" : "hold";
  }

  private showError(text: string): void {
    this.error.textContent = text;
    this.error.hidden = false;
  }

  private render(): void {
    const segment = this.segment;
    this.panel.dataset["running"] = String(segment !== null);
    this.setup.hidden = segment !== null;
    this.running.hidden = segment === null;
    if (segment === null) {
      fillPeople(this.person, this.patients, []);
      fillPeople(this.thenPerson, this.patients, [this.person.value, ...this.then]);
      this.thenAdd.disabled = this.thenPerson.options.length === 0;
      this.thenList.replaceChildren(...this.then.map((id) => this.plannedEntry(id)));
      // One activity at a time: the server refuses a segment while pairs run.
      this.blocked.hidden = !this.pairsRunning;
      this.startButton.disabled = this.patients.length === 0 || this.pairsRunning;
      return;
    }
    this.current.textContent = `With ${this.names.of(segment.participant_id)}`;
    this.othersNote.textContent =
      segment.others === "hold" ? "The others are on hold." : "The others carry on together.";
    this.progress.replaceChildren(
      ...segment.done.map((id) => this.progressEntry(id, "done", "done")),
      this.progressEntry(segment.participant_id, "current", "now"),
      ...segment.queue.map((id, index) =>
        this.progressEntry(id, index === 0 ? "next" : "queued", index === 0 ? "next" : "waiting"),
      ),
    );
    const taken = [segment.participant_id, ...segment.queue];
    fillPeople(this.addPerson, this.patients, taken);
    this.queueButton.disabled = this.addPerson.options.length === 0;
    this.nextButton.disabled = segment.queue.length === 0;
  }

  private plannedEntry(id: string): HTMLLIElement {
    const item = make("li", "segment-then-entry");
    item.dataset["participantId"] = id;
    const name = this.names.of(id);
    const remove = button("segment-then-remove secondary", "Remove");
    remove.setAttribute("aria-label", `Remove ${name} from the queue`);
    remove.addEventListener("click", () => {
      this.then = this.then.filter((other) => other !== id);
      this.render();
      this.thenPerson.focus();
    });
    item.append(make("span", "segment-then-name", name), remove);
    return item;
  }

  private progressEntry(id: string, status: string, word: string): HTMLLIElement {
    const item = make("li", "segment-step");
    item.dataset["participantId"] = id;
    item.dataset["status"] = status;
    item.append(
      make("span", "segment-step-name", this.names.of(id)),
      make("span", "segment-step-status", word),
    );
    return item;
  }
}

/** A select of patients, without those in `except`, keeping the choice where it can. */
function fillPeople(
  select: HTMLSelectElement,
  patients: ParticipantView[],
  except: string[],
): void {
  const chosen = select.value;
  const options = patients
    .filter((p) => !except.includes(p.id))
    .map((p) => {
      const option = make("option", "", p.display_name);
      option.value = p.id;
      return option;
    });
  const same =
    options.length === select.options.length &&
    options.every(
      (o, i) => o.value === select.options[i]?.value && o.text === select.options[i]?.text,
    );
  if (same) return;
  select.replaceChildren(...options);
  if (options.some((o) => o.value === chosen)) select.value = chosen;
}
