/**
 * The facilitator's board for making pairs by hand: the patients in the session as
 * chips, in "Not in a pair" or in Pair 1, Pair 2, ... A chip is dragged onto a group
 * (HTML5 drag and drop), or moved with its own "Group" select (keyboard and screen
 * readers). "Add a pair" makes another empty group. Nothing is sent from here: the
 * pairs panel starts the pairs with `groups()`.
 *
 * Chips are kept per participant across roster updates (a chip's select keeps focus);
 * names only go through textContent and attributes.
 */
import type { ParticipantView } from "./generated/protocol";
import { make } from "./dom";

/** A chip's place on the board: a group's index, or not in a pair. */
const UNASSIGNED = -1;
const DRAG_TYPE = "application/x-telecircle-participant";

interface Chip {
  item: HTMLLIElement;
  name: HTMLElement;
  select: HTMLSelectElement;
}

export class PairBoard {
  /** participant id -> group index (UNASSIGNED: not in a pair) */
  private readonly assigned = new Map<string, number>();
  private readonly chips = new Map<string, Chip>();
  private patients: ParticipantView[] = [];
  private groupCount = 1;

  constructor(private readonly root: HTMLElement) {
    this.render();
  }

  /** The patients in the session now: newcomers start outside any pair. */
  setPatients(patients: ParticipantView[]): void {
    this.patients = patients;
    const present = new Set(patients.map((p) => p.id));
    for (const id of Array.from(this.assigned.keys())) {
      if (!present.has(id)) this.assigned.delete(id);
    }
    for (const patient of patients) {
      if (!this.assigned.has(patient.id)) this.assigned.set(patient.id, UNASSIGNED);
    }
    // Enough groups for everyone to be paired without pressing "Add a pair".
    this.groupCount = Math.max(this.groupCount, Math.floor(patients.length / 2), 1);
    this.render();
  }

  /** Another empty group at the end. */
  addGroup(): void {
    this.groupCount += 1;
    this.render();
  }

  /** The groups that have anyone in them, in board order (participant ids). */
  groups(): string[][] {
    const groups: string[][] = Array.from({ length: this.groupCount }, () => []);
    for (const patient of this.patients) {
      const group = this.assigned.get(patient.id) ?? UNASSIGNED;
      if (group !== UNASSIGNED) groups[group]?.push(patient.id);
    }
    return groups.filter((members) => members.length > 0);
  }

  /** Put everyone back outside the pairs (after pairs started). */
  clear(): void {
    for (const id of this.assigned.keys()) this.assigned.set(id, UNASSIGNED);
    this.groupCount = Math.max(1, Math.floor(this.patients.length / 2));
    this.render();
  }

  private move(participantId: string, group: number): void {
    if (!this.assigned.has(participantId)) return;
    if (group >= this.groupCount) this.groupCount = group + 1;
    this.assigned.set(participantId, group);
    const focused = document.activeElement;
    this.render();
    // Moving an element to another list drops its focus: give it back.
    if (
      focused instanceof HTMLElement &&
      focused.isConnected &&
      document.activeElement !== focused
    ) {
      focused.focus();
    }
  }

  /**
   * Show the board, touching only what changed: a roster update while someone works
   * the board must not take their focus or close an open list.
   */
  private render(): void {
    const columns: HTMLElement[] = [];
    for (let group = UNASSIGNED; group < this.groupCount; group++) columns.push(this.column(group));
    const current = Array.from(this.root.children);
    if (current.length !== columns.length || columns.some((column, i) => current[i] !== column)) {
      this.root.replaceChildren(...columns);
    }
    for (const [id, chip] of Array.from(this.chips)) {
      if (this.assigned.has(id)) continue;
      chip.item.remove();
      this.chips.delete(id);
    }
    for (const patient of this.patients) {
      const chip = this.chips.get(patient.id) ?? this.createChip(patient.id);
      this.chips.set(patient.id, chip);
      const group = this.assigned.get(patient.id) ?? UNASSIGNED;
      this.fillChip(chip, patient.display_name, group);
      const list = columns[group + 1]?.querySelector("ul");
      if (list && chip.item.parentElement !== list) list.append(chip.item);
    }
    for (const column of columns) {
      const list = column.querySelector("ul");
      if (list === null) continue;
      const empty = list.querySelector(".pair-empty");
      if (list.querySelector(".pair-chip") !== null) empty?.remove();
      else if (empty === null) list.append(make("li", "pair-empty hint", "Drop someone here"));
    }
    this.root.dataset["groups"] = String(this.groupCount);
  }

  /** One group's column, reused by its data-group (a drop on it moves a chip there). */
  private column(group: number): HTMLElement {
    const existing = this.root.querySelector<HTMLElement>(`.pair-group[data-group="${group}"]`);
    if (existing !== null) return existing;
    const column = make("section", "pair-group");
    column.dataset["group"] = String(group);
    const titleId = `pair-group-title-${group + 1}`;
    const title = make("h4", "pair-group-title", groupName(group));
    title.id = titleId;
    column.setAttribute("aria-labelledby", titleId);
    const list = make("ul", "pair-members");
    column.append(title, list);
    column.addEventListener("dragover", (event) => {
      if (!event.dataTransfer?.types.includes(DRAG_TYPE)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      column.dataset["dropTarget"] = "true";
    });
    column.addEventListener("dragleave", () => delete column.dataset["dropTarget"]);
    column.addEventListener("drop", (event) => {
      event.preventDefault();
      delete column.dataset["dropTarget"];
      const id = event.dataTransfer?.getData(DRAG_TYPE);
      if (id) this.move(id, group);
    });
    return column;
  }

  private createChip(participantId: string): Chip {
    const item = make("li", "pair-chip");
    item.dataset["participantId"] = participantId;
    item.draggable = true;
    const name = make("span", "pair-chip-name");
    const select = make("select", "pair-chip-group");
    item.append(name, select);
    item.addEventListener("dragstart", (event) => {
      event.dataTransfer?.setData(DRAG_TYPE, participantId);
      if (event.dataTransfer) event.dataTransfer.effectAllowed = "move";
      item.dataset["dragging"] = "true";
    });
    item.addEventListener("dragend", () => delete item.dataset["dragging"]);
    select.addEventListener("change", () => this.move(participantId, Number(select.value)));
    return { item, name, select };
  }

  private fillChip(chip: Chip, displayName: string, group: number): void {
    chip.name.textContent = displayName;
    chip.item.dataset["group"] = String(group);
    chip.select.setAttribute("aria-label", `Group for ${displayName}`);
    if (chip.select.options.length !== this.groupCount + 2) {
      chip.select.replaceChildren(...this.groupOptions());
    }
    if (chip.select.value !== String(group)) chip.select.value = String(group);
  }

  /** Every group, and one more: choosing it makes a new pair. */
  private groupOptions(): HTMLOptionElement[] {
    const options: HTMLOptionElement[] = [];
    for (let choice = UNASSIGNED; choice <= this.groupCount; choice++) {
      const text = choice === this.groupCount ? "A new pair" : groupName(choice);
      const option = make("option", "", text);
      option.value = String(choice);
      options.push(option);
    }
    return options;
  }
}

function groupName(group: number): string {
  return group === UNASSIGNED ? "Not in a pair" : `Pair ${group + 1}`;
}
