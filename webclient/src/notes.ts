/**
 * The clinician's notes panel beside the video (clinicians only: patients' pages have
 * neither the panel nor this code's behaviour, see main.ts).
 *
 * A list of one's own notes of the session (`list_notes`, after every join), newest
 * first, and "New note": each note has a topic, the people it is about (names from the
 * roster, ids sent), markdown text with its length against the server's limit, "Mark
 * this moment" (also Alt+M anywhere on the page) which types the session-relative time
 * `[mm:ss]` at the cursor, and its save status. Notes that cannot be read are shown as
 * such, read-only.
 *
 * Saving, drafts and retries are notedrafts.ts's: every edit is kept in this browser
 * until the server acknowledges it; the panel only draws what the savers say. The
 * panel never takes focus on its own (events from the group re-render in place), so a
 * clinician can keep typing while the session goes on.
 *
 * When our seat ends (the session ended, we were closed out or left) with notes still
 * unsaved, the panel stays, read-only, and saves them through a connection of its own
 * (no seat: the server takes a clinician's notes for their room's sessions without one),
 * then says how that went.
 */
import type { NoteView, NotesResult, ParticipantView, SaveNoteRequest } from "./generated/protocol";
import { button, byId, clockTime, errorText, make } from "./dom";
import type { NameBook } from "./names";
import {
  DraftStore,
  type NoteContent,
  NoteSaver,
  type NoteDraft,
  type SaveOutcome,
  type SaveProblem,
  type SaveRequest,
  type SaveStatus,
  type ServerVersion,
  SessionClock,
  type StorageLike,
  characterCount,
  momentStamp,
  newClientId,
  wipeAllDrafts,
} from "./notedrafts";
import { type Signalling, SignallingError } from "./signalling";

/** The server's schema allows this many tagged people per note. */
const MAX_TAGGED = 16;
/** The panel's spoken status says "Saving…" only when a save takes longer than this
 * (each note shows it at once): typing must not make a screen reader chatter. */
const SAVING_ANNOUNCE_MS = 3_000;
/** Between two rounds of saving everything before Leave. */
const SETTLE_PAUSE_MS = 200;
/** How long saving what is left after our seat ended may take (connecting included). */
export const SAVE_AFTER_SEAT_MS = 10_000;

const STATUS_TEXT: Record<SaveStatus, string> = {
  new: "Empty: saves once you write",
  saved: "Saved",
  saving: "Saving…",
  offline: "Offline — will save",
  refused: "Not saved — kept in this browser",
};

/** The panel's spoken status (a summary of its notes'). */
const PANEL_STATUS_TEXT = {
  idle: "",
  loading: "Loading your notes…",
  problem: "A note could not be saved: it is kept in this browser.",
  offline: "Offline — will save",
  saving: "Saving…",
  saved: "All notes saved",
} as const;

const UNREADABLE_TEXT: Record<NonNullable<NoteView["unreadable"]>, string> = {
  decryption_failed: "This note could not be decrypted",
  destroyed: "Destroyed by retention",
};

/** Alt+M (the key, whatever the layout types with Alt/Option: e.g. "µ" on a Mac). */
function isMarkShortcut(event: KeyboardEvent): boolean {
  return (
    event.altKey && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.code === "KeyM"
  );
}

function browserStorage(): StorageLike | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: notes still save, nothing is kept across a reload
  }
}

function problemOf(error: unknown): SaveProblem {
  if (error instanceof SignallingError) return { code: error.code, message: error.message };
  return { code: "timeout", message: errorText(error) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
}

/** "1 note could not be saved…" / "3 notes could not be saved…". */
function unsavedText(count: number): string {
  return `${count} note${count === 1 ? "" : "s"} could not be saved: kept in this browser.`;
}

/** What a note needs from its panel. */
interface NoteHost {
  readonly names: NameBook;
  /** Everyone in the session but us (ids and names). */
  people(): readonly ParticipantView[];
  /** "[mm:ss] " for now (null: the session's time is not known yet). */
  stamp(): string | null;
  focused(item: NoteItem): void;
  changed(): void;
  /** Our seat has ended: the note is read-only, and unsaved means kept in the browser. */
  ended(): boolean;
}

/** One note in the list: its saver and its controls. */
class NoteItem {
  readonly element = make("li", "note");
  readonly saver: NoteSaver;
  /** Why the server cannot show it (from the listing). */
  unreadableReason: NoteView["unreadable"] = null;
  private mode: "edit" | "unreadable" | null = null;
  private readonly details = make("details", "note-details");
  private readonly summaryName = make("span", "note-name");
  private readonly summaryStatus = make("span", "note-summary-status");
  private readonly topic = make("input", "note-topic");
  private readonly tags = make("div", "note-tag-list");
  private readonly tagsEmpty = make("p", "hint note-tags-empty", "Nobody else is here yet.");
  private readonly text = make("textarea", "note-text");
  private readonly count = make("span", "note-count");
  private readonly status = make("p", "note-status");
  private readonly problem = make("p", "note-problem error");
  private readonly mark = button("note-mark secondary", "Mark this moment");

  constructor(
    private readonly host: NoteHost,
    saver: (onChange: () => void) => NoteSaver,
    /** Where it goes in the list (newest first): ms since the epoch. */
    readonly createdAt: number,
  ) {
    this.saver = saver(() => this.render());
    this.element.dataset["noteId"] = this.saver.noteId;
    this.topic.addEventListener("input", () => this.edited());
    this.text.addEventListener("input", () => this.edited());
    // Leaving the note (not just one field for another) saves it at once.
    this.element.addEventListener("focusout", (event) => {
      const next = event.relatedTarget;
      if (!(next instanceof Node) || !this.element.contains(next)) void this.saver.flush();
    });
    this.element.addEventListener("focusin", () => this.host.focused(this));
  }

  get editable(): boolean {
    return this.mode === "edit" && !this.host.ended();
  }

  /** Open the note and put the cursor in its text (only on the user's own action). */
  focusText(): void {
    if (!this.editable) return;
    this.details.open = true;
    this.text.focus();
  }

  /** Type `stamp` at the text's cursor (or over its selection), then go on typing. */
  insertAtCursor(stamp: string): void {
    if (!this.editable) return;
    this.details.open = true;
    const start = this.text.selectionStart;
    const end = this.text.selectionEnd;
    // A word before the cursor gets a space between it and the stamp.
    const before = this.text.value.slice(0, start);
    const gap = before === "" || /\s$/.test(before) ? "" : " ";
    this.text.setRangeText(gap + stamp, start, end, "end");
    this.text.focus();
    this.edited();
  }

  render(): void {
    const mode = this.saver.unreadable ? "unreadable" : "edit";
    if (mode !== this.mode) {
      this.mode = mode;
      if (mode === "edit") this.buildEditor();
      else this.buildUnreadable();
    }
    if (mode === "edit") this.renderEditor();
    else this.renderUnreadable();
    this.host.changed();
  }

  /** The people in the session changed: the tag list follows (focus stays). */
  renderTags(): void {
    if (this.mode !== "edit") return;
    const tagged = new Set(this.saver.content.participantIds);
    const ids = this.host.people().map((person) => person.id);
    // Someone tagged who has left stays listed (and tagged).
    for (const id of tagged) if (!ids.includes(id)) ids.push(id);
    const existing = new Map<string, HTMLLabelElement>();
    for (const label of Array.from(this.tags.children)) {
      const id = label instanceof HTMLLabelElement ? label.dataset["participantId"] : undefined;
      if (id !== undefined && label instanceof HTMLLabelElement) existing.set(id, label);
      else label.remove();
    }
    ids.forEach((id, index) => {
      let label = existing.get(id);
      existing.delete(id);
      if (label === undefined) {
        label = make("label", "check note-tag");
        label.dataset["participantId"] = id;
        const box = make("input", "note-tag-box");
        box.type = "checkbox";
        box.value = id;
        box.addEventListener("change", () => this.edited());
        label.append(box, make("span", "note-tag-name"));
      }
      const box = label.querySelector("input");
      const name = label.querySelector(".note-tag-name");
      if (box !== null) {
        box.checked = tagged.has(id);
        box.disabled = this.host.ended() || (!box.checked && tagged.size >= MAX_TAGGED);
      }
      const here = this.host.people().some((person) => person.id === id);
      if (name !== null) {
        name.textContent = here ? this.host.names.of(id) : `${this.host.names.of(id)} (left)`;
      }
      // A moved element loses focus: the one in use stays where it is for now.
      const current = this.tags.children[index] ?? null;
      if (current !== label && !label.contains(document.activeElement)) {
        this.tags.insertBefore(label, current);
      }
    });
    for (const gone of existing.values()) gone.remove();
    this.tagsEmpty.hidden = ids.length > 0;
  }

  private buildEditor(): void {
    // Note ids are [A-Za-z0-9_-]: fit for element ids.
    const id = `note-${this.saver.noteId}`;
    this.element.replaceChildren();
    this.element.removeAttribute("data-unreadable");
    this.details.replaceChildren();
    this.details.open = true;
    const summary = make("summary", "note-summary");
    summary.append(this.summaryName, " ", this.summaryStatus);

    const topicLabel = make("label", "", "Topic");
    topicLabel.htmlFor = `${id}-topic`;
    this.topic.id = `${id}-topic`;
    this.topic.type = "text";
    this.topic.maxLength = 200;
    this.topic.autocomplete = "off";

    const tags = make("fieldset", "note-tags");
    tags.append(make("legend", "", "About"), this.tags, this.tagsEmpty);

    const textLabel = make("label", "", "Note");
    textLabel.htmlFor = `${id}-text`;
    this.text.id = `${id}-text`;
    this.text.rows = 7;
    this.text.spellcheck = true;
    this.count.id = `${id}-count`;
    this.status.id = `${id}-status`;
    this.text.setAttribute("aria-describedby", `${id}-count ${id}-status`);

    const mark = this.mark;
    mark.setAttribute("aria-keyshortcuts", "Alt+M");
    mark.title = "Alt+M";
    // The stamp goes where the cursor was in the text, not where the button is.
    mark.addEventListener("mousedown", (event) => event.preventDefault());
    mark.addEventListener("click", () => {
      const stamp = this.host.stamp();
      if (stamp !== null) this.insertAtCursor(stamp);
    });
    const footer = make("div", "note-footer");
    footer.append(this.count, mark);
    this.problem.hidden = true;

    const body = make("div", "note-body");
    body.append(topicLabel, this.topic, tags, textLabel, this.text, footer, this.status);
    body.append(this.problem);
    this.details.append(summary, body);
    this.element.append(this.details);
    this.renderTags();
  }

  private buildUnreadable(): void {
    this.element.replaceChildren();
    const reason = this.unreadableReason ?? "decryption_failed";
    this.element.dataset["unreadable"] = reason;
    const savedAt = this.saver.savedAt;
    const name = savedAt === null ? "A note" : `Note saved at ${clockTime(savedAt / 1000)}`;
    this.element.append(
      make("p", "note-name", name),
      make("p", "note-unreadable-text", UNREADABLE_TEXT[reason]),
    );
  }

  private renderUnreadable(): void {
    this.element.dataset["status"] = "unreadable";
  }

  private renderEditor(): void {
    const content = this.saver.content;
    // Only a change from elsewhere (the server's newer version) rewrites a field: what
    // the user types is the saver's content already, so the cursor stays put.
    if (this.topic.value !== content.topic) this.topic.value = content.topic;
    if (this.text.value !== content.text) this.text.value = content.text;
    const ended = this.host.ended();
    // After the seat, nothing more is typed: there is no session left to save it in.
    this.topic.readOnly = ended;
    this.text.readOnly = ended;
    this.mark.disabled = ended;
    this.renderTags();

    let status = this.saver.status;
    // After the seat, what is not saved stays in this browser (not "will save").
    if (ended && (status === "offline" || status === "saving") && this.saver.stopped) {
      status = "refused";
    }
    this.element.dataset["status"] = status;
    this.summaryName.textContent = content.topic.trim() || "Untitled note";
    let statusText = STATUS_TEXT[status];
    if (status === "saved") statusText += ` (version ${this.saver.version})`;
    if (this.saver.notKeptLocally && status !== "saved") {
      statusText += ". This browser could not keep a copy: keep this page open.";
    }
    this.status.textContent = statusText;
    this.summaryStatus.textContent = `· ${STATUS_TEXT[status]}`;

    const limit = this.saver.limit;
    const used = characterCount(content.text);
    const over = limit !== null && used > limit;
    this.count.textContent =
      limit === null
        ? `${used.toLocaleString()} characters`
        : `${used.toLocaleString()} / ${limit.toLocaleString()} characters`;
    this.count.dataset["over"] = String(over);

    const problem = this.saver.problem;
    this.problem.hidden = problem === null;
    this.problem.textContent = problem?.message ?? "";
    this.problem.dataset["code"] = problem?.code ?? "";
  }

  private edited(): void {
    const participantIds = Array.from(
      this.tags.querySelectorAll<HTMLInputElement>("input.note-tag-box:checked"),
      (box) => box.value,
    );
    const content: NoteContent = {
      text: this.text.value,
      topic: this.topic.value,
      participantIds,
    };
    this.saver.edit(content);
  }
}

export class NotesPanel {
  private readonly panel = byId("notes-panel", HTMLElement);
  private readonly list = byId("notes-list", HTMLOListElement);
  private readonly empty = byId("notes-empty", HTMLElement);
  private readonly newButton = byId("new-note-button", HTMLButtonElement);
  private readonly status = byId("notes-status", HTMLElement);
  private readonly error = byId("notes-error", HTMLElement);
  private readonly errorText = byId("notes-error-text", HTMLElement);
  private readonly retryButton = byId("notes-retry", HTMLButtonElement);
  private readonly toggle = byId("notes-toggle", HTMLButtonElement);
  private readonly items = new Map<string, NoteItem>();
  private readonly storage = browserStorage();
  /** This person's drafts in the browser (known from the first seat). */
  private drafts: DraftStore | null = null;
  private selfId: string | null = null;
  private sessionId: string | null = null;
  private clock: SessionClock | null = null;
  private maxChars: number | null = null;
  private people: ParticipantView[] = [];
  /** In the session (the panel is shown). */
  private active = false;
  /** The clinician has not hidden the panel. */
  private shown = true;
  /** Joined and listed: saves may be sent. */
  private online = false;
  /** Bumped when a listing is superseded (a drop, a new join). */
  private listing = 0;
  private lastFocused: NoteItem | null = null;
  private announceTimer: number | undefined;
  private signedOut = false;
  /** Our seat has ended: null while it lasts; then saving what is left, then done. */
  private afterSeat: "saving" | "done" | null = null;
  /** Where saves go: the page's connection, or (after our seat ended) one of our own. */
  private link: Signalling;

  constructor(
    private readonly signalling: Signalling,
    private readonly names: NameBook,
    /** The signed-in account's id, if the page says it (drafts are kept per person). */
    private readonly userId: string | null,
    /** A new connection with the page's cookies (not connected yet). */
    private readonly newConnection: () => Signalling,
  ) {
    this.link = signalling;
    this.newButton.addEventListener("click", () => this.newNote()?.focusText());
    this.retryButton.addEventListener("click", () => void this.load());
    this.toggle.addEventListener("click", () => {
      this.shown = !this.shown;
      this.showPanel();
      if (!this.shown) return;
      const note = this.lastEditable();
      if (note !== null) note.focusText();
      else this.newButton.focus();
    });
    document.addEventListener("keydown", (event) => {
      if (!isMarkShortcut(event) || !this.active || this.clock === null) return;
      event.preventDefault();
      this.markMoment();
    });
    this.render();
  }

  // ---- called by the page (main.ts) ---------------------------------------------------------

  /** We hold a seat (after every join, reconnections too): list our notes, then save
   * whatever is unsaved. */
  enter(selfId: string): void {
    if (this.signedOut || this.afterSeat !== null) return;
    this.selfId = selfId;
    // Drafts belong to the account (#app's data-user-id); without it, to the first seat
    // of this page's life (a later seat of the same person must find them again).
    this.drafts ??= new DraftStore(this.storage, this.userId ?? selfId);
    this.active = true;
    this.showPanel();
    void this.load();
  }

  /** The connection dropped: typing goes on, kept in the browser until it is back. */
  offline(): void {
    this.listing++;
    this.online = false;
    for (const item of this.items.values()) item.saver.setOffline();
    this.render();
  }

  /** Our seat ended (left, closed, failed): stop saving and hide the panel. Unsaved
   * drafts stay in the browser for the next visit (or `saveWhatIsLeft` saves them). */
  stop(): void {
    this.offline();
    this.active = false;
    this.showPanel();
  }

  /** The person was signed out: nothing of their notes stays on this page or browser. */
  signOut(): void {
    this.signedOut = true;
    this.stop();
    for (const item of this.items.values()) item.saver.dispose();
    this.items.clear();
    this.list.replaceChildren();
    this.lastFocused = null;
    wipeAllDrafts(this.storage);
    this.render();
  }

  /** Everyone past the lobby: the people a note can be about (all but us). */
  setPeople(participants: readonly ParticipantView[]): void {
    this.people = participants.filter((participant) => participant.id !== this.selfId);
    for (const item of this.items.values()) item.renderTags();
  }

  /**
   * Our seat has ended (after `stop`), and with it the page's connection: what is still
   * unsaved is saved through a new connection (no seat: the server takes a clinician's
   * notes for a session of their room without one), each with its save id, so a save
   * the server stored before the end is not stored twice. Waits at most `timeoutMs`
   * (connecting included), then closes that connection; acknowledged drafts go, the
   * others stay in this browser (the next visit saves them).
   *
   * Meanwhile and after, the panel stays in view, read-only, and says the outcome:
   * "All notes saved" or how many could not be saved. With nothing unsaved, it does
   * nothing unless `always` (the session ended: the clinician sees that all is saved).
   */
  async saveWhatIsLeft(always: boolean, timeoutMs: number = SAVE_AFTER_SEAT_MS): Promise<void> {
    const maxChars = this.maxChars;
    if (this.signedOut || this.afterSeat !== null || maxChars === null) return;
    const unsaved = this.unsavedCount();
    if (unsaved === 0 && !(always && this.items.size > 0)) return;
    const deadline = performance.now() + timeoutMs;
    this.afterSeat = "saving";
    this.offline(); // nothing more goes through the page's connection
    this.showPanel();
    for (const item of this.items.values()) item.render();
    if (unsaved > 0) {
      const link = this.newConnection();
      try {
        if (await connectBefore(link, deadline)) {
          this.link = link;
          this.online = true;
          for (const item of this.items.values()) item.saver.setOnline(maxChars);
          await this.settle(deadline - performance.now());
        }
      } finally {
        this.online = false;
        link.disconnect();
      }
    }
    for (const item of this.items.values()) item.saver.dispose();
    this.afterSeat = "done";
    for (const item of this.items.values()) item.render();
    this.render();
  }

  /** Save everything unsaved now (before Leave), waiting at most `timeoutMs`. */
  async settle(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const saving = [...this.items.values()].filter((item) => item.saver.status === "saving");
      const left = deadline - performance.now();
      if (saving.length === 0 || left <= 0) return;
      await Promise.race([Promise.all(saving.map((item) => item.saver.flush())), sleep(left)]);
      await sleep(Math.min(SETTLE_PAUSE_MS, Math.max(0, deadline - performance.now())));
    }
  }

  // ---- listing ------------------------------------------------------------------------------

  private async load(): Promise<void> {
    const listing = ++this.listing;
    this.error.hidden = true;
    this.render();
    let result: NotesResult;
    try {
      result = await this.signalling.request("list_notes", {});
    } catch (error) {
      if (listing !== this.listing || this.signedOut) return;
      this.errorText.textContent = `Your notes could not be loaded: ${errorText(error)}`;
      this.error.hidden = false;
      this.render();
      return;
    }
    if (listing !== this.listing || this.signedOut) return;
    this.apply(result);
  }

  /** The server's notes of the session: merged with what this page and browser hold. */
  private apply(result: NotesResult): void {
    this.clock = new SessionClock(
      result.session_started_at,
      result.server_time,
      performance.now(),
      Date.now(),
    );
    this.maxChars = result.max_chars;
    if (this.sessionId !== null && this.sessionId !== result.session_id) {
      // Another session of the room now: the old one's notes leave the panel (their
      // unsaved drafts stay in the browser and are tried below).
      for (const item of this.items.values()) item.saver.dispose();
      this.items.clear();
      this.list.replaceChildren();
      this.lastFocused = null;
    }
    this.sessionId = result.session_id;
    const clock = this.clock;
    const drafts = this.drafts?.all() ?? [];
    const ours = new Map(
      drafts
        .filter((draft) => draft.session_id === result.session_id)
        .map((draft) => [draft.note_id, draft]),
    );

    for (const view of result.notes) {
      let item = this.items.get(view.note_id);
      if (item === undefined) {
        item = this.addItem(view.note_id, clock.toLocalMs(view.created_at));
        const draft = ours.get(view.note_id);
        if (draft !== undefined) item.saver.loadDraft(draft);
      }
      item.unreadableReason = view.unreadable;
      item.saver.reconcile(serverVersion(view, clock));
    }
    // Drafts of notes the server has never stored (new notes typed before a reload).
    for (const draft of ours.values()) {
      if (this.items.has(draft.note_id)) continue;
      this.addItem(draft.note_id, draft.edited_at).saver.loadDraft(draft);
    }

    this.online = true;
    this.error.hidden = true;
    for (const item of this.items.values()) item.saver.setOnline(result.max_chars);
    this.render();
    void this.saveOtherSessions(drafts.filter((draft) => draft.session_id !== result.session_id));
  }

  /** Drafts left from another session (it ended while we were offline): one try each;
   * kept if the server refuses. */
  private async saveOtherSessions(drafts: NoteDraft[]): Promise<void> {
    for (const draft of drafts) {
      if (!this.online) return;
      const outcome = await this.send({
        session_id: draft.session_id,
        note_id: draft.note_id,
        save_id: draft.save_id,
        text: draft.text,
        topic: draft.topic,
        participant_ids: [...draft.participant_ids],
      });
      if (outcome.ok) this.drafts?.remove(draft.session_id, draft.note_id);
    }
  }

  private async send(request: SaveRequest): Promise<SaveOutcome> {
    // Never while the socket is down or before the join: socket.io would buffer it.
    const link = this.link;
    if (!this.online || !link.connected) {
      return { ok: false, problem: { code: "timeout", message: "Not connected." } };
    }
    try {
      const saved = await link.request("save_note", {
        ...request,
        participant_ids: request.participant_ids as NonNullable<SaveNoteRequest["participant_ids"]>,
      });
      const savedAt = this.clock?.toLocalMs(saved.saved_at) ?? saved.saved_at * 1000;
      return { ok: true, version: saved.version, savedAt };
    } catch (error) {
      return { ok: false, problem: problemOf(error) };
    }
  }

  // ---- notes ----------------------------------------------------------------------------------

  private addItem(noteId: string, createdAt: number): NoteItem {
    const sessionId = this.sessionId ?? "";
    const drafts = this.drafts ?? new DraftStore(null, "");
    const host: NoteHost = {
      names: this.names,
      people: () => this.people,
      stamp: () => this.stamp(),
      focused: (item) => {
        this.lastFocused = item;
      },
      changed: () => this.render(),
      ended: () => this.afterSeat !== null,
    };
    const item = new NoteItem(
      host,
      (onChange) =>
        new NoteSaver(
          {
            send: (request) => this.send(request),
            drafts,
            timers: {
              set: (callback, ms) => window.setTimeout(callback, ms),
              clear: (handle) => window.clearTimeout(handle),
            },
            now: () => Date.now(),
            newId: () => this.newId(),
          },
          sessionId,
          noteId,
          onChange,
        ),
      createdAt,
    );
    this.items.set(noteId, item);
    // Newest first; notes already shown never move (a moved element loses focus).
    let before: Element | null = null;
    for (const element of Array.from(this.list.children)) {
      const other = this.items.get((element as HTMLElement).dataset["noteId"] ?? "");
      if (other !== undefined && other.createdAt < createdAt) {
        before = element;
        break;
      }
    }
    this.list.insertBefore(item.element, before);
    item.render();
    return item;
  }

  /** A new, empty note (not saved until something is written). */
  private newNote(): NoteItem | null {
    if (this.sessionId === null || this.signedOut || this.afterSeat !== null) return null;
    const item = this.addItem(this.newId(), Date.now());
    if (this.online && this.maxChars !== null) item.saver.setOnline(this.maxChars);
    return item;
  }

  /** "Mark this moment" from the keyboard: into the note last written in (else the
   * newest; else a new one), at its cursor. */
  private markMoment(): void {
    const stamp = this.stamp();
    if (stamp === null) return;
    if (!this.shown) {
      this.shown = true;
      this.showPanel();
    }
    const target = this.lastEditable() ?? this.newNote();
    target?.insertAtCursor(stamp);
  }

  private lastEditable(): NoteItem | null {
    const last = this.lastFocused;
    if (last !== null && last.editable && this.items.get(last.saver.noteId) === last) return last;
    for (const element of Array.from(this.list.children)) {
      const item = this.items.get((element as HTMLElement).dataset["noteId"] ?? "");
      if (item?.editable) return item;
    }
    return null;
  }

  private stamp(): string | null {
    if (this.clock === null) return null;
    return `${momentStamp(this.clock.elapsedSeconds(performance.now()))} `;
  }

  private newId(): string {
    return newClientId((bytes) => crypto.getRandomValues(bytes));
  }

  // ---- drawing --------------------------------------------------------------------------------

  /** Notes with something not saved (after the seat: kept in this browser). */
  private unsavedCount(): number {
    return [...this.items.values()].filter((item) => item.saver.dirty).length;
  }

  private showPanel(): void {
    // After our seat, the panel stays until it has said what became of the notes.
    const afterSeat = this.afterSeat !== null && !this.signedOut;
    this.panel.hidden = !(afterSeat || (this.active && this.shown));
    this.toggle.hidden = !this.active;
    this.toggle.setAttribute("aria-expanded", String(this.shown));
    this.toggle.textContent = this.shown ? "Hide notes" : "Notes";
  }

  private render(): void {
    const ready = this.sessionId !== null && !this.signedOut && this.afterSeat === null;
    this.newButton.disabled = !ready;
    this.empty.hidden = this.items.size > 0 || !ready;
    this.panel.dataset["online"] = String(this.online);
    if (this.afterSeat !== null && !this.signedOut) {
      this.renderAfterSeat();
      return;
    }
    const statuses = [...this.items.values()]
      .filter((item) => item.editable)
      .map((item) => item.saver.status);
    let kind: "idle" | "loading" | "problem" | "offline" | "saving" | "saved";
    if (this.signedOut || !this.error.hidden) kind = "idle";
    else if (!ready) kind = "loading";
    else if (statuses.includes("refused")) kind = "problem";
    else if (!this.online) kind = "offline";
    else if (statuses.includes("saving")) kind = "saving";
    else if (statuses.includes("saved")) kind = "saved";
    else kind = "idle";
    this.panel.dataset["status"] = kind;
    const text = PANEL_STATUS_TEXT[kind];
    this.announce(text);
  }

  /** Saving what is left after our seat, then its outcome (said at once). */
  private renderAfterSeat(): void {
    const unsaved = this.unsavedCount();
    const kind = this.afterSeat === "saving" ? "saving" : unsaved > 0 ? "problem" : "saved";
    this.panel.dataset["status"] = kind;
    window.clearTimeout(this.announceTimer);
    this.announceTimer = undefined;
    const text = kind === "problem" ? unsavedText(unsaved) : PANEL_STATUS_TEXT[kind];
    if (this.status.textContent !== text) this.status.textContent = text;
  }

  /** The spoken (polite) status: at once, except "Saving…" after "All notes saved",
   * which waits a little (typing saves every pause). */
  private announce(text: string): void {
    const settled = ["", PANEL_STATUS_TEXT.saved].includes(this.status.textContent ?? "");
    if (text !== PANEL_STATUS_TEXT.saving || !settled) {
      window.clearTimeout(this.announceTimer);
      this.announceTimer = undefined;
      if (this.status.textContent !== text) this.status.textContent = text;
      return;
    }
    if (this.announceTimer !== undefined) return;
    this.announceTimer = window.setTimeout(() => {
      this.announceTimer = undefined;
      const still = [...this.items.values()].some((item) => item.saver.status === "saving");
      if (still && this.online) this.status.textContent = text;
    }, SAVING_ANNOUNCE_MS);
  }
}

/** Connect `link` before `deadline` (`performance.now()` ms): whether it did. */
async function connectBefore(link: Signalling, deadline: number): Promise<boolean> {
  const connected = link.connect().then(
    () => true,
    () => false,
  );
  const late = sleep(Math.max(0, deadline - performance.now())).then(() => false);
  return Promise.race([connected, late]);
}

function serverVersion(view: NoteView, clock: SessionClock): ServerVersion {
  const readable = view.text !== null && view.unreadable === null;
  return {
    version: view.version,
    savedAt: clock.toLocalMs(view.saved_at),
    content: readable
      ? { text: view.text ?? "", topic: view.topic ?? "", participantIds: view.participant_ids }
      : null,
  };
}
