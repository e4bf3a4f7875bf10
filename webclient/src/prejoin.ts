/**
 * The pre-join page (`/join`): camera preview, camera and microphone choice, a
 * microphone level meter. The form itself is the server's and posts normally; nothing
 * here stops it being sent — a patient without a working camera or microphone may still
 * join (and will be told so).
 *
 * The chosen devices are remembered in this browser for the call page.
 */
import {
  constraintsFor,
  type DeviceKind,
  explainProblem,
  getLocalMedia,
  problemOf,
  rememberDevice,
  stopStream,
} from "./devices";
import { LevelMeter } from "./level";
import { attachStream } from "./tiles";

function byId<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`Page is missing #${id}`);
  return element;
}

const TRACK_KIND: Record<DeviceKind, "audio" | "video"> = { camera: "video", microphone: "audio" };
const MEDIA_KIND: Record<DeviceKind, MediaDeviceKind> = {
  camera: "videoinput",
  microphone: "audioinput",
};
const NONE_FOUND: Record<DeviceKind, string> = {
  camera: "No camera found",
  microphone: "No microphone found",
};
const BLOCKED: Record<DeviceKind, string> = {
  camera: "Camera not allowed",
  microphone: "Microphone not allowed",
};

class PreJoin {
  private readonly preview = byId("preview", HTMLVideoElement);
  private readonly status = byId("preview-status", HTMLElement);
  private readonly section: HTMLElement;
  private readonly selects: Record<DeviceKind, HTMLSelectElement> = {
    camera: byId("camera-select", HTMLSelectElement),
    microphone: byId("microphone-select", HTMLSelectElement),
  };
  private readonly fields: Record<DeviceKind, HTMLInputElement> = {
    camera: byId("camera-id", HTMLInputElement),
    microphone: byId("microphone-id", HTMLInputElement),
  };
  private readonly meter = new LevelMeter(byId("mic-level", HTMLMeterElement));
  private readonly retry: HTMLButtonElement;
  private stream = new MediaStream();

  constructor() {
    this.section = this.preview.closest("section") ?? document.body;
    this.retry = document.createElement("button");
    this.retry.type = "button";
    this.retry.id = "preview-retry";
    this.retry.className = "secondary";
    this.retry.textContent = "Try again";
    this.retry.hidden = true;
    this.status.after(this.retry);
  }

  start(): void {
    this.retry.addEventListener("click", () => void this.startDevices());
    for (const kind of ["camera", "microphone"] as const) {
      this.selects[kind].addEventListener("change", () => void this.choose(kind));
    }
    navigator.mediaDevices?.addEventListener("devicechange", () => void this.listDevices());
    // Leaving the page releases the camera at once (the call page asks for it again).
    window.addEventListener("pagehide", () => {
      this.meter.detach();
      stopStream(this.stream);
    });
    void this.startDevices();
  }

  private async startDevices(): Promise<void> {
    this.retry.disabled = true;
    this.setStatus("starting", "Starting your camera and microphone…");
    const local = await getLocalMedia();
    this.show(local.stream);
    if (local.problem === null) {
      this.setStatus("ok", "Your camera and microphone are working. Speak to see the level move.");
    } else {
      const help = explainProblem(local.problem, local.stream);
      this.setStatus(local.problem, `${help} You may continue to the waiting room anyway.`);
    }
    this.retry.hidden = local.problem === null;
    this.retry.disabled = false;
    await this.listDevices();
  }

  private setStatus(state: string, text: string): void {
    this.section.dataset["state"] = state;
    this.status.textContent = text;
  }

  private show(stream: MediaStream): void {
    const kept = new Set(stream.getTracks());
    for (const track of this.stream.getTracks()) if (!kept.has(track)) track.stop();
    this.stream = stream;
    attachStream(this.preview, null); // re-attach: the track set may have changed
    attachStream(this.preview, stream);
    this.meter.attach(stream);
    for (const kind of ["camera", "microphone"] as const) {
      const deviceId = this.trackOf(kind)?.getSettings().deviceId ?? "";
      // What the browser actually gave us is what the call page should ask for.
      rememberDevice(kind, deviceId);
      this.fields[kind].value = deviceId;
    }
  }

  private trackOf(kind: DeviceKind): MediaStreamTrack | undefined {
    return TRACK_KIND[kind] === "audio"
      ? this.stream.getAudioTracks()[0]
      : this.stream.getVideoTracks()[0];
  }

  /** Fill both lists from the devices the browser reports (labels need permission). */
  private async listDevices(): Promise<void> {
    let devices: MediaDeviceInfo[] = [];
    try {
      devices = (await navigator.mediaDevices?.enumerateDevices()) ?? [];
    } catch {
      devices = [];
    }
    for (const kind of ["camera", "microphone"] as const) {
      const select = this.selects[kind];
      const current = this.trackOf(kind)?.getSettings().deviceId ?? "";
      const usable = devices.filter((d) => d.kind === MEDIA_KIND[kind] && d.deviceId !== "");
      select.replaceChildren();
      usable.forEach((device, index) => {
        const label = device.label || `${kind === "camera" ? "Camera" : "Microphone"} ${index + 1}`;
        const option = new Option(label, device.deviceId, false, device.deviceId === current);
        select.append(option);
      });
      if (usable.length === 0) {
        // Without permission the browser lists devices without ids: say why, not "none".
        const blocked = devices.some((d) => d.kind === MEDIA_KIND[kind]);
        select.append(new Option(blocked ? BLOCKED[kind] : NONE_FOUND[kind], "", true, true));
      }
      select.disabled = usable.length === 0;
    }
  }

  /** Switch to the device picked in `kind`'s list. */
  private async choose(kind: DeviceKind): Promise<void> {
    const deviceId = this.selects[kind].value;
    if (!deviceId) return;
    rememberDevice(kind, deviceId);
    const video = kind === "camera" ? constraintsFor(kind, true) : false;
    const audio = kind === "microphone" ? constraintsFor(kind, true) : false;
    try {
      const fresh = await navigator.mediaDevices.getUserMedia({ audio, video });
      const replaced = this.trackOf(kind);
      const next = new MediaStream([
        ...this.stream.getTracks().filter((t) => t !== replaced),
        ...fresh.getTracks(),
      ]);
      this.show(next);
      this.setStatus("ok", "Device changed. Speak to see the level move.");
    } catch (error) {
      const problem = problemOf(error);
      this.setStatus(problem, explainProblem(problem, this.stream));
    }
  }
}

new PreJoin().start();
