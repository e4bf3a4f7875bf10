/**
 * The clinician's notes without the page: what a note holds, the drafts kept in the
 * browser, and the save queue of each note. notes.ts draws the panel on top of this;
 * nothing here touches the DOM (storage, timers, the clock and the socket come in).
 *
 * Contract ("nothing typed is ever lost"):
 * - Every edit is written at once to a draft in the browser's storage (one entry per
 *   unsaved note) and stays there until the server acknowledges a save of exactly that
 *   content; then the draft is removed. Drafts belong to one person (`owner`) and one
 *   session; sign-out wipes them all (`wipeAllDrafts`).
 * - A note saves a pause (`DEBOUNCE_MS`) after the last edit, at least every
 *   `MAX_WAIT_MS` while typing goes on, and at once when asked (`flush`: blur, Leave).
 * - One save in flight per note; edits made meanwhile queue behind it.
 * - Every save attempt has a `save_id`, reused while the same content is retried (a lost
 *   acknowledgement, a reconnect), new when the content changes. The server stores a
 *   repeated `save_id` once, so a retry never makes a second version.
 * - A refusal (too long, too many versions, not allowed...) keeps the draft and waits for
 *   the next edit or reconnection; a lost answer or a busy server is retried with backoff.
 */

// ---- what a note holds ------------------------------------------------------------------

/** The part of a note the clinician writes. */
export interface NoteContent {
  readonly text: string;
  readonly topic: string;
  readonly participantIds: readonly string[];
}

export const EMPTY_CONTENT: NoteContent = { text: "", topic: "", participantIds: [] };

/** Same text, topic and tagged people (in any order). */
export function sameContent(a: NoteContent, b: NoteContent): boolean {
  if (a.text !== b.text || a.topic !== b.topic) return false;
  if (a.participantIds.length !== b.participantIds.length) return false;
  const tagged = new Set(a.participantIds);
  return b.participantIds.every((id) => tagged.has(id));
}

export function isBlank(content: NoteContent): boolean {
  return content.text === "" && content.topic === "" && content.participantIds.length === 0;
}

/** Characters as the server counts them (code points, not UTF-16 units). */
export function characterCount(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/** "[05:07]" or, from an hour on, "[1:05:07]": a session-relative time stamp. */
export function momentStamp(elapsedSeconds: number): string {
  const whole = Math.max(0, Math.floor(elapsedSeconds));
  const hours = Math.floor(whole / 3600);
  const minutes = String(Math.floor((whole % 3600) / 60)).padStart(2, "0");
  const seconds = String(whole % 60).padStart(2, "0");
  return hours > 0 ? `[${hours}:${minutes}:${seconds}]` : `[${minutes}:${seconds}]`;
}

/**
 * The session's time as the server told it (`list_notes`), carried on by this page's
 * monotonic clock: clocks differ between machines, so only elapsed time is trusted.
 */
export class SessionClock {
  /** Server clock minus local clock (ms), to compare server times with local ones. */
  private readonly serverAheadMs: number;

  constructor(
    private readonly sessionStartedAt: number,
    private readonly serverTime: number,
    /** `performance.now()` when the answer arrived. */
    private readonly receivedAtMs: number,
    /** `Date.now()` when the answer arrived. */
    localNowMs: number,
  ) {
    this.serverAheadMs = serverTime * 1000 - localNowMs;
  }

  /** Seconds since the session started, at `performance.now()` = `monotonicNowMs`. */
  elapsedSeconds(monotonicNowMs: number): number {
    return this.serverTime - this.sessionStartedAt + (monotonicNowMs - this.receivedAtMs) / 1000;
  }

  /** A server time (seconds since the epoch) on this page's clock (ms since the epoch). */
  toLocalMs(serverSeconds: number): number {
    return serverSeconds * 1000 - this.serverAheadMs;
  }
}

/** A fresh client id (note ids, save ids): 22 URL-safe characters, 128 random bits. */
export function newClientId(random: (bytes: Uint8Array) => void): string {
  const bytes = new Uint8Array(16);
  random(bytes);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// ---- drafts in the browser ----------------------------------------------------------------

/** What `localStorage` offers that the drafts need (so tests may pass a map). */
export interface StorageLike {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Every note draft's key starts so (sign-out wipes them by it). */
export const DRAFT_PREFIX = "telecircle.note-draft:";

/** One unsaved note, as kept in the browser. */
export interface NoteDraft {
  readonly session_id: string;
  readonly note_id: string;
  /** The save id of this content: a retry after a reload sends it again. */
  readonly save_id: string;
  readonly text: string;
  readonly topic: string;
  readonly participant_ids: readonly string[];
  /** The newest version this browser saw acknowledged (0: none, a new note). */
  readonly base_version: number;
  /** Saves of earlier content sent since that version whose outcome is unknown (the
   * server may have stored them: its version may be this much above the base). */
  readonly unconfirmed_saves: number;
  /** When it was last edited (this browser's clock, ms since the epoch). */
  readonly edited_at: number;
}

export function draftContent(draft: NoteDraft): NoteContent {
  return { text: draft.text, topic: draft.topic, participantIds: draft.participant_ids };
}

/** Remove every note draft in `storage`, whoever's (sign-out on this browser). */
export function wipeAllDrafts(storage: StorageLike | null): void {
  if (storage === null) return;
  const keys: string[] = [];
  for (let index = 0; index < storage.length; index++) {
    const key = storage.key(index);
    if (key !== null && key.startsWith(DRAFT_PREFIX)) keys.push(key);
  }
  for (const key of keys) storage.removeItem(key);
}

/** The drafts of one person (`owner`): kept apart from anyone else's on this browser. */
export class DraftStore {
  constructor(
    private readonly storage: StorageLike | null,
    private readonly owner: string,
  ) {}

  /** Keep `draft`; false when the browser refused (storage full or disabled). */
  put(draft: NoteDraft): boolean {
    if (this.storage === null) return false;
    try {
      this.storage.setItem(this.key(draft.session_id, draft.note_id), JSON.stringify(draft));
      return true;
    } catch {
      return false;
    }
  }

  remove(sessionId: string, noteId: string): void {
    try {
      this.storage?.removeItem(this.key(sessionId, noteId));
    } catch {
      // Storage that cannot even remove holds nothing of ours.
    }
  }

  /** This owner's drafts, of every session (malformed entries are skipped). */
  all(): NoteDraft[] {
    if (this.storage === null) return [];
    const prefix = `${DRAFT_PREFIX}${encodeURIComponent(this.owner)}:`;
    const drafts: NoteDraft[] = [];
    for (let index = 0; index < this.storage.length; index++) {
      const key = this.storage.key(index);
      if (key === null || !key.startsWith(prefix)) continue;
      const draft = parseDraft(this.storage.getItem(key));
      if (draft !== null && key === this.key(draft.session_id, draft.note_id)) drafts.push(draft);
    }
    return drafts;
  }

  private key(sessionId: string, noteId: string): string {
    const parts = [this.owner, sessionId, noteId].map((part) => encodeURIComponent(part));
    return DRAFT_PREFIX + parts.join(":");
  }
}

function parseDraft(raw: string | null): NoteDraft | null {
  if (raw === null) return null;
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const v = value as Record<string, unknown>;
  const strings = ["session_id", "note_id", "save_id", "text", "topic"];
  const numbers = ["base_version", "unconfirmed_saves", "edited_at"];
  if (!strings.every((name) => typeof v[name] === "string")) return null;
  if (!numbers.every((name) => typeof v[name] === "number" && Number.isFinite(v[name]))) {
    return null;
  }
  const ids = v["participant_ids"];
  if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string")) return null;
  return {
    session_id: v["session_id"] as string,
    note_id: v["note_id"] as string,
    save_id: v["save_id"] as string,
    text: v["text"] as string,
    topic: v["topic"] as string,
    participant_ids: ids as string[],
    base_version: v["base_version"] as number,
    unconfirmed_saves: v["unconfirmed_saves"] as number,
    edited_at: v["edited_at"] as number,
  };
}

// ---- what the server has ---------------------------------------------------------------------

/** The server's newest version of a note (times on this page's clock). */
export interface ServerVersion {
  readonly version: number;
  /** ms since the epoch, on this page's clock. */
  readonly savedAt: number;
  /** null: the server cannot show it (decryption failed, destroyed by retention). */
  readonly content: NoteContent | null;
}

/** Unsaved content that may be newer than the server's version. */
export interface UnsavedContent {
  readonly content: NoteContent;
  readonly baseVersion: number;
  readonly unconfirmedSaves: number;
  readonly editedAt: number;
}

/**
 * Whether unsaved content wins over the server's newest version (and is saved as the
 * next version; the server keeps the one it had as an older version).
 *
 * The server has it already: no. The server has nothing newer than what the draft was
 * written on (allowing for our own saves whose answer was lost): yes. Otherwise the
 * note was saved elsewhere (another tab or device) since: the later edit wins.
 */
export function unsavedWins(unsaved: UnsavedContent, server: ServerVersion): boolean {
  if (server.content !== null && sameContent(unsaved.content, server.content)) return false;
  if (server.version <= unsaved.baseVersion + unsaved.unconfirmedSaves) return true;
  if (server.content === null) return true; // nothing readable to prefer
  return unsaved.editedAt > server.savedAt;
}

// ---- saving one note --------------------------------------------------------------------------

/** Wait this long after the last edit before saving. */
export const DEBOUNCE_MS = 1_000;
/** While typing goes on without a pause, save at least this often. */
export const MAX_WAIT_MS = 10_000;
/** Retrying a save whose answer was lost or that the server could not take now. */
export const RETRY_FIRST_MS = 2_000;
export const RETRY_MAX_MS = 30_000;

/** The outcome is unknown (no answer): the same save id is sent again. */
const UNANSWERED = "timeout";
/** The server may take it later: retried on its own. */
const RETRY_LATER = new Set(["rate_limited", "internal_error", "not_joined"]);
/** Locally refused: the note is longer than the server's limit. */
export const TOO_LONG = "note_too_long";

export interface SaveRequest {
  session_id: string;
  note_id: string;
  save_id: string;
  text: string;
  topic: string;
  participant_ids: string[];
}

export interface SaveProblem {
  readonly code: string;
  /** For the user; never contains the note's text. */
  readonly message: string;
}

export type SaveOutcome =
  { ok: true; version: number; savedAt: number } | { ok: false; problem: SaveProblem };

export interface Timers {
  set(callback: () => void, ms: number): number;
  clear(handle: number): void;
}

/** What a note's saver needs from the page. */
export interface SaverEnvironment {
  /** Send one save (never rejects: a lost answer is a problem with code "timeout"). */
  send(request: SaveRequest): Promise<SaveOutcome>;
  readonly drafts: DraftStore;
  readonly timers: Timers;
  /** This page's clock, ms since the epoch. */
  now(): number;
  newId(): string;
}

/**
 * - `new`: nothing written yet; `saved`: the server has exactly what is shown;
 * - `saving`: unsaved edits, being saved (or about to be);
 * - `offline`: unsaved edits kept in the browser until the connection is back;
 * - `refused`: the server (or the length limit) refused; kept in the browser.
 */
export type SaveStatus = "new" | "saved" | "saving" | "offline" | "refused";

interface Acked {
  version: number;
  savedAt: number;
  /** null: the server's version cannot be shown (unreadable). */
  content: NoteContent | null;
}

/** One note's content, its draft and its saves. */
export class NoteSaver {
  private acked: Acked | null = null;
  private current: NoteContent = EMPTY_CONTENT;
  /** The save id for `current` while it is unsaved. */
  private saveId: string | null = null;
  private editedAt = 0;
  private inFlight: Promise<void> | null = null;
  /** A save fell due while another was in flight. */
  private queued = false;
  /** Save ids sent since `acked` whose outcome is unknown. */
  private unconfirmed = new Set<string>();
  /** A draft loaded from the browser, until the server's listing says what it has: the
   * version it was written on, and earlier saves whose outcome was unknown then. */
  private draftBase: { version: number; unconfirmed: number } | null = null;
  private online = false;
  private maxChars: number | null = null;
  private refused = false;
  private problemNow: SaveProblem | null = null;
  private debounce: number | null = null;
  private maxWait: number | null = null;
  private retry: number | null = null;
  private retryDelay = RETRY_FIRST_MS;
  private disposed = false;
  /** Whether the browser refused to keep the draft (storage full or disabled). */
  private draftLost = false;

  constructor(
    private readonly env: SaverEnvironment,
    readonly sessionId: string,
    readonly noteId: string,
    /** Called after every change of content, status or problem. */
    private readonly onChange: () => void,
  ) {}

  // ---- what the panel shows --------------------------------------------------------------

  get content(): NoteContent {
    return this.current;
  }

  /** Unsaved edits (against the server's newest version we know). */
  get dirty(): boolean {
    if (this.draftBase !== null) return true;
    const base = this.acked?.content ?? null;
    // Nothing on the server, or nothing readable there: anything written is unsaved.
    return base === null ? !isBlank(this.current) : !sameContent(this.current, base);
  }

  get status(): SaveStatus {
    if (!this.dirty && this.inFlight === null) return this.acked === null ? "new" : "saved";
    if (this.refused) return "refused";
    if (!this.online) return "offline";
    return "saving";
  }

  /** Why the last save did not go through (null: no problem). */
  get problem(): SaveProblem | null {
    return this.problemNow;
  }

  /** The newest version the server acknowledged or listed (0: none yet). */
  get version(): number {
    return this.acked?.version ?? 0;
  }

  get savedAt(): number | null {
    return this.acked?.savedAt ?? null;
  }

  /** The server's newest version cannot be read and nothing was typed over it. */
  get unreadable(): boolean {
    return this.acked !== null && this.acked.content === null && !this.dirty;
  }

  /** The browser would not keep a copy of the last edit. */
  get notKeptLocally(): boolean {
    return this.draftLost;
  }

  get limit(): number | null {
    return this.maxChars;
  }

  /** Stopped for good (`dispose`): nothing more is saved from this page. */
  get stopped(): boolean {
    return this.disposed;
  }

  // ---- loading -------------------------------------------------------------------------------

  /** A draft kept in the browser (after a reload): shown as typed, saved when online
   * (after `reconcile` with the server's version, if the server lists the note). */
  loadDraft(draft: NoteDraft): void {
    this.current = draftContent(draft);
    this.saveId = draft.save_id;
    this.editedAt = draft.edited_at;
    this.draftBase = { version: draft.base_version, unconfirmed: draft.unconfirmed_saves };
    this.onChange();
  }

  /**
   * What the server has now (a `list_notes` answer): unsaved content that wins
   * (`unsavedWins`) stays and is saved on top; otherwise the server's version is shown
   * and the draft goes.
   */
  reconcile(server: ServerVersion): void {
    if (this.disposed) return;
    const unsaved = this.dirty;
    const wins =
      unsaved &&
      unsavedWins(
        {
          content: this.current,
          baseVersion: this.draftBase?.version ?? this.acked?.version ?? 0,
          unconfirmedSaves: (this.draftBase?.unconfirmed ?? 0) + this.unconfirmed.size,
          editedAt: this.editedAt,
        },
        server,
      );
    this.draftBase = null;
    this.unconfirmed.clear();
    // A listing older than a save we saw acknowledged changes nothing.
    if (this.acked !== null && server.version < this.acked.version) {
      this.onChange();
      return;
    }
    this.acked = { version: server.version, savedAt: server.savedAt, content: server.content };
    if (!wins) {
      this.current = server.content ?? EMPTY_CONTENT;
      this.saveId = null;
      this.refused = false;
      this.problemNow = null;
    }
    this.persist();
    this.onChange();
  }

  // ---- editing and saving --------------------------------------------------------------------

  /** The clinician changed the note: keep it in the browser now, save after a pause. */
  edit(content: NoteContent): void {
    if (this.disposed || sameContent(content, this.current)) return;
    this.current = content;
    this.saveId = this.env.newId(); // new content: a new save attempt
    this.editedAt = this.env.now();
    this.refused = false;
    this.persist();
    this.clearTimer("debounce");
    this.debounce = this.env.timers.set(() => {
      this.debounce = null;
      this.flush();
    }, DEBOUNCE_MS);
    if (this.maxWait === null) {
      this.maxWait = this.env.timers.set(() => {
        this.maxWait = null;
        this.flush();
      }, MAX_WAIT_MS);
    }
    this.onChange();
  }

  /** Save now if there is anything to save (blur, Leave, reconnect); resolves when the
   * save started now (or the one in flight) is answered. */
  flush(): Promise<void> {
    this.clearTimer("debounce");
    this.clearTimer("maxWait");
    this.clearTimer("retry");
    if (this.disposed) return Promise.resolve();
    if (this.inFlight !== null) {
      this.queued = true;
      return this.inFlight;
    }
    if (!this.dirty || !this.online || this.refused) {
      this.onChange();
      return Promise.resolve();
    }
    if (this.maxChars !== null && characterCount(this.current.text) > this.maxChars) {
      this.refused = true;
      this.problemNow = tooLong(characterCount(this.current.text), this.maxChars);
      this.onChange();
      return Promise.resolve();
    }
    const saveId = (this.saveId ??= this.env.newId());
    const content = this.current;
    this.unconfirmed.add(saveId);
    this.inFlight = this.env
      .send({
        session_id: this.sessionId,
        note_id: this.noteId,
        save_id: saveId,
        text: content.text,
        topic: content.topic,
        participant_ids: [...content.participantIds],
      })
      .then((outcome) => {
        this.inFlight = null;
        if (outcome.ok) this.onSaved(saveId, content, outcome.version, outcome.savedAt);
        else this.onNotSaved(saveId, outcome.problem);
      });
    this.onChange();
    return this.inFlight;
  }

  private onSaved(saveId: string, content: NoteContent, version: number, savedAt: number): void {
    this.unconfirmed.clear();
    this.draftBase = null;
    this.retryDelay = RETRY_FIRST_MS;
    if (this.disposed) return;
    // A repeated save id is answered with the version it became: never go backwards.
    if (this.acked === null || version >= this.acked.version) {
      this.acked = { version, savedAt, content };
    }
    if (this.saveId === saveId) this.saveId = null;
    this.refused = false;
    this.problemNow = null;
    this.persist();
    this.afterFlight();
  }

  private onNotSaved(saveId: string, problem: SaveProblem): void {
    if (this.disposed) return;
    if (problem.code === UNANSWERED) {
      // Perhaps stored, perhaps not: the same save id goes again (the server stores it
      // once). Offline, the reconnection sends it.
      this.scheduleRetry();
    } else if (RETRY_LATER.has(problem.code)) {
      this.problemNow = problem;
      if (problem.code !== "internal_error") this.unconfirmed.delete(saveId);
      this.scheduleRetry();
    } else {
      this.unconfirmed.delete(saveId);
      this.refused = true;
      this.problemNow = problem;
    }
    this.persist();
    this.afterFlight();
  }

  private afterFlight(): void {
    const again = this.queued && !this.refused && this.retry === null;
    this.queued = false;
    this.onChange();
    if (again) void this.flush();
  }

  private scheduleRetry(): void {
    if (!this.online) return;
    this.clearTimer("retry");
    this.retry = this.env.timers.set(() => {
      this.retry = null;
      void this.flush();
    }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
  }

  // ---- the connection ----------------------------------------------------------------------

  /** Joined and listed: save what is unsaved (a refusal is tried once more too). */
  setOnline(maxChars: number): void {
    if (this.disposed) return;
    this.online = true;
    this.maxChars = maxChars;
    this.retryDelay = RETRY_FIRST_MS;
    this.refused = false;
    if (this.dirty) void this.flush();
    else this.onChange();
  }

  /** The connection dropped: edits are kept in the browser until it is back. */
  setOffline(): void {
    this.online = false;
    this.clearTimer("retry");
    this.onChange();
  }

  /** Stop for good (sign-out, another session): no more saves, no more drafts. */
  dispose(): void {
    this.disposed = true;
    this.online = false;
    this.clearTimer("debounce");
    this.clearTimer("maxWait");
    this.clearTimer("retry");
  }

  // ---- the draft -------------------------------------------------------------------------------

  /** The browser's copy follows the content: kept while unsaved, gone once saved. */
  private persist(): void {
    if (this.disposed) return;
    if (!this.dirty) {
      this.env.drafts.remove(this.sessionId, this.noteId);
      this.draftLost = false;
      return;
    }
    const saveId = (this.saveId ??= this.env.newId());
    this.draftLost = !this.env.drafts.put({
      session_id: this.sessionId,
      note_id: this.noteId,
      save_id: saveId,
      text: this.current.text,
      topic: this.current.topic,
      participant_ids: [...this.current.participantIds],
      base_version: this.draftBase?.version ?? this.acked?.version ?? 0,
      // The save id of this content is not an earlier save.
      unconfirmed_saves:
        (this.draftBase?.unconfirmed ?? 0) +
        [...this.unconfirmed].filter((id) => id !== saveId).length,
      edited_at: this.editedAt,
    });
  }

  private clearTimer(which: "debounce" | "maxWait" | "retry"): void {
    const handle = this[which];
    if (handle !== null) this.env.timers.clear(handle);
    this[which] = null;
  }
}

function tooLong(count: number, max: number): SaveProblem {
  const over = count - max;
  return {
    code: TOO_LONG,
    message:
      `This note is ${over.toLocaleString()} character${over === 1 ? "" : "s"} over the ` +
      `limit of ${max.toLocaleString()}. It is kept in this browser: shorten it to save.`,
  };
}
