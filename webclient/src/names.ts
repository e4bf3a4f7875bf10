/**
 * People's names as the page says them. Names are user input: callers put the result
 * through textContent only.
 */

/** "Bob", "Bob and Carol", "Bob, Carol and Dan" ("nobody" for none). */
export function joinNames(names: readonly string[]): string {
  if (names.length === 0) return "nobody";
  if (names.length === 1) return names[0] ?? "";
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1] ?? ""}`;
}

/** Participant ids to display names, with a fallback for someone not (yet) known. */
export class NameBook {
  private names = new Map<string, string>();

  /** Replace what is known about `people` (others are kept: e.g. the lobby's). */
  learn(people: ReadonlyArray<{ id: string; display_name: string }>): void {
    for (const person of people) this.names.set(person.id, person.display_name);
  }

  of(id: string): string {
    return this.names.get(id) ?? "Someone";
  }

  all(ids: readonly string[]): string[] {
    return ids.map((id) => this.of(id));
  }
}
