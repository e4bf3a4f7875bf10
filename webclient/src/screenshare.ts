/**
 * Sharing one's screen (clinicians only): the "Share screen" / "Stop sharing" button and
 * the "You are sharing your screen" indicator (the sharer never sees their own screen
 * large).
 *
 * The browser asks which screen, window or tab to share (getDisplayMedia). The picture
 * goes out on the publish connection's screen m-line (replaceTrack: no renegotiation),
 * then the server is told (`share_screen`) and shows it to everyone in our place. One
 * person shares at a time: the server refuses a second sharer and its words are shown
 * here. Stopping — with this button, or with the browser's own "Stop sharing" (the track
 * ends) — tells the server and releases the capture. A cancelled or failed choice says so
 * and leaves everything as it was.
 */
import { byId, errorText } from "./dom";

/** What sharing asks the session to do; each rejects with a user-readable error. */
export interface ScreenShareActions {
  /** Send `track` on the current publish connection's screen m-line (null: nothing). */
  send(track: MediaStreamTrack | null): Promise<void>;
  /** Tell the server that we share (or no longer share) our screen. */
  announce(on: boolean): Promise<void>;
}

/** Why the browser gave us no screen, in words (nothing is shared then). */
export function captureProblem(error: unknown): string {
  const name = error instanceof DOMException ? error.name : "";
  switch (name) {
    case "NotAllowedError":
      return "Screen sharing was cancelled or not allowed: nothing is shared.";
    case "NotFoundError":
      return "No screen, window or tab could be found to share: nothing is shared.";
    case "NotReadableError":
    case "AbortError":
      return "Your screen could not be captured (another program may be using it): nothing is shared.";
    default:
      return `Your screen could not be shared (${errorText(error)}): nothing is shared.`;
  }
}

export class ScreenShare {
  private readonly button = byId("screen-toggle", HTMLButtonElement);
  private readonly indicator = byId("screen-self", HTMLElement);
  private readonly error = byId("screen-error", HTMLElement);
  /** The screen we capture, from the browser's choice until we stop (null: none). */
  private track: MediaStreamTrack | null = null;
  /** Starting, stopping or setting the server right: one at a time. */
  private busy = false;
  private enabled = false;

  constructor(private readonly actions: ScreenShareActions) {
    this.button.hidden = false;
    this.button.addEventListener("click", () => {
      if (this.track === null) void this.start();
      else void this.stop();
    });
    this.render();
  }

  /** The screen to send on a new publish connection (null: we do not share). */
  get screenTrack(): MediaStreamTrack | null {
    return this.track;
  }

  /** The button works only while we are connected in the session. */
  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.render();
  }

  /**
   * The server's view of our sharing (our roster entry), set right where it differs
   * from this page's: a page reloaded while sharing has no capture any more (tell the
   * server), and a seat taken afresh does not share (release the capture).
   */
  serverSays(on: boolean): void {
    if (this.busy) return;
    if (on && this.track === null) {
      void this.run(async () => {
        await this.actions.announce(false);
      });
    } else if (!on && this.track !== null) {
      void this.run(async () => {
        await this.release();
        this.showError("Screen sharing has stopped.");
      });
    }
  }

  /** Out of the session: release the capture (the server ends our seat's sharing). */
  reset(): void {
    const track = this.track;
    this.track = null;
    track?.stop();
    this.error.hidden = true;
    this.render();
  }

  private async start(): Promise<void> {
    if (this.busy) return;
    this.error.hidden = true;
    // Asked straight from the click: browsers only offer the choice in a user's gesture.
    const captured = captureScreen();
    await this.run(async () => {
      let stream: MediaStream;
      try {
        stream = await captured;
      } catch (error) {
        this.showError(captureProblem(error));
        return;
      }
      const track = stream.getVideoTracks()[0];
      for (const other of stream.getTracks()) if (other !== track) other.stop();
      if (track === undefined) {
        this.showError("The browser gave no picture of the screen: nothing is shared.");
        return;
      }
      track.contentHint = "detail"; // text and slides: keep them sharp
      try {
        await this.actions.send(track);
        await this.actions.announce(true);
      } catch (error) {
        // Refused (e.g. someone else shares): the server's words, and nothing is sent.
        track.stop();
        await this.actions.send(null).catch(() => undefined);
        this.showError(errorText(error));
        return;
      }
      this.track = track;
      // The browser's own "Stop sharing" (or the shared window closing) ends the track.
      track.addEventListener("ended", () => {
        if (this.track === track) void this.stop();
      });
    });
  }

  private async stop(): Promise<void> {
    if (this.busy || this.track === null) return;
    this.error.hidden = true;
    await this.run(async () => {
      try {
        await this.actions.announce(false);
      } catch (error) {
        // Disconnected, say: the server's roster will show the truth (see serverSays).
        console.warn("share_screen off failed", error);
      }
      await this.release();
    });
  }

  /** Stop sending and capturing the screen. */
  private async release(): Promise<void> {
    const track = this.track;
    this.track = null;
    await this.actions.send(null).catch(() => undefined);
    track?.stop();
  }

  private async run(work: () => Promise<void>): Promise<void> {
    this.busy = true;
    this.render();
    try {
      await work();
    } catch (error) {
      this.showError(errorText(error));
    } finally {
      this.busy = false;
      this.render();
    }
  }

  private showError(text: string): void {
    this.error.textContent = text;
    this.error.hidden = false;
  }

  private render(): void {
    const sharing = this.track !== null;
    this.button.textContent = sharing ? "Stop sharing" : "Share screen";
    this.button.setAttribute("aria-pressed", String(sharing));
    this.button.disabled = !this.enabled || this.busy;
    this.indicator.hidden = !sharing;
    this.button.dataset["sharing"] = String(sharing);
  }
}

/** The browser's screen picker. */
function captureScreen(): Promise<MediaStream> {
  const devices = navigator.mediaDevices as MediaDevices | undefined;
  if (typeof devices?.getDisplayMedia !== "function") {
    return Promise.reject(new Error("this browser cannot share a screen"));
  }
  return devices.getDisplayMedia({ video: true, audio: false });
}
