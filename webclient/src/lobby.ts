/**
 * The clinicians' waiting-room panel: who is waiting and for how long, where they are
 * and whom to call in an emergency, and the Admit / Deny / Admit everyone controls
 * (with a note while the session is locked: the server refuses admits then).
 *
 * Names, locations and contacts are user input: they only ever go through textContent.
 * Entries are kept by participant id across updates, so an open Deny form survives the
 * lobby updates that arrive while the clinician types.
 */
import type { WaitingView } from "./generated/protocol";
import { actionRunner, byId, errorText, make } from "./dom";
import { Knocker } from "./knock";

const CLOCK_INTERVAL_MS = 5_000;

/** What the panel asks the session to do; each rejects with a user-readable error. */
export interface LobbyActions {
  admit(participantId: string): Promise<void>;
  admitAll(): Promise<number>;
  deny(participantId: string, message: string): Promise<void>;
}

/** "just arrived", "waiting 4 min", "waiting 1 h 5 min". */
export function waitedText(seconds: number): string {
  const minutes = Math.floor(Math.max(0, seconds) / 60);
  if (minutes < 1) return "just arrived";
  if (minutes < 60) return `waiting ${minutes} min`;
  return `waiting ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export class LobbyPanel {
  private readonly panel = byId("lobby-panel", HTMLElement);
  private readonly list = byId("lobby-list", HTMLUListElement);
  private readonly badge = byId("lobby-badge", HTMLElement);
  private readonly admitAllButton = byId("admit-all-button", HTMLButtonElement);
  private readonly lockedNote = byId("lobby-locked", HTMLElement);
  private readonly error: HTMLElement;
  private readonly knocker = new Knocker();
  /** Everyone ever seen waiting: only a new arrival knocks (not a reconnect or update). */
  private readonly seen = new Set<string>();
  private waiting: WaitingView[] = [];
  private clock: number | undefined;
  private knocks = 0;
  private locked = false;

  constructor(private readonly actions: LobbyActions) {
    this.error = make("p", "lobby-error error");
    this.error.id = "lobby-error";
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    this.admitAllButton.before(this.error);
    this.admitAllButton.addEventListener("click", () => void this.admitAll());
    document.body.dataset["knocks"] = "0";
    this.render();
  }

  /** Show the panel while the clinician is in the session. */
  setActive(active: boolean): void {
    this.panel.hidden = !active;
    if (active && this.clock === undefined) {
      this.clock = window.setInterval(() => this.refreshWaitedTimes(), CLOCK_INTERVAL_MS);
    } else if (!active && this.clock !== undefined) {
      window.clearInterval(this.clock);
      this.clock = undefined;
    }
  }

  /** The server's list of who is waiting now (in order of arrival). */
  update(waiting: WaitingView[]): void {
    this.waiting = waiting;
    const arrived = waiting.filter((person) => !this.seen.has(person.id));
    for (const person of arrived) this.seen.add(person.id);
    if (arrived.length > 0) {
      const audio = this.knocker.knock();
      this.knocks += 1;
      document.body.dataset["knocks"] = String(this.knocks);
      document.body.dataset["knockAudio"] = audio;
    }
    this.render();
  }

  /** The session is locked: nobody is let in until a clinician unlocks it. */
  setLocked(locked: boolean): void {
    this.locked = locked;
    this.render();
  }

  private render(): void {
    const count = this.waiting.length;
    this.lockedNote.hidden = !this.locked;
    this.panel.dataset["locked"] = String(this.locked);
    this.badge.textContent = String(count);
    this.badge.hidden = count === 0;
    this.badge.setAttribute("aria-label", `${count} waiting`);
    this.admitAllButton.disabled = count === 0 || this.locked;
    this.panel.dataset["waiting"] = String(count);

    const existing = new Map<string, HTMLLIElement>();
    for (const element of Array.from(this.list.children)) {
      const id = element instanceof HTMLLIElement ? element.dataset["participantId"] : undefined;
      if (id) existing.set(id, element as HTMLLIElement);
      else element.remove();
    }
    const entries = this.waiting.map((person) => {
      const entry = existing.get(person.id) ?? this.createEntry(person.id);
      existing.delete(person.id);
      fillEntry(entry, person);
      return entry;
    });
    for (const gone of existing.values()) gone.remove();
    entries.forEach((entry, index) => {
      const current = this.list.children[index] ?? null;
      if (current !== entry) this.list.insertBefore(entry, current);
    });
    if (count === 0) this.list.append(make("li", "lobby-empty hint", "Nobody is waiting."));
  }

  private refreshWaitedTimes(): void {
    for (const person of this.waiting) {
      const entry = this.list.querySelector<HTMLElement>(
        `li[data-participant-id="${CSS.escape(person.id)}"] .lobby-waited`,
      );
      if (entry) entry.textContent = waitedText(Date.now() / 1000 - person.waiting_since);
    }
  }

  private createEntry(participantId: string): HTMLLIElement {
    const entry = make("li", "lobby-entry");
    entry.dataset["participantId"] = participantId;

    const who = make("div", "lobby-who");
    who.append(
      make("strong", "lobby-name"),
      make("span", "lobby-waited"),
      make("span", "lobby-away", "reconnecting…"),
    );
    const details = make("dl", "lobby-details");
    details.append(
      make("dt", "", "Location"),
      make("dd", "lobby-location"),
      make("dt", "", "Emergency contact"),
      make("dd", "lobby-contact"),
    );

    const admit = make("button", "lobby-admit", "Admit");
    admit.type = "button";
    const deny = make("button", "lobby-deny secondary", "Deny");
    deny.type = "button";
    const buttons = make("div", "lobby-actions");
    buttons.append(admit, deny);

    // Denying asks for an optional message in place (no window.prompt).
    const form = make("form", "lobby-deny-form");
    form.hidden = true;
    const inputId = `deny-message-${participantId}`;
    const label = make("label", "", "Message to them (optional)");
    label.htmlFor = inputId;
    const input = make("input", "lobby-deny-message");
    input.id = inputId;
    input.maxLength = 500;
    input.autocomplete = "off";
    const confirm = make("button", "lobby-deny-confirm danger", "Deny entry");
    confirm.type = "submit";
    const cancel = make("button", "lobby-deny-cancel secondary", "Cancel");
    cancel.type = "button";
    const formButtons = make("div", "lobby-actions");
    formButtons.append(confirm, cancel);
    form.append(label, input, formButtons);

    const problem = make("p", "lobby-entry-error error");
    problem.setAttribute("role", "alert");
    problem.hidden = true;

    entry.append(who, details, buttons, form, problem);

    const busy = actionRunner(entry, problem);
    admit.addEventListener("click", () => void busy(() => this.actions.admit(participantId)));
    deny.addEventListener("click", () => {
      form.hidden = false;
      buttons.hidden = true;
      input.focus();
    });
    cancel.addEventListener("click", () => {
      form.hidden = true;
      buttons.hidden = false;
      input.value = "";
      deny.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      void busy(() => this.actions.deny(participantId, input.value.trim()));
    });
    return entry;
  }

  private async admitAll(): Promise<void> {
    this.error.hidden = true;
    this.admitAllButton.disabled = true;
    const before = this.waiting.length;
    try {
      const admitted = await this.actions.admitAll();
      const left = before - admitted;
      if (left > 0) {
        this.showError(
          admitted === 0
            ? "The session is full: nobody more can be let in."
            : `The session is full: ${left} still waiting.`,
        );
      }
    } catch (error) {
      this.showError(errorText(error));
    } finally {
      this.admitAllButton.disabled = this.waiting.length === 0 || this.locked;
    }
  }

  private showError(text: string): void {
    this.error.textContent = text;
    this.error.hidden = false;
  }
}

function fillEntry(entry: HTMLElement, person: WaitingView): void {
  const set = (selector: string, text: string): void => {
    const element = entry.querySelector<HTMLElement>(selector);
    if (element) element.textContent = text;
  };
  entry.dataset["connected"] = String(person.connected);
  set(".lobby-name", person.display_name);
  set(".lobby-waited", waitedText(Date.now() / 1000 - person.waiting_since));
  set(".lobby-location", person.location ?? "not given");
  set(".lobby-contact", person.emergency_contact ?? "not given");
  const away = entry.querySelector<HTMLElement>(".lobby-away");
  if (away) away.hidden = person.connected;
  entry.querySelector(".lobby-admit")?.setAttribute("aria-label", `Admit ${person.display_name}`);
  entry.querySelector(".lobby-deny")?.setAttribute("aria-label", `Deny ${person.display_name}`);
}
