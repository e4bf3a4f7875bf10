/**
 * The facilitator's "Pairs" panel (clinicians only).
 *
 * Before: the length in minutes, "Random pairs" (every patient, paired by the server),
 * or the board (pairboard.ts) and "Start pairs". While pairs run: each pair with a
 * "Visit" button, "Back to plenary", a message to all pairs, "Extend 5 min" and "End
 * pairs now". What runs is the server's (the `activity` event's facilitator view): the
 * panel shows it and never guesses; refusals come back in the ack and are shown here.
 * The room's limits (from the join answer) set the length's range and the message's.
 */
import type { FacilitatorView, ParticipantView, TimerLimitsView } from "./generated/protocol";
import { actionRunner, button, byId, make } from "./dom";
import { EXTEND_SECONDS, extendSeconds, extendText, limitMinutes, rangeText } from "./limits";
import { joinNames, type NameBook } from "./names";
import { PairBoard } from "./pairboard";

/** What the panel asks the session to do; each rejects with a user-readable error. */
export interface PairsActions {
  /** `groups` null: the server pairs every patient at random. */
  start(durationSeconds: number, groups: string[][] | null): Promise<void>;
  visit(group: number | null): Promise<void>;
  message(text: string): Promise<void>;
  extend(seconds: number): Promise<void>;
  end(): Promise<void>;
}

/** Minutes typed by a person (decimals allowed) as whole seconds, or null if unusable. */
export function minutesToSeconds(text: string): number | null {
  const minutes = Number(text.trim().replace(",", "."));
  if (text.trim() === "" || !Number.isFinite(minutes) || minutes <= 0) return null;
  return Math.max(1, Math.round(minutes * 60));
}

export class PairsPanel {
  private readonly panel = byId("pairs-panel", HTMLElement);
  private readonly setup = byId("pairs-setup", HTMLElement);
  private readonly blocked = byId("pairs-blocked", HTMLElement);
  private readonly running = byId("pairs-running", HTMLElement);
  private readonly minutes = byId("pairs-minutes", HTMLInputElement);
  private readonly minutesHint = byId("pairs-minutes-hint", HTMLElement);
  private readonly randomButton = byId("random-pairs-button", HTMLButtonElement);
  private readonly addGroupButton = byId("add-pair-button", HTMLButtonElement);
  private readonly startButton = byId("start-pairs-button", HTMLButtonElement);
  private readonly list = byId("pairs-list", HTMLOListElement);
  private readonly backButton = byId("pairs-back-button", HTMLButtonElement);
  private readonly messageForm = byId("pairs-message-form", HTMLFormElement);
  private readonly messageInput = byId("pairs-message-input", HTMLInputElement);
  private readonly extendButton = byId("pairs-extend-button", HTMLButtonElement);
  private readonly endButton = byId("pairs-end-button", HTMLButtonElement);
  private readonly error = byId("pairs-error", HTMLElement);
  private readonly board = new PairBoard(byId("pairs-board", HTMLElement));
  private readonly busy = actionRunner(this.panel, this.error);
  private view: FacilitatorView | null = null;
  private selfId: string | null = null;
  /** What one "Extend" adds (the room may allow less than the usual 5 minutes). */
  private extendBy = EXTEND_SECONDS;
  private limitsKnown = false;

  constructor(
    private readonly actions: PairsActions,
    private readonly names: NameBook,
  ) {
    this.randomButton.addEventListener("click", () => this.start(null));
    this.startButton.addEventListener("click", () => this.start(this.board.groups()));
    this.addGroupButton.addEventListener("click", () => this.board.addGroup());
    this.backButton.addEventListener("click", () => void this.busy(() => this.actions.visit(null)));
    this.extendButton.addEventListener(
      "click",
      () => void this.busy(() => this.actions.extend(this.extendBy)),
    );
    this.endButton.addEventListener("click", () => void this.busy(() => this.actions.end()));
    this.messageForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.messageInput.value.trim();
      if (text === "") {
        this.showError("Write a message first.");
        return;
      }
      void this.busy(async () => {
        await this.actions.message(text);
        this.messageInput.value = "";
      });
    });
    this.render();
  }

  setActive(active: boolean): void {
    this.panel.hidden = !active;
  }

  /** The room's limits: the length's range, one extension, the message's length. */
  setLimits(limits: TimerLimitsView): void {
    const { pairs_min_seconds: min, pairs_max_seconds: max } = limits;
    limitMinutes(this.minutes, min, max, !this.limitsKnown);
    this.limitsKnown = true;
    this.minutesHint.textContent = rangeText(min, max);
    this.extendBy = extendSeconds(limits.extension_max_seconds);
    this.extendButton.textContent = extendText(this.extendBy);
    this.messageInput.maxLength = limits.pairs_message_max_chars;
  }

  /** Our own participant id (to tell which pair we visit). */
  setSelf(participantId: string | null): void {
    this.selfId = participantId;
    this.render();
  }

  /** The patients in the session (for the board). */
  setPatients(patients: ParticipantView[]): void {
    this.board.setPatients(patients);
    this.render();
  }

  /** The server's facilitator view from the latest `activity` event. */
  update(view: FacilitatorView | null): void {
    const wasRunning = this.isRunning();
    this.view = view;
    if (this.isRunning() && !wasRunning) this.board.clear();
    this.render();
  }

  private isRunning(): boolean {
    return (this.view?.pairs.length ?? 0) > 0;
  }

  private start(groups: string[][] | null): void {
    const seconds = minutesToSeconds(this.minutes.value);
    if (seconds === null) {
      this.showError("Enter how many minutes the pair work lasts.");
      this.minutes.focus();
      return;
    }
    if (groups !== null && groups.length === 0) {
      this.showError("Put people in pairs first (drag them, or choose their pair).");
      return;
    }
    void this.busy(() => this.actions.start(seconds, groups));
  }

  private showError(text: string): void {
    this.error.textContent = text;
    this.error.hidden = false;
  }

  private visiting(): number | null {
    const visit = this.view?.visits.find((v) => v.clinician_id === this.selfId);
    return visit?.group ?? null;
  }

  private render(): void {
    const running = this.isRunning();
    this.panel.dataset["running"] = String(running);
    this.setup.hidden = running;
    this.running.hidden = !running;
    if (!running) {
      // One activity at a time: the server refuses pairs while a segment runs.
      const segmentRuns = (this.view?.segment ?? null) !== null;
      this.blocked.hidden = !segmentRuns;
      this.randomButton.disabled = segmentRuns;
      this.startButton.disabled = segmentRuns;
      this.list.replaceChildren();
      return;
    }
    const mine = this.visiting();
    this.backButton.hidden = mine === null;
    const rows: HTMLLIElement[] = [];
    (this.view?.pairs ?? []).forEach((members, group) => {
      // A pair whose people left stays empty, so the numbers of the others hold.
      if (members.length === 0) return;
      rows.push(this.row(group, members, mine === group));
    });
    this.list.replaceChildren(...rows);
  }

  private row(group: number, members: string[], here: boolean): HTMLLIElement {
    const item = make("li", "pair-row");
    item.dataset["group"] = String(group + 1);
    const visitors = (this.view?.visits ?? [])
      .filter((v) => v.group === group)
      .map((v) => (v.clinician_id === this.selfId ? "you" : this.names.of(v.clinician_id)));
    const label = make("span", "pair-row-names");
    label.textContent = `Pair ${group + 1}: ${joinNames(this.names.all(members))}`;
    item.append(label);
    if (visitors.length > 0) {
      item.append(make("span", "pair-row-visitors hint", `visited by ${joinNames(visitors)}`));
    }
    const visit = button("pair-visit secondary", here ? "Visiting" : "Visit");
    visit.setAttribute(
      "aria-label",
      here ? `Visiting pair ${group + 1}` : `Visit pair ${group + 1}`,
    );
    visit.setAttribute("aria-pressed", String(here));
    if (!here)
      visit.addEventListener("click", () => void this.busy(() => this.actions.visit(group)));
    item.append(visit);
    return item;
  }
}
