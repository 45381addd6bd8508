// The JSON shapes that cross the boundary with the client core (WasmSession), as the app reads
// them. They follow the pinned browser API of the core; fields the app does not read are left
// open so a richer core answer still type-checks.

export type ConnectionState = 'connected' | 'reconnecting' | 'offline';

export interface ViewActor {
  instanceId: string;
  name: string;
  hp: number | null;
  hpMax: number | null;
  ac: number | null;
  conditions: string[];
  /** The optimistic view differs from the confirmed state. */
  pending: boolean;
  features: { name: string; attackBonus?: number | null; damage?: unknown }[];
}

export interface InitiativeEntry {
  instanceId: string;
  name: string;
  total: number;
}

export interface LogEntry {
  id: string;
  sequence: number;
  type: string;
  userId: string;
  timestamp: number;
  summary: string;
  payload: Record<string, unknown> & {
    result?: { dice: { sides: number; value: number; kept: boolean }[]; total: number };
  };
  verdict: 'verified' | 'local' | 'unverified' | null;
  reason?: string | null;
}

export interface ViewModel {
  sessionId: string;
  status: { state: ConnectionState; pending: number; [key: string]: unknown };
  live: boolean;
  lastApplied: number;
  requireServerRolls: boolean;
  actors: ViewActor[];
  encounter: {
    active: boolean;
    round: number;
    currentTurn: number;
    initiative: InitiativeEntry[];
  };
  pending: { id: string; type: string; status: 'queued' | 'sent' | 'committed' }[];
  log: LogEntry[];
}

export type Notification = { kind: string; [key: string]: unknown };

export type Output =
  | { kind: 'send'; text: string }
  | { kind: 'connect' }
  | { kind: 'reconnect' }
  | { kind: 'close' }
  | { kind: 'http'; href: string }
  | { kind: 'wakeAt'; at: number }
  | { kind: 'notify'; notification: Notification };

/** What `submit` and `command` answer. */
export interface Submitted {
  id: string;
  outputs: Output[];
}

/** An attack worked out before any die is rolled. */
export interface AttackPlan {
  attacker: string;
  target: string;
  weapon: string;
  toHit: string;
  damage: string;
  criticalDamage: string;
  targetAc: number;
  attackBonus: number;
  damageTypes?: string[];
}

/** A server roll handed to a 5e command. */
export interface RollRef {
  rollEventId: string;
  formula: string;
  dice: number[];
  total: number;
}
