/**
 * The facilitator's controls on each patient's tile: Mute / Let speak, Camera off /
 * Let camera on, Lower hand (while raised), Send to waiting room, and Remove (with a
 * confirm step that can also withdraw the patient's link).
 *
 * Every control is a request to the server, which enforces it (a muted participant's
 * audio is not forwarded); the tile shows the result when the roster comes back, not
 * before. The controls are kept per tile across renders, so an open Remove confirmation
 * survives the roster updates that arrive meanwhile. Names only reach attributes and
 * textContent.
 */
import type { ParticipantView } from "./generated/protocol";
import { actionRunner, button, make } from "./dom";
import type { TileModel } from "./tiles";

/** What the controls ask the session to do; each rejects with a user-readable error. */
export interface TileActions {
  /** true: turn off and keep off; false: let them turn it on again; absent: as it is. */
  forceMedia(
    participantId: string,
    change: { audio_off?: boolean; video_off?: boolean },
  ): Promise<void>;
  lowerHand(participantId: string): Promise<void>;
  moveToLobby(participantId: string): Promise<void>;
  remove(participantId: string, revoke: boolean): Promise<void>;
}

/** The parts of one tile's controls that change with the participant's state. */
interface Controls {
  root: HTMLElement;
  audio: HTMLButtonElement;
  video: HTMLButtonElement;
  lowerHand: HTMLButtonElement;
  toLobby: HTMLButtonElement;
  remove: HTMLButtonElement;
  participant: ParticipantView;
}

export class FacilitatorTileControls {
  /** tile -> its controls (forgotten with the tile). */
  private readonly controls = new WeakMap<HTMLElement, Controls>();

  constructor(private readonly actions: TileActions) {}

  /** A TileDecorator: controls on other people's patient tiles, none elsewhere. */
  readonly decorate = (tile: HTMLElement, model: TileModel): void => {
    const { participant, isSelf } = model;
    let controls = this.controls.get(tile);
    if (isSelf || participant.role !== "patient") {
      controls?.root.remove();
      this.controls.delete(tile);
      return;
    }
    if (controls === undefined) {
      controls = this.create(participant);
      this.controls.set(tile, controls);
      tile.append(controls.root);
    }
    controls.participant = participant;
    fill(controls);
  };

  private create(participant: ParticipantView): Controls {
    const id = participant.id;
    const root = make("div", "tile-controls");
    root.setAttribute("role", "group");
    const audio = button("tile-force-audio secondary", "");
    const video = button("tile-force-video secondary", "");
    const lowerHand = button("tile-lower-hand secondary", "Lower hand");
    const toLobby = button("tile-to-lobby secondary", "Send to waiting room");
    const remove = button("tile-remove danger", "Remove");

    // Removing asks first, in place; withdrawing the link is a separate, explicit choice.
    const confirm = make("div", "tile-remove-form");
    confirm.hidden = true;
    const revokeId = `revoke-${id}`;
    const revoke = make("input", "tile-remove-revoke");
    revoke.type = "checkbox";
    revoke.id = revokeId;
    const revokeLabel = make("label", "check", "Also withdraw their link");
    revokeLabel.htmlFor = revokeId;
    revokeLabel.prepend(revoke);
    const confirmButton = button("tile-remove-confirm danger", "Remove from session");
    const cancel = button("tile-remove-cancel secondary", "Cancel");
    const confirmButtons = make("div", "tile-actions");
    confirmButtons.append(confirmButton, cancel);
    confirm.append(revokeLabel, confirmButtons);

    const buttons = make("div", "tile-actions");
    buttons.append(audio, video, lowerHand, toLobby, remove);
    const problem = make("p", "tile-controls-error error");
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    root.append(buttons, confirm, problem);

    const controls: Controls = {
      root,
      audio,
      video,
      lowerHand,
      toLobby,
      remove,
      participant,
    };
    const busy = actionRunner(root, problem);
    audio.addEventListener("click", () => {
      const off = !controls.participant.audio_forced_off;
      void busy(() => this.actions.forceMedia(id, { audio_off: off }));
    });
    video.addEventListener("click", () => {
      const off = !controls.participant.video_forced_off;
      void busy(() => this.actions.forceMedia(id, { video_off: off }));
    });
    lowerHand.addEventListener("click", () => void busy(() => this.actions.lowerHand(id)));
    toLobby.addEventListener("click", () => void busy(() => this.actions.moveToLobby(id)));
    remove.addEventListener("click", () => {
      confirm.hidden = false;
      buttons.hidden = true;
      confirmButton.focus();
    });
    cancel.addEventListener("click", () => {
      confirm.hidden = true;
      buttons.hidden = false;
      revoke.checked = false;
      remove.focus();
    });
    confirmButton.addEventListener(
      "click",
      () => void busy(() => this.actions.remove(id, revoke.checked)),
    );
    return controls;
  }
}

function fill(controls: Controls): void {
  const { participant: p, audio, video, lowerHand, toLobby, remove, root } = controls;
  const name = p.display_name;
  root.setAttribute("aria-label", `Controls for ${name}`);
  // Pressed = the facilitator holds it off; the label says what a press will do.
  audio.textContent = p.audio_forced_off ? "Let speak" : "Mute";
  audio.setAttribute("aria-pressed", String(p.audio_forced_off));
  audio.setAttribute("aria-label", `${audio.textContent}: ${name}`);
  video.textContent = p.video_forced_off ? "Let camera on" : "Camera off";
  video.setAttribute("aria-pressed", String(p.video_forced_off));
  video.setAttribute("aria-label", `${video.textContent}: ${name}`);
  lowerHand.hidden = !p.hand_raised;
  // Visible words first, then whose tile (names go into attributes, never markup).
  for (const b of [lowerHand, toLobby, remove]) {
    b.setAttribute("aria-label", `${b.textContent ?? ""}: ${name}`);
  }
}
