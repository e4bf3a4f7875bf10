/**
 * The page: state display, pre-join form, tile grid and controls.
 *
 * Display names are user input: they only ever go through textContent.
 */
import type { ParticipantView } from "./generated/protocol";

export type AppState =
  | "prejoin"
  | "connecting"
  | "connected"
  | "reconnecting"
  | "room_full"
  | "camera_denied"
  | "left"
  | "error";

const STATUS_TEXT: Record<AppState, string> = {
  prejoin: "Check your camera and microphone, then join.",
  connecting: "Joining…",
  connected: "You are in the room.",
  reconnecting: "Connection lost. Reconnecting…",
  room_full: "This room is full.",
  camera_denied: "Camera and microphone are blocked.",
  left: "You have left the room.",
  error: "Something went wrong.",
};

const CAMERA_DENIED_HELP =
  "Telecircle needs your camera and microphone. Click the camera icon in your browser's " +
  "address bar (or open the site settings), allow the camera and microphone for this site, " +
  "then press Try again.";

function byId<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`Page is missing #${id}`);
  return element;
}

/** What a tile shows; `stream` is null when no media is routed to it (yet). */
export interface TileModel {
  participant: ParticipantView;
  isSelf: boolean;
  stream: MediaStream | null;
}

export class View {
  readonly root: HTMLElement;
  readonly roomCode: string;
  readonly nameInput: HTMLInputElement;
  readonly joinForm: HTMLFormElement;
  readonly joinButton: HTMLButtonElement;
  readonly micButton: HTMLButtonElement;
  readonly cameraButton: HTMLButtonElement;
  readonly leaveButton: HTMLButtonElement;
  readonly retryButton: HTMLButtonElement;
  private readonly status: HTMLElement;
  private readonly preview: HTMLVideoElement;
  private readonly prejoin: HTMLElement;
  private readonly call: HTMLElement;
  private readonly tiles: HTMLElement;
  private readonly notice: HTMLElement;
  private readonly noticeTitle: HTMLElement;
  private readonly noticeMessage: HTMLElement;
  private readonly rejoinLink: HTMLAnchorElement;

  constructor() {
    this.root = byId("app", HTMLElement);
    this.roomCode = this.root.dataset["roomCode"] ?? "";
    this.status = byId("status", HTMLElement);
    this.prejoin = byId("prejoin", HTMLElement);
    this.joinForm = byId("join-form", HTMLFormElement);
    this.nameInput = byId("display-name", HTMLInputElement);
    this.joinButton = byId("join-button", HTMLButtonElement);
    this.preview = byId("preview", HTMLVideoElement);
    this.call = byId("call", HTMLElement);
    this.tiles = byId("tiles", HTMLElement);
    this.micButton = byId("mic-toggle", HTMLButtonElement);
    this.cameraButton = byId("camera-toggle", HTMLButtonElement);
    this.leaveButton = byId("leave-button", HTMLButtonElement);
    this.notice = byId("notice", HTMLElement);
    this.noticeTitle = byId("notice-title", HTMLElement);
    this.noticeMessage = byId("notice-message", HTMLElement);
    this.retryButton = byId("retry-button", HTMLButtonElement);
    this.rejoinLink = byId("rejoin-link", HTMLAnchorElement);
  }

  /** Switch the visible screen. `message` (e.g. the server's) replaces the default text. */
  setState(state: AppState, message?: string): void {
    this.root.dataset["state"] = state;
    this.status.textContent = STATUS_TEXT[state];

    this.prejoin.hidden = state !== "prejoin";
    this.call.hidden = !(state === "connecting" || state === "connected" || state === "reconnecting");
    this.call.setAttribute("aria-busy", String(state !== "connected"));
    this.micButton.disabled = state !== "connected";
    this.cameraButton.disabled = state !== "connected";
    this.leaveButton.disabled = state === "connecting";

    const notice = this.noticeFor(state, message);
    this.notice.hidden = notice === null;
    if (notice !== null) {
      this.noticeTitle.textContent = STATUS_TEXT[state];
      this.noticeMessage.textContent = notice.text;
      this.retryButton.hidden = !notice.retry;
      this.rejoinLink.hidden = !notice.rejoin;
      this.rejoinLink.href = window.location.pathname;
    }
  }

  private noticeFor(
    state: AppState,
    message: string | undefined,
  ): { text: string; retry: boolean; rejoin: boolean } | null {
    switch (state) {
      case "camera_denied":
        return { text: message ?? CAMERA_DENIED_HELP, retry: true, rejoin: false };
      case "room_full":
        return { text: message ?? "Please try again later.", retry: true, rejoin: false };
      case "error":
        return { text: message ?? "Please try again.", retry: true, rejoin: false };
      case "left":
        return { text: message ?? "Thank you for joining.", retry: false, rejoin: true };
      default:
        return null;
    }
  }

  setJoinEnabled(enabled: boolean): void {
    this.joinButton.disabled = !enabled;
  }

  showPreview(stream: MediaStream | null): void {
    attachStream(this.preview, stream);
  }

  setMicOn(on: boolean): void {
    this.micButton.setAttribute("aria-pressed", String(!on));
    this.micButton.textContent = on ? "Mute microphone" : "Unmute microphone";
  }

  setCameraOn(on: boolean): void {
    this.cameraButton.setAttribute("aria-pressed", String(!on));
    this.cameraButton.textContent = on ? "Turn camera off" : "Turn camera on";
  }

  /** Make the grid show exactly these tiles, in this order, reusing existing elements. */
  renderTiles(models: TileModel[]): void {
    const existing = new Map<string, HTMLElement>();
    for (const element of Array.from(this.tiles.children)) {
      if (element instanceof HTMLElement && element.dataset["participantId"]) {
        existing.set(element.dataset["participantId"], element);
      }
    }
    const wanted: HTMLElement[] = [];
    for (const model of models) {
      const tile = existing.get(model.participant.id) ?? createTile(model.participant.id);
      existing.delete(model.participant.id);
      updateTile(tile, model);
      wanted.push(tile);
    }
    for (const stale of existing.values()) {
      const video = stale.querySelector("video");
      if (video) video.srcObject = null;
      stale.remove();
    }
    wanted.forEach((tile, index) => {
      if (this.tiles.children[index] !== tile) this.tiles.insertBefore(tile, this.tiles.children[index] ?? null);
    });
    this.tiles.dataset["count"] = String(models.length);
  }

  clearTiles(): void {
    this.renderTiles([]);
  }
}

function createTile(participantId: string): HTMLElement {
  const tile = document.createElement("article");
  tile.className = "tile";
  tile.dataset["participantId"] = participantId;

  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.className = "tile-video";

  const placeholder = document.createElement("div");
  placeholder.className = "tile-placeholder";
  placeholder.setAttribute("aria-hidden", "true");

  const caption = document.createElement("div");
  caption.className = "tile-caption";
  const name = document.createElement("span");
  name.className = "tile-name";
  const micOff = document.createElement("span");
  micOff.className = "indicator indicator-mic-off";
  micOff.textContent = "Mic off";
  const cameraOff = document.createElement("span");
  cameraOff.className = "indicator indicator-camera-off";
  cameraOff.textContent = "Camera off";
  const away = document.createElement("span");
  away.className = "indicator indicator-reconnecting";
  away.textContent = "Reconnecting…";
  caption.append(name, micOff, cameraOff, away);

  tile.append(video, placeholder, caption);
  return tile;
}

function updateTile(tile: HTMLElement, model: TileModel): void {
  const { participant, isSelf, stream } = model;
  tile.dataset["self"] = String(isSelf);
  tile.dataset["audioOn"] = String(participant.audio_on);
  tile.dataset["videoOn"] = String(participant.video_on);
  tile.dataset["connected"] = String(participant.connected);
  tile.setAttribute("aria-label", isSelf ? `${participant.display_name} (you)` : participant.display_name);

  const name = tile.querySelector<HTMLElement>(".tile-name");
  if (name) name.textContent = isSelf ? `${participant.display_name} (you)` : participant.display_name;
  const placeholder = tile.querySelector<HTMLElement>(".tile-placeholder");
  if (placeholder) placeholder.textContent = initial(participant.display_name);
  const micOff = tile.querySelector<HTMLElement>(".indicator-mic-off");
  if (micOff) micOff.hidden = participant.audio_on;
  const cameraOff = tile.querySelector<HTMLElement>(".indicator-camera-off");
  if (cameraOff) cameraOff.hidden = participant.video_on;
  const away = tile.querySelector<HTMLElement>(".indicator-reconnecting");
  if (away) away.hidden = participant.connected;

  const video = tile.querySelector("video");
  if (video) {
    // Our own preview is muted (no echo); remote tiles play their audio.
    video.muted = isSelf;
    attachStream(video, stream);
  }
}

function initial(name: string): string {
  const first = Array.from(name.trim())[0];
  return first ? first.toUpperCase() : "?";
}

function attachStream(video: HTMLVideoElement, stream: MediaStream | null): void {
  if (video.srcObject === stream) return;
  video.srcObject = stream;
  if (stream) {
    // Autoplay may be refused before a user gesture; the Join click normally allows it.
    video.play().catch(() => undefined);
  }
}
