/**
 * The call page's screens: status line, patient's waiting screen, the call, the device
 * help and the notices that end a session.
 *
 * `#app[data-state]` names the current screen (tests and styles read it).
 */
import { byId } from "./dom";
import { TileGrid, attachStream } from "./tiles";

export type Role = "patient" | "clinician";

export type AppState =
  | "joining" // connecting and taking a seat
  | "lobby" // a patient waiting to be let in
  | "connecting" // building the media connections
  | "connected"
  | "reconnecting"
  | "room_full"
  | "closed" // the server ended our seat; the reason is in data-closed-reason
  | "signed_out" // the server does not know us (any more)
  | "left"
  | "error";

const STATUS_TEXT: Record<AppState, string> = {
  joining: "Joining…",
  lobby: "You are in the waiting room.",
  connecting: "Connecting…",
  connected: "You are in the session.",
  reconnecting: "Connection lost. Reconnecting…",
  room_full: "This session is full.",
  closed: "You are no longer in the session.",
  signed_out: "You are not signed in.",
  left: "You have left the session.",
  error: "Something went wrong.",
};

const CLOSED_TITLES: Record<string, string> = {
  seat_moved: "Opened in another window",
  denied: "You were not let in",
  revoked: "Your access has ended",
  removed: "You were removed from the session",
  session_ended: "The session has ended",
  server_shutdown: "The server is restarting",
};

/** A notice's follow-up: reload the page, or follow a link. */
type NoticeAction = { kind: "retry"; text: string } | { kind: "link"; text: string; href: string };

interface Notice {
  title: string;
  text: string;
  action: NoticeAction | null;
  /** Offer the patient's session-rating form (server: web/feedback_pages.py). */
  feedback?: boolean;
}

/** The patient's optional session-rating form, once a session they were in has ended. */
const FEEDBACK_PATH = "/feedback";

/** One of our own switches (microphone or camera) as the user should see it. */
export interface SwitchState {
  /** Our own switch. */
  on: boolean;
  /** Turned off by a clinician: not forwarded, whatever our own switch says. */
  forced: boolean;
  /** Whether switching it on again ourselves releases a clinician's turning off. */
  mayRelease: boolean;
}

export interface StateDetails {
  /** The server's words (replaces the default text). */
  message?: string;
  /** Why the server closed our seat (state "closed"). */
  reason?: string;
  /** We were in the session, not only in the waiting room (state "left"). */
  tookPart?: boolean;
}

export class View {
  readonly root = byId("app", HTMLElement);
  readonly role: Role = this.root.dataset["role"] === "clinician" ? "clinician" : "patient";
  readonly roomCode = this.root.dataset["roomCode"] ?? "";
  readonly micButton = byId("mic-toggle", HTMLButtonElement);
  readonly cameraButton = byId("camera-toggle", HTMLButtonElement);
  readonly leaveButton = byId("leave-button", HTMLButtonElement);
  readonly retryButton = byId("retry-button", HTMLButtonElement);
  readonly deviceRetryButton: HTMLButtonElement;
  /** Leaving from the waiting room (the call's own Leave button is hidden there). */
  readonly lobbyLeaveButton: HTMLButtonElement;
  /** The notice's link to the patient's feedback form (beside its other action). */
  private readonly feedbackLink: HTMLAnchorElement;
  readonly tiles = new TileGrid(byId("tiles", HTMLElement));
  private readonly status = byId("status", HTMLElement);
  private readonly lobbyWait = byId("lobby-wait", HTMLElement);
  private readonly preview = byId("preview", HTMLVideoElement);
  private readonly call = byId("call", HTMLElement);
  private readonly notice = byId("notice", HTMLElement);
  private readonly noticeTitle = byId("notice-title", HTMLElement);
  private readonly noticeMessage = byId("notice-message", HTMLElement);
  private readonly noticeLink = byId("rejoin-link", HTMLAnchorElement);
  /** Why a switch the facilitator turned off cannot be turned on (the policy). */
  private readonly mediaHint = byId("media-hint", HTMLElement);
  private readonly deviceHelp: HTMLElement;
  private readonly deviceHelpText: HTMLElement;
  private hasAudio = true;
  private hasVideo = true;
  private mic: SwitchState = { on: true, forced: false, mayRelease: true };
  private camera: SwitchState = { on: true, forced: false, mayRelease: true };
  private state: AppState = "joining";
  private waiting = false;

  constructor() {
    // Device problems do not stop a session (one may join without camera or
    // microphone), so their help sits beside the call rather than in the notice.
    this.deviceHelp = document.createElement("section");
    this.deviceHelp.id = "device-help";
    this.deviceHelp.setAttribute("role", "alert");
    this.deviceHelp.hidden = true;
    this.deviceHelpText = document.createElement("p");
    this.deviceHelpText.id = "device-help-message";
    this.deviceRetryButton = document.createElement("button");
    this.deviceRetryButton.id = "device-retry";
    this.deviceRetryButton.type = "button";
    this.deviceRetryButton.textContent = "Try again";
    this.deviceHelp.append(this.deviceHelpText, this.deviceRetryButton);
    this.root.querySelector(".room-header")?.after(this.deviceHelp);

    this.lobbyLeaveButton = document.createElement("button");
    this.lobbyLeaveButton.id = "lobby-leave-button";
    this.lobbyLeaveButton.type = "button";
    this.lobbyLeaveButton.className = "secondary";
    this.lobbyLeaveButton.textContent = "Leave the waiting room";
    this.lobbyWait.append(this.lobbyLeaveButton);

    this.feedbackLink = document.createElement("a");
    this.feedbackLink.id = "feedback-link";
    this.feedbackLink.className = "button-link";
    this.feedbackLink.href = FEEDBACK_PATH;
    this.feedbackLink.textContent = "Tell your therapists how it went";
    this.feedbackLink.hidden = true;
    this.noticeLink.after(this.feedbackLink);
  }

  /** Switch the visible screen. */
  setState(state: AppState, details: StateDetails = {}): void {
    this.state = state;
    this.root.dataset["state"] = state;
    if (details.reason !== undefined) this.root.dataset["closedReason"] = details.reason;
    this.status.textContent = STATUS_TEXT[state];

    // A patient who loses the connection while waiting keeps the waiting screen.
    const waiting = state === "lobby" || (state === "reconnecting" && this.waiting);
    const inCall =
      !waiting && (state === "connecting" || state === "connected" || state === "reconnecting");
    this.lobbyWait.hidden = !waiting;
    this.call.hidden = !inCall;
    this.call.setAttribute("aria-busy", String(state !== "connected"));
    this.leaveButton.disabled = !(inCall || waiting);
    this.updateToggles();

    const notice = this.noticeFor(state, details);
    this.notice.hidden = notice === null;
    if (notice !== null) {
      this.noticeTitle.textContent = notice.title;
      this.noticeMessage.textContent = notice.text;
      const action = notice.action;
      this.retryButton.hidden = action?.kind !== "retry";
      this.noticeLink.hidden = action?.kind !== "link";
      if (action?.kind === "retry") this.retryButton.textContent = action.text;
      if (action?.kind === "link") {
        this.noticeLink.textContent = action.text;
        this.noticeLink.href = action.href;
      }
    }
    this.feedbackLink.hidden = !(notice?.feedback ?? false);
  }

  private noticeFor(state: AppState, details: StateDetails): Notice | null {
    const here = window.location.pathname;
    const message = details.message;
    switch (state) {
      case "room_full":
        return {
          title: STATUS_TEXT.room_full,
          text: message ?? "Please try again later.",
          action: { kind: "retry", text: "Try again" },
        };
      case "closed": {
        const reason = details.reason ?? "";
        const action: NoticeAction | null =
          reason === "seat_moved"
            ? { kind: "link", text: "Use this window instead", href: here }
            : reason === "server_shutdown"
              ? { kind: "retry", text: "Try again" }
              : null;
        return {
          title: CLOSED_TITLES[reason] ?? STATUS_TEXT.closed,
          text: message ?? "The session has ended for you.",
          action,
          // Not for someone removed or refused: the form is for those who took part.
          feedback: reason === "session_ended" && this.role === "patient",
        };
      }
      case "signed_out":
        return this.role === "clinician"
          ? {
              title: "Please sign in",
              text: `${message ?? "Your sign-in has ended."} Sign in to return to the session.`,
              action: {
                kind: "link",
                text: "Sign in",
                href: `/login?next=${encodeURIComponent(here)}`,
              },
            }
          : {
              title: "Your link cannot be used here",
              text:
                "Please open the invite link your therapist sent you again. If it no " +
                "longer works, ask your therapist for a new one.",
              action: null,
            };
      case "left": {
        // Someone who left early took part too: the form opens when the session ends.
        const feedback = this.role === "patient" && details.tookPart === true;
        return {
          title: STATUS_TEXT.left,
          text:
            message ??
            (feedback
              ? "Thank you for joining. Once the session is over, you can tell your " +
                "therapists how it went."
              : "Thank you for joining."),
          action: { kind: "link", text: "Rejoin the session", href: here },
          feedback,
        };
      }
      case "error":
        return {
          title: STATUS_TEXT.error,
          text: message ?? "Please try again.",
          action: { kind: "retry", text: "Try again" },
        };
      default:
        return null;
    }
  }

  /** Whether our seat is in the waiting room (shown again while reconnecting). */
  setWaiting(waiting: boolean): void {
    this.waiting = waiting;
  }

  /** The patient's own picture on the waiting screen. */
  showPreview(stream: MediaStream | null): void {
    attachStream(this.preview, stream);
  }

  /** Explain a camera/microphone problem (null: none, hide the help). */
  setDeviceHelp(text: string | null): void {
    this.deviceHelp.hidden = text === null;
    this.deviceHelpText.textContent = text ?? "";
    this.root.dataset["devices"] = text === null ? "ok" : "problem";
  }

  /** Which devices we have: a missing one cannot be switched on. */
  setDevices(hasAudio: boolean, hasVideo: boolean): void {
    this.hasAudio = hasAudio;
    this.hasVideo = hasVideo;
    this.updateToggles();
  }

  /** Show the microphone switch: our own choice, or the facilitator's mute. */
  setMic(state: SwitchState): void {
    this.mic = state;
    this.micButton.setAttribute("aria-pressed", String(!state.on || state.forced));
    this.micButton.textContent = state.forced
      ? state.mayRelease
        ? "Muted by the facilitator: unmute"
        : "Muted by the facilitator"
      : state.on
        ? "Mute microphone"
        : "Unmute microphone";
    this.updateToggles();
  }

  /** Show the camera switch: our own choice, or the facilitator's camera-off. */
  setCamera(state: SwitchState): void {
    this.camera = state;
    this.cameraButton.setAttribute("aria-pressed", String(!state.on || state.forced));
    this.cameraButton.textContent = state.forced
      ? state.mayRelease
        ? "Camera off by the facilitator: turn on"
        : "Camera turned off by the facilitator"
      : state.on
        ? "Turn camera off"
        : "Turn camera on";
    this.updateToggles();
  }

  private updateToggles(): void {
    const connected = this.state === "connected";
    const micLocked = this.mic.forced && !this.mic.mayRelease;
    const cameraLocked = this.camera.forced && !this.camera.mayRelease;
    this.micButton.disabled = !connected || !this.hasAudio || micLocked;
    this.cameraButton.disabled = !connected || !this.hasVideo || cameraLocked;
    // A switch the facilitator turned off says what the user may do, next to it (and to
    // screen readers, through the description and the status role).
    const hints: string[] = [];
    if (micLocked) hints.push("Raise your hand to ask to speak.");
    else if (this.mic.forced) hints.push("The facilitator muted you; you may unmute yourself.");
    if (cameraLocked) hints.push("Raise your hand to ask to turn your camera back on.");
    else if (this.camera.forced) {
      hints.push("The facilitator turned your camera off; you may turn it back on.");
    }
    this.mediaHint.textContent = hints.join(" ");
    this.mediaHint.hidden = hints.length === 0 || !connected;
    for (const [button, forced] of [
      [this.micButton, this.mic.forced],
      [this.cameraButton, this.camera.forced],
    ] as const) {
      if (forced) button.setAttribute("aria-describedby", "media-hint");
      else button.removeAttribute("aria-describedby");
    }
  }
}
