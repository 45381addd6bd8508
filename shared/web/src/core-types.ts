// The JSON shapes the client core (WasmSession, built from shared/client/src/wasm.rs over
// shared/client/src/web.rs) returns as strings: parse them with JSON.parse and read them with
// these types. Written by hand next to the Rust mapping; the Rust unit tests of `web` pin the
// same names. Fields marked optional may be absent; `null` means "no value" in the session.

/** Milliseconds since the epoch (`Date.now()`), as the core takes and returns time. */
export type Millis = number;

/** The connection, as the UI shows it. */
export type ConnectionState = 'connected' | 'reconnecting' | 'offline';

/** `{state, ...}`: `attempt`/`nextAt` while reconnecting, `pending` when offline. */
export interface StatusInfo {
  state: ConnectionState;
  /** Consecutive failed attempts (reconnecting). */
  attempt?: number;
  /** When the next attempt starts (reconnecting). */
  nextAt?: Millis;
  /** Our events not final yet (always present in the ViewModel's `status`). */
  pending?: number;
}

/** A server roll's result (`payload.result` of a `core:dice:roll`). */
export interface RollResult {
  dice: { sides: number; value: number; kept: boolean }[];
  total: number;
}

/** The trusted-dice verdict of a 5e event; null for events the verifier does not judge. */
export type Verdict = 'verified' | 'local' | 'unverified' | null;

/** A committed event as the log shows it. */
export interface LogEntry {
  id: string;
  sequence: number;
  type: string;
  userId: string;
  /** The server's commit time. */
  timestamp: Millis;
  /** One line for people, e.g. "Goblin 1 hits Ogre with Scimitar: 7 slashing (15 → 8)". */
  summary: string;
  payload: Record<string, unknown> & { result?: RollResult };
  verdict: Verdict;
  /** Why a verdict is `unverified`. */
  reason?: string;
}

/** A feature usable as an attack (it has an attack bonus). */
export interface ActorFeature {
  name: string;
  attackBonus: number;
  /** The damage formula, parts added: "1d8+2+1d6" ("" when the feature has no damage). */
  damage: string;
  /** The damage types of the parts, in order. */
  damageTypes: string[];
}

/** One actor of the optimistic view. Values are as stored: null when the actor has none. */
export interface ActorView {
  instanceId: string;
  name: string;
  hp: number | null;
  hpMax: number | null;
  ac: number | null;
  /** Lowercase condition names. */
  conditions: string[];
  /** The optimistic view differs from the confirmed state (a change of ours not final yet). */
  pending: boolean;
  features: ActorFeature[];
}

export interface InitiativeView {
  instanceId: string;
  name: string;
  total: number;
}

export interface EncounterView {
  active: boolean;
  round: number | null;
  /** Index into `initiative`. */
  currentTurn: number | null;
  initiative: InitiativeView[];
}

export type PendingState = 'queued' | 'sent' | 'committed';

export interface PendingEvent {
  id: string;
  type: string;
  status: PendingState;
  /** Set once committed (waiting for the events before it). */
  sequence?: number;
}

/** What `snapshot()` returns. */
export interface ViewModel {
  sessionId: string;
  status: StatusInfo & { pending: number };
  /** Caught up on the current socket: queued events are flowing. */
  live: boolean;
  /** The last sequence of the confirmed state. */
  lastApplied: number;
  /** The highest sequence known to exist. */
  knownHead: number;
  requireServerRolls: boolean;
  actors: ActorView[];
  encounter: EncounterView;
  pending: PendingEvent[];
  /** Newest first, at most 200. */
  log: LogEntry[];
}

/** Something for the UI, inside `{kind: "notify"}`. */
export type Notification =
  | ({ kind: 'status' } & StatusInfo)
  /** The catch-up after a (re)connect finished. */
  | { kind: 'live' }
  /** Committed events applied in order, with their verdicts. */
  | { kind: 'applied'; events: LogEntry[] }
  /** The optimistic view changed: read `snapshot()`. */
  | { kind: 'viewChanged' }
  /** Our event is final. */
  | { kind: 'confirmed'; id: string; sequence: number }
  /** The server refused our event; it left the view. `current`: for `conflict`, path → value. */
  | {
      kind: 'rolledBack';
      id: string;
      type: string;
      code: string;
      message: string;
      payload: unknown;
      current?: Record<string, unknown>;
    }
  /** The rules hand a conflict to the GM: POST /sessions/{id}/conflicts {eventId: id, reason}. */
  | { kind: 'escalate'; id: string; type: string; reason: string }
  /** A conflicting event of ours was resubmitted with a new id. */
  | { kind: 'rebased'; rejected: string; resubmitted: string }
  /** The local projection refused a committed event; the whole state is reloaded. */
  | { kind: 'diverged'; sequence: number; error: string }
  /** An `error` frame about one of our actions. */
  | { kind: 'serverError'; code: string; message: string; action: string | null }
  /** The server ended the subscription. */
  | { kind: 'unsubscribed' }
  /** A frame the core passes through: presence, ephemeral, conflict:resolution_needed. */
  | { kind: 'frame'; event: string; data: Record<string, unknown> }
  /** A text frame that is not a server frame. */
  | { kind: 'badFrame'; error: string };

/** What the page must do, in order. */
export type Output =
  /** Send one text frame on the socket. */
  | { kind: 'send'; text: string }
  /** Open a socket; report onConnected or onDisconnected. */
  | { kind: 'connect' }
  /** Replace the socket (planned, before the gateway's 2-hour cut). */
  | { kind: 'reconnect' }
  /** Close the socket for good. */
  | { kind: 'close' }
  /** GET href and hand the body to onLoaded. `load`: a snapshot (snapshot:required) or the
   * whole state (after a divergence). */
  | { kind: 'http'; href: string; load: 'snapshot' | 'state'; snapshotSequence?: number }
  /** Call tick at this time at the latest (nextWake() gives the same). */
  | { kind: 'wakeAt'; at: Millis }
  | { kind: 'notify'; notification: Notification };

/** What `submit` and `command` return. */
export interface Submitted {
  id: string;
  outputs: Output[];
}

/** What `planAttack` returns: the formulas to ask the server to roll. */
export interface AttackPlan {
  attacker: string;
  target: string;
  weapon: string;
  /** e.g. "1d20+4". */
  toHit: string;
  /** e.g. "1d6+2". */
  damage: string;
  /** Dice doubled, e.g. "2d6+2". */
  criticalDamage: string;
  targetAc: number;
  attackBonus: number;
  damageTypes: string[];
}

/** A roll handed to a 5e command (`attackRoll`, `damageRoll`, initiative `rolls`). */
export interface RollRef {
  rollEventId?: string;
  formula: string;
  dice: number[];
  total: number;
}
