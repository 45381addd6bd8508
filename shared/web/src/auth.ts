// Who is signed in: the bearer token (kept in this browser's localStorage) and the user id it
// names. The id is read from the token's `sub` claim without checking the signature: the server
// checks every request; the page only needs to recognize its own user.

import { reactive } from 'vue';

const KEY = 'dlab.token';

/** The `sub` claim of a JWT, or null when the text is not a readable token. */
export function tokenSubject(token: string): string | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as { sub?: unknown };
    return typeof claims.sub === 'string' && claims.sub ? claims.sub : null;
  } catch {
    return null;
  }
}

function load(): string | null {
  try {
    return localStorage.getItem(KEY);
  } catch {
    return null;
  }
}

const initial = load();

export const auth = reactive({
  token: initial as string | null,
  userId: (initial ? tokenSubject(initial) : null) as string | null,
});

/** Signs in with `token`; false when it names no user. */
export function signIn(token: string): boolean {
  const trimmed = token.trim();
  const user = tokenSubject(trimmed);
  if (!user) return false;
  auth.token = trimmed;
  auth.userId = user;
  try {
    localStorage.setItem(KEY, trimmed);
  } catch {
    // private mode: the sign-in lasts this page only
  }
  return true;
}

export function signOut(): void {
  auth.token = null;
  auth.userId = null;
  try {
    localStorage.removeItem(KEY);
  } catch {
    // nothing stored
  }
}
