/**
 * Everything a clinician runs the session with: the waiting-room panel, the facilitator
 * console, the pairs and segments panels and the controls on each patient's tile, wired
 * to the server's events.
 *
 * Every action is a signalling request the server checks and enforces; the panels show
 * the outcome from the `roster` and `lobby` events that follow, never a guess.
 */
import type {
  ActivityEvent,
  LobbyEvent,
  ParticipantView,
  TimerLimitsView,
} from "./generated/protocol";
import { FacilitatorConsole } from "./console";
import { LobbyPanel } from "./lobby";
import type { NameBook } from "./names";
import { PairsPanel } from "./pairs";
import { SegmentsPanel } from "./segments";
import type { Signalling } from "./signalling";
import { FacilitatorTileControls } from "./tilecontrols";
import type { TileGrid } from "./tiles";

export class Facilitation {
  private readonly lobby: LobbyPanel;
  private readonly console: FacilitatorConsole;
  private readonly tileControls: FacilitatorTileControls;
  private readonly pairs: PairsPanel;
  private readonly segments: SegmentsPanel;

  constructor(
    signalling: Signalling,
    tiles: TileGrid,
    private readonly names: NameBook,
    /** Before "End session for all": the clinician's notes saved (a bounded wait). */
    beforeEnd: () => Promise<void>,
  ) {
    const about = (id: string): { participant_id: string } => ({ participant_id: id });
    this.lobby = new LobbyPanel({
      admit: async (id) => {
        await signalling.request("admit", about(id));
      },
      admitAll: async () => (await signalling.request("admit_all", {})).admitted,
      deny: async (id, message) => {
        await signalling.request("deny", { participant_id: id, message });
      },
    });
    const lowerHand = async (id: string): Promise<void> => {
      await signalling.request("lower_hand", about(id));
    };
    const extend = async (seconds: number): Promise<void> => {
      await signalling.request("extend", { seconds });
    };
    this.pairs = new PairsPanel(
      {
        start: async (duration_seconds, groups) => {
          await signalling.request("start_pairs", { duration_seconds, groups });
        },
        visit: async (group) => {
          await signalling.request("visit_pair", { group });
        },
        message: async (text) => {
          await signalling.request("message_pairs", { text });
        },
        extend,
        end: async () => {
          await signalling.request("end_pairs", {});
        },
      },
      names,
    );
    this.segments = new SegmentsPanel(
      {
        start: async (participant_ids, others, duration_seconds) => {
          await signalling.request("start_segment", { participant_ids, others, duration_seconds });
        },
        queue: async (id) => {
          await signalling.request("queue_segment", about(id));
        },
        next: async () => {
          await signalling.request("next_segment", {});
        },
        extend,
        end: async () => {
          await signalling.request("end_segment", {});
        },
      },
      names,
    );
    this.console = new FacilitatorConsole(
      {
        muteAll: async () => {
          await signalling.request("mute_all", {});
        },
        lock: async (locked) => {
          await signalling.request("lock", { locked });
        },
        endSession: async () => {
          // Ending closes everyone's seat, ours too: what we typed is saved first.
          await beforeEnd();
          await signalling.request("end_session", {});
        },
        lowerHand,
        clearMoment: async (id) => {
          await signalling.request("clear_moment", about(id));
        },
        segmentWith: (id) => this.segments.startOrQueue(id),
      },
      names,
    );
    this.tileControls = new FacilitatorTileControls({
      forceMedia: async (id, change) => {
        await signalling.request("force_media", { participant_id: id, ...change });
      },
      lowerHand,
      moveToLobby: async (id) => {
        await signalling.request("move_to_lobby", about(id));
      },
      remove: async (id, revoke) => {
        await signalling.request("remove", { participant_id: id, revoke });
      },
    });
    tiles.setDecorator(this.tileControls.decorate);
  }

  /** Show the panels while the clinician holds a seat in the session. */
  setActive(active: boolean): void {
    this.lobby.setActive(active);
    this.console.setActive(active);
    this.pairs.setActive(active);
    this.segments.setActive(active);
    if (!active) this.onActivity(null);
  }

  /** The room's timer limits (the join answer's policy), for the pairs and segments. */
  setLimits(limits: TimerLimitsView): void {
    this.pairs.setLimits(limits);
    this.segments.setLimits(limits);
  }

  /** Our own participant id while we hold a seat. */
  setSelf(participantId: string | null): void {
    this.pairs.setSelf(participantId);
  }

  /** The clinicians' `lobby` event: who waits, raised hands, moments, the lock. */
  onLobby(event: LobbyEvent): void {
    this.names.learn(event.waiting);
    this.lobby.update(event.waiting);
    this.lobby.setLocked(event.locked);
    this.console.update(event);
  }

  /** Everyone past the lobby (their names are in the name book already). */
  setRoster(participants: ParticipantView[]): void {
    const patients = participants.filter((p) => p.role === "patient");
    this.console.setPresent(participants.map((p) => p.id));
    this.pairs.setPatients(patients);
    this.segments.setPatients(patients);
  }

  /** Whom we hear speaking now (the console says so beside their place). */
  setSpeaking(speaking: ReadonlySet<string>): void {
    this.console.setSpeaking(speaking);
  }

  /** Our `activity` event (null: none, e.g. out of the session): the clinicians' view. */
  onActivity(event: ActivityEvent | null): void {
    const view = event?.facilitator ?? null;
    const timer = event?.timer ?? null;
    this.console.setActivity(view);
    this.pairs.update(view);
    this.segments.update(view, timer?.activity === "segment" ? timer.remaining_seconds : null);
  }
}
