/**
 * Signing out of the site's pages (every signed-in page loads this, from base.html).
 *
 * Signing out clears this browser's storage for the site (the server sends
 * `Clear-Site-Data: "storage"`), and with it any note a clinician typed that the server
 * has not acknowledged yet (notedrafts.ts keeps those in `localStorage` until it does,
 * e.g. while a call in another tab is offline). Before that happens, the person is asked:
 * cancelling keeps them signed in, and their notes are saved once that tab is back.
 *
 * Each of the sign-out forms counts: "Sign out" in the header and "Sign out everywhere"
 * on the account page.
 */
import { DRAFT_PREFIX, type StorageLike, wipeAllDrafts } from "./notedrafts";

/** The forms that end this browser's sign-in (their `action` paths). */
const SIGN_OUT_ACTIONS = new Set(["/logout", "/account/sign-out-everywhere"]);

function browserStorage(): StorageLike | null {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: no drafts can be in it
  }
}

/** How many note drafts wait in `storage` for their save (anyone's on this browser). */
export function unsavedDrafts(storage: StorageLike | null): number {
  if (storage === null) return 0;
  let count = 0;
  for (let index = 0; index < storage.length; index++) {
    if (storage.key(index)?.startsWith(DRAFT_PREFIX)) count++;
  }
  return count;
}

export function signOutQuestion(count: number): string {
  const notes = count === 1 ? "1 unsaved note" : `${count} unsaved notes`;
  return `You have ${notes} in this browser; signing out deletes them. Sign out anyway?`;
}

function isSignOutForm(target: EventTarget | null): target is HTMLFormElement {
  if (!(target instanceof HTMLFormElement)) return false;
  return SIGN_OUT_ACTIONS.has(new URL(target.action, window.location.href).pathname);
}

document.addEventListener(
  "submit",
  (event) => {
    if (!isSignOutForm(event.target)) return;
    const storage = browserStorage();
    const count = unsavedDrafts(storage);
    if (count === 0) return;
    // A native dialog: modal, focused, read out by screen readers, answered by keyboard.
    if (!window.confirm(signOutQuestion(count))) {
      event.preventDefault();
      return;
    }
    // Asked and agreed: gone now, even where the browser ignores Clear-Site-Data.
    wipeAllDrafts(storage);
  },
  // Before any other handler: a cancelled sign-out must not half-happen.
  { capture: true },
);
