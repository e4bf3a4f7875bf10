/**
 * Small DOM helpers shared by the call page's panels.
 *
 * Text from people (names, messages) only ever goes through textContent: `make` takes
 * plain text, never markup.
 */

/** The element with `id`, which must exist and be of `type`. */
export function byId<T extends HTMLElement>(id: string, type: { new (): T }): T {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`Page is missing #${id}`);
  return element;
}

/** A new element with a class and (optional) text. */
export function make<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = "",
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  element.className = className;
  if (text) element.textContent = text;
  return element;
}

/** A `type="button"` button (never submits a form by accident). */
export function button(className: string, text: string): HTMLButtonElement {
  const element = make("button", className, text);
  element.type = "button";
  return element;
}

/** What to tell the user about a failed action (server errors are user-readable). */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : "That did not work. Please try again.";
}

/**
 * A runner for one panel's actions: while an action runs, the panel's buttons are
 * disabled; if it fails, `problem` says why (and is hidden again at the next try).
 */
export function actionRunner(
  panel: ParentNode,
  problem: HTMLElement,
): (work: () => Promise<unknown>) => Promise<void> {
  return async (work) => {
    problem.hidden = true;
    for (const b of panel.querySelectorAll("button")) b.disabled = true;
    try {
      await work();
    } catch (error) {
      problem.textContent = errorText(error);
      problem.hidden = false;
    } finally {
      for (const b of panel.querySelectorAll("button")) b.disabled = false;
    }
  };
}

/** "14:05": a UNIX time in seconds as the user's local clock time. */
export function clockTime(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
  });
}
