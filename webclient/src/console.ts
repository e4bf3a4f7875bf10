/**
 * The facilitator console beside the waiting-room panel (clinicians only): Mute all
 * patients, Lock / Unlock the session, End the session for everyone (after a confirm
 * step), the raised hands in order of raising, and the private "needs a moment" list.
 *
 * Beside each "needs a moment" entry, one click starts a one-to-one segment with that
 * person (or queues them for the segment running). "Where everyone is" lists each
 * participant's place (the group, pair N, the segment, on hold, waiting) from the
 * clinicians' view of the `activity` event, and "speaking" beside whoever we hear
 * speaking now (not a live region: it would be read out all the time).
 *
 * The lists come from the server's `lobby` and `activity` events (ids, in order) and take
 * names from the roster. Nothing here is shown to patients: the server sends the moments
 * to clinicians only. Names only ever go through textContent and attributes.
 */
import type {
  FacilitatorView,
  LobbyEvent,
  MomentView,
  PlaceView,
  SegmentView,
} from "./generated/protocol";
import { button, byId, clockTime, errorText, make } from "./dom";
import type { NameBook } from "./names";

/** What the console asks the session to do; each rejects with a user-readable error. */
export interface ConsoleActions {
  muteAll(): Promise<void>;
  lock(locked: boolean): Promise<void>;
  endSession(): Promise<void>;
  lowerHand(participantId: string): Promise<void>;
  clearMoment(participantId: string): Promise<void>;
  /** A segment with this person now, or a place in the queue of the one running. */
  segmentWith(participantId: string): Promise<void>;
}

/** Someone's place in words: "in the group", "in pair 2", "in the segment"... */
export function placeText(
  place: PlaceView | undefined,
  segment: SegmentView | null,
  id: string,
): string {
  let text: string;
  switch (place?.spot) {
    case "pair":
      text = `in pair ${(place.pair ?? 0) + 1}`;
      break;
    case "segment":
      text = "in the segment";
      break;
    case "hold":
      text = "on hold";
      break;
    case "lobby":
      text = "waiting";
      break;
    default:
      text = "in the group";
  }
  const queued = segment?.queue.indexOf(id) ?? -1;
  if (queued >= 0) text += queued === 0 ? ", next for a segment" : `, queued (${queued + 1})`;
  return text;
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
  private readonly placesList = byId("places-list", HTMLUListElement);
  private readonly error = byId("console-error", HTMLElement);
  private hands: string[] = [];
  private moments: MomentView[] = [];
  private locked = false;
  /** Everyone past the lobby, in roster order (ids). */
  private present: string[] = [];
  private activity: FacilitatorView | null = null;
  /** Whom we hear speaking now (ids). */
  private speaking = new Set<string>();

  constructor(
    private readonly actions: ConsoleActions,
    private readonly names: NameBook,
  ) {
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

  /** Who is past the lobby, in order (their names are in the name book). */
  setPresent(participantIds: string[]): void {
    this.present = participantIds;
    this.render();
  }

  /** The clinicians' view from the latest `activity` event (places, the segment). */
  setActivity(view: FacilitatorView | null): void {
    this.activity = view;
    this.render();
  }

  /** Whom we hear speaking now (re-renders only when that changes). */
  setSpeaking(speaking: ReadonlySet<string>): void {
    const same =
      speaking.size === this.speaking.size && [...speaking].every((id) => this.speaking.has(id));
    if (same) return;
    this.speaking = new Set(speaking);
    this.renderPlaces();
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
      (id) => this.entry("li", "hand-entry", id, "Lower hand", () => this.actions.lowerHand(id)),
      (item, id) => this.fillEntry(item, id),
      "No hands raised.",
    );
    const since = new Map(this.moments.map((moment) => [moment.id, moment.since]));
    syncList(
      this.momentsList,
      this.moments.map((moment) => moment.id),
      (id) => {
        // The entry (who, since when, Clear) and, beside it, the one-click segment.
        const entry = this.entry("div", "moment-entry", id, "Clear", () =>
          this.actions.clearMoment(id),
        );
        entry.querySelector(".moment-entry-name")?.after(make("span", "moment-since"));
        const segment = button("moment-segment secondary", "Start segment");
        segment.addEventListener("click", () => {
          void this.busy([segment], () => this.actions.segmentWith(id));
        });
        const item = make("li", "moment-row");
        item.dataset["participantId"] = id;
        item.append(entry, segment);
        return item;
      },
      (item, id) => {
        this.fillEntry(item, id);
        const when = item.querySelector(".moment-since");
        if (when) when.textContent = `since ${clockTime(since.get(id) ?? 0)}`;
        const segment = item.querySelector<HTMLElement>(".moment-segment");
        if (segment) {
          const running = this.activity?.segment ?? null;
          // Someone already in the segment, or in its queue, needs no second click.
          segment.hidden =
            running !== null && (running.participant_id === id || running.queue.includes(id));
          segment.textContent = running === null ? "Start segment" : "Add to segment queue";
          segment.setAttribute("aria-label", `${segment.textContent}: ${this.names.of(id)}`);
        }
      },
      "Nobody has asked for a moment.",
    );
    this.panel.dataset["hands"] = String(this.hands.length);
    this.panel.dataset["moments"] = String(this.moments.length);
    this.renderPlaces();
  }

  /** Each participant past the lobby and anyone waiting, with their place. */
  private renderPlaces(): void {
    const places = this.activity?.places ?? {};
    const waiting = Object.keys(places).filter(
      (id) => places[id]?.spot === "lobby" && !this.present.includes(id),
    );
    const segment = this.activity?.segment ?? null;
    syncList(
      this.placesList,
      [...this.present, ...waiting],
      (id) => {
        const item = make("li", "place-entry");
        item.dataset["participantId"] = id;
        const speaking = make("span", "place-entry-speaking", "speaking");
        speaking.hidden = true;
        item.append(make("span", "place-entry-name"), speaking, make("span", "place-entry-where"));
        return item;
      },
      (item, id) => {
        const place = places[id];
        item.dataset["spot"] = place?.spot ?? "plenary";
        const name = item.querySelector(".place-entry-name");
        if (name) name.textContent = this.names.of(id);
        const where = item.querySelector(".place-entry-where");
        if (where) where.textContent = placeText(place, segment, id);
        const speaking = this.speaking.has(id);
        item.dataset["speaking"] = String(speaking);
        const mark = item.querySelector<HTMLElement>(".place-entry-speaking");
        if (mark) mark.hidden = !speaking;
      },
      "Nobody is here yet.",
    );
  }

  /** One person in a list: their name and one action button. */
  private entry<K extends "li" | "div">(
    tag: K,
    className: string,
    participantId: string,
    actionText: string,
    action: () => Promise<void>,
  ): HTMLElementTagNameMap[K] {
    const item = make(tag, className);
    item.dataset["participantId"] = participantId;
    const act = button(`${className}-action secondary`, actionText);
    act.addEventListener("click", () => void this.busy([act], action));
    item.append(make("span", `${className}-name`), act);
    return item;
  }

  private fillEntry(item: HTMLElement, participantId: string): void {
    const name = this.names.of(participantId);
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
