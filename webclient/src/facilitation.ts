/**
 * Everything a clinician runs the session with: the waiting-room panel, the facilitator
 * console and the controls on each patient's tile, wired to the server's events.
 *
 * Every action is a signalling request the server checks and enforces; the panels show
 * the outcome from the `roster` and `lobby` events that follow, never a guess.
 */
import type { LobbyEvent, ParticipantView } from "./generated/protocol";
import { FacilitatorConsole } from "./console";
import { LobbyPanel } from "./lobby";
import type { Signalling } from "./signalling";
import { FacilitatorTileControls } from "./tilecontrols";
import type { TileGrid } from "./tiles";

export class Facilitation {
  private readonly lobby: LobbyPanel;
  private readonly console: FacilitatorConsole;
  private readonly tileControls: FacilitatorTileControls;

  constructor(signalling: Signalling, tiles: TileGrid) {
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
    this.console = new FacilitatorConsole({
      muteAll: async () => {
        await signalling.request("mute_all", {});
      },
      lock: async (locked) => {
        await signalling.request("lock", { locked });
      },
      endSession: async () => {
        await signalling.request("end_session", {});
      },
      lowerHand,
      clearMoment: async (id) => {
        await signalling.request("clear_moment", about(id));
      },
    });
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
  }

  /** The clinicians' `lobby` event: who waits, raised hands, moments, the lock. */
  onLobby(event: LobbyEvent): void {
    this.lobby.update(event.waiting);
    this.lobby.setLocked(event.locked);
    this.console.update(event);
  }

  /** Everyone past the lobby (the console names hands and moments from it). */
  setRoster(participants: ParticipantView[]): void {
    this.console.setRoster(participants);
  }
}
