/**
 * The grid of video tiles, one per participant past the lobby, each saying what is off
 * (by the participant or by a facilitator), whose hand is up, who is reconnecting, whose
 * video the server paused for our weak connection, and
 * who is speaking: a ring around the picture, and "speaking" in the tile's accessible
 * name (a visually hidden part of the caption; not a live region: nothing is read out
 * each time someone starts or stops talking).
 *
 * Display names are user input: they only ever go through textContent. A decorator
 * (the facilitator's per-tile controls) may add to each tile after it is updated.
 */
import type { ParticipantView } from "./generated/protocol";

/** What a tile shows; `stream` is null when no media is routed to it (yet). */
export interface TileModel {
  participant: ParticipantView;
  isSelf: boolean;
  stream: MediaStream | null;
  /** Heard speaking just now (never while muted). */
  speaking: boolean;
  /** The server paused this video for our weak connection (audio goes on). */
  videoPaused: boolean;
}

/** Adds to a tile after each update (it owns what it adds, e.g. `.tile-controls`). */
export type TileDecorator = (tile: HTMLElement, model: TileModel) => void;

export class TileGrid {
  private decorator: TileDecorator | null = null;

  constructor(private readonly grid: HTMLElement) {}

  /** Run `decorator` on every tile at every render from now on. */
  setDecorator(decorator: TileDecorator): void {
    this.decorator = decorator;
  }

  /** Make the grid show exactly these tiles, in this order, reusing existing elements. */
  render(models: TileModel[]): void {
    const existing = new Map<string, HTMLElement>();
    for (const element of Array.from(this.grid.children)) {
      if (element instanceof HTMLElement && element.dataset["participantId"]) {
        existing.set(element.dataset["participantId"], element);
      }
    }
    const wanted: HTMLElement[] = [];
    for (const model of models) {
      const tile = existing.get(model.participant.id) ?? createTile(model.participant.id);
      existing.delete(model.participant.id);
      updateTile(tile, model);
      this.decorator?.(tile, model);
      wanted.push(tile);
    }
    for (const stale of existing.values()) {
      const video = stale.querySelector("video");
      if (video) video.srcObject = null;
      stale.remove();
    }
    wanted.forEach((tile, index) => {
      const current = this.grid.children[index] ?? null;
      if (current !== tile) this.grid.insertBefore(tile, current);
    });
    this.grid.dataset["count"] = String(models.length);
  }

  clear(): void {
    this.render([]);
  }
}

function span(className: string, text = ""): HTMLSpanElement {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

/** A tile's own element ids (the tile is named by its name and "speaking" spans). */
function tileIds(participantId: string): { name: string; speaking: string } {
  return { name: `tile-${participantId}-name`, speaking: `tile-${participantId}-speaking` };
}

function createTile(participantId: string): HTMLElement {
  const tile = document.createElement("article");
  tile.className = "tile";
  tile.dataset["participantId"] = participantId;
  const ids = tileIds(participantId);
  tile.setAttribute("aria-labelledby", `${ids.name} ${ids.speaking}`);

  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.className = "tile-video";

  const placeholder = document.createElement("div");
  placeholder.className = "tile-placeholder";
  placeholder.setAttribute("aria-hidden", "true");

  const caption = document.createElement("div");
  caption.className = "tile-caption";
  const name = span("tile-name");
  name.id = ids.name;
  // Empty while silent; ", speaking" while speaking (part of the tile's name).
  const speaking = span("tile-speaking visually-hidden");
  speaking.id = ids.speaking;
  caption.append(
    name,
    speaking,
    span("indicator indicator-clinician", "Clinician"),
    span("indicator indicator-hand", "Hand raised"),
    span("indicator indicator-mic-off", "Mic off"),
    span("indicator indicator-forced-mute", "Muted by the facilitator"),
    span("indicator indicator-camera-off", "Camera off"),
    span("indicator indicator-forced-camera", "Camera off by the facilitator"),
    span("indicator indicator-reconnecting", "Reconnecting…"),
    span("indicator indicator-weak-video", "Video paused — weak connection"),
  );

  // The picture and its caption; controls (if any) go below it, not over the video.
  const media = document.createElement("div");
  media.className = "tile-media";
  media.append(video, placeholder, caption);
  tile.append(media);
  return tile;
}

function setHidden(tile: HTMLElement, selector: string, hidden: boolean): void {
  const element = tile.querySelector<HTMLElement>(selector);
  if (element) element.hidden = hidden;
}

function updateTile(tile: HTMLElement, model: TileModel): void {
  const { participant, isSelf, stream } = model;
  const label = isSelf ? `${participant.display_name} (you)` : participant.display_name;
  tile.dataset["self"] = String(isSelf);
  tile.dataset["role"] = participant.role;
  tile.dataset["audioOn"] = String(participant.audio_on);
  tile.dataset["videoOn"] = String(participant.video_on);
  tile.dataset["connected"] = String(participant.connected);
  tile.dataset["audioForcedOff"] = String(participant.audio_forced_off);
  tile.dataset["videoForcedOff"] = String(participant.video_forced_off);
  tile.dataset["handRaised"] = String(participant.hand_raised);
  tile.dataset["speaking"] = String(model.speaking);
  tile.dataset["videoPaused"] = String(model.videoPaused);

  const name = tile.querySelector<HTMLElement>(".tile-name");
  if (name) name.textContent = label;
  const speaking = tile.querySelector<HTMLElement>(".tile-speaking");
  const speakingText = model.speaking ? ", speaking" : "";
  if (speaking && speaking.textContent !== speakingText) speaking.textContent = speakingText;
  const placeholder = tile.querySelector<HTMLElement>(".tile-placeholder");
  if (placeholder) placeholder.textContent = initial(participant.display_name);
  setHidden(tile, ".indicator-clinician", participant.role !== "clinician");
  setHidden(tile, ".indicator-hand", !participant.hand_raised);
  // A facilitator's turning off is what counts (and says more) when both apply.
  setHidden(tile, ".indicator-mic-off", participant.audio_on || participant.audio_forced_off);
  setHidden(tile, ".indicator-forced-mute", !participant.audio_forced_off);
  setHidden(tile, ".indicator-camera-off", participant.video_on || participant.video_forced_off);
  setHidden(tile, ".indicator-forced-camera", !participant.video_forced_off);
  setHidden(tile, ".indicator-reconnecting", participant.connected);
  setHidden(tile, ".indicator-weak-video", !model.videoPaused);

  const video = tile.querySelector("video");
  if (video) {
    // Our own picture is muted (no echo); remote tiles play their audio.
    video.muted = isSelf;
    attachStream(video, stream);
  }
}

function initial(name: string): string {
  const first = Array.from(name.trim())[0];
  return first ? first.toUpperCase() : "?";
}

/** Show `stream` in `video` (null: nothing). */
export function attachStream(video: HTMLVideoElement, stream: MediaStream | null): void {
  if (video.srcObject === stream) return;
  video.srcObject = stream;
  if (stream) {
    // Autoplay may be refused before a user gesture; muted previews always play.
    video.play().catch(() => undefined);
  }
}
