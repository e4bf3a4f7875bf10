/**
 * Camera and microphone: the user's chosen devices, asking the browser for them, and
 * what to tell the user when that fails.
 *
 * The pre-join page stores the chosen device ids; the call page asks for the same
 * devices. A chosen device that is gone is not an error: the constraints are `ideal`,
 * so the browser falls back to its default device.
 */

export type DeviceKind = "camera" | "microphone";

/** Why we have less than a camera and a microphone. */
export type DeviceProblem = "denied" | "not_found" | "in_use" | "unsupported" | "failed";

export interface LocalMedia {
  /** What we got: zero, one or two tracks. */
  stream: MediaStream;
  /** Why a camera or microphone is missing (null: we have both). */
  problem: DeviceProblem | null;
}

const STORAGE_KEYS: Record<DeviceKind, string> = {
  camera: "telecircle.camera",
  microphone: "telecircle.microphone",
};

const VIDEO_SHAPE: MediaTrackConstraints = {
  width: { ideal: 640 },
  height: { ideal: 360 },
  frameRate: { ideal: 30 },
};

/** The device id the user chose for `kind`, if any (localStorage may be unavailable). */
export function chosenDevice(kind: DeviceKind): string | null {
  try {
    return window.localStorage.getItem(STORAGE_KEYS[kind]);
  } catch {
    return null;
  }
}

export function rememberDevice(kind: DeviceKind, deviceId: string): void {
  try {
    if (deviceId) window.localStorage.setItem(STORAGE_KEYS[kind], deviceId);
  } catch {
    // Private browsing may refuse storage: the default device is used next time.
  }
}

/** Constraints for `kind`: the chosen device if we know one. `exact` when the user has
 * just picked it (a silent fallback would be confusing), `ideal` otherwise. */
export function constraintsFor(kind: DeviceKind, exact = false): MediaTrackConstraints {
  const deviceId = chosenDevice(kind);
  const base = kind === "camera" ? { ...VIDEO_SHAPE } : {};
  if (!deviceId) return base;
  return { ...base, deviceId: exact ? { exact: deviceId } : { ideal: deviceId } };
}

export function problemOf(error: unknown): DeviceProblem {
  const name = error instanceof DOMException ? error.name : "";
  if (name === "NotAllowedError" || name === "SecurityError") return "denied";
  if (name === "NotFoundError" || name === "OverconstrainedError") return "not_found";
  if (name === "NotReadableError" || name === "AbortError") return "in_use";
  return "failed";
}

async function ask(audio: boolean, video: boolean): Promise<MediaStream> {
  return navigator.mediaDevices.getUserMedia({
    audio: audio ? constraintsFor("microphone") : false,
    video: video ? constraintsFor("camera") : false,
  });
}

/** Whether the browser has already been granted `kind` (false when it cannot say). */
async function granted(kind: DeviceKind): Promise<boolean> {
  try {
    const name = (kind === "camera" ? "camera" : "microphone") as PermissionName;
    return (await navigator.permissions.query({ name })).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Camera and microphone, or as much of them as we can get. Never rejects.
 *
 * Both are asked for at once (one permission prompt). If that fails, each is tried on
 * its own — after a refusal only a kind the browser already allows, so the user is not
 * asked again about what they just refused.
 */
export async function getLocalMedia(): Promise<LocalMedia> {
  if (!navigator.mediaDevices?.getUserMedia) {
    return { stream: new MediaStream(), problem: "unsupported" };
  }
  try {
    return { stream: await ask(true, true), problem: null };
  } catch (error) {
    const problem = problemOf(error);
    const kinds: DeviceKind[] = [];
    for (const kind of ["microphone", "camera"] as const) {
      if (problem !== "denied" || (await granted(kind))) kinds.push(kind);
    }
    for (const kind of kinds) {
      try {
        return { stream: await ask(kind === "microphone", kind === "camera"), problem };
      } catch {
        // the other kind may still work
      }
    }
    return { stream: new MediaStream(), problem };
  }
}

export function stopStream(stream: MediaStream | null): void {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

const BLOCKED_HELP =
  "Your browser is blocking the camera and microphone for this site. To allow them, " +
  "click the camera icon (or the padlock) in the address bar, allow the camera and " +
  "microphone for this site, then press Try again.";

/** What to tell the user about a device problem, given what we did get. */
export function explainProblem(problem: DeviceProblem, stream: MediaStream): string {
  const hasAudio = stream.getAudioTracks().length > 0;
  const hasVideo = stream.getVideoTracks().length > 0;
  const missing =
    hasAudio && !hasVideo
      ? "Only your microphone is working: the group will hear you but not see you."
      : hasVideo && !hasAudio
        ? "Only your camera is working: the group will see you but not hear you."
        : "The group will neither see nor hear you, but you can still see and hear them.";
  switch (problem) {
    case "denied":
      return `${BLOCKED_HELP} ${missing}`;
    case "not_found":
      return `No camera or microphone was found. Connect one and press Try again. ${missing}`;
    case "in_use":
      return (
        "Your camera or microphone is in use by another application. Close it and press " +
        `Try again. ${missing}`
      );
    case "unsupported":
      return (
        "This browser cannot use a camera or microphone here (a secure https:// address " +
        `and a current browser are needed). ${missing}`
      );
    case "failed":
      return `Your camera or microphone could not be started. Press Try again. ${missing}`;
  }
}
