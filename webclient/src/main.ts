/**
 * Telecircle room page: pre-join → join → publish + subscribe → grid; leave; reconnect.
 */
import type {
  ClosedEvent,
  JoinResult,
  ParticipantView,
  RosterEvent,
  SlotsEvent,
} from "./generated/protocol";
import { getLocalMedia, PublishConnection, stopStream, SubscribeConnection } from "./media";
import { Signalling, SignallingError } from "./signalling";
import { type AppState, View } from "./ui";

const LEAVE_ACK_TIMEOUT_MS = 3_000;

class App {
  private readonly view = new View();
  private readonly signalling = new Signalling();
  private state: AppState = "prejoin";
  private localStream: MediaStream | null = null;
  private publish: PublishConnection | null = null;
  private subscribe: SubscribeConnection | null = null;
  private displayName = "";
  private selfId: string | null = null;
  private roster: ParticipantView[] = [];
  /** slot index -> participant id feeding it */
  private slots = new Map<number, string | null>();
  private micOn = true;
  private cameraOn = true;
  /** Bumped whenever a join attempt is superseded (leave, disconnect, new attempt). */
  private attempt = 0;
  /** True from pressing Join until the session ends (leave, error, room full). */
  private inSession = false;
  /** Our seat, kept to come back into it after a dropped connection (resume). */
  private seat: { participantId: string; resumeToken: string } | null = null;
  /** How long the server holds our seat after a drop (from the join result). */
  private reconnectGraceMs = 60_000;
  /** Gives up reconnecting once the seat can no longer be held for us. */
  private reconnectDeadline: number | undefined;
  /** A peer connection died while we were still (re)building: rebuild once connected. */
  private mediaLostPending = false;
  /** The page is being closed: take no seat any more. */
  private leaving = false;

  start(): void {
    this.view.joinForm.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.join();
    });
    this.view.micButton.addEventListener("click", () => this.toggleMic());
    this.view.cameraButton.addEventListener("click", () => this.toggleCamera());
    this.view.leaveButton.addEventListener("click", () => void this.leave());
    this.view.retryButton.addEventListener("click", () => void this.retry());

    this.signalling.on("roster", (event: RosterEvent) => {
      this.roster = event.participants;
      this.render();
    });
    this.signalling.on("slots", (event: SlotsEvent) => {
      this.slots = new Map(event.slots.map((slot) => [slot.index, slot.participant_id]));
      this.render();
    });
    this.signalling.on("closed", (event: ClosedEvent) => {
      this.seat = null;
      this.endSession(false);
      this.setState("error", event.message);
    });
    this.signalling.on("media_lost", () => this.onMediaLost());
    // A closing page cannot wait for an ack: a beacon ends the seat at once, instead of
    // the others seeing "reconnecting" for the whole reconnect window. A page kept in
    // the back/forward cache (persisted) is not closing.
    window.addEventListener("pagehide", (event) => {
      if (!event.persisted) this.pageClosing();
    });
    this.signalling.onDisconnect((_reason, willReconnect) => this.onDisconnect(willReconnect));
    this.signalling.onConnect(() => {
      if (this.inSession && this.state === "reconnecting") void this.enterRoom();
    });

    this.view.setMicOn(this.micOn);
    this.view.setCameraOn(this.cameraOn);
    this.setState("prejoin");
    void this.acquireMedia();
  }

  private setState(state: AppState, message?: string): void {
    this.state = state;
    this.view.setState(state, message);
  }

  // ---- pre-join ---------------------------------------------------------------------

  private async acquireMedia(): Promise<void> {
    this.view.setJoinEnabled(false);
    try {
      const stream = await getLocalMedia();
      stopStream(this.localStream);
      this.localStream = stream;
      this.applyTrackStates();
      this.view.showPreview(stream);
      this.view.setJoinEnabled(true);
      this.setState("prejoin");
    } catch (error) {
      const name = error instanceof DOMException ? error.name : "";
      if (name === "NotAllowedError" || name === "SecurityError") {
        this.setState("camera_denied");
      } else if (name === "NotFoundError" || name === "OverconstrainedError") {
        this.setState("error", "No camera or microphone was found. Connect one and try again.");
      } else if (name === "NotReadableError") {
        this.setState("error", "Your camera or microphone is in use by another application.");
      } else {
        this.setState("error", `Could not start camera and microphone: ${describe(error)}`);
      }
    }
  }

  private async retry(): Promise<void> {
    if (this.localStream && this.localStream.getTracks().every((t) => t.readyState === "live")) {
      this.setState("prejoin");
    } else {
      await this.acquireMedia();
    }
  }

  // ---- joining ----------------------------------------------------------------------

  private async join(): Promise<void> {
    const name = this.view.nameInput.value.trim();
    if (!name) {
      this.view.nameInput.reportValidity();
      return;
    }
    if (!this.localStream) return;
    this.displayName = name;
    this.inSession = true;
    this.setState("connecting");
    try {
      await this.signalling.connect();
    } catch (error) {
      this.inSession = false;
      this.setState("error", describe(error));
      return;
    }
    await this.enterRoom();
  }

  /**
   * Take the seat and build both peer connections (first join and every rejoin). With
   * `takeSeat` false (a media path died while this socket keeps the seat) only the
   * peer connections are built again.
   */
  private async enterRoom(takeSeat = true): Promise<void> {
    const attempt = ++this.attempt;
    const stale = (): boolean => attempt !== this.attempt;
    const stream = this.localStream;
    if (!stream || this.leaving) return;
    this.closePeers();
    // New connections are built from here on: a loss reported before now is moot.
    this.mediaLostPending = false;
    try {
      if (takeSeat || !this.seat) {
        const joined = await this.takeSeat();
        if (stale()) return;
        this.seat = { participantId: joined.participant_id, resumeToken: joined.resume_token };
      this.reconnectGraceMs = joined.reconnect_grace_seconds * 1000;
        this.selfId = joined.participant_id;
        this.roster = joined.participants;
        this.render();
      }

      const publish = new PublishConnection(stream);
      this.publish = publish;
      this.watchConnection(publish.pc);
      const offer = await publish.createOffer();
      if (stale()) return;
      const answer = await this.signalling.request("publish", { sdp: offer });
      if (stale()) return;
      await publish.acceptAnswer(answer.sdp);

      const subscribe = new SubscribeConnection();
      this.subscribe = subscribe;
      this.watchConnection(subscribe.pc);
      const subscribeOffer = await this.signalling.request("subscribe", {});
      if (stale()) return;
      const subscribeAnswer = await subscribe.answer(subscribeOffer);
      if (stale()) return;
      await this.signalling.request("subscribe_answer", { sdp: subscribeAnswer });
      if (stale()) return;

      this.setState("connected");
      this.stopReconnectDeadline();
      this.render();
      if (this.mediaLostPending) {
        this.onMediaLost();
        return;
      }
      // A rejoin takes a fresh seat: carry over what the user had switched off.
      if (!this.micOn || !this.cameraOn) {
        await this.signalling.request("set_media", { audio_on: this.micOn, video_on: this.cameraOn });
      }
    } catch (error) {
      if (stale()) return;
      this.endSession(false);
      if (error instanceof SignallingError && error.code === "room_full") {
        this.setState("room_full", error.message);
      } else {
        this.setState("error", describe(error));
      }
    }
  }

  /** Back into our held seat if we have one, else a new seat. */
  private async takeSeat(): Promise<JoinResult> {
    if (this.seat) {
      try {
        return await this.signalling.request("resume", {
          room_code: this.view.roomCode,
          participant_id: this.seat.participantId,
          resume_token: this.seat.resumeToken,
        });
      } catch (error) {
        if (!(error instanceof SignallingError && error.code === "seat_expired")) throw error;
        this.seat = null;
      }
    }
    return this.signalling.request("join", {
      room_code: this.view.roomCode,
      display_name: this.displayName,
    });
  }

  /** A peer connection died while our seat and socket live: build new ones. */
  private onMediaLost(): void {
    if (!this.inSession) return;
    if (this.state !== "connected") {
      this.mediaLostPending = true; // still (re)building: do it again once connected
      return;
    }
    this.mediaLostPending = false;
    // The socket still holds the seat: "resume" on it would be refused
    // (already_joined), so only the peer connections are rebuilt.
    this.setState("reconnecting");
    void this.enterRoom(false);
  }

  /** The browser's own verdict on a connection counts too (the server may not tell). */
  private watchConnection(pc: RTCPeerConnection): void {
    pc.addEventListener("connectionstatechange", () => {
      const current = pc === this.publish?.pc || pc === this.subscribe?.pc;
      if (current && pc.connectionState === "failed") this.onMediaLost();
    });
  }

  private pageClosing(): void {
    this.sendLeaveBeacon();
    this.leaving = true;
    this.inSession = false;
    this.signalling.disconnect();
  }

  private startReconnectDeadline(): void {
    if (this.reconnectDeadline !== undefined) return;
    // Past the server's hold on our seat (plus a margin) there is nothing to resume.
    this.reconnectDeadline = window.setTimeout(() => {
      this.reconnectDeadline = undefined;
      if (this.state !== "reconnecting") return;
      this.seat = null;
      this.endSession(false);
      this.setState("error", "The connection to the room was lost. Check your network and try again.");
    }, this.reconnectGraceMs + 15_000);
  }

  private stopReconnectDeadline(): void {
    if (this.reconnectDeadline !== undefined) window.clearTimeout(this.reconnectDeadline);
    this.reconnectDeadline = undefined;
  }

  private sendLeaveBeacon(): void {
    if (!this.seat || !this.inSession) return;
    const body = JSON.stringify({
      participant_id: this.seat.participantId,
      resume_token: this.seat.resumeToken,
    });
    const url = `/r/${encodeURIComponent(this.view.roomCode)}/leave`;
    navigator.sendBeacon(url, new Blob([body], { type: "text/plain" }));
  }

  private onDisconnect(willReconnect: boolean): void {
    if (!this.inSession) return;
    if (willReconnect) {
      // socket.io reconnects by itself; onConnect rejoins and rebuilds both connections.
      this.attempt++;
      this.closePeers();
      this.setState("reconnecting");
      this.startReconnectDeadline();
      this.render();
    } else {
      this.endSession(false);
      this.setState("error", "The server ended the connection.");
    }
  }

  // ---- in the room ------------------------------------------------------------------

  private toggleMic(): void {
    this.micOn = !this.micOn;
    this.applyTrackStates();
    this.view.setMicOn(this.micOn);
    this.sendMediaState({ audio_on: this.micOn });
  }

  private toggleCamera(): void {
    this.cameraOn = !this.cameraOn;
    this.applyTrackStates();
    this.view.setCameraOn(this.cameraOn);
    this.sendMediaState({ video_on: this.cameraOn });
  }

  private applyTrackStates(): void {
    for (const track of this.localStream?.getAudioTracks() ?? []) track.enabled = this.micOn;
    for (const track of this.localStream?.getVideoTracks() ?? []) track.enabled = this.cameraOn;
  }

  private sendMediaState(change: { audio_on?: boolean; video_on?: boolean }): void {
    if (this.state !== "connected") return;
    this.signalling.request("set_media", change).catch((error: unknown) => {
      console.warn("set_media failed", error);
    });
  }

  private async leave(): Promise<void> {
    const wasInRoom = this.state === "connected" || this.state === "reconnecting";
    this.attempt++;
    if (wasInRoom && this.signalling.connected) {
      try {
        await this.signalling.request("leave", {}, LEAVE_ACK_TIMEOUT_MS);
      } catch (error) {
        console.warn("leave failed", error);
      }
    }
    this.seat = null;
    this.endSession(true);
    this.setState("left");
  }

  /** Close both connections and the socket; with `stopMedia`, release camera and mic. */
  private endSession(stopMedia: boolean): void {
    this.inSession = false;
    this.mediaLostPending = false;
    this.stopReconnectDeadline();
    this.attempt++;
    this.closePeers();
    this.signalling.disconnect();
    this.selfId = null;
    this.roster = [];
    this.slots.clear();
    this.view.clearTiles();
    if (stopMedia) {
      stopStream(this.localStream);
      this.localStream = null;
      this.view.showPreview(null);
    }
  }

  private closePeers(): void {
    this.publish?.close();
    this.publish = null;
    this.subscribe?.close();
    this.subscribe = null;
  }

  private render(): void {
    if (this.selfId === null) return;
    const selfId = this.selfId;
    this.view.renderTiles(
      this.roster.map((participant) => {
        const isSelf = participant.id === selfId;
        return {
          participant,
          isSelf,
          stream: isSelf ? this.localStream : this.streamOf(participant.id),
        };
      }),
    );
  }

  private streamOf(participantId: string): MediaStream | null {
    if (!this.subscribe) return null;
    for (const [index, feeder] of this.slots) {
      if (feeder === participantId) return this.subscribe.slotStreams.get(index) ?? null;
    }
    return null;
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

new App().start();
