// A small typed client of the gateway's HTTP API (PROTOCOL.md, "HTTP API"). Every call sends
// the signed-in user's bearer token; every refusal becomes an ApiError carrying the server's
// `{error: {code, message}}`, which the screens show as they are.

import { auth } from './auth';

/** A refusal of the server, or a failure to reach it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** One line for a person: what failed and the server's own words. */
  describe(): string {
    if (this.status === 0) return `Cannot reach the server: ${this.message}`;
    return `${this.code}: ${this.message} (HTTP ${this.status})`;
  }
}

/** Any error as one line for the user. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) return error.describe();
  if (error instanceof Error) return error.message;
  return String(error);
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface Campaign {
  id: string;
  name: string;
  gmUserId: string;
  members: { userId: string; role: 'player' | 'gm' }[];
  createdAt?: number;
  [key: string]: unknown;
}

export interface Actor {
  id: string;
  campaignId: string;
  name: string;
  compendiumRef?: string | null;
  [key: string]: unknown;
}

export interface SessionDoc {
  id: string;
  campaignId: string;
  name: string;
  status?: string;
  createdAt?: number;
  [key: string]: unknown;
}

export interface CompendiumEntry {
  ref: string;
  name: string;
  system?: string;
  category?: string;
  data?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface CompendiumPage extends Page<CompendiumEntry> {
  attribution?: string;
}

export interface Conflict {
  conflictId: string;
  sessionId?: string;
  kind?: string;
  description: string;
  options?: unknown;
  events?: unknown[];
  choices?: { eventId: string; userId?: string; values?: Record<string, unknown>; [key: string]: unknown }[];
  createdAt?: number;
  resolved: boolean;
  resolution?: unknown;
}

export interface LanInvite {
  url: string;
  token: string;
  expiresAt: number;
  qrSvg: string;
}

type Query = Record<string, string | number | undefined | null>;

function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

/** Percent-encodes one path segment (ids are opaque strings). */
export const seg = (s: string) => encodeURIComponent(s);

/** One request; JSON in and out. `raw` returns the body text instead of parsing it. */
export async function request<T>(
  method: string,
  path: string,
  body?: unknown,
  options: { token?: string | null; query?: Query } = {},
): Promise<T> {
  const token = options.token === undefined ? auth.token : options.token;
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'unreachable', e instanceof Error ? e.message : String(e));
  }
  const text = await response.text();
  if (!response.ok) {
    let code = 'http_error';
    let message = text.slice(0, 300) || response.statusText;
    try {
      const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
      if (parsed.error) {
        code = parsed.error.code ?? code;
        message = parsed.error.message ?? message;
      }
    } catch {
      // not JSON: keep the text
    }
    throw new ApiError(response.status, code, message);
  }
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(response.status, 'bad_response', `the server answered something that is not JSON on ${path}`);
  }
}

/** GET of a path as raw text (the core parses state documents itself). */
export async function getText(path: string): Promise<string> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (auth.token) headers.Authorization = `Bearer ${auth.token}`;
  let response: Response;
  try {
    response = await fetch(path, { headers });
  } catch (e) {
    throw new ApiError(0, 'unreachable', e instanceof Error ? e.message : String(e));
  }
  const text = await response.text();
  if (!response.ok) {
    let code = 'http_error';
    let message = text.slice(0, 300);
    try {
      const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } };
      code = parsed.error?.code ?? code;
      message = parsed.error?.message ?? message;
    } catch {
      // keep the text
    }
    throw new ApiError(response.status, code, message);
  }
  return text;
}

const get = <T>(path: string, query?: Query) => request<T>('GET', path, undefined, { query });
const post = <T>(path: string, body: unknown = {}) => request<T>('POST', path, body);
const del = <T>(path: string) => request<T>('DELETE', path);

/** Every item of a paged list (bounded: a list this console shows is never huge). */
async function all<T>(path: string, query: Query = {}, maxPages = 50): Promise<T[]> {
  const items: T[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < maxPages; page++) {
    const answer: Page<T> = await get<Page<T>>(path, { ...query, cursor });
    items.push(...answer.items);
    if (!answer.nextCursor) break;
    cursor = answer.nextCursor;
  }
  return items;
}

export const api = {
  devToken: (userId: string) =>
    request<{ token: string }>('POST', '/dev/token', { userId }, { token: null }),
  connectTicket: () => post<{ ticket: string; expiresAt: number }>('/connect-ticket'),

  campaigns: () => all<Campaign>('/campaigns'),
  campaign: (id: string) => get<Campaign>(`/campaigns/${seg(id)}`),
  createCampaign: (name: string) => post<Campaign>('/campaigns', { name }),
  putMember: (campaign: string, userId: string, role: 'player' | 'gm') =>
    post<Campaign>(`/campaigns/${seg(campaign)}/members`, { userId, role }),
  removeMember: (campaign: string, userId: string) =>
    del<void>(`/campaigns/${seg(campaign)}/members/${seg(userId)}`),

  actors: (campaign: string) => all<Actor>(`/campaigns/${seg(campaign)}/actors`),
  createActor: (campaign: string, compendiumRef: string, name?: string) =>
    post<Actor>(`/campaigns/${seg(campaign)}/actors`, name ? { compendiumRef, name } : { compendiumRef }),
  createActorsBulk: (campaign: string, compendiumRef: string, count: number, namePattern?: string) =>
    post<{ items: Actor[] }>(
      `/campaigns/${seg(campaign)}/actors/bulk`,
      namePattern ? { compendiumRef, count, namePattern } : { compendiumRef, count },
    ),
  deleteActor: (campaign: string, actor: string) =>
    del<void>(`/campaigns/${seg(campaign)}/actors/${seg(actor)}`),

  sessions: (campaign: string) => all<SessionDoc>(`/campaigns/${seg(campaign)}/sessions`),
  createSession: (campaign: string, name: string) =>
    post<SessionDoc>(`/campaigns/${seg(campaign)}/sessions`, { name }),
  sessionStateText: (session: string) => getText(`/sessions/${seg(session)}`),
  getText,
  runtimeActor: (session: string, instanceId: string) =>
    get<Record<string, unknown>>(`/sessions/${seg(session)}/actors/${seg(instanceId)}`),
  addSessionActor: (session: string, actorId: string) =>
    post<unknown>(`/sessions/${seg(session)}/actors`, { actorId }),
  removeSessionActor: (session: string, instanceId: string) =>
    del<unknown>(`/sessions/${seg(session)}/actors/${seg(instanceId)}`),
  endSession: (session: string) => post<SessionDoc>(`/sessions/${seg(session)}/end`),
  compactSession: (session: string) =>
    post<{ originalEventCount: number; compactedEventCount: number; snapshotCreated: boolean; spaceSaved: number }>(
      `/sessions/${seg(session)}/compact`,
    ),

  conflicts: (session: string) => get<Page<Conflict>>(`/sessions/${seg(session)}/conflicts`),
  escalate: (session: string, eventId: string, reason: string) =>
    post<Conflict>(`/sessions/${seg(session)}/conflicts`, { eventId, reason }),
  resolveConflict: (session: string, conflictId: string, decision: { chosenEventId: string } | { finalState: unknown }) =>
    post<unknown>(`/sessions/${seg(session)}/conflicts/${seg(conflictId)}/resolve`, decision),

  compendium: (query: { q?: string; type?: string; crMin?: string; crMax?: string; limit?: number; cursor?: string | null }) =>
    get<CompendiumPage>('/compendium', query),
  compendiumEntry: (ref: string) => get<CompendiumEntry>(`/compendium/${seg(ref)}`),

  lanInvite: (userId: string, campaignId: string) => post<LanInvite>('/lan/invites', { userId, campaignId }),
};
