/**
 * The call page (`/session` for patients, `/room/{id}` for clinicians).
 *
 * Join as whoever the cookies say → a patient waits in the lobby until admitted, a
 * clinician goes straight in and runs the lobby and the session (facilitation.ts) →
 * publish + subscribe → grid; leave; after a dropped connection, join again (a seat
 * still held comes back as it was). A clinician may send a patient back to the waiting
 * room (media closed, rebuilt when admitted again), mute them or turn their camera off
 * (the server stops forwarding it; the page says so and, where the room's policy says,
 * the patient raises a hand instead of unmuting), remove them, or end the session.
 *
 * Where each participant is — the whole group, a breakout pair, a one-to-one segment,
 * on hold — is the server's (the `activity` event): the grid shows only the people we
 * share media with, and activity.ts says where we are and how long is left.
 *
 * A clinician may share their screen (screenshare.ts, on the publish connection's third
 * m-line); everyone else in their place sees it large above the grid (stage.ts).
 *
 * Whoever is speaking gets a ring on their tile and, for a clinician, a word in the
 * console (speaking.ts reads the connections' audio statistics a few times a second).
 *
 * A clinician takes notes beside the video (notes.ts): listed after every join, kept in
 * the browser until saved, wiped from it when the server says we were signed out. Ending
 * the session waits for them to be saved; whatever is unsaved when our seat ends is
 * saved through a connection of the panel's own.
 */
import type {
  ActivityEvent,
  AdmittedEvent,
  ClosedEvent,
  IceServer,
  JoinResult,
  ParticipantView,
  RosterEvent,
  SlotsEvent,
  VideoPausedEvent,
} from "./generated/protocol";
import { ActivityDisplay, tilesShown } from "./activity";
import { explainProblem, getLocalMedia, type LocalMedia, stopStream } from "./devices";
import { Facilitation } from "./facilitation";
import { PublishConnection, SubscribeConnection } from "./media";
import { NameBook } from "./names";
import { NotesPanel } from "./notes";
import { ScreenShare } from "./screenshare";
import { PatientSignals } from "./signals";
import { Signalling, SignallingError } from "./signalling";
import { SpeakingDetector } from "./speaking";
import { ScreenStage, sharerInPlace } from "./stage";
import { type AppState, type StateDetails, View } from "./ui";

const LEAVE_ACK_TIMEOUT_MS = 3_000;
/** "End session for all" first waits this long at most for the clinician's notes. */
const END_SETTLE_TIMEOUT_MS = 3_000;
/** Past the server's hold on our seat (plus this margin) there is nothing to come back to. */
const RECONNECT_MARGIN_MS = 15_000;

class App {
  private readonly view = new View();
  private readonly signalling = new Signalling();
  private readonly names = new NameBook();
  private readonly activityDisplay = new ActivityDisplay(this.view.role, this.names);
  /** The clinician's lobby panel, console and tile controls (null for patients). */
  private readonly facilitation: Facilitation | null;
  /** The patient's raise-hand and "I need a moment" buttons (null for clinicians). */
  private readonly signals: PatientSignals | null;
  /** The clinician's "Share screen" button (null for patients). */
  private readonly screenShare: ScreenShare | null;
  /** The clinician's notes beside the video (null for patients). */
  private readonly notes: NotesPanel | null;
  /** A screen shared in our place, large above the grid. */
  private readonly stage = new ScreenStage();
  /** The room's policy: may a patient muted by a clinician unmute themselves? */
  private patientsMayUnmute = true;
  private state: AppState = "joining";
  private local: LocalMedia | null = null;
  private mediaReady: Promise<void> = Promise.resolve();
  private publish: PublishConnection | null = null;
  private subscribe: SubscribeConnection | null = null;
  /** Replaced connections, closed once the server has replaced them too. */
  private retired: Array<PublishConnection | SubscribeConnection> = [];
  /** Our participant id while we hold a seat (in the lobby or the session). */
  private selfId: string | null = null;
  private roster: ParticipantView[] = [];
  /** Our place, whom we share media with, the running timer (null: not known yet). */
  private activity: ActivityEvent | null = null;
  /** slot index -> participant id feeding it */
  private slots = new Map<number, string | null>();
  /** Whose video the server paused for our weak connection (audio goes on). */
  private weakVideo = new Set<string>();
  private micOn = true;
  private cameraOn = true;
  /** Bumped whenever a join or media attempt is superseded. */
  private attempt = 0;
  /** The session is over for this page (left, closed, refused, failed, page closing). */
  private finished = false;
  /** We have been in the session (past the waiting room) on this page. */
  private tookPart = false;
  /** How long the server holds our seat after a drop (from the join result). */
  private reconnectGraceMs = 60_000;
  /** The ICE servers (TURN relays, short-lived credentials) from the latest join. */
  private iceServers: IceServer[] = [];
  private reconnectDeadline: number | undefined;
  /** A peer connection died while we were still (re)building: rebuild once connected. */
  private mediaLostPending = false;
  /** Whether a clinician had our microphone / camera off at the last roster. */
  private audioForced = false;
  private videoForced = false;
  /** Who is speaking: polls while we are in the session, stopped when it ends for us. */
  private readonly speaking = new SpeakingDetector(
    {
      receiving: () => {
        const subscribe = this.subscribe;
        if (subscribe === null) return null;
        return {
          pc: subscribe.pc,
          participantOf: (mid, trackId) => {
            const index = subscribe.audioSlotOf(mid, trackId);
            return index === undefined ? null : (this.slots.get(index) ?? null);
          },
        };
      },
      sending: () =>
        this.publish === null || this.selfId === null
          ? null
          : { pc: this.publish.pc, participantId: this.selfId },
      audible: (id) => this.audible(id),
    },
    () => this.render(),
  );

  constructor() {
    const clinician = this.view.role === "clinician";
    this.facilitation = clinician
      ? new Facilitation(this.signalling, this.view.tiles, this.names, async () => {
          await this.notes?.settle(END_SETTLE_TIMEOUT_MS);
        })
      : null;
    this.signals = clinician
      ? null
      : new PatientSignals({
          raiseHand: async (raised) => {
            await this.signalling.request("raise_hand", { raised });
          },
          needMoment: async (needed) => {
            await this.signalling.request("need_moment", { needed });
          },
        });
    this.screenShare = clinician
      ? new ScreenShare({
          send: async (track) => {
            await this.publish?.useScreen(track);
          },
          announce: async (on) => {
            await this.signalling.request("share_screen", { on });
          },
        })
      : null;
    this.notes = clinician
      ? new NotesPanel(
          this.signalling,
          this.names,
          this.view.root.dataset["userId"] || null,
          () => new Signalling(),
        )
      : null;
  }

  start(): void {
    this.view.micButton.addEventListener("click", () => this.toggleMic());
    this.view.cameraButton.addEventListener("click", () => this.toggleCamera());
    this.view.leaveButton.addEventListener("click", () => void this.leave());
    this.view.lobbyLeaveButton.addEventListener("click", () => void this.leave());
    // Every notice's "Try again" starts afresh: the page joins again as it loads.
    this.view.retryButton.addEventListener("click", () => window.location.reload());
    this.view.deviceRetryButton.addEventListener("click", () => void this.retryDevices());

    this.signalling.on("roster", (event: RosterEvent) => this.setRoster(event.participants));
    this.signalling.on("slots", (event: SlotsEvent) => {
      this.slots = new Map(event.slots.map((slot) => [slot.index, slot.participant_id]));
      this.render();
    });
    this.signalling.on("video_paused", (event: VideoPausedEvent) => {
      this.weakVideo = new Set(event.participant_ids);
      this.render();
    });
    this.signalling.on("admitted", (event: AdmittedEvent) => this.onAdmitted(event));
    this.signalling.on("lobby", (event) => this.facilitation?.onLobby(event));
    this.signalling.on("moved_to_lobby", () => this.onMovedToLobby());
    this.signalling.on("moment", (event) => this.signals?.setMomentNeeded(event.needed));
    this.signalling.on("activity", (event: ActivityEvent) => this.onActivity(event));
    this.signalling.on("pairs_message", (event) => {
      if (!this.finished) this.activityDisplay.showMessage(event);
    });
    this.signalling.on("closed", (event: ClosedEvent) => {
      if (event.reason === "signed_out") {
        this.notes?.signOut();
        this.finish("signed_out", { message: event.message });
      } else {
        this.finish("closed", { reason: event.reason, message: event.message });
        // The session over, the clinician sees that every note is saved (or which not).
        void this.notes?.saveWhatIsLeft(event.reason === "session_ended");
      }
    });
    this.signalling.on("media_lost", () => this.onMediaLost());
    this.signalling.onDisconnect((_reason, willReconnect) => this.onDisconnect(willReconnect));
    this.signalling.onConnect(() => {
      if (!this.finished && this.state === "reconnecting") void this.takeSeat();
    });
    this.signalling.onRefused((error) => this.onConnectFailed(error));
    // Leaving the page (closing, reloading, navigating) stops the statistics timer.
    window.addEventListener("pagehide", () => this.speaking.stop());
    // Nothing is sent when the page closes or reloads: the socket simply drops, and the
    // server holds the seat for the reconnect window (a reload comes straight back into
    // it, without the lobby). Only the Leave button ends the seat at once.

    this.showSwitches();
    this.setState("joining");
    this.mediaReady = this.acquireMedia();
    void this.enter();
  }

  private setState(state: AppState, details?: StateDetails): void {
    this.state = state;
    if (state === "connected") this.speaking.start();
    this.view.setState(state, details);
    this.signals?.setEnabled(state === "connected");
    this.screenShare?.setEnabled(state === "connected");
  }

  /** Everyone past the lobby, as the server says now (our own forced state included). */
  private setRoster(participants: ParticipantView[]): void {
    this.roster = participants;
    this.names.learn(participants);
    const self = this.self();
    if (self !== null) {
      // A clinician turning us off also turns our own switch off (as the server does):
      // when they let us back on, nothing goes live until we press the button.
      if (self.audio_forced_off && !this.audioForced) this.micOn = false;
      if (self.video_forced_off && !this.videoForced) this.cameraOn = false;
      this.audioForced = self.audio_forced_off;
      this.videoForced = self.video_forced_off;
    }
    this.facilitation?.setRoster(participants);
    this.notes?.setPeople(participants);
    if (self !== null) this.screenShare?.serverSays(self.screen_on);
    this.activityDisplay.refreshNames();
    this.signals?.setHandRaised(this.self()?.hand_raised ?? false);
    this.applyTrackStates();
    this.showSwitches();
    this.render();
  }

  /** Our place, whom we share media with or the timer changed (the server routes the
   * media accordingly: the grid follows). */
  private onActivity(event: ActivityEvent): void {
    if (this.finished || this.state === "lobby") return;
    this.activity = event;
    this.activityDisplay.update(event);
    this.facilitation?.onActivity(event);
    this.render();
  }

  /** Whether `participantId` may be heard now: their microphone on, nobody turned it
   * off (ours: our own switch too), connected. Nobody else can be "speaking". */
  private audible(participantId: string): boolean {
    const participant = this.roster.find((p) => p.id === participantId);
    if (participant === undefined) return false;
    if (!participant.audio_on || participant.audio_forced_off || !participant.connected) {
      return false;
    }
    return participantId !== this.selfId || (this.micOn && !this.audioForced);
  }

  /** Our own entry in the roster (null in the lobby or before the first roster). */
  private self(): ParticipantView | null {
    return this.roster.find((participant) => participant.id === this.selfId) ?? null;
  }

  // ---- camera and microphone ------------------------------------------------------

  private async acquireMedia(): Promise<void> {
    const local = await getLocalMedia();
    if (this.finished) {
      stopStream(local.stream);
      return;
    }
    stopStream(this.local?.stream ?? null);
    this.local = local;
    const hasAudio = local.stream.getAudioTracks().length > 0;
    const hasVideo = local.stream.getVideoTracks().length > 0;
    this.applyTrackStates();
    this.view.setDevices(hasAudio, hasVideo);
    this.view.setDeviceHelp(
      local.problem === null ? null : explainProblem(local.problem, local.stream),
    );
    this.view.showPreview(local.stream);
    this.render();
  }

  /** Ask for the devices again (after the user allowed them) and send what we get. */
  private async retryDevices(): Promise<void> {
    this.view.deviceRetryButton.disabled = true;
    try {
      this.mediaReady = this.acquireMedia();
      await this.mediaReady;
      const stream = this.local?.stream;
      if (stream && this.publish) await this.publish.useStream(stream);
      this.syncMediaState();
    } finally {
      this.view.deviceRetryButton.disabled = false;
    }
  }

  private hasTrack(kind: "audio" | "video"): boolean {
    const stream = this.local?.stream;
    if (!stream) return false;
    return (kind === "audio" ? stream.getAudioTracks() : stream.getVideoTracks()).length > 0;
  }

  // ---- joining ----------------------------------------------------------------------

  private async enter(): Promise<void> {
    try {
      await this.signalling.connect();
    } catch (error) {
      this.onConnectFailed(error);
      return;
    }
    await this.takeSeat();
  }

  private onConnectFailed(error: unknown): void {
    if (this.finished) return;
    if (error instanceof SignallingError && error.code === "not_signed_in") {
      this.finish("signed_out");
    } else {
      this.finish("error", { message: describe(error) });
    }
  }

  /** Take our seat: a new one, or (after a reconnect) the one still held for us. */
  private async takeSeat(): Promise<void> {
    const attempt = ++this.attempt;
    let joined: JoinResult;
    try {
      joined = await this.signalling.request("join", { room_code: this.view.roomCode });
    } catch (error) {
      if (attempt === this.attempt) this.fail(error);
      return;
    }
    if (attempt !== this.attempt || this.finished) return;
    this.selfId = joined.participant_id;
    this.facilitation?.setSelf(joined.participant_id);
    this.reconnectGraceMs = joined.reconnect_grace_seconds * 1000;
    this.iceServers = joined.ice_servers;
    this.patientsMayUnmute = joined.policy.patients_may_unmute;
    this.facilitation?.setLimits(joined.policy.timers);
    this.signals?.setMomentNeeded(joined.needs_moment);
    this.facilitation?.setActive(true);
    this.notes?.enter(joined.participant_id);
    if (joined.place === "lobby") {
      this.toWaitingRoom();
      return;
    }
    this.roster = joined.participants;
    const self = this.self();
    if (joined.returned && self !== null) {
      // The seat comes back as it was (after a reload too): what was off stays off.
      this.micOn &&= self.audio_on;
      this.cameraOn &&= self.video_on;
    }
    this.setRoster(joined.participants);
    await this.startMedia();
  }

  private onAdmitted(event: AdmittedEvent): void {
    if (this.finished) return;
    this.setRoster(event.participants);
    void this.startMedia();
  }

  /** A clinician sent us back to the waiting room: the server has dropped our media. */
  private onMovedToLobby(): void {
    if (this.finished || this.selfId === null) return;
    this.attempt++; // a media build still running is moot
    this.toWaitingRoom();
  }

  /** Wait in the lobby: no media connections, nobody's tiles, the waiting screen. */
  private toWaitingRoom(): void {
    this.speaking.stop();
    this.closePeers();
    this.stopReconnectDeadline();
    this.mediaLostPending = false;
    this.roster = [];
    this.forgetActivity();
    this.slots.clear();
    this.view.tiles.clear();
    this.stage.show(null, null);
    this.signals?.reset();
    this.applyTrackStates();
    this.showSwitches();
    this.view.setWaiting(true);
    this.setState("lobby");
  }

  /**
   * Build both peer connections for the seat we hold (first time, or again).
   *
   * Make before break: connections being replaced stay open until the server has
   * replaced them. The server reports a connection closed under it as lost (media_lost,
   * which names no connection); closing ours first would report the very loss we are
   * repairing, and the repair would never end.
   */
  private async startMedia(): Promise<void> {
    const attempt = ++this.attempt;
    this.tookPart = true;
    const stale = (): boolean => attempt !== this.attempt || this.finished;
    this.view.setWaiting(false);
    // New connections are built from here on: a loss reported before now is moot.
    this.mediaLostPending = false;
    if (this.state !== "reconnecting") this.setState("connecting");
    this.render();
    try {
      await this.mediaReady;
      const stream = this.local?.stream ?? new MediaStream();
      if (stale()) return;

      const publish = new PublishConnection(stream, this.screenShare !== null, this.iceServers);
      this.retire(this.publish);
      this.publish = publish;
      this.watchConnection(publish.pc);
      // A screen shared before a reconnect goes on on the new connection.
      const screen = this.screenShare?.screenTrack ?? null;
      if (screen !== null) await publish.useScreen(screen);
      const offer = await publish.createOffer();
      if (stale()) return;
      const answer = await this.signalling.request("publish", { sdp: offer });
      if (stale()) return;
      await publish.acceptAnswer(answer.sdp);

      const subscribe = new SubscribeConnection(this.iceServers);
      this.retire(this.subscribe);
      this.subscribe = subscribe;
      // A new connection starts with every video (the server's count starts afresh).
      this.weakVideo = new Set();
      this.watchConnection(subscribe.pc);
      const subscribeOffer = await this.signalling.request("subscribe", {});
      // Both old connections are replaced on the server now: closing them is silent.
      this.closeRetired();
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
      // A new seat starts with microphone and camera on: say what is off or missing.
      this.syncMediaState();
    } catch (error) {
      if (!stale()) this.fail(error);
    }
  }

  private fail(error: unknown): void {
    if (error instanceof SignallingError && ["room_full", "server_full"].includes(error.code)) {
      this.finish("room_full", { message: error.message });
    } else if (error instanceof SignallingError && error.code === "denied") {
      this.finish("closed", { reason: "denied", message: error.message });
    } else {
      this.finish("error", { message: describe(error) });
    }
  }

  /** A peer connection died while our seat and socket live: build new ones. */
  private onMediaLost(): void {
    if (this.finished || this.selfId === null) return;
    if (this.state !== "connected") {
      this.mediaLostPending = true; // still (re)building: do it again once connected
      return;
    }
    this.mediaLostPending = false;
    this.setState("reconnecting");
    void this.startMedia();
  }

  /** The browser's own verdict on a connection counts too (the server may not tell). */
  private watchConnection(pc: RTCPeerConnection): void {
    pc.addEventListener("connectionstatechange", () => {
      const current = pc === this.publish?.pc || pc === this.subscribe?.pc;
      if (current && pc.connectionState === "failed") this.onMediaLost();
    });
  }

  private onDisconnect(willReconnect: boolean): void {
    if (this.finished) return;
    if (!willReconnect) {
      this.finish("error", { message: "The server ended the connection." });
      return;
    }
    // socket.io reconnects by itself; onConnect joins again and rebuilds the media.
    this.attempt++;
    this.notes?.offline();
    this.closePeers();
    this.setState("reconnecting");
    this.startReconnectDeadline();
    this.render();
  }

  private startReconnectDeadline(): void {
    if (this.reconnectDeadline !== undefined) return;
    this.reconnectDeadline = window.setTimeout(() => {
      this.reconnectDeadline = undefined;
      if (this.state !== "reconnecting") return;
      this.finish("error", {
        message: "The connection to the session was lost. Check your network and try again.",
      });
    }, this.reconnectGraceMs + RECONNECT_MARGIN_MS);
  }

  private stopReconnectDeadline(): void {
    if (this.reconnectDeadline !== undefined) window.clearTimeout(this.reconnectDeadline);
    this.reconnectDeadline = undefined;
  }

  // ---- in the session ---------------------------------------------------------------

  /**
   * The microphone button: mute or unmute ourselves. Muted by a clinician, pressing it
   * unmutes (which releases their mute) only where the room's policy lets patients do so;
   * otherwise the button is disabled and says to raise a hand.
   */
  private toggleMic(): void {
    const forced = this.self()?.audio_forced_off ?? false;
    if (forced && !this.mayRelease()) return;
    this.micOn = forced ? true : !this.micOn;
    this.applyTrackStates();
    this.showSwitches();
    this.sendMedia({ audio_on: this.micOn && this.hasTrack("audio") });
  }

  /** The camera button, as the microphone's. */
  private toggleCamera(): void {
    const forced = this.self()?.video_forced_off ?? false;
    if (forced && !this.mayRelease()) return;
    this.cameraOn = forced ? true : !this.cameraOn;
    this.applyTrackStates();
    this.showSwitches();
    this.sendMedia({ video_on: this.cameraOn && this.hasTrack("video") });
  }

  private mayRelease(): boolean {
    return this.view.role === "clinician" || this.patientsMayUnmute;
  }

  /**
   * Our tracks send only what we chose and no clinician turned off. The server enforces
   * a clinician's turning off by not forwarding; muting here too means the browser does
   * not capture what nobody may hear.
   */
  private applyTrackStates(): void {
    const self = this.self();
    const audio = this.micOn && !(self?.audio_forced_off ?? false);
    const video = this.cameraOn && !(self?.video_forced_off ?? false);
    for (const track of this.local?.stream.getAudioTracks() ?? []) track.enabled = audio;
    for (const track of this.local?.stream.getVideoTracks() ?? []) track.enabled = video;
  }

  private showSwitches(): void {
    const self = this.self();
    const mayRelease = this.mayRelease();
    this.view.setMic({ on: this.micOn, forced: self?.audio_forced_off ?? false, mayRelease });
    this.view.setCamera({
      on: this.cameraOn,
      forced: self?.video_forced_off ?? false,
      mayRelease,
    });
  }

  /**
   * Tell the server what differs between our switches and its view of them (a missing
   * device counts as switched off). Never switches on what a clinician turned off: that
   * takes the user's own press.
   */
  private syncMediaState(): void {
    const self = this.self();
    if (self === null) return;
    const audioOn = this.micOn && this.hasTrack("audio");
    const videoOn = this.cameraOn && this.hasTrack("video");
    const change: { audio_on?: boolean; video_on?: boolean } = {};
    if (audioOn !== self.audio_on && !(audioOn && self.audio_forced_off)) {
      change.audio_on = audioOn;
    }
    if (videoOn !== self.video_on && !(videoOn && self.video_forced_off)) {
      change.video_on = videoOn;
    }
    if (change.audio_on !== undefined || change.video_on !== undefined) this.sendMedia(change);
  }

  /** Send a change of our own switches (only while connected). */
  private sendMedia(change: { audio_on?: boolean; video_on?: boolean }): void {
    if (this.state !== "connected") return;
    this.signalling.request("set_media", change).catch((error: unknown) => {
      // Refused (e.g. the policy changed under us): the next roster shows the truth.
      console.warn("set_media failed", error);
    });
  }

  private async leave(): Promise<void> {
    this.attempt++;
    if (this.selfId !== null && this.signalling.connected) {
      await this.notes?.settle(LEAVE_ACK_TIMEOUT_MS);
      try {
        await this.signalling.request("leave", {}, LEAVE_ACK_TIMEOUT_MS);
      } catch (error) {
        console.warn("leave failed", error);
      }
    }
    this.finish("left", { tookPart: this.tookPart });
    void this.notes?.saveWhatIsLeft(false);
  }

  /** End the session for this page and show why. */
  private finish(state: AppState, details?: StateDetails): void {
    this.endSession(state === "left");
    this.setState(state, details);
  }

  /** Close the connections and the socket, release camera and microphone. Idempotent.
   * Only a Leave says goodbye to the server; any other ending (an error, a refusal)
   * just drops the socket, so a seat still held can be taken back by "Try again". */
  private endSession(leaving: boolean): void {
    this.finished = true;
    this.mediaLostPending = false;
    this.stopReconnectDeadline();
    this.speaking.stop();
    this.attempt++;
    this.closePeers();
    if (leaving) {
      this.signalling.disconnect();
    } else {
      this.signalling.drop();
    }
    this.facilitation?.setActive(false);
    this.facilitation?.setSelf(null);
    this.notes?.stop();
    this.signals?.reset();
    this.screenShare?.reset();
    this.stage.show(null, null);
    this.selfId = null;
    this.roster = [];
    this.forgetActivity();
    this.slots.clear();
    this.view.tiles.clear();
    this.view.setWaiting(false);
    stopStream(this.local?.stream ?? null);
    this.local = null;
    this.view.showPreview(null);
  }

  /** Close both connections (and any still waiting to be replaced). */
  private closePeers(): void {
    this.publish?.close();
    this.publish = null;
    this.subscribe?.close();
    this.subscribe = null;
    this.closeRetired();
  }

  /** Keep a connection being replaced open until the server has replaced it. */
  private retire(connection: PublishConnection | SubscribeConnection | null): void {
    if (connection !== null) this.retired.push(connection);
  }

  private closeRetired(): void {
    for (const connection of this.retired) connection.close();
    this.retired = [];
  }

  /** Out of the session or back in the waiting room: no place, no timer. */
  private forgetActivity(): void {
    this.activity = null;
    this.activityDisplay.reset();
    this.facilitation?.onActivity(null);
  }

  private render(): void {
    if (this.selfId === null || this.finished) return;
    const selfId = this.selfId;
    const sharer = sharerInPlace(this.roster, this.activity, selfId);
    this.stage.show(sharer, this.subscribe?.screenStream ?? null);
    // Only the people we share media with (in a pair: the partner). On hold, everyone,
    // without pictures: the hold screen says why.
    const shown = tilesShown(this.activity);
    const visible = this.roster.filter(
      (participant) => participant.id === selfId || shown === null || shown.has(participant.id),
    );
    const speaking = this.speaking.speaking();
    this.view.tiles.render(
      visible.map((participant) => {
        const isSelf = participant.id === selfId;
        return {
          participant,
          isSelf,
          stream: isSelf ? (this.local?.stream ?? null) : this.streamOf(participant.id),
          speaking: speaking.has(participant.id),
          videoPaused: !isSelf && this.weakVideo.has(participant.id),
        };
      }),
    );
    this.facilitation?.setSpeaking(speaking);
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
