/**
 * The shared screen, shown large above the grid on the page of everyone in the sharer's
 * place ("Alice is sharing their screen"), hidden when sharing stops.
 *
 * Who shares is the server's (the roster's `screen_on`); where we are is too (the
 * `activity` event): in pair work a screen is seen only in its sharer's pair or in the
 * plenary, never on hold. The picture comes on the subscribe connection's screen m-line,
 * which the server feeds with the one sharer we may see. The sharer's own page shows an
 * indicator instead (screenshare.ts). Names only ever go through textContent.
 */
import type { ActivityEvent, ParticipantView } from "./generated/protocol";
import { byId } from "./dom";

/** Someone else sharing a screen in our place (null: nobody we may see). */
export function sharerInPlace(
  roster: ParticipantView[],
  activity: ActivityEvent | null,
  selfId: string,
): ParticipantView | null {
  // Before our place is known, the server's routing decides: show whoever shares.
  const withUs = activity === null ? null : new Set(activity.with_ids);
  return (
    roster.find((p) => p.screen_on && p.id !== selfId && (withUs === null || withUs.has(p.id))) ??
    null
  );
}

export class ScreenStage {
  private readonly app = byId("app", HTMLElement);
  private readonly stage = byId("screen-stage", HTMLElement);
  private readonly label = byId("screen-stage-label", HTMLElement);
  private readonly video = byId("screen-video", HTMLVideoElement);
  private sharerId: string | null = null;
  private stream: MediaStream | null = null;

  constructor() {
    // Until the first frame of this share is decoded the stage says it is coming.
    this.video.addEventListener("loadeddata", () => this.setPicture(true));
    this.show(null, null);
  }

  /** Show `sharer`'s screen from `stream` (null sharer: hide the stage). */
  show(sharer: ParticipantView | null, stream: MediaStream | null): void {
    const id = sharer?.id ?? null;
    const source = id === null ? null : stream;
    if (id !== this.sharerId || source !== this.stream) {
      // A new share (or a new connection): start from a blank picture, never from the
      // last frame of the previous one.
      this.sharerId = id;
      this.stream = source;
      this.video.srcObject = null;
      this.setPicture(false);
      if (source !== null) {
        this.video.srcObject = source;
        this.video.play().catch(() => undefined);
      }
    }
    this.stage.hidden = id === null;
    this.label.textContent =
      sharer === null ? "" : `${sharer.display_name} is sharing their screen`;
    this.app.dataset["screen"] = id === null ? "none" : "shown";
  }

  private setPicture(shown: boolean): void {
    this.stage.dataset["picture"] = shown ? "shown" : "waiting";
  }
}
