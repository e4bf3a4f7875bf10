/**
 * The facilitator console beside the waiting-room panel (clinicians only): Mute all
 * patients, Lock / Unlock the session, End the session for everyone (after a confirm
 * step), the raised hands in order of raising, and the private "needs a moment" list.
 *
 * The lists come from the server's `lobby` event (ids, in order) and take names from the
 * roster. Nothing here is shown to patients: the server sends the moments to clinicians
 * only. Names only ever go through textContent and attributes.
 */
import type { LobbyEvent, MomentView, ParticipantView } from "./generated/protocol";
import { button, byId, clockTime, errorText, make } from "./dom";

/** What the console asks the session to do; each rejects with a user-readable error. */
export interface ConsoleActions {
  muteAll(): Promise<void>;
  lock(locked: boolean): Promise<void>;
  endSession(): Promise<void>;
  lowerHand(participantId: string): Promise<void>;
  clearMoment(participantId: string): Promise<void>;
}

export class FacilitatorConsole {
  private readonly panel = byId("console-panel", HTMLElement);
  private readonly muteAllButton = byId("mute-all-button", HTMLButtonElement);
  private readonly lockButton = byId("lock-button", HTMLButtonElement);
  private readonly endButton = byId("end-session-button", HTMLButtonElement);
  private readonly endConfirm = byId("end-session-confirm", HTMLElement);
  private readonly endConfirmButton = byId("end-session-confirm-button", HTMLButtonElement);
  private readonly endCancelButton = byId("end-session-cancel", HTMLButtonElement);
  private readonly handsList = byId("hands-list", HTMLOListElement);
  private readonly momentsList = byId("moments-list", HTMLUListElement);
  private readonly error = byId("console-error", HTMLElement);
  private names = new Map<string, string>();
  private hands: string[] = [];
  private moments: MomentView[] = [];
  private locked = false;

  constructor(private readonly actions: ConsoleActions) {
    this.muteAllButton.addEventListener("click", () => {
      void this.busy([this.muteAllButton], () => this.actions.muteAll());
    });
    this.lockButton.addEventListener("click", () => {
      void this.busy([this.lockButton], () => this.actions.lock(!this.locked));
    });
    this.endButton.addEventListener("click", () => {
      this.endConfirm.hidden = false;
      this.endButton.hidden = true;
      this.endCancelButton.focus();
    });
    this.endCancelButton.addEventListener("click", () => this.closeEndConfirm());
    this.endConfirmButton.addEventListener("click", () => {
      void this.busy([this.endConfirmButton, this.endCancelButton], () =>
        this.actions.endSession(),
      );
    });
    this.render();
  }

  /** Show the console while the clinician is in the session. */
  setActive(active: boolean): void {
    this.panel.hidden = !active;
    if (!active) this.closeEndConfirm();
  }

  /** The names to show for participant ids (from the roster). */
  setRoster(participants: ParticipantView[]): void {
    this.names = new Map(participants.map((p) => [p.id, p.display_name]));
    this.render();
  }

  /** The server's hands, moments and lock (from the clinicians' `lobby` event). */
  update(event: LobbyEvent): void {
    this.hands = event.hands;
    this.moments = event.moments;
    this.locked = event.locked;
    this.render();
  }

  private closeEndConfirm(): void {
    const wasOpen = !this.endConfirm.hidden;
    this.endConfirm.hidden = true;
    this.endButton.hidden = false;
    if (wasOpen) this.endButton.focus();
  }

  private render(): void {
    this.lockButton.textContent = this.locked ? "Unlock session" : "Lock session";
    this.lockButton.setAttribute("aria-pressed", String(this.locked));
    this.panel.dataset["locked"] = String(this.locked);

    syncList(
      this.handsList,
      this.hands,
      (id) => this.entry("hand-entry", id, "Lower hand", () => this.actions.lowerHand(id)),
      (item, id) => this.fillEntry(item, id),
      "No hands raised.",
    );
    const since = new Map(this.moments.map((moment) => [moment.id, moment.since]));
    syncList(
      this.momentsList,
      this.moments.map((moment) => moment.id),
      (id) => {
        const item = this.entry("moment-entry", id, "Clear", () => this.actions.clearMoment(id));
        item.querySelector(".moment-entry-name")?.after(make("span", "moment-since"));
        return item;
      },
      (item, id) => {
        this.fillEntry(item, id);
        const when = item.querySelector(".moment-since");
        if (when) when.textContent = `since ${clockTime(since.get(id) ?? 0)}`;
      },
      "Nobody has asked for a moment.",
    );
    this.panel.dataset["hands"] = String(this.hands.length);
    this.panel.dataset["moments"] = String(this.moments.length);
  }

  /** One person in a list: their name and one action button. */
  private entry(
    className: string,
    participantId: string,
    actionText: string,
    action: () => Promise<void>,
  ): HTMLLIElement {
    const item = make("li", className);
    item.dataset["participantId"] = participantId;
    const act = button(`${className}-action secondary`, actionText);
    act.addEventListener("click", () => void this.busy([act], action));
    item.append(make("span", `${className}-name`), act);
    return item;
  }

  private fillEntry(item: HTMLElement, participantId: string): void {
    const name = this.names.get(participantId) ?? "Someone";
    const label = item.querySelector("span");
    if (label) label.textContent = name;
    const act = item.querySelector("button");
    act?.setAttribute("aria-label", `${act.textContent ?? ""}: ${name}`);
  }

  private async busy(buttons: HTMLButtonElement[], work: () => Promise<unknown>): Promise<void> {
    this.error.hidden = true;
    for (const b of buttons) b.disabled = true;
    try {
      await work();
    } catch (error) {
      this.error.textContent = errorText(error);
      this.error.hidden = false;
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  }
}

/**
 * Make `list` show one item per id, in order, reusing items by `data-participant-id` (so
 * focus and pending buttons survive updates); `empty` is shown when there are none.
 */
function syncList(
  list: HTMLElement,
  ids: string[],
  create: (id: string) => HTMLLIElement,
  fill: (item: HTMLLIElement, id: string) => void,
  empty: string,
): void {
  const existing = new Map<string, HTMLLIElement>();
  for (const element of Array.from(list.children)) {
    const id = element instanceof HTMLLIElement ? element.dataset["participantId"] : undefined;
    if (id !== undefined && element instanceof HTMLLIElement) existing.set(id, element);
    else element.remove();
  }
  const items = ids.map((id) => {
    const item = existing.get(id) ?? create(id);
    existing.delete(id);
    fill(item, id);
    return item;
  });
  for (const gone of existing.values()) gone.remove();
  items.forEach((item, index) => {
    const current = list.children[index] ?? null;
    if (current !== item) list.insertBefore(item, current);
  });
  if (ids.length === 0) list.append(make("li", "hint", empty));
}
